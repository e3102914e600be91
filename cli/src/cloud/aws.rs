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

use std::collections::{BTreeMap, BTreeSet};

use crate::journal::{Finding, FindingKind, RuleDetail};
use anyhow::{bail, Context, Result};
use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, Ipv6Range, PrefixListId, ResourceType, Tag, TagSpecification, UserIdGroupPair};
use aws_sdk_ec2::Client;
use segc_compiler::lower::aws::{Output, SgPeer, RULES_PER_DIRECTION};

pub const MANAGED_KEY: &str = "segc:managed-by";
pub const POLICY_KEY: &str = "segc:policy";
pub const ZONE_KEY: &str = "segc:zone";

/// One rule as EC2 compares rules: protocol, ports, peer (`sg-…`, `pl-…` or a
/// CIDR). Two rules with the same atom are one rule to EC2.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Atom {
    pub protocol: String,
    pub from: i32,
    pub to: i32,
    pub peer: String,
}

impl Atom {
    fn families(&self) -> &'static [usize] {
        if self.peer.starts_with("sg-") || self.peer.starts_with("pl-") {
            &[0, 1]
        } else if self.peer.contains(':') {
            &[1]
        } else {
            &[0]
        }
    }

    fn ports(&self) -> String {
        match (self.protocol.as_str(), self.from, self.to) {
            ("-1", _, _) => "all".into(),
            ("icmp" | "icmpv6", -1, _) => "all".into(),
            ("icmp" | "icmpv6", t, -1) => format!("type {t}"),
            ("icmp" | "icmpv6", t, c) => format!("type {t} code {c}"),
            (_, -1, _) | (_, 0, 65535) => "all".into(),
            (_, a, b) if a == b => a.to_string(),
            (_, a, b) => format!("{a}-{b}"),
        }
    }

    fn overlaps(&self, other: &Atom) -> bool {
        self.protocol == "-1"
            || other.protocol == "-1"
            || (self.protocol == other.protocol && self.from <= other.to && other.from <= self.to)
    }
}

/// How EC2 stores a rule besides its atom: what a revocation must repeat.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    pub description: String,
    /// The account of a referenced group (another account's group).
    pub user_id: Option<String>,
    pub vpc_id: Option<String>,
}

type Rules = BTreeMap<Atom, Stored>;

fn protocol_name(p: &str) -> String {
    match p {
        "6" => "tcp",
        "17" => "udp",
        "1" => "icmp",
        "58" => "icmpv6",
        "all" => "-1",
        other => other,
    }
    .to_string()
}

/// Every rule of a direction, one per peer, whatever its shape.
fn flatten(perms: &[IpPermission]) -> Rules {
    let mut out = Rules::new();
    for p in perms {
        let protocol = protocol_name(p.ip_protocol().unwrap_or("-1"));
        let (from, to) = if protocol == "-1" { (-1, -1) } else { (p.from_port().unwrap_or(-1), p.to_port().unwrap_or(-1)) };
        let mut push = |peer: &str, stored: Stored| {
            out.insert(Atom { protocol: protocol.clone(), from, to, peer: peer.to_string() }, stored);
        };
        let plain = |d: Option<&str>| Stored { description: d.unwrap_or_default().to_string(), ..Stored::default() };
        for r in p.ip_ranges() {
            push(r.cidr_ip().unwrap_or_default(), plain(r.description()));
        }
        for r in p.ipv6_ranges() {
            push(r.cidr_ipv6().unwrap_or_default(), plain(r.description()));
        }
        for r in p.prefix_list_ids() {
            push(r.prefix_list_id().unwrap_or_default(), plain(r.description()));
        }
        for g in p.user_id_group_pairs() {
            let id = g.group_id().or(g.group_name()).unwrap_or_default();
            push(
                id,
                Stored {
                    description: g.description().unwrap_or_default().to_string(),
                    user_id: g.user_id().map(str::to_string),
                    vpc_id: g.vpc_id().map(str::to_string),
                },
            );
        }
    }
    out
}

fn permission(a: &Atom, s: &Stored) -> IpPermission {
    let mut b = IpPermission::builder().ip_protocol(&a.protocol);
    if a.protocol != "-1" {
        b = b.from_port(a.from).to_port(a.to);
    }
    let d = (!s.description.is_empty()).then(|| s.description.clone());
    b = if a.peer.starts_with("sg-") {
        b.user_id_group_pairs(
            UserIdGroupPair::builder()
                .group_id(&a.peer)
                .set_user_id(s.user_id.clone())
                .set_vpc_id(s.vpc_id.clone())
                .set_description(d)
                .build(),
        )
    } else if a.peer.starts_with("pl-") {
        b.prefix_list_ids(PrefixListId::builder().prefix_list_id(&a.peer).set_description(d).build())
    } else if a.peer.contains(':') {
        b.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(&a.peer).set_description(d).build())
    } else {
        b.ip_ranges(IpRange::builder().cidr_ip(&a.peer).set_description(d).build())
    };
    b.build()
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

