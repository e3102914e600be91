//! `segc probes --run --from ZONE --netns NS` in real namespaces: with the
//! filter deployed every probe comes out as the policy expects (allowed
//! services answer, denied ones are silent); with it removed the denied ones
//! answer and each is a mismatch (exit 1). Every run is an audit event, and
//! the report shows the newest.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

const POLICY: &str = r#"policy "probe-run" {}
zone client {
  cidrs = [10.99.0.1/32, fd99::1/128]
  scope = connected
}
zone vault {
  cidrs = [10.99.0.2/32, fd99::2/128]
  scope = cde
}
flow client -> vault on tcp/8443, udp/5353, icmp/8, icmp/128 {
  justification = "payments"
  reviewed = 2026-10-01
}
"#;

fn segc(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(args)
        .env("SEGC_AUDIT_DIR", home.join("audit"))
        .env("SEGC_AUDIT_KEY_FILE", home.join("audit.key"))
        .output()
        .expect("segc runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn probe_runs_match_with_the_filter_and_find_mismatches_without_it() {
    if !require("probe_runs_match_with_the_filter_and_find_mismatches_without_it", &["ip", "python3"]) {
        return;
    }
    let home = std::env::temp_dir().join(format!("segc-probe-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    let dir = home.join("policy");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("main.seg"), POLICY).expect("policy");
    let p = dir.to_str().expect("utf-8");
    let net = NetnsPair::new("prun");
    let _srv = net.serve(&net.b, &[8443, 22], &[5353, 53]);
    let run = |format: &str| {
        segc(
            &home,
            &["probes", "--run", "--from", "client", "--netns", &net.a, "--timeout-ms", "300", "--rate", "200", "--format", format, p],
        )
    };

    // The network works before the filter (both families, neighbours resolved).
    assert!(net.probe(&net.a, "tcp", "10.99.0.2", 8443) && net.probe(&net.a, "tcp", "fd99::2", 8443));
    let o = segc(&home, &["deploy", "--target", "host", "--netns", &net.b, "--iface", "vb", "--apply", p]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run("json");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    let results = v["results"].as_array().expect("results");
    assert!(results.iter().all(|r| r["from_zone"] == "client" && r["as_expected"] == true), "{v:#}");
    let seen = |expect: &str, proto: &str, observed: &str| {
        results.iter().any(|r| r["expect"] == expect && r["proto"] == proto && r["observed"] == observed)
    };
    // Allowed services answered, over IPv4 and IPv6; ICMP echo too.
    assert!(seen("allow", "tcp/8443", "open") && seen("allow", "udp/5353", "open"), "{v:#}");
    assert!(seen("allow", "icmp/8", "open") && seen("allow", "icmp/128", "open"), "echo requests, ICMP and ICMPv6: {v:#}");
    assert_eq!(results.iter().filter(|r| r["expect"] == "allow" && r["dst"] == "fd99::2").count(), 3, "{v:#}");
    // Denied ones were silent, though something listens on tcp/22 and udp/53.
    assert!(seen("deny", "tcp/22", "filtered") && seen("deny", "udp/53", "filtered"), "{v:#}");

    // Without the filter, what should be denied answers: mismatches, exit 1.
    let o = segc(&home, &["undeploy", "--target", "host", "--netns", &net.b]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run("human");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.lines().any(|l| l.starts_with("MISMATCH") && l.contains("10.99.0.2 tcp/22") && l.ends_with("Open")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("MISMATCH") && l.contains("tcp/3306") && l.ends_with("Closed")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("ok") && l.contains("must-allow") && l.contains("tcp/8443")), "{out}");

    // Both runs are audit events, with their results.
    let o = segc(&home, &["audit", "show", "--kind", "probes.run", "--format", "json"]);
    let events: Vec<Value> = String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(events.len(), 2, "{}", text(&o));
    assert_eq!(events[0]["data"]["mismatches"], 0);
    assert!(events[1]["data"]["mismatches"].as_u64().unwrap_or(0) > 0);

    // The report carries the newest run from each zone (here: the mismatches).
    let o = segc(&home, &["report", "--format", "md", p]);
    let md = String::from_utf8_lossy(&o.stdout);
    let row = md.lines().find(|l| l.contains("| client |") && l.contains("UTC")).unwrap_or_else(|| panic!("no run row: {md}"));
    assert!(row.contains("MISMATCHES") && row.contains(&format!("audit event {}", events[1]["seq"])), "{row}");

    // A zone the policy does not have, and SARIF: refused.
    let o = segc(&home, &["probes", "--run", "--from", "nowhere", p]);
    assert!(o.status.code() == Some(2) && text(&o).contains("no zone `nowhere`"), "{}", text(&o));
    let o = run("sarif");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&home);
}
