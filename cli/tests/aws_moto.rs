#![cfg(feature = "aws")]
//! `segc deploy|drift --target aws` against a moto EC2 server on loopback,
//! driven by the real AWS SDK; every check of live state is an independent
//! read with boto3 (tests/helpers/ec2.py).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the test can run: root, python3 and moto[server] with boto3;
/// prints why not, and fails instead in CI.
fn ready(test: &str) -> bool {
    if !common::require(test, &["python3"]) {
        return false;
    }
    let have_moto = Command::new("python3").args(["-c", "import moto, boto3, flask"]).status().is_ok_and(|s| s.success());
    if !have_moto {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "moto[server] must be installed in CI");
        eprintln!("SKIPPED {test}: it needs `pip install moto[server]`");
    }
    have_moto
}

fn start_moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let child = Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto starts");
    let end = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "moto did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto { child, url: format!("http://127.0.0.1:{port}") }
}

fn env(cmd: &mut Command, moto: &Moto, audit: &Path) {
    cmd.env("AWS_ENDPOINT_URL", &moto.url)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env("SEGC_AUDIT_DIR", audit);
}

fn ec2(moto: &Moto, audit: &Path, args: &[&str]) -> String {
    let mut c = Command::new("python3");
    c.arg(common::repo().join("tests/helpers/ec2.py")).args(args);
    env(&mut c, moto, audit);
    let o = c.output().expect("ec2.py");
    assert!(o.status.success(), "ec2.py {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn segc(moto: &Moto, audit: &Path, args: &[&str], policy: &Path) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_segc"));
    c.args(args).arg(policy);
    env(&mut c, moto, audit);
    c.output().expect("segc")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn policy(dir: &Path, second_tier: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(
        dir.join("main.seg"),
        format!(
            r#"policy "aws-test" {{}}
use std.zones.internet
zone web {{
  cidrs = [10.0.1.0/24]
  scope = connected
  aws.security_group = "web"
}}
zone db {{
  cidrs = [10.0.2.0/24]
  scope = connected
  aws.security_group = "db"
}}
zone cache {{
  cidrs = [10.0.3.0/24]
  scope = connected
  aws.security_group = "cache"
}}
flow internet -> web on tcp/443
flow web -> {second_tier} on tcp/5432
"#
        ),
    )
    .expect("policy");
    dir.to_path_buf()
}

fn has(rules: &Value, proto: &str, from: i64, to: i64, peer: &str) -> bool {
    rules.as_array().is_some_and(|a| a.iter().any(|r| r[0] == proto && r[1] == from && r[2] == to && r[3] == peer))
}

