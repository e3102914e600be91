#![cfg(feature = "gcp")]
//! `segc deploy|drift --target gcp` through Google's Rust client against the
//! Compute firewall emulator in `../shared/emulators/gcp_firewall.py`, with
//! independent reads and hand edits (tests/helpers/gcp.py): first apply,
//! idempotence (no writes), a rule deleted by hand, a rogue rule under
//! segc's name, someone else's rule on a segc tag (reported, never touched),
//! a flow moved between tags (inserts before deletions, denies before
//! allows), and a fault at every write of an apply followed by an apply
//! that converges.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

struct Emulator {
    child: Child,
    url: String,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn emulator_path() -> PathBuf {
    common::repo().join("../shared/emulators/gcp_firewall.py")
}

fn ready(test: &str) -> bool {
    if !emulator_path().exists() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "the GCP emulator is part of ../shared in CI");
        eprintln!("SKIPPED {test}: ../shared/emulators/gcp_firewall.py is not here");
        return false;
    }
    common::require(test, &["python3"])
}

fn start() -> Emulator {
    // The emulator binds the port it is given (and prints it back).
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let mut child = Command::new("python3")
        .arg(emulator_path())
        .arg(free.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("emulator");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("listening line");
    let port = line.trim().strip_prefix("listening ").expect("listening PORT").to_string();
    Emulator { child, url: format!("http://127.0.0.1:{port}") }
}

fn helper(e: &Emulator, args: &[&str]) -> Value {
    let o = Command::new("python3").arg(common::repo().join("tests/helpers/gcp.py")).arg(&e.url).args(args).output().expect("gcp.py");
    assert!(o.status.success(), "gcp.py {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("json")
}

fn names(e: &Emulator) -> Vec<String> {
    let mut v: Vec<String> =
        helper(e, &["list", "p1"]).as_array().expect("rules").iter().filter_map(|r| r["name"].as_str().map(str::to_string)).collect();
    v.sort();
    v
}

fn writes(e: &Emulator) -> Vec<(String, String, u64)> {
    helper(e, &["log"])
        .as_array()
        .expect("log")
        .iter()
        .map(|w| {
            (
                w["method"].as_str().unwrap_or("").to_string(),
                w["name"].as_str().unwrap_or("").to_string(),
                w["status"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn segc(e: &Emulator, home: &Path, args: &[&str], policy: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(args)
        .args(["--gcp-project", "p1"])
        .arg(policy)
        .env("CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE", format!("{}/compute/v1/", e.url))
        .env("GOOGLE_OAUTH_ACCESS_TOKEN", "test-token")
        .env("SEGC_AUDIT_DIR", home.join("audit"))
        .env("SEGC_AUDIT_KEY_FILE", home.join("audit.key"))
        .output()
        .expect("segc")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// web and db bound to tags; `db_flow` is web -> db's service, `cache` adds a
/// cache zone (tag cache) that web reaches on tcp/6379 instead of db.
fn policy(dir: &Path, cache: bool) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    let mut s = String::from(
        "policy \"gcp-test\" {}\nuse std.zones.internet\nzone web {\n  cidrs = [10.0.1.0/24]\n  scope = connected\n  gcp.tag = \"web\"\n}\nzone db {\n  cidrs = [10.0.2.0/24]\n  scope = cde\n  gcp.tag = \"db\"\n}\nflow internet -> web on tcp/443\n",
    );
    if cache {
        s.push_str("zone cache {\n  cidrs = [10.0.3.0/24]\n  scope = connected\n  gcp.tag = \"cache\"\n}\nflow web -> cache on tcp/6379\n");
    } else {
        s.push_str("flow web -> db on tcp/5432 {\n  justification = \"orders\"\n  reviewed = 2026-10-01\n}\n");
    }
    std::fs::write(dir.join("main.seg"), s).expect("policy");
    dir.to_path_buf()
}

fn home(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("segc-gcp-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("home");
    d
}

#[test]
fn deploy_drift_hand_edits_and_foreign_rules() {
    if !ready("deploy_drift_hand_edits_and_foreign_rules") {
        return;
    }
    let e = start();
    let home = home("main");
    let p = policy(&home.join("p"), false);
    let o = segc(&e, &home, &["deploy", "--target", "gcp"], &p);
    assert!(o.status.success() && text(&o).contains(": 8 changes"), "{}", text(&o));
    assert!(writes(&e).is_empty(), "a plan writes nothing");
    let o = segc(&e, &home, &["deploy", "--target", "gcp", "--apply"], &p);
    assert!(o.status.success(), "{}", text(&o));
    let all = names(&e);
    assert_eq!(all.len(), 8, "{all:?}");
    let rules = helper(&e, &["list", "p1"]);
    assert!(rules
        .as_array()
        .expect("rules")
        .iter()
        .all(|r| r["description"].as_str().is_some_and(|d| d.ends_with("[segc policy gcp-test]"))));
    // Idempotent: nothing to change, nothing written.
    let before = writes(&e).len();
    let o = segc(&e, &home, &["deploy", "--target", "gcp", "--apply"], &p);
    assert!(o.status.success() && text(&o).contains(": 0 changes"), "{}", text(&o));
    assert_eq!(writes(&e).len(), before);
    assert_eq!(segc(&e, &home, &["drift", "--target", "gcp"], &p).status.code(), Some(0));

    // A rule deleted by hand: missing; apply puts it back.
    helper(&e, &["delete", "p1", "segc-in-web-db-tag"]);
    let o = segc(&e, &home, &["drift", "--target", "gcp"], &p);
    assert!(o.status.code() == Some(1) && text(&o).contains("missing") && text(&o).contains("segc-in-web-db-tag"), "{}", text(&o));
    // A rogue rule under segc's name and this policy's mark, and someone
    // else's rule opening ssh on the web tag, and one for other instances.
    let rogue = r#"{"name": "segc-in-rogue", "direction": "INGRESS", "priority": 900, "targetTags": ["db"], "sourceRanges": ["0.0.0.0/0"], "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}], "description": "x [segc policy gcp-test]"}"#;
    let foreign = r#"{"name": "allow-ssh", "direction": "INGRESS", "targetTags": ["web"], "sourceRanges": ["0.0.0.0/0"], "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}]}"#;
    let other = r#"{"name": "other-app", "direction": "INGRESS", "targetTags": ["other"], "sourceRanges": ["10.9.0.0/16"], "allowed": [{"IPProtocol": "tcp", "ports": ["80"]}]}"#;
    let other_policy = r#"{"name": "segc-in-elsewhere", "direction": "INGRESS", "targetTags": ["other"], "sourceRanges": ["10.9.0.0/16"], "allowed": [{"IPProtocol": "tcp", "ports": ["81"]}], "description": "y [segc policy another]"}"#;
    for r in [rogue, foreign, other, other_policy] {
        helper(&e, &["insert", "p1", r]);
    }
    let o = segc(&e, &home, &["drift", "--target", "gcp", "--format", "json"], &p);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let d: Value = serde_json::from_slice(&o.stdout).expect("json");
    let entries: Vec<(String, String)> = d["drift"]
        .as_array()
        .expect("drift")
        .iter()
        .map(|f| (f["kind"].as_str().unwrap_or("").to_string(), f["entry"].as_str().unwrap_or("").to_string()))
        .collect();
    let has = |kind: &str, needle: &str| entries.iter().any(|(k, e)| k == kind && e.contains(needle));
    assert!(has("missing", "segc-in-web-db-tag"), "{entries:?}");
    assert!(has("extra", "segc-in-rogue") && has("extra", "tcp/22 from 0.0.0.0/0"), "{entries:?}");
    assert!(has("extra", "allow-ssh") && has("extra", "not segc's"), "{entries:?}");
    assert!(!has("extra", "other-app") && !has("extra", "segc-in-elsewhere"), "{entries:?}");
    // Apply: the deleted rule back, the rogue gone, others' rules untouched.
    let o = segc(&e, &home, &["deploy", "--target", "gcp", "--apply"], &p);
    assert!(o.status.success(), "{}", text(&o));
    let now = names(&e);
    assert!(now.contains(&"segc-in-web-db-tag".to_string()) && !now.contains(&"segc-in-rogue".to_string()), "{now:?}");
    for kept in ["allow-ssh", "other-app", "segc-in-elsewhere"] {
        assert!(now.contains(&kept.to_string()), "{kept} was touched: {now:?}");
    }
    let o = segc(&e, &home, &["drift", "--target", "gcp"], &p);
    assert!(text(&o).contains("allow-ssh") && !text(&o).contains("segc-in-rogue"), "{}", text(&o));

    // A flow moved to a new tag: inserts before deletions, the new tag's
    // deny-all egress before its allows, and the old rules gone at the end.
    let q = policy(&home.join("q"), true);
    let before = writes(&e).len();
    let o = segc(&e, &home, &["deploy", "--target", "gcp", "--apply"], &q);
    assert!(o.status.success(), "{}", text(&o));
    let log: Vec<(String, String, u64)> = writes(&e).split_off(before);
    let last_post = log.iter().rposition(|w| w.0 == "POST").expect("inserts");
    let first_delete = log.iter().position(|w| w.0 == "DELETE").expect("deletes");
    assert!(last_post < first_delete, "{log:?}");
    let pos = |name: &str| log.iter().position(|w| w.1 == name).unwrap_or_else(|| panic!("{name} not written: {log:?}"));
    assert!(pos("segc-deny-out-cache-v4") < pos("segc-in-web-cache-tag") && pos("segc-deny-out-cache-v4") < pos("segc-out-web-cache-v4-0"));
    // What leaves are db's allows; db keeps its deny-all egress.
    assert!(log[first_delete..].iter().all(|w| w.0 == "DELETE" && !w.1.starts_with("segc-deny-out")), "{log:?}");
    // Verdict by verdict: replay the write log from the old rules with the
    // new ones; at no step does GCP let through what neither policy does.
    let build = |dir: &Path| -> segc_compiler::lower::gcp::Output {
        let out = home.join(format!("build-{}", dir.file_name().and_then(|n| n.to_str()).unwrap_or("x")));
        let o =
            Command::new(env!("CARGO_BIN_EXE_segc")).args(["build", "--target", "gcp", "-o"]).arg(&out).arg(dir).output().expect("build");
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice(&std::fs::read(out.join("gcp/firewall.json")).expect("firewall.json")).expect("gcp output")
    };
    let (old, new) = (build(&p), build(&q));
    let mut state: std::collections::BTreeMap<String, segc_compiler::lower::gcp::Rule> =
        old.firewall_rules.iter().map(|r| (r.name.clone(), r.clone())).collect();
    let fresh: std::collections::BTreeMap<&str, &segc_compiler::lower::gcp::Rule> =
        new.firewall_rules.iter().map(|r| (r.name.as_str(), r)).collect();
    let tag_of = |ip: std::net::IpAddr| -> Option<String> {
        let s = ip.to_string();
        ["10.0.1.", "10.0.2.", "10.0.3."].iter().zip(["web", "db", "cache"]).find(|(p, _)| s.starts_with(**p)).map(|(_, t)| t.to_string())
    };
    let hosts: Vec<std::net::IpAddr> =
        ["10.0.1.5", "10.0.2.5", "10.0.3.5", "198.51.100.7"].iter().map(|h| h.parse().expect("ip")).collect();
    use segc_compiler::ir::Proto::{Tcp, Udp};
    let protos = [Tcp(443), Tcp(5432), Tcp(6379), Tcp(22), Udp(53)];
    let verdicts = |out: &segc_compiler::lower::gcp::Output| -> Vec<Option<bool>> {
        let mut v = Vec::new();
        for &s in &hosts {
            for &d in &hosts {
                for &pr in &protos {
                    v.push(segc_compiler::lower::gcp::eval(out, &tag_of, s, d, pr));
                }
            }
        }
        v
    };
    let (vo, vn) = (verdicts(&old), verdicts(&new));
    for (i, w) in log.iter().enumerate() {
        match w.0.as_str() {
            "POST" | "PUT" => {
                state.insert(w.1.clone(), (*fresh.get(w.1.as_str()).expect("a rule of the new policy")).clone());
            }
            _ => {
                state.remove(&w.1);
            }
        }
        let step = segc_compiler::lower::gcp::Output { version: 1, policy: None, firewall_rules: state.values().cloned().collect() };
        for (k, v) in verdicts(&step).iter().enumerate() {
            let allowed = |x: &Option<bool>| *x == Some(true);
            assert!(!allowed(v) || allowed(&vo[k]) || allowed(&vn[k]), "after write {i} ({w:?}), packet {k} is allowed by neither policy");
        }
    }
    let now = names(&e);
    assert!(!now.contains(&"segc-in-web-db-tag".to_string()) && now.contains(&"segc-in-web-cache-tag".to_string()), "{now:?}");
    assert_eq!(segc(&e, &home, &["drift", "--target", "gcp"], &q).status.code(), Some(1), "someone else's allow-ssh is still reported");
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn a_fault_at_every_write_then_an_apply_that_converges() {
    if !ready("a_fault_at_every_write_then_an_apply_that_converges") {
        return;
    }
    let e = start();
    let home = home("faults");
    let p = policy(&home.join("p"), false);
    // Throttling and a transient 503 are retried by the client.
    helper(&e, &["fault", r#"{"after": 1, "status": 429, "count": 2}"#]);
    let o = segc(&e, &home, &["deploy", "--target", "gcp", "--apply"], &p);
    assert!(o.status.success(), "{}", text(&o));
    assert!(writes(&e).iter().filter(|w| w.2 == 429).count() == 2, "the faults were hit");
    assert_eq!(names(&e).len(), 8);
    // A 500 that outlasts the retries at every write: exit 2 with exactly
    // what was applied, then an apply that finishes the job.
    for k in 0..8u64 {
        helper(&e, &["reset"]);
        helper(&e, &["fault", &format!(r#"{{"after": {k}, "status": 500, "count": 50}}"#)]);
        let o = segc(&e, &home, &["deploy", "--target", "gcp", "--apply"], &p);
        assert_eq!(o.status.code(), Some(2), "write {k}: {}", text(&o));
        assert!(text(&o).contains(&format!("applied before the failure ({k})")), "write {k}: {}", text(&o));
        assert_eq!(names(&e).len() as u64, k, "write {k}: only the applied rules exist");
        helper(&e, &["fault", r#"{"after": null, "count": 0}"#]);
        assert_eq!(segc(&e, &home, &["drift", "--target", "gcp"], &p).status.code(), Some(1));
        let o = segc(&e, &home, &["deploy", "--target", "gcp", "--apply"], &p);
        assert!(o.status.success() && text(&o).contains(&format!(": {} changes", 8 - k)), "write {k}: {}", text(&o));
        assert_eq!(segc(&e, &home, &["drift", "--target", "gcp"], &p).status.code(), Some(0), "write {k}: converged");
    }
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn application_default_credentials_from_a_metadata_server() {
    if !ready("application_default_credentials_from_a_metadata_server") {
        return;
    }
    let e = start();
    let home = home("adc");
    let p = policy(&home.join("p"), false);
    // The metadata server stand-in, which forwards to the emulator only the
    // tokens it issued.
    let mut child = Command::new("python3")
        .arg(common::repo().join("tests/helpers/gcp_mds.py"))
        .arg(&e.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mds");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("listening line");
    let mds = Emulator { child, url: format!("127.0.0.1:{}", line.trim().trim_start_matches("listening ")) };
    let run = |args: &[&str], token: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_segc"));
        c.args(args)
            .args(["--gcp-project", "p1"])
            .arg(&p)
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
            .env_remove("GOOGLE_OAUTH_ACCESS_TOKEN")
            .env("HOME", &home) // no gcloud credentials file there
            .env("GCE_METADATA_HOST", &mds.url)
            .env("CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE", format!("http://{}/compute/v1/", mds.url))
            .env("SEGC_AUDIT_DIR", home.join("audit"))
            .env("SEGC_AUDIT_KEY_FILE", home.join("audit.key"));
        if let Some(t) = token {
            c.env("GOOGLE_OAUTH_ACCESS_TOKEN", t);
        }
        c.output().expect("segc")
    };
    let stats = || -> Value {
        let o = Command::new("python3")
            .args(["-c", "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())"])
            .arg(format!("http://{}/_stats", mds.url))
            .output()
            .expect("stats");
        serde_json::from_slice(&o.stdout).expect("stats json")
    };
    let o = run(&["deploy", "--target", "gcp", "--apply"], None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(names(&e).len(), 8);
    let s = stats();
    assert!(s["issued"].as_u64() >= Some(1) && s["forwarded"].as_u64() >= Some(9) && s["refused"] == 0, "{s}");
    // A token the metadata server did not issue is refused: exit 2, nothing written.
    let before = writes(&e).len();
    helper(&e, &["delete", "p1", "segc-in-web-db-tag"]);
    let o = run(&["deploy", "--target", "gcp", "--apply"], Some("forged"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("401") || text(&o).to_lowercase().contains("authentication"), "{}", text(&o));
    assert_eq!(writes(&e).len(), before + 1, "only the hand deletion was written");
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn an_apply_that_old_and_new_together_would_not_fit_removes_first() {
    if !ready("an_apply_that_old_and_new_together_would_not_fit_removes_first") {
        return;
    }
    let e = start();
    let home = home("quota");
    // 65 tagged zones, four rules each: 260 rules; renamed, 260 others. The
    // project holds 500: both together do not fit, either alone does.
    let gen = |dir: &Path, prefix: &str| -> PathBuf {
        std::fs::create_dir_all(dir).expect("dir");
        let mut s = String::from("policy \"gcp-test\" {}\nuse std.zones.internet\n");
        for i in 0..65 {
            s.push_str(&format!(
                "zone {prefix}{i} {{\n  cidrs = [10.{i}.0.0/16]\n  scope = connected\n  gcp.tag = \"{prefix}{i}\"\n}}\nflow internet -> {prefix}{i} on tcp/443\n"
            ));
        }
        std::fs::write(dir.join("main.seg"), s).expect("policy");
        dir.to_path_buf()
    };
    let (a, b) = (gen(&home.join("a"), "a"), gen(&home.join("b"), "b"));
    let o = segc(&e, &home, &["deploy", "--target", "gcp", "--apply"], &a);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(names(&e).len(), 260);
    let before = writes(&e).len();
    let o = segc(&e, &home, &["deploy", "--target", "gcp", "--apply"], &b);
    assert!(o.status.success(), "{}", text(&o));
    let log = writes(&e).split_off(before);
    assert!(log.iter().all(|w| w.2 == 200), "no write was refused: {:?}", log.iter().find(|w| w.2 != 200));
    let first_post = log.iter().position(|w| w.0 == "POST").expect("inserts");
    assert!(log[..first_post].iter().filter(|w| w.0 == "DELETE").count() >= 20, "removals went first");
    // The writes of a step run together, but a step starts only when the one
    // before it is done: no removal after the first insert.
    assert!(log[first_post..].iter().all(|w| w.0 != "DELETE"), "every removal before any insert: {log:?}");
    let now = names(&e);
    assert!(now.len() == 260 && now.iter().all(|n| n.contains("-b")), "{now:?}");
    assert_eq!(segc(&e, &home, &["drift", "--target", "gcp"], &b).status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&home);
}
