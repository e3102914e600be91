#![cfg(feature = "azure")]
//! Azure applies that never wedge and never open more than the old and the new
//! policy, orphan NSGs, and drift that says what each rule allows, against the
//! ARM emulator behind tests/helpers/arm_gateway.py (which logs every state).

#[path = "common/azure.rs"]
mod azure;
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use azure::*;
use serde_json::Value;

const AZURE: [&str; 6] = ["--target", "azure", "--azure-resource-group", "rg1", "--azure-location", "eastus"];

/// A scratch folder (the audit log's in it) and the ARM emulator behind the
/// gateway that logs every state.
struct Scene {
    tmp: PathBuf,
    audit: PathBuf,
    gateway: Emulator,
    _arm: Emulator,
}

impl Scene {
    fn new(name: &str) -> Scene {
        let tmp = std::env::temp_dir().join(format!("segc-azure-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let arm = start();
        Scene { audit: tmp.join("audit"), tmp, gateway: start_gateway(&arm), _arm: arm }
    }
}

#[test]
fn priority_collisions_never_wedge_and_no_state_is_more_open_than_old_and_new() {
    if !ready("priority_collisions_never_wedge_and_no_state_is_more_open_than_old_and_new", &["python3"]) {
        return;
    }
    let scene = Scene::new("order");
    let (tmp, audit, g, azure) = (&scene.tmp, &scene.audit, &scene.gateway, AZURE);
    let apply = |p: &Path| segc(g, audit, &[&["deploy"][..], &azure, &["--apply"]].concat(), p);
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
        arm(g, &["put-rule", "web-nsg", name, &props.to_string()]);
    };
    stale("rogue-ssh", wanted, "Allow", "*", "22");
    stale("block-partner", 101, "Deny", "10.0.50.0/24", "22");
    stale("partner-ssh", 102, "Allow", "10.0.50.0/24", "22");
    let before = allowed_probes(v_rules(&arm(g, &["get", "web-nsg"])).as_slice());
    let logged = gateway_call(g, "/_log", None).as_array().map_or(0, Vec::len);

    let o = apply(&new);
    assert!(o.status.success(), "a new rule on a stale rule's priority must not wedge the apply: {}", text(&o));
    let after_rules = v_rules(&arm(g, &["get", "web-nsg"]));
    let after = allowed_probes(&after_rules);
    assert!(!after_rules.iter().any(|r| r["name"].as_str().is_some_and(|n| !n.starts_with("segc-"))), "{after_rules:?}");
    assert!(after.contains(&(true, [203, 0, 113, 5].into(), 80)) && !after.contains(&(true, [10, 0, 50, 5].into(), 22)));

    // Every state the NSG passed through lets through nothing that neither
    // the state before nor the state after lets through.
    let log = gateway_call(g, "/_log", None);
    let states: Vec<&Value> = log.as_array().expect("log")[logged..].iter().filter(|w| w["nsg"] == "web-nsg").collect();
    assert!(states.len() >= 4, "{states:?}");
    for s in &states {
        let now = allowed_probes(s["rules"].as_array().expect("rules"));
        let extra: Vec<_> = now.iter().filter(|p| !before.contains(p) && !after.contains(p)).collect();
        assert!(extra.is_empty(), "after {} {}: opens {extra:?}", s["method"], s["path"]);
    }
    let o = segc(g, audit, &[&["drift"][..], &azure].concat(), &new);
    assert_eq!(o.status.code(), Some(0), "drift takes the same options as deploy: {}", text(&o));
    let _ = std::fs::remove_dir_all(tmp);
}

#[test]
fn orphan_nsgs_are_deleted_or_reduced_to_deny_all_and_drift_says_what_rules_allow() {
    if !ready("orphan_nsgs_are_deleted_or_reduced_to_deny_all_and_drift_says_what_rules_allow", &["python3"]) {
        return;
    }
    let scene = Scene::new("orphan");
    let (tmp, audit, g, azure) = (&scene.tmp, &scene.audit, &scene.gateway, AZURE);
    let apply = |p: &Path| segc(g, audit, &[&["deploy"][..], &azure, &["--apply"]].concat(), p);
    let drift = |p: &Path, json: bool| {
        let format: &[&str] = if json { &["--format", "json"] } else { &[] };
        segc(g, audit, &[&["drift"][..], &azure, format].concat(), p)
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
    arm(g, &["put-rule", "web-nsg", "rogue", &rogue.to_string()]);
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
    assert_eq!(arm(g, &["get", "db-nsg"]), "null");
    assert_eq!(drift(&web_only, false).status.code(), Some(0));

    // Again, with db-nsg on a subnet: ARM refuses to delete it, so it is
    // reduced to its deny-all rules and kept, and the apply says why.
    assert!(apply(&both).status.success());
    gateway_call(
        g,
        "/_attach",
        Some(
            r#"{"nsg": "db-nsg", "subnet": "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/v/subnets/data"}"#,
        ),
    );
    let o = apply(&web_only);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("kept nsg db-nsg, reduced to deny-all: still used by /subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/v/subnets/data"), "{}", text(&o));
    let left: Vec<String> = v_rules(&arm(g, &["get", "db-nsg"])).iter().filter_map(|r| r["name"].as_str().map(String::from)).collect();
    assert_eq!(left, ["segc-deny-all-inbound", "segc-deny-all-outbound"], "{left:?}");
    let _ = std::fs::remove_dir_all(tmp);
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

#[test]
fn a_flow_moving_to_another_nsg_is_in_place_before_its_old_rules_go() {
    if !ready("a_flow_moving_to_another_nsg_is_in_place_before_its_old_rules_go", &["python3"]) {
        return;
    }
    let scene = Scene::new("move");
    let (tmp, audit, g, azure) = (&scene.tmp, &scene.audit, &scene.gateway, AZURE);
    let apply = |p: &Path| segc(g, audit, &[&["deploy"][..], &azure, &["--apply"]].concat(), p);
    // The flow moves from db (db-nsg) to a zone whose NSG sorts after it
    // (zz-nsg), with other NSGs' writes beside it: the new rule on zz-nsg
    // and web-nsg's new outbound rule must be in place before db-nsg's old
    // inbound rule or web-nsg's old outbound rule is deleted.
    let with = |dir: &Path, flows: &str| -> PathBuf {
        std::fs::create_dir_all(dir).expect("dir");
        let mut s = String::from("policy \"azure-move\" {}\n");
        for (z, net, nsg) in [("web", 1, "web-nsg"), ("db", 2, "db-nsg"), ("cache", 3, "zz-nsg")] {
            s.push_str(&format!("zone {z} {{\n  cidrs = [10.0.{net}.0/24]\n  scope = connected\n  azure.nsg = \"{nsg}\"\n}}\n"));
        }
        for i in 0..6 {
            s.push_str(&format!("zone side{i} {{\n  cidrs = [10.1.{i}.0/24]\n  scope = connected\n  azure.nsg = \"side{i}-nsg\"\n}}\n"));
        }
        s.push_str(flows);
        std::fs::write(dir.join("main.seg"), s).expect("policy");
        dir.to_path_buf()
    };
    let sides = |port: u16| (0..6).map(|i| format!("flow web -> side{i} on tcp/{port}\n")).collect::<String>();
    let old = with(&tmp.join("old"), &format!("flow web -> db on tcp/7005\n{}", sides(9000)));
    let new = with(&tmp.join("new"), &format!("flow web -> cache on tcp/7005\n{}", sides(9001)));
    let o = apply(&old);
    assert!(o.status.success(), "{}", text(&o));
    let logged = gateway_call(g, "/_log", None).as_array().map_or(0, Vec::len);
    let o = apply(&new);
    assert!(o.status.success(), "{}", text(&o));
    let log = gateway_call(g, "/_log", None);
    let writes: Vec<(String, String)> = log.as_array().expect("log")[logged..]
        .iter()
        .map(|w| (w["method"].as_str().unwrap_or("").to_string(), w["path"].as_str().unwrap_or("").to_string()))
        .filter(|(_, p)| p.contains("/securityRules/"))
        .collect();
    let last_put = writes.iter().rposition(|(m, _)| m == "PUT").expect("puts");
    let first_delete = writes.iter().position(|(m, _)| m == "DELETE").expect("deletes");
    assert!(last_put < first_delete, "a rule was deleted before every new rule was in place: {writes:#?}");
    assert!(writes.iter().any(|(m, p)| m == "DELETE" && p.contains("/db-nsg/")), "{writes:#?}");
    assert!(writes.iter().any(|(m, p)| m == "PUT" && p.contains("/zz-nsg/")), "{writes:#?}");
    assert_eq!(segc(g, audit, &[&["drift"][..], &azure].concat(), &new).status.code(), Some(0));
    let _ = std::fs::remove_dir_all(tmp);
}