#[test]
fn deploy_plan_apply_drift_against_moto() {
    if !ready("deploy_plan_apply_drift_against_moto") {
        return;
    }
    let tmp = std::env::temp_dir().join(format!("segc-aws-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let audit = tmp.join("audit");
    let moto = start_moto();
    // segc talks to EC2 as real EC2 behaves (duplicates, quotas, descriptions).
    let gateway = start_gateway(&moto);
    let vpc = ec2(&moto, &audit, &["create-vpc"]);
    let p1 = policy(&tmp.join("p1"), "db");
    let deploy = |p: &Path, apply: bool| {
        let mut args = vec!["deploy", "--target", "aws", "--aws-vpc", &vpc];
        if apply {
            args.push("--apply");
        }
        segc(&gateway, &audit, &args, p)
    };
    let drift = |p: &Path| segc(&gateway, &audit, &["drift", "--target", "aws", "--aws-vpc", &vpc], p);

    // The plan creates the groups and revokes the default egress.
    let o = deploy(&p1, false);
    assert!(o.status.success(), "{}", text(&o));
    let plan = text(&o);
    assert!(
        plan.contains("create group web (zone web)") && plan.contains("revoke outbound on web (zone web): allow all traffic to 0.0.0.0/0"),
        "{plan}"
    );
    assert_eq!(ec2(&moto, &audit, &["groups", &vpc]).matches("\"segc:managed-by\"").count(), 0, "a plan changes nothing");

    // Apply, then read back independently.
    let o = deploy(&p1, true);
    assert!(o.status.success(), "{}", text(&o));
    let g: Value = serde_json::from_str(&ec2(&moto, &audit, &["groups", &vpc])).expect("json");
    let (web, db) = (g["web"]["id"].as_str().expect("web").to_string(), g["db"]["id"].as_str().expect("db").to_string());
    assert_eq!(g["web"]["tags"]["segc:managed-by"], "segc");
    assert!(has(&g["db"]["ingress"], "tcp", 5432, 5432, &web), "{}", g["db"]);
    assert!(has(&g["web"]["egress"], "tcp", 5432, 5432, &db), "{}", g["web"]);
    assert!(!has(&g["web"]["egress"], "-1", -1, -1, "0.0.0.0/0"), "default egress revoked: {}", g["web"]);
    assert!(g["web"]["ingress"].as_array().expect("rules").iter().all(|r| r[1] == 443), "{}", g["web"]);

    // Idempotent: nothing left to do, no drift.
    let o = deploy(&p1, false);
    assert!(text(&o).contains(": 0 changes"), "{}", text(&o));
    let o = drift(&p1);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // A rule added by hand is drift, and apply removes it.
    ec2(&moto, &audit, &["add-ingress", &db, "tcp", "22", "22", "0.0.0.0/0"]);
    let o = drift(&p1);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("extra    inbound on db (zone db): allow tcp/22 from 0.0.0.0/0 [live, not in the policy]"), "{}", text(&o));
    assert!(deploy(&p1, true).status.success());
    let g: Value = serde_json::from_str(&ec2(&moto, &audit, &["groups", &vpc])).expect("json");
    assert!(!has(&g["db"]["ingress"], "tcp", 22, 22, "0.0.0.0/0"));

    // A rule deleted by hand is drift, and apply restores it.
    ec2(&moto, &audit, &["revoke-ingress", &db, "tcp", "5432", "5432", &web]);
    let o = drift(&p1);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("missing  inbound on db (zone db): allow tcp/5432 from sg-"), "{}", text(&o));
    assert!(deploy(&p1, true).status.success());
    let g: Value = serde_json::from_str(&ec2(&moto, &audit, &["groups", &vpc])).expect("json");
    assert!(has(&g["db"]["ingress"], "tcp", 5432, 5432, &web));

    // A flow moves from db to cache: authorised on cache before revoked on db.
    let p2 = policy(&tmp.join("p2"), "cache");
    let o = deploy(&p2, true);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    let auth = out.find("authorize inbound on cache").expect("authorised");
    let revoke = out.find("revoke inbound on db").expect("revoked");
    assert!(auth < revoke, "authorise before revoke: {out}");
    let g: Value = serde_json::from_str(&ec2(&moto, &audit, &["groups", &vpc])).expect("json");
    let cache = g["cache"]["id"].as_str().expect("cache");
    assert!(has(&g["cache"]["ingress"], "tcp", 5432, 5432, &web) && !has(&g["db"]["ingress"], "tcp", 5432, 5432, &web));
    assert!(has(&g["web"]["egress"], "tcp", 5432, 5432, cache));
    assert_eq!(drift(&p2).status.code(), Some(0));

    // A group of the same name that segc does not manage is never touched.
    let vpc2 = ec2(&moto, &audit, &["create-vpc"]);
    ec2(&moto, &audit, &["create-group", &vpc2, "web"]);
    let o = segc(&moto, &audit, &["deploy", "--target", "aws", "--aws-vpc", &vpc2, "--apply"], &p1);
    assert!(!o.status.success());
    assert!(text(&o).contains("is not managed by segc"), "{}", text(&o));

    // Plans, applies and drift results are in the audit log.
    let mut c = Command::new(env!("CARGO_BIN_EXE_segc"));
    c.args(["audit", "show", "--format", "json"]).env("SEGC_AUDIT_DIR", &audit);
    let log = String::from_utf8_lossy(&c.output().expect("audit").stdout).to_string();
    for k in ["deploy.plan", "deploy.apply", "drift"] {
        assert!(log.contains(&format!("\"kind\":\"{k}\"")), "{k}");
    }
    // Each drift finding is in the log, in the event of the check that found it.
    let events: Vec<Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let found = events.iter().filter(|e| e["kind"] == "drift").flat_map(|e| e["data"]["findings"].as_array().cloned().unwrap_or_default());
    let found: Vec<(String, String)> =
        found.map(|f| (f["kind"].as_str().unwrap_or("").to_string(), f["entry"].as_str().unwrap_or("").to_string())).collect();
    assert!(
        found.iter().any(|(k, e)| k == "extra" && e == "inbound on db (zone db): allow tcp/22 from 0.0.0.0/0 [live, not in the policy]"),
        "{found:?}"
    );
    assert!(found.iter().any(|(k, e)| k == "missing" && e.starts_with("inbound on db")), "{found:?}");
    let _ = std::fs::remove_dir_all(&tmp);
}

