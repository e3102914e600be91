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
//! the old policy or the new one. Throttling (429) and transient server
//! errors are retried by the SDK's pipeline (429 after its Retry-After); any
//! failure that remains stops the apply with the list of what was applied.

use std::collections::{BTreeMap, BTreeSet};
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

use crate::journal::{Finding, FindingKind, RuleDetail};
use futures::StreamExt;
use segc_compiler::lower::azure::{DENY_PRIORITY, FIRST_PRIORITY, MAX_RULES};

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
    Value::Object(
        keys.iter()
            .filter_map(|k| {
                p.get(*k).filter(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty())).map(|v| ((*k).to_string(), v.clone()))
            })
            .collect(),
    )
}

/// The values of a one-or-many property pair (`…Prefix` / `…Prefixes`),
/// and application security groups by name.
fn many(p: &Value, one: &str, list: &str, asgs: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(v) = p.get(one).and_then(Value::as_str) {
        out.push(v.to_string());
    }
    out.extend(p.get(list).and_then(Value::as_array).into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)));
    for a in p.get(asgs).and_then(Value::as_array).into_iter().flatten() {
        let id = a["id"].as_str().unwrap_or_default();
        out.push(format!("asg:{}", id.rsplit('/').next().unwrap_or(id)));
    }
    out
}

fn priority(p: &Value) -> u32 {
    p["priority"].as_u64().unwrap_or(0) as u32
}

fn direction(p: &Value) -> &str {
    p["direction"].as_str().unwrap_or("")
}

fn is_deny(p: &Value) -> bool {
    p["access"].as_str() == Some("Deny")
}

/// A rule as a reviewer reads it.
fn detail(nsg: &str, zone: Option<&str>, name: &str, p: &Value) -> RuleDetail {
    let inbound = direction(p) == "Inbound";
    let src = many(p, "sourceAddressPrefix", "sourceAddressPrefixes", "sourceApplicationSecurityGroups");
    let dst = many(p, "destinationAddressPrefix", "destinationAddressPrefixes", "destinationApplicationSecurityGroups");
    let ports = many(p, "destinationPortRange", "destinationPortRanges", "");
    let protocol = match p["protocol"].as_str().unwrap_or("*") {
        "*" => "all".to_string(),
        other => other.to_lowercase(),
    };
    let ports = if ports.is_empty() || ports.iter().any(|x| x == "*") { "all".to_string() } else { ports.join(",") };
    let (peers, local) = if inbound { (src, dst) } else { (dst, src) };
    RuleDetail {
        resource: nsg.to_string(),
        zone: zone.map(str::to_string),
        direction: if inbound { "inbound" } else { "outbound" }.into(),
        access: p["access"].as_str().unwrap_or("").to_lowercase(),
        protocol,
        ports,
        peers,
        local,
        priority: Some(priority(p)),
        name: Some(name.to_string()),
    }
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
    Create {
        nsg: String,
        zone: String,
    },
    Put {
        nsg: String,
        zone: Option<String>,
        rule: String,
        props: Value,
        new: bool,
    },
    Delete {
        nsg: String,
        zone: Option<String>,
        rule: String,
        props: Value,
    },
    /// An orphan, when nothing uses it.
    DeleteNsg {
        nsg: String,
        zone: Option<String>,
    },
    /// An orphan still in use: kept with its deny-all rules only.
    Keep {
        nsg: String,
        used_by: Vec<String>,
    },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Create { nsg, zone } => write!(f, "create nsg {nsg} (zone {zone})"),
            Change::Put { nsg, zone, rule, props, new } => {
                write!(f, "{} {}", if *new { "add" } else { "update" }, detail(nsg, zone.as_deref(), rule, props))
            }
            Change::Delete { nsg, zone, rule, props } => write!(f, "delete {}", detail(nsg, zone.as_deref(), rule, props)),
            Change::DeleteNsg { nsg, zone } => {
                write!(f, "delete nsg {nsg}")?;
                if let Some(z) = zone {
                    write!(f, " (zone {z} left the policy)")?;
                }
                Ok(())
            }
            Change::Keep { nsg, used_by } => {
                write!(f, "kept nsg {nsg}, reduced to deny-all: still used by {}; delete it once they are gone", used_by.join(", "))
            }
        }
    }
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

