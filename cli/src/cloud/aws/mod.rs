//! `segc deploy|drift --target aws`: security groups through the AWS SDK, with
//! the standard credential chain and `AWS_ENDPOINT_URL`.
//!
//! What segc manages: groups tagged `segc:managed-by=segc`; those of this
//! policy (`segc:policy`) whose zone has left it are orphans, emptied and
//! deleted. Every rule of a managed group is read, whatever its shape (CIDRs,
//! prefix lists, references to groups of any VPC or account, any protocol),
//! and one the policy does not have is drift and is revoked.
//!
//! Order (DECISIONS 48): groups are created first; then, per group and
//! direction, new rules are authorised before old ones are revoked, so
//! allowed traffic is never cut, unless old and new together would pass the
//! quota: then old-only rules are revoked just as far as needed to make room
//! (removal only narrows). At no moment is a group more open than the union
//! of the old and the new policy, and an apply never stops at a quota the new
//! policy alone fits in.

mod rules;

use std::collections::{BTreeMap, BTreeSet};

use crate::journal::{Finding, FindingKind};
use anyhow::{bail, Context, Result};
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use aws_sdk_ec2::Client;
use segc_compiler::lower::aws::{Output, SgPeer};

use rules::{detail, flatten, order, permission, Rules};
pub use rules::{Atom, Change, Stored};

pub const MANAGED_KEY: &str = "segc:managed-by";
pub const POLICY_KEY: &str = "segc:policy";
pub const ZONE_KEY: &str = "segc:zone";

/// An SDK call's outcome, its error with the whole chain (service code and
/// message included) in one line.
fn sdk<T, E: std::error::Error + Send + Sync + 'static>(r: Result<T, E>) -> Result<()> {
    r.map(|_| ()).map_err(|e| anyhow::anyhow!("{}", aws_sdk_ec2::error::DisplayErrorContext(e)))
}

/// A group as it is live in the VPC.
struct Live {
    id: String,
    managed: bool,
    policy: Option<String>,
    zone: Option<String>,
    ingress: Rules,
    egress: Rules,
}

async fn live(client: &Client, vpc: &str) -> Result<BTreeMap<String, Live>> {
    let mut m = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let resp = client
            .describe_security_groups()
            .filters(Filter::builder().name("vpc-id").values(vpc).build())
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("DescribeSecurityGroups: {}", aws_sdk_ec2::error::DisplayErrorContext(e)))?;
        for g in resp.security_groups() {
            let tag = |k: &str| g.tags().iter().find(|t| t.key() == Some(k)).and_then(|t| t.value()).map(str::to_string);
            m.insert(
                g.group_name().unwrap_or_default().to_string(),
                Live {
                    id: g.group_id().unwrap_or_default().to_string(),
                    managed: tag(MANAGED_KEY).as_deref() == Some("segc"),
                    policy: tag(POLICY_KEY),
                    zone: tag(ZONE_KEY),
                    ingress: flatten(g.ip_permissions()),
                    egress: flatten(g.ip_permissions_egress()),
                },
            );
        }
        token = resp.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(m);
        }
    }
}

/// The desired (ingress, egress) rules of each group, with group peers
/// resolved to ids (a group that does not exist yet is named `sg-pending:NAME`).
fn desired(out: &Output, ids: &BTreeMap<String, String>) -> BTreeMap<String, (Rules, Rules)> {
    let peer = |p: &SgPeer| match p {
        SgPeer::Group(n) => ids.get(n).cloned().unwrap_or_else(|| format!("sg-pending:{n}")),
        SgPeer::Cidr(c) => c.clone(),
    };
    out.security_groups
        .iter()
        .map(|g| {
            let conv = |rules: &[segc_compiler::lower::aws::SgRule]| {
                rules
                    .iter()
                    .map(|r| {
                        (
                            Atom { protocol: r.protocol.clone(), from: r.from_port, to: r.to_port, peer: peer(&r.peer) },
                            Stored { description: r.description.clone(), ..Stored::default() },
                        )
                    })
                    .collect::<Rules>()
            };
            (g.name.clone(), (conv(&g.ingress), conv(&g.egress)))
        })
        .collect()
}

pub async fn client() -> Client {
    let retry = aws_config::retry::RetryConfig::standard().with_max_attempts(8);
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest()).retry_config(retry).load().await;
    Client::new(&conf)
}

/// The change set: groups to create, rule changes in a safe order, orphans
/// emptied and deleted.
pub async fn plan(client: &Client, vpc: &str, out: &Output) -> Result<Vec<Change>> {
    let live = live(client, vpc).await?;
    plan_from(&live, vpc, out)
}

fn policy_name(out: &Output) -> &str {
    out.policy.as_deref().unwrap_or("policy")
}

/// Managed groups of this policy whose zone has left it.
fn orphans<'a>(live: &'a BTreeMap<String, Live>, out: &Output) -> Vec<(&'a String, &'a Live)> {
    let names: BTreeSet<&str> = out.security_groups.iter().map(|g| g.name.as_str()).collect();
    live.iter()
        .filter(|(n, l)| l.managed && l.policy.as_deref().is_none_or(|p| p == policy_name(out)) && !names.contains(n.as_str()))
        .collect()
}

