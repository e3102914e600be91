//! Threat feeds through the command line: every bad feed is a diagnostic
//! with its code and line, a build lists each feed in the manifest and
//! writes its snapshot (same bytes every time), T003 where a target cannot
//! block, `explain` names the feed and line (the reference, and the eBPF
//! program in the kernel when root), the report lists feeds.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn segc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segc")).args(args).env("SEGC_AUDIT_DIR", scratch("audit")).output().expect("segc runs")
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("segc-feeds-cli-{}-{name}", std::process::id()))
}

const POLICY: &str = "use std.zones.internet\nzone web {\n  cidrs = [10.0.1.0/24]\n  scope = connected\n  aws.security_group = \"web\"\n}\nfeed drop {\n  source = \"feeds/drop.txt\"\n  format = spamhaus\n  max_prefixes = 5\n}\nblock drop\nflow internet -> web on tcp/443\nflow web -> internet on tcp/443\n";

fn policy_dir(name: &str, feed: &str) -> PathBuf {
    let d = scratch(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("feeds")).expect("dir");
    std::fs::write(d.join("main.seg"), POLICY).expect("policy");
    std::fs::write(d.join("feeds/drop.txt"), feed).expect("feed");
    d
}

fn check_json(dir: &Path) -> (Option<i32>, Vec<serde_json::Value>) {
    let o = segc(&["check", dir.to_str().expect("utf-8"), "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)));
    let diags = v["diagnostics"].as_array().cloned().or_else(|| v.as_array().cloned()).unwrap_or_default();
    (o.status.code(), diags)
}

#[test]
fn bad_feeds_are_diagnostics_with_their_line() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("garbage", "; DROP\n203.0.113.0/24 ; SBL1\n203.0.113.300/24 ; SBL2\n", "E205", "feeds/drop.txt:3"),
        ("hostbits", "203.0.113.1/24 ; SBL1\n", "E205", "feeds/drop.txt:1"),
        ("toomany", "1.0.0.0/24\n2.0.0.0/24\n3.0.0.0/24\n4.0.0.0/24\n5.0.0.0/24\n6.0.0.0/24\n", "E202", "max_prefixes = 5"),
    ];
    for (name, feed, code, needle) in cases {
        let d = policy_dir(name, feed);
        let (rc, diags) = check_json(&d);
        assert_eq!(rc, Some(1), "{name}: {diags:?}");
        let hit = diags.iter().find(|x| x["code"] == *code).unwrap_or_else(|| panic!("{name}: {code} in {diags:?}"));
        assert!(hit.to_string().contains(needle), "{name}: {needle} in {hit}");
    }
    // A missing source, and a wrong format.
    let d = policy_dir("missing", "");
    std::fs::remove_file(d.join("feeds/drop.txt")).expect("rm");
    let (rc, diags) = check_json(&d);
    assert_eq!(rc, Some(1));
    assert!(diags.iter().any(|x| x["code"] == "E103" && x.to_string().contains("feeds/drop.txt")), "{diags:?}");
    std::fs::write(d.join("feeds/drop.txt"), "203.0.113.0/24\n").expect("feed");
    std::fs::write(d.join("main.seg"), POLICY.replace("format = spamhaus", "format = spamhouse")).expect("policy");
    let (rc, diags) = check_json(&d);
    assert_eq!(rc, Some(1));
    assert!(diags.iter().any(|x| x["code"] == "E202" && x.to_string().contains("spamhaus")), "{diags:?}");
    // http:// is refused: a block list comes over TLS.
    std::fs::write(d.join("main.seg"), POLICY.replace("feeds/drop.txt", "http://127.0.0.1:9/drop.txt")).expect("policy");
    let (rc, diags) = check_json(&d);
    assert_eq!(rc, Some(1));
    assert!(diags.iter().any(|x| x["code"] == "E103" && x.to_string().contains("https")), "{diags:?}");
    // A path out of the root folder is refused like an import.
    std::fs::write(d.join("main.seg"), POLICY.replace("feeds/drop.txt", "../../etc/passwd")).expect("policy");
    let (rc, diags) = check_json(&d);
    assert_eq!(rc, Some(1));
    assert!(diags.iter().any(|x| x["code"] == "E103"), "{diags:?}");
}

