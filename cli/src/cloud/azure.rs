//! `segc deploy|drift --target azure`: network security groups through
//! azure_mgmt_network (ARM api-version 2024-03-01).
//!
//! Subscription from `AZURE_SUBSCRIPTION_ID`, endpoint from
//! `AZURE_RESOURCE_MANAGER_ENDPOINT` (default: the public cloud). The token is
//! `AZURE_ACCESS_TOKEN` where set, else the Azure identity chain of
//! azure_identity: `AZURE_CREDENTIAL_KIND` picks one source; otherwise
//! environment (workload identity from `AZURE_FEDERATED_TOKEN_FILE`, or a
//! client secret), App Service managed identity (`IDENTITY_ENDPOINT`), VM
//! managed identity (IMDS), then the Azure CLI. Never from the command line.
//!
//! An NSG is managed when tagged `managed-by=segc`; others are never touched.
//! Rules are put before stale ones are deleted. Throttling (429) and transient
//! server errors are retried by the SDK's pipeline (429 after its
//! Retry-After); any failure that remains stops the apply with the list of
//! what was applied.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use azure_core::auth::{AccessToken, Secret, TokenCredential};
use azure_core::error::ErrorKind;
use azure_core::{ExponentialRetryOptions, RetryOptions, StatusCode};
use azure_mgmt_network::package_2024_03::models::{
    NetworkSecurityGroup, NetworkSecurityGroupPropertiesFormat, Resource, SecurityRule, SecurityRulePropertiesFormat,
};
use azure_mgmt_network::package_2024_03::Client;
use segc_compiler::lower::azure::Nsg;
use serde_json::{json, Value};

use crate::journal::{Finding, FindingKind};

/// `AZURE_ACCESS_TOKEN`: a bearer token obtained elsewhere (e.g. by a CI step).
#[derive(Debug)]
struct FixedToken(Secret);

#[async_trait::async_trait]
impl TokenCredential for FixedToken {
    async fn get_token(&self, _scopes: &[&str]) -> azure_core::Result<AccessToken> {
        // ARM says when it has expired; segc runs are short.
        Ok(AccessToken::new(self.0.clone(), time::OffsetDateTime::now_utc() + Duration::from_secs(3600)))
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        Ok(())
    }
}

fn credential() -> Result<Arc<dyn TokenCredential>> {
    if let Ok(t) = std::env::var("AZURE_ACCESS_TOKEN") {
        return Ok(Arc::new(FixedToken(Secret::new(t))));
    }
    azure_identity::create_credential().map_err(|e| anyhow!("no Azure credential: {e}"))
}

/// Every property that decides what a rule matches or does; ARM's own
/// (provisioningState, etag) and the description are left out. A key segc
/// never writes (port lists, application security groups) that appears on a
/// live rule makes it differ, so a hand edit that widens a rule is drift.
fn comparable(p: &Value) -> Value {
    let keys = [
        "priority",
        "direction",
        "access",
        "protocol",
        "sourcePortRange",
        "sourcePortRanges",
        "destinationPortRange",
        "destinationPortRanges",
        "sourceAddressPrefix",
        "sourceAddressPrefixes",
        "destinationAddressPrefix",
        "destinationAddressPrefixes",
        "sourceApplicationSecurityGroups",
        "destinationApplicationSecurityGroups",
    ];
    Value::Object(keys.iter().filter_map(|k| p.get(*k).map(|v| ((*k).to_string(), v.clone()))).collect())
}

/// An SDK error as one line: the ARM error code and message when there is one.
fn describe(e: azure_core::Error) -> anyhow::Error {
    match e.as_http_error() {
        Some(h) => anyhow!("HTTP {}: {} {}", h.status() as u16, h.error_code().unwrap_or(""), h.error_message().unwrap_or("")),
        None => anyhow::Error::new(e),
    }
}

fn is_not_found(e: &azure_core::Error) -> bool {
    matches!(e.kind(), ErrorKind::HttpResponse { status: StatusCode::NotFound, .. })
}

#[derive(Clone, Debug)]
pub enum Change {
    Create { nsg: String, zone: String },
    Put { nsg: String, rule: String, props: Value, new: bool },
    Delete { nsg: String, zone: String, rule: String },
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
            Change::Delete { nsg, rule, .. } => write!(f, "delete rule {rule} on {nsg}"),
        }
    }
}

pub struct Arm {
    client: Client,
    subscription: String,
    group: String,
    location: String,
}

impl Arm {
    pub fn from_env(group: &str, location: &str) -> Result<Arm> {
        let subscription = std::env::var("AZURE_SUBSCRIPTION_ID").context("set AZURE_SUBSCRIPTION_ID")?;
        let mut builder = Client::builder(credential()?).retry(RetryOptions::exponential(
            ExponentialRetryOptions::default()
                .max_retries(3u32)
                .initial_delay(Duration::from_millis(200))
                .max_total_elapsed(Duration::from_secs(120)),
        ));
        if let Ok(e) = std::env::var("AZURE_RESOURCE_MANAGER_ENDPOINT") {
            let url = azure_core::Url::parse(&e).with_context(|| format!("AZURE_RESOURCE_MANAGER_ENDPOINT `{e}` is not a URL"))?;
            builder = builder.endpoint(url);
        }
        Ok(Arm { client: builder.build().map_err(describe)?, subscription, group: group.to_string(), location: location.to_string() })
    }

