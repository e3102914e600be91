#![cfg(feature = "aws")]
//! What real EC2 refuses and an operator fears, against moto behind the strict
//! EC2 gateway: duplicate rules, quotas (no moment more open than old and
//! new), rule shapes segc never writes, orphan groups.

#[path = "common/aws.rs"]
mod aws;
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use aws::*;
use serde_json::Value;

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
