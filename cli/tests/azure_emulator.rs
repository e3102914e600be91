#![cfg(feature = "azure")]
//! `segc deploy|drift --target azure` against the ARM NSG emulator in
//! `../shared/emulators/azure_nsg.py`, with independent reads (tests/helpers/arm.py)
//! and injected faults: throttling is retried, a server error mid-apply leaves
//! a report and the next apply finishes the job.

#[path = "common/azure.rs"]
mod azure;
mod common;

use std::path::Path;
use std::process::{Command, Output};

use azure::*;
use serde_json::Value;

#[test]
fn deploy_drift_and_faults_against_the_arm_emulator() {
    if !ready("deploy_drift_and_faults_against_the_arm_emulator", &["python3"]) {
        return;
    }
    let tmp = std::env::temp_dir().join(format!("segc-azure-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let audit = tmp.join("audit");
    let e = start();
    let p1 = policy(&tmp.join("p1"), 5432);
    let deploy = |p: &Path, apply: bool| {
        let mut args = vec!["deploy", "--target", "azure", "--azure-resource-group", "rg1", "--azure-location", "eastus"];
        if apply {
            args.push("--apply");
        }
        segc(&e, &audit, &args, p)
    };
    let drift = |p: &Path| segc(&e, &audit, &["drift", "--target", "azure", "--azure-resource-group", "rg1"], p);

    // Throttling during the first apply is retried.
    arm(&e, &["fault", r#"{"after": 2, "status": 429, "count": 2}"#]);
    let o = deploy(&p1, true);
    assert!(o.status.success(), "{}", text(&o));
    let web = rules(&e, "web-nsg");
    assert!(web.iter().any(|(n, p, a)| n == "segc-deny-all-inbound" && *p == 4096 && a == "Deny"), "{web:?}");
    assert!(web.iter().any(|(n, _, a)| n.starts_with("segc-in-internet-web-tcp-v4") && a == "Allow"), "{web:?}");
    let v: Value = serde_json::from_str(&arm(&e, &["get", "db-nsg"])).expect("json");
    assert_eq!(v["tags"]["managed-by"], "segc");

    // Idempotent.
    assert!(text(&deploy(&p1, false)).contains(": 0 changes"));
    assert_eq!(drift(&p1).status.code(), Some(0));

    // segc's own rules edited by hand: a port widened, and an application
    // security group added (a key segc never writes). Both are `changed`, and
    // apply puts them back.
    let rule = |prefix: &str| -> (String, Value) {
        let web: Value = serde_json::from_str(&arm(&e, &["get", "web-nsg"])).expect("json");
        let r = web["properties"]["securityRules"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
            .unwrap_or_else(|| panic!("a rule {prefix}*: {web}"));
        (r["name"].as_str().expect("name").to_string(), r["properties"].clone())
    };
    let (https, mut widened) = rule("segc-in-internet-web-tcp");
    widened["destinationPortRange"] = Value::from("1-65535");
    arm(&e, &["put-rule", "web-nsg", &https, &widened.to_string()]);
    let (out, mut grouped) = rule("segc-out-web-db-tcp");
    grouped["destinationApplicationSecurityGroups"] =
        serde_json::json!([{"id": "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Network/applicationSecurityGroups/any"}]);
    arm(&e, &["put-rule", "web-nsg", &out, &grouped.to_string()]);
    let o = drift(&p1);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("changed  inbound on web-nsg (zone web): allow tcp/1-65535 from 0.0.0.0/0, priority {} ({https}) [the policy has: inbound on web-nsg (zone web): allow tcp/443 from 0.0.0.0/0", widened["priority"]))
            && text(&o).contains(&format!("changed  outbound on web-nsg (zone web): allow tcp/5432 to 10.0.2.0/24, asg:any, priority {} ({out})", grouped["priority"])),
        "{}",
        text(&o)
    );
    assert!(deploy(&p1, true).status.success());
    assert_eq!(rule("segc-in-internet-web-tcp").1["destinationPortRange"], "443");
    assert_eq!(drift(&p1).status.code(), Some(0));

    // A rule added by hand is drift, and apply removes it; one deleted by hand too.
    arm(
        &e,
        &[
            "put-rule",
            "db-nsg",
            "ssh-from-anywhere",
            r#"{"priority": 200, "direction": "Inbound", "access": "Allow", "protocol": "Tcp", "sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": "22"}"#,
        ],
    );
    arm(&e, &["delete-rule", "web-nsg", "segc-deny-all-outbound"]);
    let o = drift(&p1);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains(
            "extra    inbound on db-nsg (zone db): allow tcp/22 from *, priority 200 (ssh-from-anywhere) [live, not in the policy]"
        ) && text(&o).contains("missing  outbound on web-nsg (zone web): deny all traffic to *, priority 4096 (segc-deny-all-outbound)"),
        "{}",
        text(&o)
    );
    assert!(deploy(&p1, true).status.success());
    assert!(!rules(&e, "db-nsg").iter().any(|(n, _, _)| n == "ssh-from-anywhere"));
    assert!(rules(&e, "web-nsg").iter().any(|(n, _, _)| n == "segc-deny-all-outbound"));

    // A transient server error is retried by the SDK pipeline: the apply
    // succeeds and the fault was really hit (the emulator counted it down).
    let p2 = policy(&tmp.join("p2"), 6432);
    arm(&e, &["fault", r#"{"after": 1, "status": 500, "count": 1}"#]);
    let o = deploy(&p2, true);
    assert!(o.status.success(), "{}", text(&o));
    let fault: Value = serde_json::from_str(&arm(&e, &["fault", "{}"])).expect("json");
    assert_eq!((fault["count"].as_i64(), fault["after"].is_null()), (Some(0), true), "{fault}");
    assert_eq!(drift(&p2).status.code(), Some(0));
    let v: Value = serde_json::from_str(&arm(&e, &["get", "db-nsg"])).expect("json");
    let ports: Vec<&str> = v["properties"]["securityRules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["properties"]["destinationPortRange"].as_str())
        .collect();
    assert!(ports.contains(&"6432") && !ports.contains(&"5432"), "{ports:?}");

    // A server error that outlasts the retries, at every step of an apply:
    // each time a report of exactly what was applied, drift, then the next
    // apply converges with no drift.
    for (step, port) in (0..6).zip(7000..) {
        let p = policy(&tmp.join(format!("step{step}")), port);
        arm(&e, &["fault", &format!(r#"{{"after": {step}, "status": 500, "count": 100}}"#)]);
        let o = deploy(&p, true);
        arm(&e, &["fault", r#"{"after": null, "count": 0}"#]);
        if !o.status.success() {
            assert_eq!(o.status.code(), Some(2), "step {step}: {}", text(&o));
            assert!(
                text(&o).contains(&format!("applied before the failure ({step})")) && text(&o).contains("HTTP 500"),
                "step {step}: {}",
                text(&o)
            );
            assert_eq!(drift(&p).status.code(), Some(1), "step {step}");
        } else {
            // The fault came after the last write of this apply.
            assert!(step > 0, "the first write of an apply must fail: {}", text(&o));
        }
        let o = deploy(&p, true);
        assert!(o.status.success(), "step {step}: {}", text(&o));
        assert_eq!(drift(&p).status.code(), Some(0), "step {step}");
    }

    // The flow moves from db to a new zone, cache: its rule is put on
    // cache-nsg before db-nsg's is deleted, so the traffic is never cut.
    let moved = tmp.join("moved");
    std::fs::create_dir_all(&moved).expect("dir");
    let text_of = std::fs::read_to_string(tmp.join("step5/main.seg")).expect("policy");
    std::fs::write(
        moved.join("main.seg"),
        text_of.replace(
            "flow web -> db on tcp/7005",
            "zone cache {\n  cidrs = [10.0.3.0/24]\n  scope = connected\n  azure.nsg = \"cache-nsg\"\n}\nflow web -> cache on tcp/7005",
        ),
    )
    .expect("policy");
    let o = deploy(&moved, true);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    let put = out.find("add inbound on cache-nsg (zone cache): allow tcp/7005").expect("put on cache-nsg");
    let delete = out.find("delete inbound on db-nsg (zone db): allow tcp/7005").expect("deleted from db-nsg");
    assert!(put < delete, "put before delete: {out}");
    let allows = |nsg: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(&arm(&e, &["get", nsg])).expect("json");
        v["properties"]["securityRules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["properties"]["access"] == "Allow" && r["properties"]["direction"] == "Inbound")
            .filter_map(|r| r["properties"]["destinationPortRange"].as_str().map(String::from))
            .collect()
    };
    assert_eq!((allows("cache-nsg"), allows("db-nsg")), (vec!["7005".to_string()], Vec::<String>::new()));
    assert_eq!(drift(&moved).status.code(), Some(0));

    // An NSG of the same name without the managed-by tag is never touched.
    arm(&e, &["put-nsg", "other-nsg"]);
    let p3 = tmp.join("p3");
    std::fs::create_dir_all(&p3).expect("dir");
    std::fs::write(
        p3.join("main.seg"),
        "zone x {\n  cidrs = [10.9.0.0/24]\n  scope = connected\n  azure.nsg = \"other-nsg\"\n}\nflow x -> x on tcp/1\n",
    )
    .expect("policy");
    let o = deploy(&p3, true);
    assert!(!o.status.success() && text(&o).contains("not managed by segc"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&tmp);
}

/// tests/helpers/aad.py in front of the emulator: it issues tokens and lets
/// only requests bearing one of them through to ARM.
fn start_issuer(e: &Emulator, federated: &str, identity_header: &str) -> Emulator {
    listening(None, &[&common::repo().join("tests/helpers/aad.py").display().to_string(), &e.url, federated, identity_header], "127.0.0.1")
}

fn stats(issuer: &Emulator) -> Value {
    let o = python(issuer.netns.as_deref())
        .args(["-c", "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1] + '/_stats').read().decode())", &issuer.url])
        .output()
        .expect("stats");
    serde_json::from_slice(&o.stdout).expect("stats json")
}

/// segc with nothing inherited but PATH: only the identity variables given.
/// Runs in the issuer's namespace when it has one.
fn segc_with_identity(issuer: &Emulator, audit: &Path, args: &[&str], policy: &Path, identity: &[(&str, String)]) -> Output {
    let mut cmd = command(issuer.netns.as_deref(), env!("CARGO_BIN_EXE_segc"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", audit)
        .env("AZURE_RESOURCE_MANAGER_ENDPOINT", &issuer.url)
        .env("AZURE_SUBSCRIPTION_ID", "sub1")
        .env("SEGC_AUDIT_DIR", audit);
    for (k, v) in identity {
        cmd.env(k, v);
    }
    cmd.args(args).arg(policy).output().expect("segc")
}

#[test]
fn workload_and_managed_identity_tokens_reach_arm() {
    if !ready("workload_and_managed_identity_tokens_reach_arm", &["python3"]) {
        return;
    }
    let tmp = std::env::temp_dir().join(format!("segc-azure-id-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let audit = tmp.join("audit");
    std::fs::create_dir_all(&audit).expect("audit dir");
    let e = start();
    let issuer = start_issuer(&e, "federated-jwt-from-the-cluster", "app-service-secret");
    let p = policy(&tmp.join("p"), 5432);
    let apply = ["deploy", "--target", "azure", "--azure-resource-group", "rg1", "--azure-location", "eastus", "--apply"];
    let drift = ["drift", "--target", "azure", "--azure-resource-group", "rg1"];
    let token_file = tmp.join("federated-token");
    let workload = |token: &str| {
        std::fs::write(&token_file, token).expect("token file");
        vec![
            ("AZURE_TENANT_ID", "tenant1".to_string()),
            ("AZURE_CLIENT_ID", "client1".to_string()),
            ("AZURE_FEDERATED_TOKEN_FILE", token_file.display().to_string()),
            ("AZURE_AUTHORITY_HOST", issuer.url.clone()),
        ]
    };

    // A federated token the issuer rejects: nothing is applied, and the error
    // names the credential that failed (the SDK keeps the status, not the
    // AADSTS text).
    // AZURE_CREDENTIAL_KIND pins the source, so the failing chain does not go
    // on to probe the VM metadata address (tests stay on loopback).
    let mut forged = workload("forged");
    forged.push(("AZURE_CREDENTIAL_KIND", "workloadidentity".to_string()));
    let o = segc_with_identity(&issuer, &audit, &apply, &p, &forged);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("applied before the failure (0)") && text(&o).contains("HttpResponse(401"), "{}", text(&o));
    assert_eq!(arm(&e, &["get", "web-nsg"]), "null");
    assert_eq!((stats(&issuer)["workload"].as_i64(), stats(&issuer)["forwarded"].as_i64()), (Some(0), Some(0)));

    // Workload identity (AKS): the federated token is exchanged, ARM sees the result.
    let o = segc_with_identity(&issuer, &audit, &apply, &p, &workload("federated-jwt-from-the-cluster"));
    assert!(o.status.success(), "{}", text(&o));
    let s = stats(&issuer);
    assert!(s["workload"].as_i64() >= Some(1) && s["forwarded"].as_i64() > Some(0) && s["refused"].as_i64() == Some(0), "{s}");
    assert!(rules(&e, "web-nsg").iter().any(|(n, _, a)| n == "segc-deny-all-inbound" && a == "Deny"));

    // App Service managed identity: a token from IDENTITY_ENDPOINT; no drift.
    let managed = vec![("IDENTITY_ENDPOINT", format!("{}/msi/token", issuer.url)), ("IDENTITY_HEADER", "app-service-secret".to_string())];
    let o = segc_with_identity(&issuer, &audit, &drift, &p, &managed);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = stats(&issuer);
    assert!(s["msi"].as_i64() >= Some(1) && s["refused"].as_i64() == Some(0), "{s}");

    // The wrong identity header: refused by the issuer, so segc cannot read ARM.
    let wrong = vec![
        ("IDENTITY_ENDPOINT", format!("{}/msi/token", issuer.url)),
        ("IDENTITY_HEADER", "guess".to_string()),
        ("AZURE_CREDENTIAL_KIND", "appservice".to_string()),
    ];
    let o = segc_with_identity(&issuer, &audit, &drift, &p, &wrong);
    assert!(!o.status.success() && o.status.code() != Some(1), "a credential failure is not drift: {}", text(&o));
    assert!(text(&o).contains("the requested identity has not been assigned"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&tmp);
}

/// A network namespace holding the VM metadata address, deleted on drop.
struct MetadataNetns(String);

impl Drop for MetadataNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn vm_managed_identity_from_imds_in_a_namespace() {
    if !ready("vm_managed_identity_from_imds_in_a_namespace", &["python3", "ip"]) {
        return;
    }
    // IMDS lives at 169.254.169.254:80, which the SDK does not let anyone
    // move: give that address to the loopback of a namespace of our own, and
    // run the issuer, the emulator and segc in there.
    let ns = MetadataNetns(format!("segc-imds-{}", std::process::id()));
    common::sh(&["ip", "netns", "add", &ns.0]);
    common::sh(&["ip", "-n", &ns.0, "link", "set", "lo", "up"]);
    common::sh(&["ip", "-n", &ns.0, "addr", "add", "169.254.169.254/32", "dev", "lo"]);
    let tmp = std::env::temp_dir().join(format!("segc-azure-imds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let audit = tmp.join("audit");
    std::fs::create_dir_all(&audit).expect("audit dir");
    let e = listening(Some(&ns.0), &[&emulator_path().display().to_string()], "127.0.0.1");
    let aad = common::repo().join("tests/helpers/aad.py").display().to_string();
    let issuer = listening(Some(&ns.0), &[&aad, &e.url, "unused", "unused", "169.254.169.254:80"], "169.254.169.254");
    assert_eq!(issuer.url, "http://169.254.169.254");
    let p = policy(&tmp.join("p"), 5432);
    let run = |args: &[&str]| segc_with_identity(&issuer, &audit, args, &p, &[]);

    // No identity variables at all: the chain reaches the VM's managed identity.
    let o = run(&["deploy", "--target", "azure", "--azure-resource-group", "rg1", "--azure-location", "eastus", "--apply"]);
    assert!(o.status.success(), "{}", text(&o));
    let s = stats(&issuer);
    assert!(s["imds"].as_i64() >= Some(1) && s["forwarded"].as_i64() > Some(0) && s["refused"].as_i64() == Some(0), "{s}");
    assert!(rules(&e, "db-nsg").iter().any(|(n, _, a)| n == "segc-deny-all-inbound" && a == "Deny"));
    let o = run(&["drift", "--target", "azure", "--azure-resource-group", "rg1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&tmp);
}