fn plan_from(live: &BTreeMap<String, Live>, vpc: &str, out: &Output) -> Result<Vec<Change>> {
    for g in &out.security_groups {
        if let Some(l) = live.get(&g.name) {
            if !l.managed {
                bail!(
                    "security group `{}` exists in {vpc} and is not managed by segc (no `{MANAGED_KEY}` tag): refusing to touch it",
                    g.name
                );
            }
        }
    }
    let ids: BTreeMap<String, String> = live.iter().map(|(n, l)| (n.clone(), l.id.clone())).collect();
    let want = desired(out, &ids);
    let mut changes = Vec::new();
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for g in &out.security_groups {
        let (ing, egr) = &want[&g.name];
        let (have_in, have_out) = match live.get(&g.name) {
            Some(l) => (l.ingress.clone(), l.egress.clone()),
            None => {
                changes.push(Change::Create { group: g.name.clone(), zone: g.zone.clone() });
                // A new group starts with allow-all egress, which the policy revokes.
                let all = Atom { protocol: "-1".into(), from: -1, to: -1, peer: "0.0.0.0/0".into() };
                (Rules::new(), Rules::from([(all, Stored::default())]))
            }
        };
        for (egress, want, have) in [(false, ing, &have_in), (true, egr, &have_out)] {
            let (b, a) = order(&g.name, Some(&g.zone), egress, want, have);
            before.extend(b);
            after.extend(a);
        }
    }
    let mut deletes = Vec::new();
    for (name, l) in orphans(live, out) {
        for (egress, rules) in [(false, &l.ingress), (true, &l.egress)] {
            for (a, s) in rules {
                after.push(Change::Revoke { group: name.clone(), zone: l.zone.clone(), egress, rule: a.clone(), stored: s.clone() });
            }
        }
        deletes.push(Change::Delete { group: name.clone(), zone: l.zone.clone() });
    }
    changes.extend(before);
    changes.extend(after);
    changes.extend(deletes);
    Ok(changes)
}

/// Applies the plan: groups first, then the rule changes in the planned
/// order, then orphans deleted. Returns the changes applied; on error, what
/// was applied before it. An orphan still in use is kept, empty, and
/// reported with what uses it.
pub async fn apply(
    client: &Client,
    vpc: &str,
    out: &Output,
    policy: &str,
    hooks: &super::Hooks<'_>,
) -> Result<Vec<String>, (Vec<String>, anyhow::Error)> {
    let mut done: Vec<String> = Vec::new();
    let changes = plan(client, vpc, out).await.map_err(|e| (Vec::new(), e))?;
    let fail = |done: &Vec<String>, e: anyhow::Error| (done.clone(), e);
    let mut ids: BTreeMap<String, String> =
        live(client, vpc).await.map_err(|e| fail(&done, e))?.into_iter().map(|(n, l)| (n, l.id)).collect();
    for c in &changes {
        if let Change::Create { group, zone } = c {
            hooks.check().map_err(|e| fail(&done, e))?;
            let tags = TagSpecification::builder()
                .resource_type(ResourceType::SecurityGroup)
                .tags(Tag::builder().key(MANAGED_KEY).value("segc").build())
                .tags(Tag::builder().key(POLICY_KEY).value(policy).build())
                .tags(Tag::builder().key(ZONE_KEY).value(zone).build())
                .build();
            let r = client
                .create_security_group()
                .group_name(group)
                .description(format!("segc zone {zone}"))
                .vpc_id(vpc)
                .tag_specifications(tags)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("CreateSecurityGroup {group}: {}", aws_sdk_ec2::error::DisplayErrorContext(e)))
                .map_err(|e| fail(&done, e))?;
            ids.insert(group.clone(), r.group_id().unwrap_or_default().to_string());
            (hooks.progress)(&c.to_string());
            done.push(c.to_string());
        }
    }
    // Peers named by group are known now: plan again with real ids.
    let changes = plan(client, vpc, out).await.map_err(|e| fail(&done, e))?;
    for c in changes.iter().filter(|c| !matches!(c, Change::Create { .. })) {
        hooks.check().map_err(|e| fail(&done, e))?;
        let line = match c {
            Change::Delete { group, .. } => delete_orphan(client, vpc, &ids, group).await.map(|kept| kept.unwrap_or_else(|| c.to_string())),
            _ => change_rule(client, &ids, c).await.map(|()| c.to_string()),
        };
        let line = line.with_context(|| c.to_string()).map_err(|e| fail(&done, e))?;
        (hooks.progress)(&line);
        done.push(line);
    }
    Ok(done)
}