/// An SDK call's outcome, its error with the whole chain (service code and
/// message included) in one line.
fn sdk<T, E: std::error::Error + Send + Sync + 'static>(r: Result<T, E>) -> Result<()> {
    r.map(|_| ()).map_err(|e| anyhow::anyhow!("{}", aws_sdk_ec2::error::DisplayErrorContext(e)))
}

/// One change of the plan.
#[derive(Clone, Debug)]
pub enum Change {
    Create {
        group: String,
        zone: String,
    },
    Authorize {
        group: String,
        zone: Option<String>,
        egress: bool,
        rule: Atom,
        stored: Stored,
    },
    Revoke {
        group: String,
        zone: Option<String>,
        egress: bool,
        rule: Atom,
        stored: Stored,
    },
    /// An orphan, once empty.
    Delete {
        group: String,
        zone: Option<String>,
    },
}

/// A rule as a reviewer reads it.
fn detail(group: &str, zone: Option<&str>, egress: bool, a: &Atom, s: &Stored) -> RuleDetail {
    let mut peer = a.peer.clone();
    if let Some(u) = &s.user_id {
        peer = format!("{peer} (account {u}{})", s.vpc_id.as_ref().map(|v| format!(", {v}")).unwrap_or_default());
    }
    RuleDetail {
        resource: group.to_string(),
        zone: zone.map(str::to_string),
        direction: if egress { "outbound" } else { "inbound" }.into(),
        access: "allow".into(),
        protocol: if a.protocol == "-1" { "all".into() } else { a.protocol.clone() },
        ports: a.ports(),
        peers: vec![peer],
        name: (!s.description.is_empty()).then(|| s.description.clone()),
        ..RuleDetail::default()
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Create { group, zone } => write!(f, "create group {group} (zone {zone})"),
            Change::Authorize { group, zone, egress, rule, stored } => {
                write!(f, "authorize {}", detail(group, zone.as_deref(), *egress, rule, stored))
            }
            Change::Revoke { group, zone, egress, rule, stored } => {
                write!(
                    f,
                    "revoke {}",
                    detail(group, zone.as_deref(), *egress, rule, &Stored { description: String::new(), ..stored.clone() })
                )
            }
            Change::Delete { group, zone } => {
                write!(f, "delete group {group}")?;
                if let Some(z) = zone {
                    write!(f, " (zone {z} left the policy)")?;
                }
                Ok(())
            }
        }
    }
}

pub async fn client() -> Client {
    let retry = aws_config::retry::RetryConfig::standard().with_max_attempts(8);
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest()).retry_config(retry).load().await;
    Client::new(&conf)
}

/// Rules per address family (IPv4, IPv6): a CIDR in its family, a group or
/// prefix-list reference in both, as EC2 counts them against the quota.
fn count<'a>(rules: impl Iterator<Item = &'a Atom>) -> [usize; 2] {
    let mut n = [0, 0];
    for a in rules {
        for &f in a.families() {
            n[f] += 1;
        }
    }
    n
}

