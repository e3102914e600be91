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
    let vpc = ec2(&moto, &audit, &["create-vpc"]);
    let p1 = policy(&tmp.join("p1"), "db");
    let deploy = |p: &Path, apply: bool| {
        let mut args = vec!["deploy", "--target", "aws", "--aws-vpc", &vpc];
        if apply {
            args.push("--apply");
        }
        segc(&moto, &audit, &args, p)
    };
    let drift = |p: &Path| segc(&moto, &audit, &["drift", "--target", "aws", "--aws-vpc", &vpc], p);

    // The plan creates the groups and revokes the default egress.
    let o = deploy(&p1, false);
    assert!(o.status.success(), "{}", text(&o));
    let plan = text(&o);
    assert!(plan.contains("create group web (zone web)") && plan.contains("revoke egress on web: all traffic with 0.0.0.0/0"), "{plan}");
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
    assert!(text(&o).contains("extra    ingress on db (zone db; no flow: not in the policy): tcp 22-22 with 0.0.0.0/0"), "{}", text(&o));
    assert!(deploy(&p1, true).status.success());
    let g: Value = serde_json::from_str(&ec2(&moto, &audit, &["groups", &vpc])).expect("json");
    assert!(!has(&g["db"]["ingress"], "tcp", 22, 22, "0.0.0.0/0"));

    // A rule deleted by hand is drift, and apply restores it.
    ec2(&moto, &audit, &["revoke-ingress", &db, "tcp", "5432", "5432", &web]);
    let o = drift(&p1);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("missing  ingress on db"), "{}", text(&o));
    assert!(deploy(&p1, true).status.success());
    let g: Value = serde_json::from_str(&ec2(&moto, &audit, &["groups", &vpc])).expect("json");
    assert!(has(&g["db"]["ingress"], "tcp", 5432, 5432, &web));

    // A flow moves from db to cache: authorised on cache before revoked on db.
    let p2 = policy(&tmp.join("p2"), "cache");
    let o = deploy(&p2, true);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    let auth = out.find("authorize ingress on cache").expect("authorised");
    let revoke = out.find("revoke ingress on db").expect("revoked");
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
        found.iter().any(|(k, e)| k == "extra" && e == "ingress on db (zone db; no flow: not in the policy): tcp 22-22 with 0.0.0.0/0"),
        "{found:?}"
    );
    assert!(found.iter().any(|(k, e)| k == "missing" && e.starts_with("ingress on db")), "{found:?}");
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
    let script = "import sys, urllib.request\nd = sys.argv[2].encode() if len(sys.argv) > 2 else None\nprint(urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/_fault', data=d, method='POST' if d else 'GET')).read().decode())";
    let mut c = Command::new("python3");
    c.args(["-c", script, &gateway.url]);
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
