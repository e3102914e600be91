//! What a user meets: groups through check, test and explain; explain with a
//! service name; every bad line of `--packets` reported; `diff --fail-on`;
//! man pages that refer only to pages that exist; probes refuse SARIF.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn stores() -> PathBuf {
    repo().join("tests/inputs/cli/stores.seg")
}

fn segc(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("SEGC_AUDIT_DIR", std::env::temp_dir().join(format!("segc-user-paths-audit-{}", std::process::id())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("segc starts");
    child.stdin.take().expect("stdin").write_all(stdin).expect("write stdin");
    child.wait_with_output().expect("segc runs")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn a_group_is_one_flow_per_zone_and_explain_names_it() {
    let p = stores();
    let o = segc(&["check", path(&p), "--today", "2026-11-28"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    // The group expands into one flow per store; the test's group cases run per zone.
    let o = segc(&["test", path(&p), "--coverage"], b"");
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let t = out(&o);
    assert!(t.contains("allow stores -> pay_gw on pos_auth [store2 -> pay_gw]"), "{t}");
    assert!(t.contains("coverage: 3 of 5 flows exercised"), "the kiosk and admin flows are not exercised: {t}");
    // explain names the zone, and the group the deciding flow came through.
    let o = segc(&["explain", path(&p), "10.1.2.7", "10.9.0.5", "tcp/7443"], b"");
    let e = out(&o);
    assert!(e.starts_with("allow 10.1.2.7 -> 10.9.0.5 tcp/7443 zones store2 -> pay_gw by flow stores.seg:"), "{e}");
    assert!(e.contains("(via group stores)"), "{e}");
    assert!(e.contains("in zone store2"), "{e}");
}

#[test]
fn explain_takes_a_service_name_with_one_verdict_per_port() {
    let p = stores();
    let o = segc(&["explain", path(&p), "10.1.1.5", "10.9.0.5", "pos_auth"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("allow") || l.starts_with("deny")).collect();
    assert!(text.contains("allow 10.1.1.5 -> 10.9.0.5 tcp/7443 zones store1 -> pay_gw"), "{text}");
    assert!(text.contains("allow 10.1.1.5 -> 10.9.0.5 tcp/7444 zones store1 -> pay_gw"), "{text}");
    assert_eq!(lines.len(), 2, "{text}");
    // A standard-library service the policy never brought in still explains.
    let o = segc(&["explain", path(&p), "10.8.0.5", "10.9.0.5", "dns"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    assert!(text.contains("deny 10.8.0.5 -> 10.9.0.5 tcp/53") && text.contains("deny 10.8.0.5 -> 10.9.0.5 udp/53"), "{text}");
    let o = segc(&["explain", path(&p), "10.8.0.5", "10.9.0.5", "ssh"], b"");
    assert!(out(&o).starts_with("allow 10.8.0.5 -> 10.9.0.5 tcp/22"), "{}", out(&o));
    // Not a packet, not a service: a usage error naming it.
    let o = segc(&["explain", path(&p), "10.8.0.5", "10.9.0.5", "nosuch"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("`nosuch`"), "{}", err(&o));
}

#[test]
fn packets_report_every_bad_line_and_judge_the_good_ones() {
    let p = stores();
    let input = b"10.1.1.5 10.9.0.5 tcp/7443\nnot an address\n10.1.1.5 10.9.0.5 tcp/99999\n10.1.1.5 10.9.0.5 tcp/22\n10.1.1.5\n";
    let o = segc(&["explain", path(&p), "--packets", "-"], input);
    assert_eq!(o.status.code(), Some(2), "bad lines are a usage error");
    let e = err(&o);
    for n in [2, 3, 5] {
        assert!(e.contains(&format!("line {n} of -")), "line {n} is reported: {e}");
    }
    assert!(!e.contains("line 1 of") && !e.contains("line 4 of"), "{e}");
    let lines: Vec<String> = out(&o).lines().map(String::from).collect();
    assert_eq!(lines.len(), 2, "the good lines are judged: {lines:?}");
    assert!(lines[0].starts_with("allow ") && lines[1].starts_with("deny "), "{lines:?}");
}

#[test]
fn diff_fails_on_newly_allowed_traffic_when_asked() {
    let dir = std::env::temp_dir().join(format!("segc-diff-fail-on-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let old = std::fs::read_to_string(stores()).expect("read");
    let cde = old.replace("flow admin -> pay_gw on ssh, https {", "flow admin -> pay_gw on ssh, https, tcp/8080 {");
    let plain = format!("{old}\nflow admin -> kiosk on tcp/22\n");
    for (name, text) in [("old.seg", &old), ("cde.seg", &cde), ("plain.seg", &plain)] {
        std::fs::write(dir.join(name), text).expect("write");
    }
    let f = |n: &str| dir.join(n).to_str().expect("utf-8").to_string();
    let run = |a: &str, b: &str, extra: &[&str]| {
        let mut args = vec!["diff".to_string(), f(a), f(b)];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        segc(&args, b"").status.code()
    };
    assert_eq!(run("old.seg", "cde.seg", &[]), Some(0), "without --fail-on, diff reports and exits 0");
    assert_eq!(run("old.seg", "cde.seg", &["--fail-on", "cde"]), Some(1));
    assert_eq!(run("old.seg", "cde.seg", &["--fail-on", "any"]), Some(1));
    assert_eq!(run("old.seg", "plain.seg", &["--fail-on", "cde"]), Some(0), "a change away from the cde passes the cde gate");
    assert_eq!(run("old.seg", "plain.seg", &["--fail-on", "any"]), Some(1));
    assert_eq!(run("cde.seg", "old.seg", &["--fail-on", "any"]), Some(0), "narrowing never fails");
    assert_eq!(run("old.seg", "old.seg", &["--fail-on", "any"]), Some(0));
}

#[test]
fn man_pages_refer_only_to_pages_that_exist() {
    let o = segc(&["man"], b"");
    assert_eq!(o.status.code(), Some(0));
    let page = out(&o).replace(r"\-", "-");
    assert!(!page.contains("segc-check(1)"), "the single page refers to no per-command page");
    assert!(page.contains("segc check") && page.contains("--fail-on"), "every command and its options are in the page");
    let dir = std::env::temp_dir().join(format!("segc-man-{}", std::process::id()));
    let o = segc(&["man", "--dir", path(&dir)], b"");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let main = std::fs::read_to_string(dir.join("segc.1")).expect("segc.1").replace(r"\-", "-");
    let mut referred = 0;
    for word in main.split(|c: char| c.is_whitespace() || c == '\\' || c == ',') {
        let Some(name) = word.strip_suffix("(1)") else { continue };
        let name = name.trim_start_matches("fB").trim_start_matches("fR");
        if name.starts_with("segc-") {
            referred += 1;
            assert!(dir.join(format!("{name}.1")).exists(), "{name}(1) is referred to and written");
        }
    }
    assert!(referred >= 10, "segc.1 lists the command pages ({referred})");
}

#[test]
fn probes_have_no_sarif_form() {
    let shop = repo().join("examples/online-shop");
    let o = segc(&["probes", "--format", "sarif", path(&shop)], b"");
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(out(&o).is_empty() && err(&o).contains("no SARIF form"), "{}", err(&o));
}
