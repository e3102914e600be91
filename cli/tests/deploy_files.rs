//! The operations files in `deploy/` are valid for their tools: the alert rules
//! for promtool, the AppArmor profile for apparmor_parser, and the Grafana
//! dashboard queries only metrics the agent exports.

mod common;

use std::process::Command;

use common::{repo, require};

#[test]
fn alert_rules_pass_promtool() {
    if !require("alert_rules_pass_promtool", &["promtool"]) {
        return;
    }
    let o = Command::new("promtool").args(["check", "rules"]).arg(repo().join("deploy/prometheus/alerts.yml")).output().expect("promtool");
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
}

#[test]
fn apparmor_profile_parses() {
    if !require("apparmor_profile_parses", &["apparmor_parser"]) {
        return;
    }
    let o = Command::new("apparmor_parser")
        .args(["-Q", "-K"])
        .arg(repo().join("deploy/apparmor/usr.local.bin.segc"))
        .output()
        .expect("apparmor_parser");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn dashboard_and_alerts_use_exported_metrics() {
    let exported = [
        "segc_packets_total",
        "segc_bytes_total",
        "segc_policy_swaps_total",
        "segc_policy_refused_total",
        "segc_audit_write_errors_total",
        "segc_deny_samples_total",
        "segc_policy_epoch",
        "segc_swap_duration_seconds",
        "segc_map_fill_ratio",
        "segc_zone_pair_packets_total",
        "segc_zone_pair_bytes_total",
    ];
    let agent = std::fs::read_to_string(repo().join("cli/src/agent/metrics.rs")).expect("agent source");
    for m in exported {
        assert!(agent.contains(&format!("\"{}\"", m.trim_end_matches("_total"))), "{m} is exported by the agent");
    }
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("deploy/grafana/segc-dashboard.json")).expect("dashboard"))
            .expect("valid JSON");
    let alerts = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).expect("alerts");
    let mut exprs: Vec<String> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap_or("").to_string())
        .collect();
    exprs.extend(alerts.lines().filter_map(|l| l.trim().strip_prefix("expr: ")).map(String::from));
    assert!(exprs.len() > 5);
    for e in exprs {
        for word in e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("segc_")) {
            assert!(exported.contains(&word), "`{word}` in `{e}` is not a metric the agent exports");
        }
    }
}
