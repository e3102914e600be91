//! The `segc` binary end to end: exit codes, output formats, bad input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn segc() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_segc"));
    c.env("NO_COLOR", "1");
    c
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs with a deadline, so a hang fails the test instead of stalling CI.
/// Output is read while the child runs, so a large one cannot fill the pipe.
fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("segc starts");
    let mut pipe_in = child.stdin.take().expect("stdin");
    let input = stdin.map(<[u8]>::to_vec);
    let writer = std::thread::spawn(move || {
        if let Some(bytes) = input {
            let _ = pipe_in.write_all(&bytes);
        }
    });
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let read_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut v);
        v
    });
    let read_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut v);
        v
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("segc did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    Output { status, stdout: read_out.join().expect("stdout reader"), stderr: read_err.join().expect("stderr reader") }
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally, not by a signal")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("segc-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn write(dir: &Path, name: &str, body: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(&p, body).expect("write");
    p
}

const VALID: &str = "zone dmz {\n  cidrs = [10.0.1.0/24]\n  scope = connected\n}\nflow dmz -> dmz on tcp/443\n";

#[test]
fn examples_check_clean_and_pass_their_tests() {
    for ex in ["online-shop", "retail-pos"] {
        let dir = repo().join("examples").join(ex);
        let mut c = segc();
        c.args(["check", "--today", "2026-11-28", "--deny-warnings"]).arg(&dir);
        let o = run(c, None);
        assert_eq!(code(&o), 0, "{ex}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains("checks clean"), "{ex}");
        let mut c = segc();
        c.args(["test", "--coverage", "--min-coverage", "100"]).arg(&dir);
        let o = run(c, None);
        assert_eq!(code(&o), 0, "{ex}: {}", text(&o.stdout));
        assert!(text(&o.stdout).contains(" passed, 0 failed"), "{ex}");
        let mut c = segc();
        c.args(["fmt", "--check"]).arg(&dir);
        assert_eq!(code(&run(c, None)), 0, "{ex} is formatted");
    }
}

#[test]
fn exit_codes_follow_the_spec() {
    let d = tmpdir("exit");
    let bad = write(&d, "bad.seg", b"zone a {\n  cidrs = [10.0.0.1/8]\n  scope = connected\n}\nflow a -> a on tcp/1\n");
    let warn = write(&d, "warn.seg", format!("{VALID}service unused = tcp/9\n").as_bytes());
    let good = write(&d, "good.seg", VALID.as_bytes());
    let mut c = segc();
    c.arg("check").arg(&good);
    assert_eq!(code(&run(c, None)), 0);
    let mut c = segc();
    c.arg("check").arg(&bad);
    let o = run(c, None);
    assert_eq!(code(&o), 1);
    assert!(text(&o.stderr).contains("E205"), "{}", text(&o.stderr));
    let mut c = segc();
    c.arg("check").arg(&warn);
    assert_eq!(code(&run(c, None)), 0, "warnings alone pass");
    let mut c = segc();
    c.arg("check").arg("--deny-warnings").arg(&warn);
    assert_eq!(code(&run(c, None)), 1, "warnings fail under --deny-warnings");
    let mut c = segc();
    c.arg("check").arg(d.join("missing.seg"));
    let o = run(c, None);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).starts_with("error:"), "{}", text(&o.stderr));
    let mut c = segc();
    c.args(["check", "--format", "xml"]).arg(&good);
    assert_eq!(code(&run(c, None)), 2, "usage error");
    let mut c = segc();
    c.args(["check", "--today", "2026-13-01"]).arg(&good);
    assert_eq!(code(&run(c, None)), 2, "bad --today");
    // A folder means its main.seg.
    write(&d, "tree/main.seg", VALID.as_bytes());
    let mut c = segc();
    c.arg("check").arg(d.join("tree"));
    assert_eq!(code(&run(c, None)), 0);
}

#[test]
fn json_and_sarif_carry_code_level_and_location() {
    let d = tmpdir("formats");
    let p = write(&d, "main.seg", b"zone a {\n  cidrs = [10.0.0.0/8]\n  scope = cdee\n}\nflow a -> a on tcp/1\n");
    let mut c = segc();
    c.args(["check", "--format", "json"]).arg(&p);
    let o = run(c, None);
    assert_eq!(code(&o), 1);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json on stdout");
    let d0 = &doc["diagnostics"][0];
    assert_eq!(d0["code"], "E202");
    assert_eq!(d0["severity"], "error");
    assert_eq!(d0["location"]["file"], "main.seg");
    assert_eq!(d0["location"]["line"], 3);
    assert_eq!(d0["location"]["column"], 11);
    assert_eq!(d0["help"], "did you mean `cde`?");
    assert_eq!(doc["summary"]["errors"], 1);
    let mut c = segc();
    c.args(["check", "--format", "sarif"]).arg(&p);
    let o = run(c, None);
    assert_eq!(code(&o), 1);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("sarif on stdout");
    assert_eq!(doc["version"], "2.1.0");
    let r = &doc["runs"][0]["results"][0];
    assert_eq!(r["ruleId"], "E202");
    assert_eq!(r["level"], "error");
    let loc = &r["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"]["uri"], "main.seg");
    assert_eq!(loc["region"]["startLine"], 3);
    let rules = doc["runs"][0]["tool"]["driver"]["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), segc_compiler::diag::Code::ALL.len());
    assert_eq!(rules[r["ruleIndex"].as_u64().expect("index") as usize]["id"], "E202");
}