/// The changes of one direction of one group: (before every revocation of
/// the plan, after). Authorise first when old and new fit the quota
/// together; otherwise revoke old-only rules just as far as the next
/// authorisation needs, those that overlap no new rule first.
fn order(group: &str, zone: Option<&str>, egress: bool, want: &Rules, have: &Rules) -> (Vec<Change>, Vec<Change>) {
    let adds: Vec<(&Atom, &Stored)> = want.iter().filter(|(a, _)| !have.contains_key(*a)).collect();
    let mut removes: Vec<(&Atom, &Stored)> = have.iter().filter(|(a, _)| !want.contains_key(*a)).collect();
    let authorize = |(a, s): (&Atom, &Stored)| Change::Authorize {
        group: group.into(),
        zone: zone.map(str::to_string),
        egress,
        rule: a.clone(),
        stored: s.clone(),
    };
    let revoke = |(a, s): (&Atom, &Stored)| Change::Revoke {
        group: group.into(),
        zone: zone.map(str::to_string),
        egress,
        rule: a.clone(),
        stored: s.clone(),
    };
    let mut live = count(have.keys());
    let added = count(adds.iter().map(|(a, _)| *a));
    if (0..2).all(|f| live[f] + added[f] <= RULES_PER_DIRECTION) {
        return (adds.into_iter().map(authorize).collect(), removes.into_iter().map(revoke).collect());
    }
    // Pure narrowing first: rules no new rule overlaps.
    removes.sort_by_key(|(a, _)| adds.iter().any(|(n, _)| n.overlaps(a)));
    let mut removes = removes.into_iter();
    let mut before = Vec::new();
    for add in adds {
        while add.0.families().iter().any(|&f| live[f] + 1 > RULES_PER_DIRECTION) {
            let Some(r) = removes.next() else { break };
            for &f in r.0.families() {
                live[f] -= 1;
            }
            before.push(revoke(r));
        }
        for &f in add.0.families() {
            live[f] += 1;
        }
        before.push(authorize(add));
    }
    (before, removes.map(revoke).collect())
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
    progress: &dyn Fn(&str),
) -> Result<Vec<String>, (Vec<String>, anyhow::Error)> {
    let mut done: Vec<String> = Vec::new();
    let changes = plan(client, vpc, out).await.map_err(|e| (Vec::new(), e))?;
    let fail = |done: &Vec<String>, e: anyhow::Error| (done.clone(), e);
    let mut ids: BTreeMap<String, String> =
        live(client, vpc).await.map_err(|e| fail(&done, e))?.into_iter().map(|(n, l)| (n, l.id)).collect();
    for c in &changes {
        if let Change::Create { group, zone } = c {
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
            progress(&c.to_string());
            done.push(c.to_string());
        }
    }
    // Peers named by group are known now: plan again with real ids.
    let changes = plan(client, vpc, out).await.map_err(|e| fail(&done, e))?;
    for c in changes.iter().filter(|c| !matches!(c, Change::Create { .. })) {
        let line = match c {
            Change::Delete { group, .. } => delete_orphan(client, vpc, &ids, group).await.map(|kept| kept.unwrap_or_else(|| c.to_string())),
            _ => change_rule(client, &ids, c).await.map(|()| c.to_string()),
        };
        let line = line.with_context(|| c.to_string()).map_err(|e| fail(&done, e))?;
        progress(&line);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn atom(port: i32, peer: &str) -> Atom {
        Atom { protocol: "tcp".into(), from: port, to: port, peer: peer.into() }
    }

    fn rules(ports: std::ops::Range<i32>, peer: &str) -> Rules {
        ports.map(|p| (atom(p, peer), Stored::default())).collect()
    }

    /// Replays a plan's rule changes on `have` and checks every state on the
    /// way: within old ∪ new, within the quota.
    fn replay(have: &Rules, want: &Rules, changes: &[Change]) -> Rules {
        let mut state = have.clone();
        for c in changes {
            match c {
                Change::Authorize { rule, stored, .. } => {
                    assert!(state.insert(rule.clone(), stored.clone()).is_none(), "duplicate {rule:?}")
                }
                Change::Revoke { rule, .. } => assert!(state.remove(rule).is_some(), "revoked twice {rule:?}"),
                _ => {}
            }
            assert!(state.keys().all(|a| have.contains_key(a) || want.contains_key(a)), "more open than old and new");
            let n = count(state.keys());
            assert!(n[0] <= RULES_PER_DIRECTION && n[1] <= RULES_PER_DIRECTION, "over the quota: {n:?}");
        }
        state
    }

    #[test]
    fn authorise_first_when_old_and_new_fit() {
        let (have, want) = (rules(1..11, "10.0.0.0/8"), rules(5..15, "10.0.0.0/8"));
        let (before, after) = order("g", None, false, &want, &have);
        assert!(before.iter().all(|c| matches!(c, Change::Authorize { .. })) && before.len() == 4);
        assert!(after.iter().all(|c| matches!(c, Change::Revoke { .. })) && after.len() == 4);
        let all: Vec<Change> = before.into_iter().chain(after).collect();
        assert_eq!(replay(&have, &want, &all), want);
    }

    #[test]
    fn two_fifty_rule_policies_on_one_group_never_wedge() {
        let (have, want) = (rules(1000..1050, "10.0.0.0/8"), rules(2000..2050, "10.0.0.0/8"));
        let (before, after) = order("g", None, false, &want, &have);
        let all: Vec<Change> = before.iter().cloned().chain(after).collect();
        assert_eq!(replay(&have, &want, &all), want);
        // Only as many revocations before authorisations as the quota needs:
        // ten new rules fit beside the fifty old ones; each of the other forty
        // waits for one old rule to go.
        assert!(before[..10].iter().all(|c| matches!(c, Change::Authorize { .. })));
        assert_eq!(before.iter().filter(|c| matches!(c, Change::Revoke { .. })).count(), 40);
    }

    #[test]
    fn group_references_count_in_both_families() {
        let mut have = rules(1..40, "::/0");
        have.extend(rules(1..20, "sg-1"));
        let want = rules(100..160, "sg-2");
        let (before, after) = order("g", None, true, &want, &have);
        let all: Vec<Change> = before.into_iter().chain(after).collect();
        assert_eq!(replay(&have, &want, &all), want);
    }
}
