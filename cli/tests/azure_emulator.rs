#![cfg(feature = "azure")]
//! `segc deploy|drift --target azure` against the ARM NSG emulator in
//! `../shared/emulators/azure_nsg.py`, with independent reads (tests/helpers/arm.py)
//! and injected faults: throttling is retried, a server error mid-apply leaves
//! a report and the next apply finishes the job.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

/// A Python helper serving HTTP (the emulator, the token issuer), killed on drop.
struct Emulator {
    child: Child,
    url: String,
    /// The network namespace it runs in, if not the test's own.
    netns: Option<String>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the test can run: the emulator from ../shared and `tools` (and
/// root, as every test here); prints why not, and fails instead in CI.
fn ready(test: &str, tools: &[&str]) -> bool {
    if !emulator_path().exists() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "the Azure emulator is part of ../shared in CI");
        eprintln!("SKIPPED {test}: ../shared/emulators/azure_nsg.py is not here");
        return false;
    }
    common::require(test, tools)
}

fn emulator_path() -> PathBuf {
    common::repo().join("../shared/emulators/azure_nsg.py")
}

/// `program`, inside `netns` when given.
fn command(netns: Option<&str>, program: &str) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    }
}

fn python(netns: Option<&str>) -> Command {
    command(netns, "python3")
}

