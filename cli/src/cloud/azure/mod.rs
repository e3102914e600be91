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
//! Those of this policy (`segc-policy`) whose zone has left it are orphans:
//! deleted, or, while a subnet or interface still uses one, reduced to its
//! two deny-all rules. Every rule is read whatever its shape (port lists,
//! address prefix lists, service tags, application security groups).
//!
//! Order (DECISIONS 48): a stale rule that holds the priority (and
//! direction) a new rule needs, or whose slot the 1000-rule limit needs, is
//! deleted first (ARM refuses two rules with one priority and direction);
//! then rules are put, a rule moving to a priority another moving rule still
//! holds after that one; then the other stale rules are deleted. Stale allow
//! rules always go before stale deny rules, so no moment is more open than
//! the old policy or the new one. NSGs run side by side, in steps
//! ([`Arm::apply`]): no stale rule anywhere goes before every new rule is
//! in place. Throttling (429) and transient server
//! errors are retried by the SDK's pipeline (429 after its Retry-After); any
//! failure that remains stops the apply with the list of what was applied.

mod rules;

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
use futures::StreamExt;
use segc_compiler::lower::azure::Nsg;
use serde_json::{json, Value};

use crate::journal::{Finding, FindingKind};
pub use rules::Change;
use rules::{comparable, detail, order};

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

/// An NSG as it is live in the resource group.
struct LiveNsg {
    managed: bool,
    policy: Option<String>,
    zone: Option<String>,
    /// Rule name -> ARM properties.
    rules: BTreeMap<String, Value>,
    /// Subnets and network interfaces it is associated with (ids).
    used_by: Vec<String>,
}

fn live_nsg(n: NetworkSecurityGroup) -> (String, LiveNsg) {
    let tags = n.resource.tags.clone().unwrap_or(Value::Null);
    let tag = |k: &str| tags.get(k).and_then(Value::as_str).map(str::to_string);
    let props = n.properties.unwrap_or_default();
    let mut used_by: Vec<String> = props.subnets.iter().filter_map(|s| s.sub_resource.id.clone()).collect();
    used_by.extend(props.network_interfaces.iter().filter_map(|i| i.resource.id.clone()));
    let rules = props
        .security_rules
        .into_iter()
        .map(|r| (r.name.unwrap_or_default(), r.properties.map(|p| serde_json::to_value(p).unwrap_or(Value::Null)).unwrap_or(Value::Null)))
        .collect();
    (
        n.resource.name.unwrap_or_default(),
        LiveNsg {
            managed: tag("managed-by").as_deref() == Some("segc"),
            policy: tag("segc-policy"),
            zone: tag("segc-zone"),
            rules,
            used_by,
        },
    )
}

pub struct Arm {
    client: Client,
    subscription: String,
    group: String,
    location: String,
}