#[test]
fn output_is_deterministic() {
    let dir = repo().join("examples/online-shop");
    let outs: Vec<Vec<u8>> = (0..3)
        .map(|_| {
            let mut c = segc();
            c.args(["check", "--format", "sarif", "--today", "2020-01-01"]).arg(&dir);
            run(c, None).stdout
        })
        .collect();
    assert!(!outs[0].is_empty());
    assert!(outs.iter().all(|o| *o == outs[0]));
}

/// Binary junk, huge lines, deep nesting and invalid UTF-8 give diagnostics and
/// exit 1, never a panic or a hang.
#[test]
fn hostile_input_never_panics() {
    let d = tmpdir("hostile");
    let mut junk = Vec::new();
    let mut x: u32 = 0x2545_f491;
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        junk.push((x >> 24) as u8);
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("junk.seg", junk),
        ("long_line.seg", format!("zone a {{ description = \"{}\" }}", "x".repeat(10 << 20)).into_bytes()),
        ("long_ident.seg", "a".repeat(10 << 20).into_bytes()),
        ("nested.seg", format!("zone a {{ cidrs = {} }}", "[".repeat(200_000)).into_bytes()),
        ("braces.seg", "{".repeat(200_000).into_bytes()),
        ("utf8.seg", b"zone a {\n  owner = \"\xff\xfe\"\n}\n".to_vec()),
        ("nul.seg", b"zone\0a {}".to_vec()),
        ("empty.seg", Vec::new()),
    ];
    for (name, body) in cases {
        let p = write(&d, name, &body);
        let mut c = segc();
        c.arg("check").arg(&p);
        let o = run(c, None);
        let err = text(&o.stderr);
        assert!(!err.contains("panicked"), "{name}: {}", &err[..err.len().min(2000)]);
        let expected = if name == "empty.seg" { 0 } else { 1 };
        assert_eq!(code(&o), expected, "{name}: {}", &err[..err.len().min(2000)]);
        let mut c = segc();
        c.args(["fmt", "--check"]).arg(&p);
        let o = run(c, None);
        assert!(!text(&o.stderr).contains("panicked"), "fmt {name}");
    }
}

#[test]
fn imports_cannot_leave_the_root_folder() {
    let d = tmpdir("symlink");
    write(&d, "outside/secret.seg", b"zone s {\n  cidrs = [10.9.0.0/16]\n  scope = connected\n}\n");
    write(&d, "root/main.seg", format!("import \"link/secret.seg\"\nimport \"../outside/secret.seg\"\n{VALID}").as_bytes());
    std::os::unix::fs::symlink(d.join("outside"), d.join("root/link")).expect("symlink");
    let mut c = segc();
    c.args(["check", "--format", "json"]).arg(d.join("root"));
    let o = run(c, None);
    assert_eq!(code(&o), 1);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let msgs: Vec<String> = doc["diagnostics"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|d| d["code"] == "E103")
        .map(|d| d["message"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(msgs[0].contains("outside the root folder"), "{msgs:?}");
    assert!(msgs[1].contains("leaves the root folder"), "{msgs:?}");
}

#[test]
fn explain_one_packet_and_many() {
    let dir = repo().join("examples/online-shop");
    let mut c = segc();
    c.arg("explain").arg(&dir).args(["10.10.2.20", "10.10.3.5", "tcp/9443"]);
    let o = run(c, None);
    assert_eq!(code(&o), 0);
    let out = text(&o.stdout);
    assert!(out.starts_with("allow 10.10.2.20 -> 10.10.3.5 tcp/9443 zones app -> card_vault by flow main.seg:29"), "{out}");
    assert!(out.contains("in zone card_vault"), "{out}");
    let packets = b"# a comment\n10.10.2.20 10.10.3.5 tcp/9443\n\n198.51.100.7 10.10.3.5 tcp/9443\n172.16.0.50 10.20.1.1 udp/53\n2001:db8:20::9 2001:db8:10:3::5 icmp/128\n";
    let mut c = segc();
    c.arg("explain").arg(&dir).args(["--packets", "-"]);
    let o = run(c, Some(packets));
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let lines: Vec<String> = text(&o.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0].starts_with("allow "));
    assert!(lines[1].starts_with("deny ") && lines[1].ends_with("by default"), "{}", lines[1]);
    assert!(lines[2].starts_with("deny ") && lines[2].contains("by deny main.seg:"), "{}", lines[2]);
    assert!(lines[3].starts_with("deny "));
    let mut c = segc();
    c.arg("explain").arg(&dir).args(["--packets", "-"]);
    let o = run(c, Some(b"10.0.0.1 nonsense tcp/1\n"));
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("line 1"), "{}", text(&o.stderr));
}

