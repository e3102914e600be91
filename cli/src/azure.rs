//! `segc deploy|drift --target azure`: network security groups through the
//! Azure Resource Manager REST API (api-version 2024-03-01). Subscription from
//! `AZURE_SUBSCRIPTION_ID`, endpoint from `AZURE_RESOURCE_MANAGER_ENDPOINT`
//! (default: the public cloud), token from `AZURE_ACCESS_TOKEN` or else the
//! Azure CLI (`az account get-access-token`); never from the command line.
//! An NSG is managed when tagged `managed-by=segc`; others are never touched.
//! Rules are put before stale ones are deleted; 429 is retried after its
//! Retry-After; any other failure stops with the list of what was applied.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use segc_compiler::lower::azure::Nsg;
use serde_json::{json, Value};

const API: &str = "2024-03-01";

pub struct Arm {
    endpoint: String,
    subscription: String,
    group: String,
    location: String,
    token: String,
    agent: ureq::Agent,
}

fn token() -> Result<String> {
    if let Ok(t) = std::env::var("AZURE_ACCESS_TOKEN") {
        return Ok(t);
    }
    let out = std::process::Command::new("az")
        .args(["account", "get-access-token", "--resource", "https://management.azure.com/", "--query", "accessToken", "-o", "tsv"])
        .output()
        .context("no AZURE_ACCESS_TOKEN and no Azure CLI (`az`) to get a token from")?;
    if !out.status.success() {
        bail!("az account get-access-token failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The part of live properties segc compares (ARM adds provisioningState and more).
fn comparable(p: &Value) -> Value {
    let keys = [
        "priority", "direction", "access", "protocol", "sourcePortRange", "destinationPortRange", "destinationPortRanges",
        "sourceAddressPrefix", "sourceAddressPrefixes", "destinationAddressPrefix", "destinationAddressPrefixes",
    ];
    Value::Object(keys.iter().filter_map(|k| p.get(*k).map(|v| ((*k).to_string(), v.clone()))).collect())
}

#[derive(Clone, Debug)]
pub enum Change {
    Create { nsg: String, zone: String },
    Put { nsg: String, rule: String, props: Value, new: bool },
    Delete { nsg: String, rule: String },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Create { nsg, zone } => write!(f, "create nsg {nsg} (zone {zone})"),
            Change::Put { nsg, rule, props, new } => write!(
                f,
                "{} rule {rule} on {nsg} (priority {}, {})",
                if *new { "add" } else { "update" },
                props["priority"],
                props["description"].as_str().unwrap_or("")
            ),
            Change::Delete { nsg, rule } => write!(f, "delete rule {rule} on {nsg}"),
        }
    }
}

impl Arm {
    pub fn from_env(group: &str, location: &str) -> Result<Arm> {
        let endpoint = std::env::var("AZURE_RESOURCE_MANAGER_ENDPOINT").unwrap_or_else(|_| "https://management.azure.com".into());
        let subscription = std::env::var("AZURE_SUBSCRIPTION_ID").context("set AZURE_SUBSCRIPTION_ID")?;
        Ok(Arm {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            subscription,
            group: group.to_string(),
            location: location.to_string(),
            token: token()?,
            agent: ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/networkSecurityGroups{path}?api-version={API}",
            self.endpoint, self.subscription, self.group
        )
    }

    /// One call, retrying throttling (429) after Retry-After, then waiting for
    /// the asynchronous operation when ARM names one. `None` for 404.
    fn call(&self, method: &str, url: &str, body: Option<&Value>) -> Result<Option<Value>> {
        for attempt in 0..8 {
            let req = self.agent.request(method, url).set("Authorization", &format!("Bearer {}", self.token));
            let resp = match body {
                Some(b) => req.send_json(b.clone()),
                None => req.call(),
            };
            match resp {
                Ok(r) => {
                    if let Some(op) = r.header("Azure-AsyncOperation").map(String::from) {
                        self.wait(&op)?;
                    }
                    let text = r.into_string().unwrap_or_default();
                    return Ok(Some(if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::Null) }));
                }
                Err(ureq::Error::Status(404, _)) => return Ok(None),
                Err(ureq::Error::Status(429, r)) => {
                    let wait = r.header("Retry-After").and_then(|v| v.parse::<u64>().ok()).unwrap_or(1 << attempt.min(5));
                    std::thread::sleep(Duration::from_secs(wait.min(30)));
                }
                Err(ureq::Error::Status(code, r)) => {
                    let text = r.into_string().unwrap_or_default();
                    bail!("{method} {url}: HTTP {code}: {text}");
                }
                Err(e) => bail!("{method} {url}: {e}"),
            }
        }
        bail!("{method} {url}: still throttled after 8 attempts")
    }

    fn wait(&self, op: &str) -> Result<()> {
        for _ in 0..120 {
            let v: Value = self.agent.get(op).set("Authorization", &format!("Bearer {}", self.token)).call()?.into_json()?;
            match v["status"].as_str() {
                Some("Succeeded") => return Ok(()),
                Some("Failed") | Some("Canceled") => bail!("operation {op} ended {}", v["status"]),
                _ => std::thread::sleep(Duration::from_millis(500)),
            }
        }
        bail!("operation {op} did not finish")
    }

    fn live(&self, name: &str) -> Result<Option<Value>> {
        self.call("GET", &self.url(&format!("/{name}")), None)
    }

    pub fn plan(&self, nsgs: &[Nsg]) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        for n in nsgs {
            let live = self.live(&n.name)?;
            let live_rules: BTreeMap<String, Value> = match &live {
                None => {
                    changes.push(Change::Create { nsg: n.name.clone(), zone: n.zone.clone() });
                    BTreeMap::new()
                }
                Some(v) => {
                    if v["tags"]["managed-by"] != "segc" {
                        bail!("nsg `{}` exists in {} and is not managed by segc (no managed-by=segc tag): refusing to touch it", n.name, self.group);
                    }
                    v["properties"]["securityRules"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|r| (r["name"].as_str().unwrap_or("").to_string(), r["properties"].clone()))
                        .collect()
                }
            };
            for r in &n.rules {
                let props = segc_compiler::lower::azure::rule_properties(r);
                match live_rules.get(&r.name) {
                    Some(p) if comparable(p) == comparable(&props) => {}
                    found => changes.push(Change::Put { nsg: n.name.clone(), rule: r.name.clone(), props, new: found.is_none() }),
                }
            }
            for name in live_rules.keys() {
                if !n.rules.iter().any(|r| &r.name == name) {
                    changes.push(Change::Delete { nsg: n.name.clone(), rule: name.clone() });
                }
            }
        }
        Ok(changes)
    }

    /// Applies the plan: NSGs, then rules put, then stale rules deleted.
    pub fn apply(&self, nsgs: &[Nsg], policy: &str, progress: &dyn Fn(&str)) -> Result<Vec<String>, (Vec<String>, anyhow::Error)> {
        let changes = self.plan(nsgs).map_err(|e| (Vec::new(), e))?;
        let mut done = Vec::new();
        let ordered = changes
            .iter()
            .filter(|c| matches!(c, Change::Create { .. }))
            .chain(changes.iter().filter(|c| matches!(c, Change::Put { .. })))
            .chain(changes.iter().filter(|c| matches!(c, Change::Delete { .. })));
        for c in ordered {
            let r = match c {
                Change::Create { nsg, zone } => {
                    let body = json!({"location": self.location, "tags": {"managed-by": "segc", "segc-policy": policy, "segc-zone": zone}, "properties": {"securityRules": []}});
                    self.call("PUT", &self.url(&format!("/{nsg}")), Some(&body))
                }
                Change::Put { nsg, rule, props, .. } => self.call("PUT", &self.url(&format!("/{nsg}/securityRules/{rule}")), Some(&json!({"properties": props}))),
                Change::Delete { nsg, rule } => self.call("DELETE", &self.url(&format!("/{nsg}/securityRules/{rule}")), None),
            };
            if let Err(e) = r {
                return Err((done, e.context(c.to_string())));
            }
            progress(&c.to_string());
            done.push(c.to_string());
        }
        Ok(done)
    }

    /// Differences between live and compiled: ("missing"|"extra"|"changed", text).
    pub fn drift(&self, nsgs: &[Nsg]) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for c in self.plan(nsgs)? {
            let kind = match &c {
                Change::Create { .. } => "missing",
                Change::Put { new: true, .. } => "missing",
                Change::Put { new: false, .. } => "changed",
                Change::Delete { .. } => "extra",
            };
            let text = match &c {
                Change::Create { nsg, zone } => format!("nsg {nsg} (zone {zone})"),
                Change::Put { nsg, rule, props, .. } => format!("rule {rule} on {nsg} ({})", props["description"].as_str().unwrap_or("")),
                Change::Delete { nsg, rule } => format!("rule {rule} on {nsg}"),
            };
            out.push((kind.to_string(), text));
        }
        Ok(out)
    }
}
