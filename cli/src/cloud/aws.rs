//! `segc deploy|drift --target aws`: security groups through the AWS SDK, with
//! the standard credential chain and `AWS_ENDPOINT_URL`. Groups are created
//! (tagged `segc:managed-by=segc`) when missing; new rules are authorised
//! before old ones are revoked, so allowed traffic is never cut; the default
//! allow-all egress of a new group is revoked like any rule the policy does not
//! have; groups not tagged as managed are never touched.

use std::collections::{BTreeMap, BTreeSet};

use crate::journal::{Finding, FindingKind};
use anyhow::{bail, Context, Result};
use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, Ipv6Range, ResourceType, Tag, TagSpecification, UserIdGroupPair};
use aws_sdk_ec2::Client;
use segc_compiler::lower::aws::{Output, SgPeer};

pub const MANAGED_KEY: &str = "segc:managed-by";

/// One rule, as EC2 sees it once flattened: (protocol, from, to, peer).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Atom {
    pub protocol: String,
    pub from: i32,
    pub to: i32,
    /// `sg-...` or a CIDR.
    pub peer: String,
}

impl std::fmt::Display for Atom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.protocol == "-1" {
            write!(f, "all traffic with {}", self.peer)
        } else {
            write!(f, "{} {}-{} with {}", self.protocol, self.from, self.to, self.peer)
        }
    }
}

fn protocol_name(p: &str) -> String {
    match p {
        "6" => "tcp",
        "17" => "udp",
        "1" => "icmp",
        "58" => "icmpv6",
        other => other,
    }
    .to_string()
}

/// Rules with the description EC2 stores for them (a revocation must name the
/// rule as stored; some EC2 implementations compare the description too).
fn flatten(perms: &[IpPermission]) -> BTreeMap<Atom, String> {
    let mut out = BTreeMap::new();
    for p in perms {
        let protocol = protocol_name(p.ip_protocol().unwrap_or("-1"));
        let (from, to) = if protocol == "-1" { (-1, -1) } else { (p.from_port().unwrap_or(-1), p.to_port().unwrap_or(-1)) };
        let mut push = |peer: String, description: Option<&str>| {
            out.insert(Atom { protocol: protocol.clone(), from, to, peer }, description.unwrap_or_default().to_string());
        };
        for r in p.ip_ranges() {
            push(r.cidr_ip().unwrap_or_default().to_string(), r.description());
        }
        for r in p.ipv6_ranges() {
            push(r.cidr_ipv6().unwrap_or_default().to_string(), r.description());
        }
        for g in p.user_id_group_pairs() {
            push(g.group_id().unwrap_or_default().to_string(), g.description());
        }
    }
    out
}

fn permission(a: &Atom, description: &str) -> IpPermission {
    let mut b = IpPermission::builder().ip_protocol(&a.protocol);
    if a.protocol != "-1" {
        b = b.from_port(a.from).to_port(a.to);
    }
    let d = (!description.is_empty()).then(|| description.to_string());
    b = if a.peer.starts_with("sg-") {
        b.user_id_group_pairs(UserIdGroupPair::builder().group_id(&a.peer).set_description(d).build())
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
    ingress: BTreeMap<Atom, String>,
    egress: BTreeMap<Atom, String>,
}

async fn live(client: &Client, vpc: &str) -> Result<BTreeMap<String, Live>> {
    let resp = client
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .send()
        .await
        .context("DescribeSecurityGroups")?;
    let mut m = BTreeMap::new();
    for g in resp.security_groups() {
        let managed = g.tags().iter().any(|t| t.key() == Some(MANAGED_KEY) && t.value() == Some("segc"));
        m.insert(
            g.group_name().unwrap_or_default().to_string(),
            Live {
                id: g.group_id().unwrap_or_default().to_string(),
                managed,
                ingress: flatten(g.ip_permissions()),
                egress: flatten(g.ip_permissions_egress()),
            },
        );
    }
    Ok(m)
}

/// One direction of a group's rules: rule -> its description (zones and flow).
type Rules = BTreeMap<Atom, String>;

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
                            r.description.clone(),
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
    Create { group: String, zone: String },
    Authorize { group: String, egress: bool, rule: Atom, description: String },
    Revoke { group: String, egress: bool, rule: Atom, description: String },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dir = |e: &bool| if *e { "egress" } else { "ingress" };
        match self {
            Change::Create { group, zone } => write!(f, "create group {group} (zone {zone})"),
            Change::Authorize { group, egress, rule, description } => {
                write!(f, "authorize {} on {group}: {rule} ({description})", dir(egress))
            }
            Change::Revoke { group, egress, rule, .. } => write!(f, "revoke {} on {group}: {rule}", dir(egress)),
        }
    }
}

pub async fn client() -> Client {
    let retry = aws_config::retry::RetryConfig::standard().with_max_attempts(8);
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest()).retry_config(retry).load().await;
    Client::new(&conf)
}

