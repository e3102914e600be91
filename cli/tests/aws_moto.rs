#![cfg(feature = "aws")]
//! `segc deploy|drift --target aws` against a moto EC2 server on loopback,
//! driven by the real AWS SDK; every check of live state is an independent
//! read with boto3 (tests/helpers/ec2.py).

#[path = "common/aws.rs"]
mod aws;
mod common;

use std::path::Path;
use std::process::Command;

use aws::*;
use serde_json::Value;

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