/// Runs a helper that prints `listening PORT` once it serves on `host`.
fn listening(netns: Option<&str>, args: &[&str], host: &str) -> Emulator {
    let mut child = python(netns).args(args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("helper starts");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("listening line");
    let port = line.trim().strip_prefix("listening ").unwrap_or_else(|| panic!("{args:?}: no `listening PORT` line: {line:?}")).to_string();
    let url = if port == "80" { format!("http://{host}") } else { format!("http://{host}:{port}") };
    Emulator { child, url, netns: netns.map(String::from) }
}

fn start() -> Emulator {
    listening(None, &[&emulator_path().display().to_string()], "127.0.0.1")
}

fn arm(e: &Emulator, args: &[&str]) -> String {
    let o = python(e.netns.as_deref()).arg(common::repo().join("tests/helpers/arm.py")).arg(&e.url).args(args).output().expect("arm.py");
    assert!(o.status.success(), "arm.py {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn segc(e: &Emulator, audit: &Path, args: &[&str], policy: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(args)
        .arg(policy)
        .env("AZURE_RESOURCE_MANAGER_ENDPOINT", &e.url)
        .env("AZURE_SUBSCRIPTION_ID", "sub1")
        .env("AZURE_ACCESS_TOKEN", "test-token")
        .env("SEGC_AUDIT_DIR", audit)
        .output()
        .expect("segc")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn policy(dir: &Path, port: u16) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(
        dir.join("main.seg"),
        format!(
            "use std.zones.internet\nzone web {{\n  cidrs = [10.0.1.0/24]\n  scope = connected\n  azure.nsg = \"web-nsg\"\n}}\nzone db {{\n  cidrs = [10.0.2.0/24]\n  scope = connected\n  azure.nsg = \"db-nsg\"\n}}\nflow internet -> web on tcp/443\nflow web -> db on tcp/{port}\n"
        ),
    )
    .expect("policy");
    dir.to_path_buf()
}

fn rules(e: &Emulator, nsg: &str) -> Vec<(String, i64, String)> {
    let v: Value = serde_json::from_str(&arm(e, &["get", nsg])).expect("json");
    let mut r: Vec<(String, i64, String)> = v["properties"]["securityRules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or("").to_string(),
                r["properties"]["priority"].as_i64().unwrap_or(0),
                r["properties"]["access"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    r.sort();
    r
}

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

/// tests/helpers/arm_gateway.py in front of the emulator: it logs every state
/// an NSG passes through and plays subnet associations.
fn start_gateway(e: &Emulator) -> Emulator {
    listening(None, &[&common::repo().join("tests/helpers/arm_gateway.py").display().to_string(), &e.url], "127.0.0.1")
}

fn gateway_call(g: &Emulator, path: &str, body: Option<&str>) -> Value {
    let script = "import sys, urllib.request\nd = sys.argv[2].encode() if len(sys.argv) > 2 else None\nprint(urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=d, method='POST' if d else 'GET')).read().decode())";
    let mut c = python(None);
    c.args(["-c", script, &format!("{}{path}", g.url)]);
    if let Some(b) = body {
        c.arg(b);
    }
    let o = c.output().expect("gateway call");
    serde_json::from_slice(&o.stdout).unwrap_or_else(|err| panic!("{path}: {err}: {}", String::from_utf8_lossy(&o.stderr)))
}

/// Whether an NSG's rules let a packet through one direction, as Azure
/// decides: the first rule by priority that matches; past the custom rules,
/// the defaults allow the virtual network (10.0.0.0/8 here) and deny the rest.
fn nsg_allows(rules: &[Value], inbound: bool, peer: std::net::Ipv4Addr, port: u16) -> bool {
    let dir = if inbound { "Inbound" } else { "Outbound" };
    let in_prefix = |p: &str| -> bool {
        match p {
            "*" | "Internet" if p == "*" || !peer.is_private() => true,
            "VirtualNetwork" => peer.octets()[0] == 10,
            _ => p.split_once('/').is_some_and(|(a, l)| {
                let (a, l): (std::net::Ipv4Addr, u32) = (a.parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED), l.parse().unwrap_or(33));
                l <= 32 && (u32::from(peer) ^ u32::from(a)).checked_shr(32 - l).unwrap_or(0) == 0
            }),
        }
    };
    let list = |p: &Value, one: &str, many: &str| -> Vec<String> {
        let mut v: Vec<String> = p[one].as_str().map(String::from).into_iter().collect();
        v.extend(p[many].as_array().into_iter().flatten().filter_map(|x| x.as_str().map(String::from)));
        v
    };
    let mut mine: Vec<&Value> = rules.iter().map(|r| &r["properties"]).filter(|p| p["direction"] == dir).collect();
    mine.sort_by_key(|p| p["priority"].as_u64());
    for p in mine {
        let peers = if inbound {
            list(p, "sourceAddressPrefix", "sourceAddressPrefixes")
        } else {
            list(p, "destinationAddressPrefix", "destinationAddressPrefixes")
        };
        let ports = list(p, "destinationPortRange", "destinationPortRanges");
        let port_ok = ports.iter().any(|r| {
            r == "*" || {
                let (lo, hi) = r.split_once('-').unwrap_or((r, r));
                lo.parse::<u16>().is_ok_and(|lo| lo <= port) && hi.parse::<u16>().is_ok_and(|hi| port <= hi)
            }
        });
        let proto_ok = matches!(p["protocol"].as_str(), Some("*" | "Tcp"));
        if proto_ok && port_ok && peers.iter().any(|x| in_prefix(x)) {
            return p["access"] == "Allow";
        }
    }
    peer.octets()[0] == 10 || (!inbound && !peer.is_private())
}

/// Every probe an NSG state lets through: (inbound, peer, port).
fn allowed_probes(rules: &[Value]) -> std::collections::BTreeSet<(bool, std::net::Ipv4Addr, u16)> {
    let peers: [std::net::Ipv4Addr; 4] = [[203, 0, 113, 5].into(), [10, 0, 50, 5].into(), [10, 0, 2, 5].into(), [192, 168, 7, 7].into()];
    let mut out = std::collections::BTreeSet::new();
    for inbound in [true, false] {
        for peer in peers {
            for port in [22, 80, 443, 5432, 8443] {
                if nsg_allows(rules, inbound, peer, port) {
                    out.insert((inbound, peer, port));
                }
            }
        }
    }
    out
}

fn web_policy(dir: &Path, flows: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(
        dir.join("main.seg"),
        format!(
            "policy \"azure-order\" {{}}\nuse std.zones.internet\nzone web {{\n  cidrs = [10.0.1.0/24]\n  scope = connected\n  azure.nsg = \"web-nsg\"\n}}\nzone corp {{\n  cidrs = [10.0.50.0/24]\n  scope = connected\n}}\nzone db {{\n  cidrs = [10.0.2.0/24]\n  scope = connected\n}}\n{flows}"
        ),
    )
    .expect("policy");
    dir.to_path_buf()
}

#[test]
fn priority_collisions_never_wedge_and_no_state_is_more_open_than_old_and_new() {
    if !ready("priority_collisions_never_wedge_and_no_state_is_more_open_than_old_and_new", &["python3"]) {
        return;
    }
    let tmp = std::env::temp_dir().join(format!("segc-azure-order-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let audit = tmp.join("audit");
    let e = start();
    let g = start_gateway(&e);
    let azure = ["--target", "azure", "--azure-resource-group", "rg1", "--azure-location", "eastus"];
    let apply = |p: &Path| segc(&g, &audit, &[&["deploy"][..], &azure, &["--apply"]].concat(), p);
    let old = web_policy(&tmp.join("old"), "flow corp -> web on tcp/443, tcp/8443\nflow web -> db on tcp/5432\n");
    let new = web_policy(&tmp.join("new"), "flow corp -> web on tcp/443\nflow internet -> web on tcp/80\nflow web -> db on tcp/5432\n");
    assert!(apply(&old).status.success());

    // Hand-made rules: an allow on the priority the new policy gives its new
    // rule (internet -> web), and a deny that shadows an allow (deleting the
    // deny first would open corp -> web tcp/22 for a moment).
    let built = tmp.join("built");
    let b =
        Command::new(env!("CARGO_BIN_EXE_segc")).args(["build", "--target", "azure", "-o"]).arg(&built).arg(&new).output().expect("build");
    assert!(b.status.success(), "{}", text(&b));
    let template: Value = serde_json::from_slice(&std::fs::read(built.join("azure/nsg.json")).expect("template")).expect("json");
    let wanted = template["resources"][0]["properties"]["securityRules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["name"].as_str().is_some_and(|n| n.starts_with("segc-in-internet-web")))
        .map(|r| r["properties"]["priority"].as_u64().expect("priority"))
        .expect("the new rule");
    let stale = |name: &str, priority: u64, access: &str, source: &str, port: &str| {
        let props = serde_json::json!({"priority": priority, "direction": "Inbound", "access": access, "protocol": "Tcp", "sourceAddressPrefix": source, "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": port});
        arm(&g, &["put-rule", "web-nsg", name, &props.to_string()]);
    };
    stale("rogue-ssh", wanted, "Allow", "*", "22");
    stale("block-partner", 101, "Deny", "10.0.50.0/24", "22");
    stale("partner-ssh", 102, "Allow", "10.0.50.0/24", "22");
    let before = allowed_probes(v_rules(&arm(&g, &["get", "web-nsg"])).as_slice());
    let logged = gateway_call(&g, "/_log", None).as_array().map_or(0, Vec::len);

    let o = apply(&new);
    assert!(o.status.success(), "a new rule on a stale rule's priority must not wedge the apply: {}", text(&o));
    let after_rules = v_rules(&arm(&g, &["get", "web-nsg"]));
    let after = allowed_probes(&after_rules);
    assert!(!after_rules.iter().any(|r| r["name"].as_str().is_some_and(|n| !n.starts_with("segc-"))), "{after_rules:?}");
    assert!(after.contains(&(true, [203, 0, 113, 5].into(), 80)) && !after.contains(&(true, [10, 0, 50, 5].into(), 22)));

    // Every state the NSG passed through lets through nothing that neither
    // the state before nor the state after lets through.
    let log = gateway_call(&g, "/_log", None);
    let states: Vec<&Value> = log.as_array().expect("log")[logged..].iter().filter(|w| w["nsg"] == "web-nsg").collect();
    assert!(states.len() >= 4, "{states:?}");
    for s in &states {
        let now = allowed_probes(s["rules"].as_array().expect("rules"));
        let extra: Vec<_> = now.iter().filter(|p| !before.contains(p) && !after.contains(p)).collect();
        assert!(extra.is_empty(), "after {} {}: opens {extra:?}", s["method"], s["path"]);
    }
    let o = segc(&g, &audit, &[&["drift"][..], &azure].concat(), &new);
    assert_eq!(o.status.code(), Some(0), "drift takes the same options as deploy: {}", text(&o));
    let _ = std::fs::remove_dir_all(&tmp);
}

fn v_rules(nsg_json: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(nsg_json).expect("json");
    v["properties"]["securityRules"].as_array().cloned().unwrap_or_default()
}

#[test]
fn orphan_nsgs_are_deleted_or_reduced_to_deny_all_and_drift_says_what_rules_allow() {
    if !ready("orphan_nsgs_are_deleted_or_reduced_to_deny_all_and_drift_says_what_rules_allow", &["python3"]) {
        return;
    }
    let tmp = std::env::temp_dir().join(format!("segc-azure-orphan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let audit = tmp.join("audit");
    let e = start();
    let g = start_gateway(&e);
    let azure = ["--target", "azure", "--azure-resource-group", "rg1", "--azure-location", "eastus"];
    let apply = |p: &Path| segc(&g, &audit, &[&["deploy"][..], &azure, &["--apply"]].concat(), p);
    let drift = |p: &Path, json: bool| {
        let format: &[&str] = if json { &["--format", "json"] } else { &[] };
        segc(&g, &audit, &[&["drift"][..], &azure, format].concat(), p)
    };
    let bound = "zone db {\n  cidrs = [10.0.2.0/24]\n  scope = connected\n  azure.nsg = \"db-nsg\"\n}\n";
    let both = web_policy(
        &tmp.join("both"),
        &format!("{bound}flow corp -> web on tcp/443\nflow web -> db on tcp/5432\n")
            .replace("zone db {\n  cidrs = [10.0.2.0/24]\n  scope = connected\n}\n", ""),
    );
    // web_policy declares an unbound db; this policy binds it instead.
    let text_both = std::fs::read_to_string(both.join("main.seg")).expect("read").replacen(
        "zone db {\n  cidrs = [10.0.2.0/24]\n  scope = connected\n}\n",
        "",
        1,
    );
    std::fs::write(both.join("main.seg"), &text_both).expect("policy");
    let o = apply(&both);
    assert!(o.status.success(), "{}", text(&o));

    // A rule of a shape segc never writes: port list, prefix list, an ASG.
    let rogue = serde_json::json!({"priority": 150, "direction": "Inbound", "access": "Allow", "protocol": "Tcp", "sourceAddressPrefixes": ["203.0.113.0/24", "198.51.100.0/24"], "sourcePortRange": "*", "destinationApplicationSecurityGroups": [{"id": "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Network/applicationSecurityGroups/payments"}], "destinationPortRanges": ["22", "3389"]});
    arm(&g, &["put-rule", "web-nsg", "rogue", &rogue.to_string()]);
    let o = drift(&both, false);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("extra    inbound on web-nsg (zone web): allow tcp/22,3389 from 203.0.113.0/24, 198.51.100.0/24 (to asg:payments), priority 150 (rogue) [live, not in the policy]"),
        "{}",
        text(&o)
    );
    let o = drift(&both, true);
    let j: Value = serde_json::from_slice(&o.stdout).expect("drift json");
    let f = j["drift"].as_array().expect("findings").iter().find(|f| f["rule"]["name"] == "rogue").cloned().expect("rogue");
    assert_eq!(f["kind"], "extra");
    assert_eq!(f["rule"]["direction"], "inbound");
    assert_eq!(f["rule"]["priority"], 150);
    assert_eq!(f["rule"]["ports"], "22,3389");
    assert_eq!(f["rule"]["peers"], serde_json::json!(["203.0.113.0/24", "198.51.100.0/24"]));
    assert_eq!(f["rule"]["local"], serde_json::json!(["asg:payments"]));
    assert!(apply(&both).status.success());

    // db leaves the policy: its NSG is an orphan, which apply deletes.
    let web_only = web_policy(&tmp.join("web-only"), "flow corp -> web on tcp/443\n");
    let o = drift(&web_only, false);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("orphan   nsg db-nsg is managed by segc for zone db, which is no longer in the policy"), "{}", text(&o));
    assert!(text(&o).contains("extra    inbound on db-nsg (zone db): allow tcp/5432 from 10.0.1.0/24"), "{}", text(&o));
    let o = apply(&web_only);
    assert!(o.status.success() && text(&o).contains("delete nsg db-nsg (zone db left the policy)"), "{}", text(&o));
    assert_eq!(arm(&g, &["get", "db-nsg"]), "null");
    assert_eq!(drift(&web_only, false).status.code(), Some(0));

    // Again, with db-nsg on a subnet: ARM refuses to delete it, so it is
    // reduced to its deny-all rules and kept, and the apply says why.
    assert!(apply(&both).status.success());
    gateway_call(
        &g,
        "/_attach",
        Some(
            r#"{"nsg": "db-nsg", "subnet": "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/v/subnets/data"}"#,
        ),
    );
    let o = apply(&web_only);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("kept nsg db-nsg, reduced to deny-all: still used by /subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/v/subnets/data"), "{}", text(&o));
    let left: Vec<String> = v_rules(&arm(&g, &["get", "db-nsg"])).iter().filter_map(|r| r["name"].as_str().map(String::from)).collect();
    assert_eq!(left, ["segc-deny-all-inbound", "segc-deny-all-outbound"], "{left:?}");
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn the_rule_limit_never_wedges_a_replacement() {
    if !ready("the_rule_limit_never_wedges_a_replacement", &["python3"]) {
        return;
    }
    let tmp = std::env::temp_dir().join(format!("segc-azure-limit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let audit = tmp.join("audit");
    let e = start();
    let azure = ["--target", "azure", "--azure-resource-group", "rg1", "--azure-location", "eastus"];
    let apply = |p: &Path| segc(&e, &audit, &[&["deploy"][..], &azure, &["--apply"]].concat(), p);
    // 700 source zones, each its own inbound rule; the next policy replaces
    // all of them: 700 + 700 + the deny-alls is over ARM's 1000 (less the
    // stale rules that go first because they hold a priority a new rule needs).
    let many = |dir: &Path, second: u8| -> PathBuf {
        std::fs::create_dir_all(dir).expect("dir");
        let mut s = String::from(
            "policy \"azure-limit\" {}\nzone web {\n  cidrs = [10.0.1.0/24]\n  scope = connected\n  azure.nsg = \"web-nsg\"\n}\n",
        );
        for i in 0..700u32 {
            s.push_str(&format!(
                "zone s{second}x{i} {{\n  cidrs = [10.{second}.{}.{}/30]\n  scope = connected\n}}\nflow s{second}x{i} -> web on tcp/443\n",
                i / 64,
                (i % 64) * 4
            ));
        }
        std::fs::write(dir.join("main.seg"), s).expect("policy");
        dir.to_path_buf()
    };
    let (a, b) = (many(&tmp.join("a"), 100), many(&tmp.join("b"), 200));
    let o = apply(&a);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(v_rules(&arm(&e, &["get", "web-nsg"])).len(), 702);
    let o = apply(&b);
    assert!(o.status.success(), "{}", text(&o));
    let names: Vec<String> = v_rules(&arm(&e, &["get", "web-nsg"])).iter().filter_map(|r| r["name"].as_str().map(String::from)).collect();
    assert_eq!(names.len(), 702);
    assert!(names.iter().all(|n| !n.contains("-s100x")), "{names:?}");
    let _ = std::fs::remove_dir_all(&tmp);
}