/// The change set, and the groups segc would have to create first.
pub async fn plan(client: &Client, vpc: &str, out: &Output) -> Result<Vec<Change>> {
    let live = live(client, vpc).await?;
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
    for g in &out.security_groups {
        if !live.contains_key(&g.name) {
            changes.push(Change::Create { group: g.name.clone(), zone: g.zone.clone() });
        }
    }
    for g in &out.security_groups {
        let (ing, egr) = &want[&g.name];
        let (live_in, live_out) = live.get(&g.name).map_or((BTreeMap::new(), BTreeMap::new()), |l| (l.ingress.clone(), l.egress.clone()));
        // A new group starts with allow-all egress, which the policy revokes.
        let live_out = if live.contains_key(&g.name) {
            live_out
        } else {
            BTreeMap::from([(Atom { protocol: "-1".into(), from: -1, to: -1, peer: "0.0.0.0/0".into() }, String::new())])
        };
        for (egress, want, have) in [(false, ing, &live_in), (true, egr, &live_out)] {
            for (rule, description) in want {
                if !have.contains_key(rule) {
                    changes.push(Change::Authorize { group: g.name.clone(), egress, rule: rule.clone(), description: description.clone() });
                }
            }
            for (rule, description) in have {
                if !want.contains_key(rule) {
                    changes.push(Change::Revoke { group: g.name.clone(), egress, rule: rule.clone(), description: description.clone() });
                }
            }
        }
    }
    Ok(changes)
}

/// Applies the plan: groups first, then every authorisation, then every
/// revocation. Returns the changes applied; on error, what was applied before it.
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
                .tags(Tag::builder().key("segc:policy").value(policy).build())
                .tags(Tag::builder().key("segc:zone").value(zone).build())
                .build();
            let r = client
                .create_security_group()
                .group_name(group)
                .description(format!("segc zone {zone}"))
                .vpc_id(vpc)
                .tag_specifications(tags)
                .send()
                .await
                .with_context(|| format!("CreateSecurityGroup {group}"))
                .map_err(|e| fail(&done, e))?;
            ids.insert(group.clone(), r.group_id().unwrap_or_default().to_string());
            progress(&c.to_string());
            done.push(c.to_string());
        }
    }
    // Peers named by group are known now: plan again with real ids.
    let changes = plan(client, vpc, out).await.map_err(|e| fail(&done, e))?;
    let authorize = changes.iter().filter(|c| matches!(c, Change::Authorize { .. }));
    let revoke = changes.iter().filter(|c| matches!(c, Change::Revoke { .. }));
    for c in authorize.chain(revoke) {
        change_rule(client, &ids, c).await.with_context(|| c.to_string()).map_err(|e| fail(&done, e))?;
        progress(&c.to_string());
        done.push(c.to_string());
    }
    Ok(done)
}

/// Authorises or revokes one rule on its group (`ids`: group name -> id); a
/// Create is not a rule change (groups are made before any rule) and does nothing.
async fn change_rule(client: &Client, ids: &BTreeMap<String, String>, c: &Change) -> Result<()> {
    let (authorize, group, egress, rule, description) = match c {
        Change::Authorize { group, egress, rule, description } => (true, group, *egress, rule, description),
        Change::Revoke { group, egress, rule, description } => (false, group, *egress, rule, description),
        Change::Create { .. } => return Ok(()),
    };
    let id = ids.get(group).cloned().unwrap_or_default();
    let perm = permission(rule, description);
    match (authorize, egress) {
        (true, true) => sdk(client.authorize_security_group_egress().group_id(&id).ip_permissions(perm).send().await),
        (true, false) => sdk(client.authorize_security_group_ingress().group_id(&id).ip_permissions(perm).send().await),
        (false, true) => sdk(client.revoke_security_group_egress().group_id(&id).ip_permissions(perm).send().await),
        (false, false) => sdk(client.revoke_security_group_ingress().group_id(&id).ip_permissions(perm).send().await),
    }
}

/// Differences between live and compiled, per group and rule.
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
        for (dir, want, have) in [("ingress", ing, &l.ingress), ("egress", egr, &l.egress)] {
            for (rule, description) in want {
                if !have.contains_key(rule) {
                    diffs
                        .push(Finding::new(FindingKind::Missing, format!("{dir} on {} (zone {}): {rule} ({description})", g.name, g.zone)));
                }
            }
            for rule in have.keys() {
                if !want.contains_key(rule) {
                    diffs.push(Finding::new(
                        FindingKind::Extra,
                        format!("{dir} on {} (zone {}; no flow: not in the policy): {rule}", g.name, g.zone),
                    ));
                }
            }
        }
    }
    let names: BTreeSet<&str> = out.security_groups.iter().map(|g| g.name.as_str()).collect();
    for (n, l) in &live {
        if l.managed && !names.contains(n.as_str()) {
            diffs.push(Finding::new(FindingKind::Extra, format!("group {n} is managed by segc but not in the policy")));
        }
    }
    Ok(diffs)
}