/// tests/helpers/ec2_gateway.py in front of moto: it injects EC2 errors into writes.
fn start_gateway(moto: &Moto) -> Moto {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new("python3")
        .arg(common::repo().join("tests/helpers/ec2_gateway.py"))
        .arg(&moto.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("gateway starts");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("listening line");
    let port = line.trim().strip_prefix("listening ").expect("listening PORT").to_string();
    Moto { child, url: format!("http://127.0.0.1:{port}") }
}

/// POSTs a fault to the gateway (or reads it with `None`); returns its state.
fn fault(gateway: &Moto, set: Option<&str>) -> Value {
    control(gateway, "/_fault", set)
}

/// POSTs to (or with `None` reads) one of the gateway's control paths.
fn control(gateway: &Moto, path: &str, set: Option<&str>) -> Value {
    let script = "import sys, urllib.request\nd = sys.argv[2].encode() if len(sys.argv) > 2 else None\nprint(urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=d, method='POST' if d else 'GET')).read().decode())";
    let mut c = Command::new("python3");
    c.args(["-c", script, &format!("{}{path}", gateway.url)]);
    if let Some(s) = set {
        c.arg(s);
    }
    let o = c.output().expect("fault");
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("fault state: {e}: {}", String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn throttling_and_failures_midway_against_moto() {
    if !ready("throttling_and_failures_midway_against_moto") {
        return;
    }
    let tmp = std::env::temp_dir().join(format!("segc-aws-faults-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let audit = tmp.join("audit");
    let moto = start_moto();
    let gateway = start_gateway(&moto);
    let p = policy(&tmp.join("p"), "db");
    let apply = |vpc: &str| segc(&gateway, &audit, &["deploy", "--target", "aws", "--aws-vpc", vpc, "--apply"], &p);
    // Drift is read straight from moto, not through the gateway.
    let drift = |vpc: &str| segc(&moto, &audit, &["drift", "--target", "aws", "--aws-vpc", vpc], &p);

    // RequestLimitExceeded (EC2's throttling) on three writes in a row: the
    // SDK backs off and retries, the apply succeeds, and every fault was hit.
    let vpc = ec2(&moto, &audit, &["create-vpc"]);
    fault(&gateway, Some(r#"{"after": 1, "code": "RequestLimitExceeded", "status": 503, "count": 3}"#));
    let o = apply(&vpc);
    assert!(o.status.success(), "{}", text(&o));
    let f = fault(&gateway, None);
    assert_eq!((f["failed"].as_i64(), f["count"].as_i64()), (Some(3), Some(0)), "{f}");
    assert_eq!(drift(&vpc).status.code(), Some(0), "{}", text(&drift(&vpc)));

    // An error no client retries (an IAM denial) at every write of a first
    // apply: a report of exactly what was applied, drift, then the next apply
    // finishes the job with no drift.
    let mut steps = 0;
    for step in 0..40 {
        let vpc = ec2(&moto, &audit, &["create-vpc"]);
        fault(&gateway, Some(&format!(r#"{{"after": {step}, "code": "UnauthorizedOperation", "status": 403, "count": 1}}"#)));
        let o = apply(&vpc);
        if o.status.success() {
            // The apply has fewer writes than `step`: the fault was never hit.
            assert_eq!(fault(&gateway, None)["count"].as_i64(), Some(1));
            fault(&gateway, Some(r#"{"after": null, "count": 0}"#));
            steps = step;
            break;
        }
        assert_eq!(o.status.code(), Some(2), "step {step}: {}", text(&o));
        assert!(
            text(&o).contains(&format!("applied before the failure ({step})")) && text(&o).contains("UnauthorizedOperation"),
            "step {step}: {}",
            text(&o)
        );
        assert_eq!(drift(&vpc).status.code(), Some(1), "step {step}");
        let o = apply(&vpc);
        assert!(o.status.success(), "step {step}: {}", text(&o));
        assert_eq!(drift(&vpc).status.code(), Some(0), "step {step}");
        let g: Value = serde_json::from_str(&ec2(&moto, &audit, &["groups", &vpc])).expect("json");
        assert!(
            has(&g["web"]["ingress"], "tcp", 443, 443, "0.0.0.0/0") && !has(&g["web"]["egress"], "-1", -1, -1, "0.0.0.0/0"),
            "step {step}: {}",
            g["web"]
        );
    }
    assert!(steps > 5, "a first apply has several writes, each faulted once: {steps}");
    let _ = std::fs::remove_dir_all(&tmp);
}

/// A policy of one bound zone `web` (10.0.1.0/24) that receives `ports` (tcp)
/// from the CIDR zones `corp` and `partners` and the internet.
fn many_ports(dir: &Path, ports: &[u16]) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    let list: Vec<String> = ports.iter().map(|p| format!("tcp/{p}")).collect();
    let services = list.join(", ");
    std::fs::write(
        dir.join("main.seg"),
        format!(
            r#"policy "aws-quota" {{}}
zone web {{
  cidrs = [10.0.1.0/24]
  scope = connected
  aws.security_group = "web"
}}
zone corp {{
  cidrs = [10.0.50.0/24]
  scope = connected
}}
flow corp -> web on {services}
"#
        ),
    )
    .expect("policy");
    dir.to_path_buf()
}

/// Rules `[proto, from, to, peer]` as a set (each as its JSON text).
fn rule_set(v: &Value) -> std::collections::BTreeSet<String> {
    v.as_array().map(|a| a.iter().map(Value::to_string).collect()).unwrap_or_default()
}

#[test]
fn quota_never_wedges_and_no_moment_is_more_open_than_old_and_new() {
    if !ready("quota_never_wedges_and_no_moment_is_more_open_than_old_and_new") {
        return;
    }
    let tmp = std::env::temp_dir().join(format!("segc-aws-quota-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let audit = tmp.join("audit");
    let moto = start_moto();
    let gateway = start_gateway(&moto);
    control(&gateway, "/_config", Some(r#"{"quota": 60}"#));
    let vpc = ec2(&moto, &audit, &["create-vpc"]);
    // Two 50-rule policies: ports apart from each other, so no two merge.
    let a: Vec<u16> = (0..50).map(|i| 1000 + 2 * i).collect();
    let b: Vec<u16> = (0..50).map(|i| 3000 + 2 * i).collect();
    let (pa, pb) = (many_ports(&tmp.join("a"), &a), many_ports(&tmp.join("b"), &b));
    let apply = |p: &Path| segc(&gateway, &audit, &["deploy", "--target", "aws", "--aws-vpc", &vpc, "--apply"], p);
    let o = apply(&pa);
    assert!(o.status.success(), "{}", text(&o));
    let before: Value = serde_json::from_str(&ec2(&moto, &audit, &["groups", &vpc])).expect("json");
    let web = before["web"]["id"].as_str().expect("web").to_string();
    let old = rule_set(&before["web"]["ingress"]);
    assert_eq!(old.len(), 50, "{}", before["web"]);

    // The gateway refuses what real EC2 refuses: a 61st rule, a duplicate.
    let mut c = Command::new("python3");
    c.arg(common::repo().join("tests/helpers/ec2.py")).args(["add-ingress", &web, "tcp", "1000", "1000", "10.0.50.0/24"]);
    env(&mut c, &gateway, &audit);
    let dup = c.output().expect("ec2.py");
    assert!(String::from_utf8_lossy(&dup.stderr).contains("InvalidPermission.Duplicate"), "{}", String::from_utf8_lossy(&dup.stderr));

    let logged = control(&gateway, "/_log", None).as_array().map_or(0, Vec::len);
    let o = apply(&pb);
    assert!(o.status.success(), "a change whose old and new rules exceed the quota together must still apply: {}", text(&o));
    let after: Value = serde_json::from_str(&ec2(&moto, &audit, &["groups", &vpc])).expect("json");
    let new = rule_set(&after["web"]["ingress"]);
    assert_eq!(new.len(), 50);
    assert!(new.is_disjoint(&old));

    // Replay every write the apply made, in order: no state is more open than
    // old ∪ new, and none passes the quota.
    let log = control(&gateway, "/_log", None);
    let writes = &log.as_array().expect("log")[logged..];
    let mut state = old.clone();
    let mut most = state.len();
    for w in writes.iter().filter(|w| w["group"] == web.as_str() && w["action"].as_str().is_some_and(|a| a.ends_with("Ingress"))) {
        for r in rule_set(&w["rules"]) {
            if w["action"].as_str().is_some_and(|a| a.starts_with("Authorize")) {
                state.insert(r);
            } else {
                state.remove(&r);
            }
        }
        assert!(state.iter().all(|r| old.contains(r) || new.contains(r)), "more open than old and new after {w}");
        assert!(state.len() <= 60, "over the quota after {w}");
        most = most.max(state.len());
    }
    assert_eq!(state, new, "the replayed writes end at the live state");
    assert_eq!(most, 60, "it used the room the quota left before revoking");
    // Authorisations came first while they fitted: the first ten writes add.
    let first: Vec<&str> = writes.iter().take(10).filter_map(|w| w["action"].as_str()).collect();
    assert!(first.iter().all(|a| a.starts_with("Authorize")), "{first:?}");
    let o = segc(&gateway, &audit, &["drift", "--target", "aws", "--aws-vpc", &vpc], &pb);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn each_rule_once_and_never_a_group_from_its_own_subnet() {
    if !ready("each_rule_once_and_never_a_group_from_its_own_subnet") {
        return;
    }
    let tmp = std::env::temp_dir().join(format!("segc-aws-dup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let audit = tmp.join("audit");
    let moto = start_moto();
    let gateway = start_gateway(&moto);
    let vpc = ec2(&moto, &audit, &["create-vpc"]);
    let dir = tmp.join("p");
    std::fs::create_dir_all(&dir).expect("dir");
    let mut text_policy =
        String::from("policy \"aws-dup\" {}\nzone cde {\n  cidrs = [10.9.0.0/24]\n  scope = cde\n  aws.security_group = \"segc-cde\"\n}\n");
    for i in 1..=5 {
        text_policy.push_str(&format!("zone z{i} {{\n  cidrs = [10.9.{i}.0/24]\n  scope = connected\n}}\n"));
        text_policy.push_str(&format!(
            "flow z{i} -> cde on tcp/443, tcp/8443 {{\n  justification = \"payments api\"\n  reviewed = 2026-11-01\n}}\n"
        ));
    }
    std::fs::write(dir.join("main.seg"), text_policy).expect("policy");
    let o = segc(&gateway, &audit, &["deploy", "--target", "aws", "--aws-vpc", &vpc, "--apply", "--today", "2026-11-29"], &dir);
    assert!(o.status.success(), "real EC2 would refuse a duplicate: {}", text(&o));
    let g: Value = serde_json::from_str(&ec2(&moto, &audit, &["groups", &vpc])).expect("json");
    let rules = g["segc-cde"]["ingress"].as_array().expect("rules").clone();
    let set = rule_set(&g["segc-cde"]["ingress"]);
    assert_eq!(set.len(), rules.len(), "no rule twice: {rules:?}");
    assert!(!rules.iter().any(|r| r[3] == "10.9.0.0/24"), "the cde group never allows its own subnet: {rules:?}");
    // Five adjacent /24s beside the cde's own: 10.9.0.0/22 (three sources and,
    // to save a rule, the cde's subnet, whose members' egress decides) and
    // 10.9.4.0/23, per port: four rules where a rule per flow and port made 10.
    assert_eq!(rules.len(), 4, "{rules:?}");
    for port in [443, 8443] {
        assert!(has(&g["segc-cde"]["ingress"], "tcp", port, port, "10.9.0.0/22"), "{rules:?}");
        assert!(has(&g["segc-cde"]["ingress"], "tcp", port, port, "10.9.4.0/23"), "{rules:?}");
    }
    // The widened rule says so in the description EC2 stores.
    let o = segc(&gateway, &audit, &["drift", "--target", "aws", "--aws-vpc", &vpc, "--format", "json"], &dir);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let built = tmp.join("out");
    let b = Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(["build", "--target", "aws", "--today", "2026-11-29", "-o"])
        .arg(&built)
        .arg(&dir)
        .output()
        .expect("build");
    assert!(b.status.success(), "{}", text(&b));
    let sg: Value = serde_json::from_slice(&std::fs::read(built.join("aws/security-groups.json")).expect("output")).expect("json");
    let wide = sg["security_groups"][0]["ingress"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["peer"]["cidr"] == "10.9.0.0/22")
        .cloned()
        .expect("wide");
    assert_eq!(wide["description"], "z1 to cde; z2 to cde; z3 to cde (also covers bound zones cde: their egress decides)");
    assert_eq!(wide["covers"], serde_json::json!(["cde"]));
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn drift_sees_every_rule_shape_and_orphans_are_emptied_and_deleted() {
    if !ready("drift_sees_every_rule_shape_and_orphans_are_emptied_and_deleted") {
        return;
    }
    let tmp = std::env::temp_dir().join(format!("segc-aws-shapes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let audit = tmp.join("audit");
    let moto = start_moto();
    let gateway = start_gateway(&moto);
    let vpc = ec2(&moto, &audit, &["create-vpc"]);
    let p1 = policy(&tmp.join("p1"), "cache");
    let apply = |p: &Path| segc(&gateway, &audit, &["deploy", "--target", "aws", "--aws-vpc", &vpc, "--apply"], p);
    let drift = |p: &Path, json: bool| {
        let mut args = vec!["drift", "--target", "aws", "--aws-vpc", &vpc];
        if json {
            args.extend(["--format", "json"]);
        }
        segc(&gateway, &audit, &args, p)
    };
    let o = apply(&p1);
    assert!(o.status.success(), "{}", text(&o));
    let g: Value = serde_json::from_str(&ec2(&moto, &audit, &["groups", &vpc])).expect("json");
    let db = g["db"]["id"].as_str().expect("db").to_string();

    // Shapes segc never writes, added by hand: a prefix list holding
    // 0.0.0.0/0 (all traffic), another VPC's group, IPv6.
    let pl = ec2(&moto, &audit, &["create-prefix-list", "0.0.0.0/0"]);
    ec2(&moto, &audit, &["add-ingress", &db, "-1", "0", "0", &pl]);
    let vpc2 = ec2(&moto, &audit, &["create-vpc"]);
    let other = ec2(&moto, &audit, &["create-group", &vpc2, "elsewhere"]);
    ec2(&moto, &audit, &["add-ingress-pair", &db, "tcp", "22", "22", &other, &vpc2, "123456789012"]);
    ec2(&moto, &audit, &["add-ingress", &db, "tcp", "443", "443", "::/0"]);
    let o = drift(&p1, false);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains(&format!("extra    inbound on db (zone db): allow all traffic from {pl}")), "{t}");
    assert!(t.contains(&format!("extra    inbound on db (zone db): allow tcp/22 from {other} (account 123456789012, {vpc2})")), "{t}");
    assert!(t.contains("extra    inbound on db (zone db): allow tcp/443 from ::/0"), "{t}");
    // The same as JSON, with what each finding lets through.
    let o = drift(&p1, true);
    assert_eq!(o.status.code(), Some(1));
    let j: Value = serde_json::from_slice(&o.stdout).expect("drift json");
    let findings = j["drift"].as_array().expect("findings");
    let pl_rule = findings.iter().find(|f| f["rule"]["peers"][0] == pl.as_str()).expect("prefix list finding");
    assert_eq!(pl_rule["kind"], "extra");
    assert_eq!(
        (&pl_rule["rule"]["resource"], &pl_rule["rule"]["direction"], &pl_rule["rule"]["protocol"], &pl_rule["rule"]["ports"]),
        (&Value::from("db"), &Value::from("inbound"), &Value::from("all"), &Value::from("all"))
    );
    // Apply removes every one of them.
    let o = apply(&p1);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(drift(&p1, false).status.code(), Some(0), "{}", text(&drift(&p1, false)));

    // A policy of another name in the same VPC is not this policy's to touch.
    let other_dir = tmp.join("other");
    std::fs::create_dir_all(&other_dir).expect("dir");
    std::fs::write(
        other_dir.join("main.seg"),
        "policy \"someone-else\" {}\nzone batch {\n  cidrs = [10.0.9.0/24]\n  scope = connected\n  aws.security_group = \"batch\"\n}\nzone ops {\n  cidrs = [10.0.8.0/24]\n  scope = connected\n}\nflow ops -> batch on tcp/22\n",
    )
    .expect("policy");
    assert!(apply(&other_dir).status.success());

    // The zone `cache` leaves the policy: drift names its group an orphan, an
    // apply empties and deletes it.
    let p2 = tmp.join("p2");
    std::fs::create_dir_all(&p2).expect("dir");
    let without = std::fs::read_to_string(p1.join("main.seg")).expect("read");
    let without = without.replace("zone cache {\n  cidrs = [10.0.3.0/24]\n  scope = connected\n  aws.security_group = \"cache\"\n}\n", "");
    let without = without.replace("flow web -> cache on tcp/5432\n", "");
    std::fs::write(p2.join("main.seg"), without).expect("policy");
    let o = drift(&p2, false);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("orphan   group cache (sg-") && text(&o).contains("zone cache, which is no longer in the policy"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("extra    inbound on cache (zone cache): allow tcp/5432 from sg-"), "{}", text(&o));
    let o = apply(&p2);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("delete group cache (zone cache left the policy)"), "{}", text(&o));
    let g: Value = serde_json::from_str(&ec2(&moto, &audit, &["groups", &vpc])).expect("json");
    assert!(g.get("cache").is_none(), "the orphan is deleted: {g}");
    assert!(g.get("batch").is_some_and(|b| has(&b["ingress"], "tcp", 22, 22, "10.0.8.0/24")), "another policy's group is untouched: {g}");
    assert_eq!(drift(&p2, false).status.code(), Some(0), "{}", text(&drift(&p2, false)));

    // An orphan still in use (a network interface) is emptied and kept, and
    // the apply says what uses it.
    assert!(apply(&p1).status.success());
    let g: Value = serde_json::from_str(&ec2(&moto, &audit, &["groups", &vpc])).expect("json");
    let cache = g["cache"]["id"].as_str().expect("cache").to_string();
    let eni = ec2(&moto, &audit, &["create-eni", &vpc, &cache]);
    let o = apply(&p2);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&format!("kept group cache ({cache}), emptied: still used by network interfaces {eni}")), "{}", text(&o));
    let g: Value = serde_json::from_str(&ec2(&moto, &audit, &["groups", &vpc])).expect("json");
    assert!(
        g["cache"]["ingress"].as_array().is_some_and(Vec::is_empty) && g["cache"]["egress"].as_array().is_some_and(Vec::is_empty),
        "{}",
        g["cache"]
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