    async fn live(&self, name: &str) -> Result<Option<NetworkSecurityGroup>> {
        match self.client.network_security_groups_client().get(&self.group, name, &self.subscription).await {
            Ok(n) => Ok(Some(n)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(describe(e).context(format!("read nsg {name}"))),
        }
    }

    pub async fn plan(&self, nsgs: &[Nsg]) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        for n in nsgs {
            let live_rules: BTreeMap<String, Value> = match self.live(&n.name).await? {
                None => {
                    changes.push(Change::Create { nsg: n.name.clone(), zone: n.zone.clone() });
                    BTreeMap::new()
                }
                Some(v) => {
                    let tags = v.resource.tags.unwrap_or(Value::Null);
                    if tags["managed-by"] != "segc" {
                        bail!(
                            "nsg `{}` exists in {} and is not managed by segc (no managed-by=segc tag): refusing to touch it",
                            n.name,
                            self.group
                        );
                    }
                    v.properties
                        .map(|p| p.security_rules)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|r| {
                            (
                                r.name.unwrap_or_default(),
                                r.properties.map(|p| serde_json::to_value(p).unwrap_or(Value::Null)).unwrap_or(Value::Null),
                            )
                        })
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
                    changes.push(Change::Delete { nsg: n.name.clone(), zone: n.zone.clone(), rule: name.clone() });
                }
            }
        }
        Ok(changes)
    }

    async fn execute(&self, change: &Change, policy: &str) -> Result<()> {
        match change {
            Change::Create { nsg, zone } => {
                let body = NetworkSecurityGroup {
                    resource: Resource {
                        location: Some(self.location.clone()),
                        tags: Some(json!({"managed-by": "segc", "segc-policy": policy, "segc-zone": zone})),
                        ..Resource::default()
                    },
                    properties: Some(NetworkSecurityGroupPropertiesFormat::default()),
                    etag: None,
                };
                self.client
                    .network_security_groups_client()
                    .create_or_update(&self.group, nsg, body, &self.subscription)
                    .await
                    .map_err(describe)?;
            }
            Change::Put { nsg, rule, props, .. } => {
                let props: SecurityRulePropertiesFormat = serde_json::from_value(props.clone()).context("rule properties")?;
                let body = SecurityRule { properties: Some(props), ..SecurityRule::default() };
                self.client
                    .security_rules_client()
                    .create_or_update(&self.group, nsg, rule, body, &self.subscription)
                    .await
                    .map_err(describe)?;
            }
            Change::Delete { nsg, rule, .. } => {
                let rules = self.client.security_rules_client();
                rules.delete(&self.group, nsg, rule, &self.subscription).send().await.map_err(describe)?;
                // Deletion is asynchronous in ARM: done when the rule reads as gone.
                for _ in 0..120 {
                    match rules.get(&self.group, nsg, rule, &self.subscription).await {
                        Err(e) if is_not_found(&e) => return Ok(()),
                        Err(e) => return Err(describe(e)),
                        Ok(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
                bail!("rule {rule} on {nsg} still exists a minute after its deletion was accepted");
            }
        }
        Ok(())
    }

    /// Applies the plan: NSGs, then rules put, then stale rules deleted.
    pub async fn apply(&self, nsgs: &[Nsg], policy: &str, progress: &dyn Fn(&str)) -> Result<Vec<String>, (Vec<String>, anyhow::Error)> {
        let changes = self.plan(nsgs).await.map_err(|e| (Vec::new(), e))?;
        let mut done = Vec::new();
        let ordered = changes
            .iter()
            .filter(|c| matches!(c, Change::Create { .. }))
            .chain(changes.iter().filter(|c| matches!(c, Change::Put { .. })))
            .chain(changes.iter().filter(|c| matches!(c, Change::Delete { .. })));
        for c in ordered {
            if let Err(e) = self.execute(c, policy).await {
                return Err((done, e.context(c.to_string())));
            }
            progress(&c.to_string());
            done.push(c.to_string());
        }
        Ok(done)
    }

    /// Differences between live and compiled.
    pub async fn drift(&self, nsgs: &[Nsg]) -> Result<Vec<Finding>> {
        let mut out = Vec::new();
        for c in self.plan(nsgs).await? {
            let kind = match &c {
                Change::Create { .. } => FindingKind::Missing,
                Change::Put { new: true, .. } => FindingKind::Missing,
                Change::Put { new: false, .. } => FindingKind::Changed,
                Change::Delete { .. } => FindingKind::Extra,
            };
            let text = match &c {
                Change::Create { nsg, zone } => format!("nsg {nsg} (zone {zone})"),
                Change::Put { nsg, rule, props, .. } => format!("rule {rule} on {nsg} ({})", props["description"].as_str().unwrap_or("")),
                Change::Delete { nsg, zone, rule } => format!("rule {rule} on {nsg} (zone {zone}; no flow: not in the policy)"),
            };
            out.push(Finding::new(kind, text));
        }
        Ok(out)
    }
}