fn policy_name(policy: Option<&str>) -> &str {
    policy.unwrap_or("policy")
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

    /// Every NSG of the resource group.
    async fn live(&self) -> Result<BTreeMap<String, LiveNsg>> {
        let mut pages = self.client.network_security_groups_client().list(&self.group, &self.subscription).into_stream();
        let mut out = BTreeMap::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| describe(e).context(format!("list the NSGs of {}", self.group)))?;
            out.extend(page.value.into_iter().map(live_nsg));
        }
        Ok(out)
    }

    /// Managed NSGs of this policy whose zone has left it.
    fn orphans<'a>(live: &'a BTreeMap<String, LiveNsg>, nsgs: &[Nsg], policy: Option<&str>) -> Vec<(&'a String, &'a LiveNsg)> {
        live.iter()
            .filter(|(n, l)| {
                l.managed
                    && l.policy.as_deref().is_none_or(|p| p.is_empty() || p == policy_name(policy))
                    && !nsgs.iter().any(|x| &x.name == *n)
            })
            .collect()
    }

    pub async fn plan(&self, nsgs: &[Nsg], policy: Option<&str>) -> Result<Vec<Change>> {
        let live = self.live().await?;
        let mut changes = Vec::new();
        for n in nsgs {
            let empty = BTreeMap::new();
            let live_rules = match live.get(&n.name) {
                None => {
                    changes.push(Change::Create { nsg: n.name.clone(), zone: n.zone.clone() });
                    &empty
                }
                Some(l) if !l.managed => bail!(
                    "nsg `{}` exists in {} and is not managed by segc (no managed-by=segc tag): refusing to touch it",
                    n.name,
                    self.group
                ),
                Some(l) => &l.rules,
            };
            let want: BTreeMap<String, Value> =
                n.rules.iter().map(|r| (r.name.clone(), segc_compiler::lower::azure::rule_properties(r))).collect();
            changes.extend(order(&n.name, Some(&n.zone), live_rules, &want));
        }
        for (name, l) in Self::orphans(&live, nsgs, policy) {
            if l.used_by.is_empty() {
                changes.push(Change::DeleteNsg { nsg: name.clone(), zone: l.zone.clone() });
                continue;
            }
            let deny_all: BTreeMap<String, Value> = segc_compiler::lower::azure::Direction::BOTH
                .into_iter()
                .map(|d| {
                    let r = segc_compiler::lower::azure::deny_all(d);
                    (r.name.clone(), segc_compiler::lower::azure::rule_properties(&r))
                })
                .collect();
            changes.extend(order(name, l.zone.as_deref(), &l.rules, &deny_all));
            changes.push(Change::Keep { nsg: name.clone(), used_by: l.used_by.clone() });
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
            Change::DeleteNsg { nsg, .. } => {
                let nsgs = self.client.network_security_groups_client();
                nsgs.delete(&self.group, nsg, &self.subscription).send().await.map_err(describe)?;
                for _ in 0..120 {
                    match nsgs.get(&self.group, nsg, &self.subscription).await {
                        Err(e) if is_not_found(&e) => return Ok(()),
                        Err(e) => return Err(describe(e)),
                        Ok(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
                bail!("nsg {nsg} still exists a minute after its deletion was accepted");
            }
            Change::Keep { .. } => {}
        }
        Ok(())
    }

    /// Applies the plan in four steps ([`crate::cloud::lanes`]), NSGs side
    /// by side within a step, each NSG's writes in its own order (ARM takes
    /// one operation at a time on an NSG): the NSGs created; each NSG's
    /// changes up to its last put (the stale rules in the way deleted, the
    /// new and changed rules put); the stale rules left, deleted; the
    /// orphans. No stale rule anywhere is deleted before every new rule
    /// everywhere is in place, so a flow that moves from one NSG to another
    /// is never cut, whatever the NSGs are called.
    pub async fn apply(
        &self,
        nsgs: &[Nsg],
        policy: &str,
        hooks: &crate::cloud::Hooks<'_>,
    ) -> Result<Vec<String>, (Vec<String>, anyhow::Error)> {
        let changes = self.plan(nsgs, Some(policy)).await.map_err(|e| (Vec::new(), e))?;
        let (creates, rest): (Vec<&Change>, Vec<&Change>) = changes.iter().partition(|c| matches!(c, Change::Create { .. }));
        let (mut puts, mut deletes, mut orphans) = (Vec::new(), Vec::new(), Vec::new());
        for lane in rest.chunk_by(|a, b| a.nsg() == b.nsg()) {
            if !nsgs.iter().any(|n| n.name == lane[0].nsg()) {
                orphans.push(lane.to_vec());
                continue;
            }
            let cut = lane.iter().rposition(|c| matches!(c, Change::Put { .. })).map_or(0, |i| i + 1);
            let (head, tail) = lane.split_at(cut);
            puts.extend((!head.is_empty()).then(|| head.to_vec()));
            deletes.extend((!tail.is_empty()).then(|| tail.to_vec()));
        }
        let steps = vec![creates.into_iter().map(|c| vec![c]).collect(), puts, deletes, orphans];
        crate::cloud::lanes::run(steps, hooks, |c| self.execute(c, policy)).await
    }

    /// Differences between live and compiled, each with what it lets
    /// through; orphans by name, with each of their rules.
    pub async fn drift(&self, nsgs: &[Nsg], policy: Option<&str>) -> Result<Vec<Finding>> {
        let live = self.live().await?;
        let mut out = Vec::new();
        for n in nsgs {
            let Some(l) = live.get(&n.name) else {
                out.push(Finding::new(FindingKind::Missing, format!("nsg {} (zone {})", n.name, n.zone)));
                continue;
            };
            let zone = Some(n.zone.as_str());
            for r in &n.rules {
                let want = segc_compiler::lower::azure::rule_properties(r);
                match l.rules.get(&r.name) {
                    None => out.push(Finding::rule(FindingKind::Missing, detail(&n.name, zone, &r.name, &want), "in the policy, not live")),
                    Some(p) if comparable(p) != comparable(&want) => out.push(Finding::rule(
                        FindingKind::Changed,
                        detail(&n.name, zone, &r.name, p),
                        &format!("the policy has: {}", detail(&n.name, zone, &r.name, &want)),
                    )),
                    Some(_) => {}
                }
            }
            for (name, p) in &l.rules {
                if !n.rules.iter().any(|r| &r.name == name) {
                    out.push(Finding::rule(FindingKind::Extra, detail(&n.name, zone, name, p), "live, not in the policy"));
                }
            }
        }
        for (name, l) in Self::orphans(&live, nsgs, policy) {
            let zone = l.zone.clone().unwrap_or_else(|| "?".into());
            let used = if l.used_by.is_empty() { String::new() } else { format!(" (still used by {})", l.used_by.join(", ")) };
            out.push(Finding::new(
                FindingKind::Orphan,
                format!("nsg {name} is managed by segc for zone {zone}, which is no longer in the policy{used}; apply deletes it"),
            ));
            for (rule, p) in &l.rules {
                out.push(Finding::rule(FindingKind::Extra, detail(name, l.zone.as_deref(), rule, p), "on an orphan nsg"));
            }
        }
        Ok(out)
    }
}