#[test]
fn build_snapshots_feeds_warns_t003_and_explain_names_the_line() {
    let d = policy_dir("build", "; DROP\n203.0.113.0/24 ; SBL1\n198.51.100.0/25 ; SBL2\n2001:db8:bad::/48 ; SBL3\n");
    let out = scratch("out");
    let _ = std::fs::remove_dir_all(&out);
    let o = segc(&["build", d.to_str().expect("utf-8"), "-o", out.to_str().expect("utf-8"), "--target", "bpf,nft,aws"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("T003") && err.contains("AWS security groups cannot block feeds (drop)"), "{err}");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).expect("manifest")).expect("json");
    let f = &manifest["feeds"][0];
    assert_eq!((f["name"].as_str(), f["prefixes"].as_u64(), f["blocked"].as_bool()), (Some("drop"), Some(3), Some(true)), "{manifest}");
    let bytes = std::fs::read(d.join("feeds/drop.txt")).expect("feed");
    assert_eq!(f["sha256"].as_str(), Some(segc_compiler::sha256::hex(&bytes).as_str()));
    let snap = std::fs::read_to_string(out.join("feeds/drop.netset")).expect("snapshot");
    assert!(snap.contains("203.0.113.0/24\n") && snap.contains("2001:db8:bad::/48\n"), "{snap}");
    assert!(manifest["artifacts"]["feeds/drop.netset"].is_string());
    // nft: the interval set, and the ruleset loads (checked, not applied).
    let nft = std::fs::read_to_string(out.join("nft/ruleset.nft")).expect("nft");
    assert!(nft.contains("set feed4") && nft.contains("ip saddr @feed4 drop") && nft.contains("198.51.100.0/25"), "{nft}");
    if Command::new("nft").arg("--version").output().is_ok() && require("nft -c of the feed sets", &["nft"]) {
        let c = Command::new("nft").args(["-c", "-f"]).arg(out.join("nft/ruleset.nft")).output().expect("nft");
        assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    }
    // Same policy, same bytes.
    let out2 = scratch("out2");
    let _ = std::fs::remove_dir_all(&out2);
    assert!(segc(&["build", d.to_str().expect("utf-8"), "-o", out2.to_str().expect("utf-8"), "--target", "bpf,nft,aws"]).status.success());
    for f in ["bpf/policy.bundle", "nft/ruleset.nft", "feeds/drop.netset", "manifest.json"] {
        assert_eq!(std::fs::read(out.join(f)).expect("a"), std::fs::read(out2.join(f)).expect("b"), "{f}");
    }
    // explain names the feed and its line, both ways; the zone is never cut.
    let o = segc(&["explain", d.to_str().expect("utf-8"), "198.51.100.9", "10.0.1.5", "tcp/443"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("deny ") && text.contains("by feed drop feeds/drop.txt:3"), "{text}");
    let o = segc(&["explain", d.to_str().expect("utf-8"), "10.0.1.5", "203.0.113.77", "tcp/443"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("feed drop feeds/drop.txt:2") && text.contains("the destination is in feed `drop`"), "{text}");
    let o = segc(&["explain", d.to_str().expect("utf-8"), "198.51.100.200", "10.0.1.5", "tcp/443"]);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("allow "), "{}", String::from_utf8_lossy(&o.stdout));
    // The same verdicts from the eBPF program in the kernel.
    if require("explain --engine bpf with feeds", &[]) {
        let lines = "198.51.100.9 10.0.1.5 tcp/443\n10.0.1.5 203.0.113.77 tcp/443\n198.51.100.200 10.0.1.5 tcp/443\n2001:db8:bad::1 2001:db8:1::1 tcp/443\n";
        let pk = scratch("packets");
        std::fs::write(&pk, lines).expect("packets");
        let o = segc(&["explain", d.to_str().expect("utf-8"), "--packets", pk.to_str().expect("utf-8"), "--engine", "bpf"]);
        let text = String::from_utf8_lossy(&o.stdout);
        let verdicts: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap_or("")).collect();
        assert_eq!(verdicts, ["deny", "deny", "allow", "deny"], "{text}{}", String::from_utf8_lossy(&o.stderr));
    }
    // The report lists the feed with its hash and size.
    let o = segc(&["report", d.to_str().expect("utf-8"), "--format", "md"]);
    let md = String::from_utf8_lossy(&o.stdout);
    let row = md.lines().find(|l| l.starts_with("| drop |")).unwrap_or_else(|| panic!("{md}"));
    assert!(row.contains("| 3 |") && row.contains(&segc_compiler::sha256::hex(&bytes)), "{row}");
    let _ = std::fs::remove_dir_all(&d);
}