#[test]
fn fmt_rewrites_checks_and_refuses_broken_files() {
    let d = tmpdir("fmt");
    let messy = write(&d, "messy.seg", b"zone dmz{cidrs=[10.0.1.0/24] scope=connected}\n");
    let mut c = segc();
    c.args(["fmt", "--check"]).arg(&messy);
    let o = run(c, None);
    assert_eq!(code(&o), 1);
    assert!(text(&o.stdout).contains("messy.seg"));
    let mut c = segc();
    c.arg("fmt").arg(&messy);
    assert_eq!(code(&run(c, None)), 0);
    assert_eq!(std::fs::read_to_string(&messy).expect("read"), "zone dmz {\n  cidrs = [10.0.1.0/24]\n  scope = connected\n}\n");
    let broken_src = b"zone dmz { cidrs = = }\n";
    let broken = write(&d, "broken.seg", broken_src);
    let mut c = segc();
    c.arg("fmt").arg(&broken);
    let o = run(c, None);
    assert_eq!(code(&o), 1);
    assert!(text(&o.stderr).contains("E001"));
    assert_eq!(std::fs::read(&broken).expect("read"), broken_src, "a broken file is left alone");
}

#[test]
fn completions_and_man_page() {
    let mut c = segc();
    c.args(["completions", "bash"]);
    let o = run(c, None);
    assert_eq!(code(&o), 0);
    assert!(text(&o.stdout).contains("segc"));
    let mut c = segc();
    c.arg("man");
    let o = run(c, None);
    assert_eq!(code(&o), 0);
    assert!(text(&o.stdout).contains(".TH segc"));
}

#[test]
fn check_lists_paths_from_untrusted_into_cde() {
    let mut c = segc();
    c.args(["check", "--format", "json"]).arg(repo().join("examples/online-shop"));
    let o = run(c, None);
    assert_eq!(code(&o), 0);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let exp = doc["exposure"].as_array().expect("exposure list");
    assert_eq!(exp.len(), 1);
    assert_eq!(exp[0]["from"], "internet");
    assert_eq!(exp[0]["to"], "card_vault");
    let hops: Vec<&str> = exp[0]["hops"].as_array().expect("hops").iter().map(|h| h["to"].as_str().unwrap_or("")).collect();
    assert_eq!(hops, ["dmz", "app", "card_vault"]);
    assert_eq!(exp[0]["hops"][2]["flows"][0], "main.seg:29");
}

#[test]
fn diff_reports_new_and_removed_access_and_moved_addresses() {
    let d = tmpdir("diff");
    let base = "use std.zones.internet\nzone dmz {\n  cidrs = [10.0.1.0/24]\n  scope = connected\n}\nzone vault {\n  cidrs = [10.0.9.0/24]\n  scope = cde\n}\nzone office {\n  cidrs = [10.1.0.0/16]\n  scope = connected\n}\nflow internet -> dmz on tcp/443\nflow office -> dmz on tcp/22\n";
    let old = write(&d, "old/main.seg", base.as_bytes());
    let new = write(
        &d,
        "new/main.seg",
        base.replace("flow office -> dmz on tcp/22\n", "flow dmz -> vault on tcp/5432 {\n  justification = \"orders\"\n}\n")
            .replace("[10.1.0.0/16]", "[10.1.0.0/16, 10.0.1.128/25]")
            .as_bytes(),
    );
    let mut c = segc();
    c.args(["diff", "--format", "json"]).arg(old.parent().expect("dir")).arg(new.parent().expect("dir"));
    let o = run(c, None);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let allowed = doc["newly_allowed"].as_array().expect("list");
    // cde first.
    assert_eq!(allowed[0]["cde"], true);
    assert_eq!(allowed[0]["from"]["new"], "dmz");
    assert_eq!(allowed[0]["to"]["new"], "vault");
    assert_eq!(allowed[0]["services"], "tcp/5432");
    assert!(doc["newly_denied"].as_array().expect("list").iter().any(|c| c["from"]["old"] == "office" && c["services"] == "tcp/22"));
    assert_eq!(doc["moved"][0]["prefix"], "10.0.1.128/25");
    assert_eq!(doc["moved"][0]["old"], "dmz");
    assert_eq!(doc["moved"][0]["new"], "office");
    let mut c = segc();
    c.arg("diff").arg(old.parent().expect("dir")).arg(old.parent().expect("dir"));
    let o = run(c, None);
    assert!(text(&o.stdout).starts_with("no change"), "{}", text(&o.stdout));
}