/// Deletes an emptied orphan group; `Some(report)` when it is still in use
/// (network interfaces, or other groups' rules), which is not an error: it
/// stays, with no rules, so its members get no traffic.
async fn delete_orphan(client: &Client, vpc: &str, ids: &BTreeMap<String, String>, group: &str) -> Result<Option<String>> {
    let id = ids.get(group).cloned().unwrap_or_default();
    match client.delete_security_group().group_id(&id).send().await {
        Ok(_) => Ok(None),
        Err(e) if e.as_service_error().and_then(aws_sdk_ec2::error::ProvideErrorMetadata::code) == Some("DependencyViolation") => {
            let enis = client
                .describe_network_interfaces()
                .filters(Filter::builder().name("group-id").values(&id).build())
                .send()
                .await
                .map(|r| r.network_interfaces().iter().filter_map(|n| n.network_interface_id().map(str::to_string)).collect::<Vec<_>>())
                .unwrap_or_default();
            let referencing: Vec<String> = live(client, vpc)
                .await
                .map(|l| {
                    l.iter()
                        .filter(|(_, g)| g.ingress.keys().chain(g.egress.keys()).any(|a| a.peer == id))
                        .map(|(n, g)| format!("{n} ({})", g.id))
                        .collect()
                })
                .unwrap_or_default();
            let mut uses = Vec::new();
            if !enis.is_empty() {
                uses.push(format!("network interfaces {}", enis.join(", ")));
            }
            if !referencing.is_empty() {
                uses.push(format!("rules of groups {}", referencing.join(", ")));
            }
            if uses.is_empty() {
                uses.push(format!("{}", aws_sdk_ec2::error::DisplayErrorContext(e)));
            }
            Ok(Some(format!("kept group {group} ({id}), emptied: still used by {}; delete it once they are gone", uses.join("; "))))
        }
        Err(e) => Err(anyhow::anyhow!("{}", aws_sdk_ec2::error::DisplayErrorContext(e))),
    }
}

/// Authorises or revokes one rule on its group (`ids`: group name -> id).
async fn change_rule(client: &Client, ids: &BTreeMap<String, String>, c: &Change) -> Result<()> {
    let (authorize, group, egress, rule, stored) = match c {
        Change::Authorize { group, egress, rule, stored, .. } => (true, group, *egress, rule, stored),
        Change::Revoke { group, egress, rule, stored, .. } => (false, group, *egress, rule, stored),
        Change::Create { .. } | Change::Delete { .. } => return Ok(()),
    };
    let id = ids.get(group).cloned().unwrap_or_default();
    let perm = permission(rule, stored);
    match (authorize, egress) {
        (true, true) => sdk(client.authorize_security_group_egress().group_id(&id).ip_permissions(perm).send().await),
        (true, false) => sdk(client.authorize_security_group_ingress().group_id(&id).ip_permissions(perm).send().await),
        (false, true) => sdk(client.revoke_security_group_egress().group_id(&id).ip_permissions(perm).send().await),
        (false, false) => sdk(client.revoke_security_group_ingress().group_id(&id).ip_permissions(perm).send().await),
    }
}

/// Differences between live and compiled, per group and rule, each with what
/// it lets through; orphans by name, with each of their rules.
pub async fn drift(client: &Client, vpc: &str, out: &Output) -> Result<Vec<Finding>> {
    let live = live(client, vpc).await?;
    let ids: BTreeMap<String, String> = live.iter().map(|(n, l)| (n.clone(), l.id.clone())).collect();
    let want = desired(out, &ids);
    let mut diffs = Vec::new();
    for g in &out.security_groups {
        let Some(l) = live.get(&g.name) else {
            diffs.push(Finding::new(FindingKind::Missing, format!("group {} (zone {})", g.name, g.zone)));
            continue;
        };
        let (ing, egr) = &want[&g.name];
        for (egress, want, have) in [(false, ing, &l.ingress), (true, egr, &l.egress)] {
            for (rule, stored) in want {
                if !have.contains_key(rule) {
                    diffs.push(Finding::rule(
                        FindingKind::Missing,
                        detail(&g.name, Some(&g.zone), egress, rule, stored),
                        "in the policy, not live",
                    ));
                }
            }
            for (rule, stored) in have {
                if !want.contains_key(rule) {
                    diffs.push(Finding::rule(
                        FindingKind::Extra,
                        detail(&g.name, Some(&g.zone), egress, rule, stored),
                        "live, not in the policy",
                    ));
                }
            }
        }
    }
    for (name, l) in orphans(&live, out) {
        let zone = l.zone.clone().unwrap_or_else(|| "?".into());
        diffs.push(Finding::new(
            FindingKind::Orphan,
            format!(
                "group {name} ({}) is managed by segc for zone {zone}, which is no longer in the policy; apply empties and deletes it",
                l.id
            ),
        ));
        for (egress, rules) in [(false, &l.ingress), (true, &l.egress)] {
            for (rule, stored) in rules {
                diffs.push(Finding::rule(FindingKind::Extra, detail(name, l.zone.as_deref(), egress, rule, stored), "on an orphan group"));
            }
        }
    }
    Ok(diffs)
}