/// The changes of one managed NSG, in a safe order (see the module docs).
fn order(nsg: &str, zone: Option<&str>, live: &BTreeMap<String, Value>, want: &BTreeMap<String, Value>) -> Vec<Change> {
    let z = zone.map(str::to_string);
    let put = |name: &String, props: &Value| Change::Put {
        nsg: nsg.into(),
        zone: z.clone(),
        rule: name.clone(),
        props: props.clone(),
        new: !live.contains_key(name),
    };
    let delete = |name: &String| Change::Delete { nsg: nsg.into(), zone: z.clone(), rule: name.clone(), props: live[name].clone() };
    let puts: Vec<&String> = want.keys().filter(|n| live.get(*n).is_none_or(|p| comparable(p) != comparable(&want[*n]))).collect();
    let stale: Vec<&String> = live.keys().filter(|n| !want.contains_key(*n)).collect();
    let holder: BTreeMap<(String, u32), &String> = live.iter().map(|(n, p)| ((direction(p).to_string(), priority(p)), n)).collect();
    // Stale rules that must go first: holders of a priority a put needs, and
    // as many as the rule limit needs.
    let mut early: BTreeSet<&String> = BTreeSet::new();
    for n in &puts {
        let p = &want[*n];
        if let Some(h) = holder.get(&(direction(p).to_string(), priority(p))) {
            if *h != *n && !want.contains_key(*h) {
                early.insert(h);
            }
        }
    }
    let adds = puts.iter().filter(|n| !live.contains_key(**n)).count();
    let over = (live.len() + adds).saturating_sub(MAX_RULES);
    let mut by_allow_first: Vec<&String> = stale.clone();
    by_allow_first.sort_by_key(|n| is_deny(&live[*n]));
    for n in by_allow_first.iter().filter(|n| !early.contains(*n)).take(over.saturating_sub(early.len())).copied().collect::<Vec<_>>() {
        early.insert(n);
    }
    // Deleting a deny can only open what stale allows still allow: they go first.
    if early.iter().any(|n| is_deny(&live[*n])) {
        early.extend(stale.iter().filter(|n| !is_deny(&live[**n])));
    }
    let mut out: Vec<Change> = by_allow_first.iter().filter(|n| early.contains(*n)).map(|n| delete(n)).collect();
    // Puts: a rule moving onto a priority that another moving rule still
    // holds goes after it; a cycle (two rules swapping) is broken by moving
    // one to a free priority first.
    let mut pending: Vec<&String> = puts.clone();
    let mut held: BTreeMap<(String, u32), String> =
        live.iter().filter(|(n, _)| !early.contains(n)).map(|(n, p)| ((direction(p).to_string(), priority(p)), n.clone())).collect();
    while !pending.is_empty() {
        let ready = pending.iter().position(|n| {
            let p = &want[*n];
            held.get(&(direction(p).to_string(), priority(p))).is_none_or(|h| h == *n)
        });
        let i = match ready {
            Some(i) => i,
            None => {
                // Every pending put waits for another (a cycle of kept rules
                // swapping priorities; stale holders were deleted above):
                // move the first one's holder aside, to a priority nobody
                // uses. Among segc's allow rules order does not matter.
                let p = &want[pending[0]];
                let key = (direction(p).to_string(), priority(p));
                let h = held[&key].clone();
                if !want.contains_key(&h) {
                    // Never move a stale rule: that would change what it shadows.
                    out.push(delete(&h));
                    held.remove(&key);
                    continue;
                }
                let used: BTreeSet<u32> = held
                    .keys()
                    .filter(|(d, _)| *d == key.0)
                    .map(|(_, q)| *q)
                    .chain(want.values().filter(|w| direction(w) == key.0).map(priority))
                    .collect();
                let free = (FIRST_PRIORITY..DENY_PRIORITY).find(|q| !used.contains(q)).unwrap_or(DENY_PRIORITY - 1);
                let mut aside = live.get(&h).cloned().unwrap_or_else(|| want[&h].clone());
                aside["priority"] = Value::from(free);
                held.remove(&key);
                held.insert((key.0.clone(), free), h.clone());
                out.push(Change::Put { nsg: nsg.into(), zone: z.clone(), rule: h, props: aside, new: false });
                continue;
            }
        };
        let n = pending.remove(i);
        held.retain(|_, h| h != n);
        held.insert((direction(&want[n]).to_string(), priority(&want[n])), n.clone());
        out.push(put(n, &want[n]));
    }
    out.extend(by_allow_first.iter().filter(|n| !early.contains(*n)).map(|n| delete(n)));
    out
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
            let deny_all: BTreeMap<String, Value> = ["Inbound", "Outbound"]
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

    /// Applies the plan in its order: NSGs created first, then each NSG's
    /// rule changes, orphans last.
    pub async fn apply(&self, nsgs: &[Nsg], policy: &str, progress: &dyn Fn(&str)) -> Result<Vec<String>, (Vec<String>, anyhow::Error)> {
        let changes = self.plan(nsgs, Some(policy)).await.map_err(|e| (Vec::new(), e))?;
        let mut done = Vec::new();
        let creates = changes.iter().filter(|c| matches!(c, Change::Create { .. }));
        for c in creates.chain(changes.iter().filter(|c| !matches!(c, Change::Create { .. }))) {
            if let Err(e) = self.execute(c, policy).await {
                return Err((done, e.context(c.to_string())));
            }
            progress(&c.to_string());
            done.push(c.to_string());
        }
        Ok(done)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(priority: u32, access: &str, port: &str) -> Value {
        json!({"priority": priority, "direction": "Inbound", "access": access, "protocol": "Tcp", "sourcePortRange": "*",
               "destinationPortRange": port, "sourceAddressPrefix": "10.0.0.0/8", "destinationAddressPrefix": "*"})
    }

    fn names(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Put { rule, props, .. } => format!("put {rule}@{}", props["priority"]),
                Change::Delete { rule, .. } => format!("delete {rule}"),
                other => other.to_string(),
            })
            .collect()
    }

    #[test]
    fn a_stale_rule_on_a_needed_priority_goes_first_and_allows_before_denies() {
        let live = BTreeMap::from([
            ("rogue".to_string(), rule(300, "Allow", "22")),
            ("block".to_string(), rule(310, "Deny", "23")),
            ("other".to_string(), rule(320, "Allow", "24")),
            ("keep".to_string(), rule(400, "Allow", "443")),
        ]);
        let want = BTreeMap::from([("keep".to_string(), rule(400, "Allow", "443")), ("new".to_string(), rule(310, "Allow", "8443"))]);
        // `new` needs 310, held by the stale deny `block`: every stale allow
        // goes first, then `block`, then the put.
        assert_eq!(names(&order("n", None, &live, &want)), ["delete other", "delete rogue", "delete block", "put new@310"]);
        // Nothing in the way: put first, then stale allows, then stale denies.
        let want = BTreeMap::from([("keep".to_string(), rule(400, "Allow", "443")), ("new".to_string(), rule(500, "Allow", "8443"))]);
        assert_eq!(names(&order("n", None, &live, &want)), ["put new@500", "delete other", "delete rogue", "delete block"]);
    }

    #[test]
    fn moving_rules_wait_for_each_other_and_a_swap_is_broken() {
        let live = BTreeMap::from([("a".to_string(), rule(300, "Allow", "1")), ("b".to_string(), rule(301, "Allow", "2"))]);
        // b moves to 302, then a onto 301.
        let want = BTreeMap::from([("a".to_string(), rule(301, "Allow", "1")), ("b".to_string(), rule(302, "Allow", "2"))]);
        assert_eq!(names(&order("n", None, &live, &want)), ["put b@302", "put a@301"]);
        // a and b swap: one moves aside first.
        let want = BTreeMap::from([("a".to_string(), rule(301, "Allow", "1")), ("b".to_string(), rule(300, "Allow", "2"))]);
        let got = names(&order("n", None, &live, &want));
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], "put b@100", "{got:?}");
        assert_eq!(&got[1..], ["put a@301", "put b@300"], "{got:?}");
    }
}