#[test]
fn graph_as_dot_and_svg() {
    let dir = repo().join("examples/retail-pos");
    let mut c = segc();
    c.arg("graph").arg(&dir);
    let o = run(c, None);
    assert_eq!(code(&o), 0);
    let dot = text(&o.stdout);
    assert!(dot.starts_with("digraph \"retail-pos\" {"));
    assert!(dot.contains("\"pos\" -> \"gateway\" [label=\"tcp/7443\", color=\"#c0392b\""), "{dot}");
    assert!(dot.contains("\"gateway\" [label=\"gateway\\ncde\\n"), "{dot}");
    let mut c = segc();
    c.args(["graph", "--format", "svg"]).arg(&dir);
    let o = run(c, None);
    assert_eq!(code(&o), 0);
    let svg = text(&o.stdout);
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\"") && svg.trim_end().ends_with("</svg>"));
    for zone in ["pos", "gateway", "tms", "processor", "store_wifi"] {
        assert!(svg.contains(&format!(">{zone}</text>")), "{zone}");
    }
    assert_eq!(svg.matches("marker-end=").count(), dot.matches(" -> ").count(), "one drawn edge per graph edge");
}

#[test]
fn probes_agree_with_explain() {
    let dir = repo().join("examples/online-shop");
    let mut c = segc();
    c.args(["probes", "--format", "json"]).arg(&dir);
    let o = run(c, None);
    assert_eq!(code(&o), 0);
    let probes: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).expect("json");
    assert!(probes.iter().any(|p| p["expect"] == "allow") && probes.iter().any(|p| p["expect"] == "deny"));
    assert!(probes.iter().all(|p| p["from_zone"] == "card_vault" || p["to_zone"] == "card_vault"), "every probe touches the cde");
    let packets: String = probes
        .iter()
        .map(|p| format!("{} {} {}\n", p["src"].as_str().unwrap(), p["dst"].as_str().unwrap(), p["proto"].as_str().unwrap()))
        .collect();
    let mut c = segc();
    c.arg("explain").arg(&dir).args(["--packets", "-"]);
    let o = run(c, Some(packets.as_bytes()));
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let verdicts: Vec<String> = text(&o.stdout).lines().map(|l| l.split(' ').next().unwrap_or("").to_string()).collect();
    assert_eq!(verdicts.len(), probes.len());
    for (p, v) in probes.iter().zip(&verdicts) {
        assert_eq!(p["expect"].as_str(), Some(v.as_str()), "{p}");
    }
    assert!(probes.iter().all(|p| p["from_zone"] != p["to_zone"]), "a tester's plan: no zone probes itself");
    // A policy with no cde has nothing to probe.
    let d = tmpdir("probes");
    let p = write(&d, "main.seg", VALID.as_bytes());
    let mut c = segc();
    c.arg("probes").arg(&p);
    assert!(text(&run(c, None).stdout).starts_with("no cde zone"));
}

#[test]
fn reports_in_markdown_html_and_pdf() {
    let dir = repo().join("examples/retail-pos");
    let mut c = segc();
    c.args(["report", "--today", "2027-06-01"]).arg(&dir);
    let o = run(c, None);
    assert_eq!(code(&o), 0);
    let md = text(&o.stdout);
    for section in [
        "# Segmentation report: retail-pos",
        "## Zones",
        "## Flows (PCI DSS 1.2.5, 1.2.7)",
        "## Findings",
        "## Segmentation test probes (PCI DSS 11.4.5)",
        "```dot",
    ] {
        assert!(md.contains(section), "{section}");
    }
    // Reviewed 2026-09-15 with a 26-week interval: overdue by mid-2027.
    assert!(md.contains("OVERDUE since 2027-03-16"), "{md}");
    let mut c = segc();
    c.args(["report", "--format", "html"]).arg(&dir);
    let html = text(&run(c, None).stdout);
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg") && html.trim_end().ends_with("</html>"));
    let mut c = segc();
    c.args(["report", "--format", "pdf"]).arg(&dir);
    let pdf = run(c, None).stdout;
    // The typeset document itself is checked page by page in report_pdf.rs.
    assert!(pdf.starts_with(b"%PDF-1.7") && pdf.trim_ascii_end().ends_with(b"%%EOF"));
}
