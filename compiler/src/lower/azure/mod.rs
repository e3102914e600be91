//! Azure network security groups (`azure/nsg.json`, an ARM template). A zone
//! with `azure.nsg = "NAME"` is the NSG NAME on its members' NICs or subnet.
//! Inbound rules allow what the policy lets other zones send to it, outbound
//! rules what it may send; peers are addressed by prefix (an NSG cannot name
//! another NSG). Each direction ends with an explicit deny-all at 4096,
//! because every NSG carries default rules that allow all traffic inside the
//! virtual network. Priorities come from a hash of the rule's identity, so a
//! new flow does not renumber the others.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::{json, Value};

mod template;

pub use template::write;

use super::cloud::{self, Grant, Peer};
use crate::diag::{Code, Diagnostic};
use crate::ir::{Family, Model, Prefix, Proto, ZoneId};

pub const MAX_RULES: usize = 1000;
pub const FIRST_PRIORITY: u32 = 100;
pub const DENY_PRIORITY: u32 = 4096;
/// With blocked feeds, 100..199 hold the feed deny rules (ahead of every
/// allow) and the allows start here.
pub const FIRST_ALLOW_WITH_FEEDS: u32 = 200;
/// Address prefixes one rule may list (Azure's limit for a rule's source or
/// destination).
pub const PREFIXES_PER_RULE: usize = 4000;

/// A security rule's direction, as ARM spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// A security rule's access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    Allow,
    Deny,
}

/// The protocols an NSG rule can name (`*`: any).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Any,
}

impl Direction {
    pub const BOTH: [Direction; 2] = [Direction::Inbound, Direction::Outbound];

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "Inbound",
            Direction::Outbound => "Outbound",
        }
    }
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Allow => "Allow",
            Access::Deny => "Deny",
        }
    }
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "Tcp",
            Protocol::Udp => "Udp",
            Protocol::Icmp => "Icmp",
            Protocol::Any => "*",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub name: String,
    pub direction: Direction,
    pub priority: u32,
    pub access: Access,
    pub protocol: Protocol,
    /// Prefixes of the peer (the source inbound, the destination outbound); `*` for all.
    pub peer: Vec<String>,
    /// Port ranges such as `443` or `8000-8100`; `*` for all.
    pub ports: Vec<String>,
    pub description: String,
}

#[derive(Clone, Debug)]
pub struct Nsg {
    pub name: String,
    pub zone: String,
    pub rules: Vec<Rule>,
}

fn rules_for(model: &Model, plan: &cloud::Plan, g: &Grant, zone: ZoneId, inbound: bool, diags: &mut Vec<Diagnostic>) -> Vec<Rule> {
    let (from, to) = if inbound { (g.other, zone) } else { (zone, g.other) };
    let prefixes: &[Prefix] = match &g.peer {
        Peer::Bound(z) => plan.prefixes.get(z).map_or(&[], Vec::as_slice),
        Peer::Prefixes(ps) => ps,
    };
    let set = g.set;
    let mut protos: Vec<(Protocol, Vec<String>)> = Vec::new();
    if set.is_any() {
        protos.push((Protocol::Any, vec!["*".into()]));
    } else {
        if set.other {
            diags.push(cloud::inexpressible(model, "Azure NSGs", from, to, "other IP protocols are allowed, but not all protocols"));
            return vec![];
        }
        let ports = |r: &crate::ir::RangeSet| -> Vec<String> {
            if r.ranges() == [(0, u16::MAX)] {
                return vec!["*".into()];
            }
            r.ranges().iter().map(|&(lo, hi)| crate::ir::service::range_text(lo, hi)).collect()
        };
        if !set.tcp.is_empty() {
            protos.push((Protocol::Tcp, ports(&set.tcp)));
        }
        if !set.udp.is_empty() {
            protos.push((Protocol::Udp, ports(&set.udp)));
        }
        if !set.icmp.is_empty() {
            if set.icmp.ranges() != [(0, 255)] {
                diags.push(cloud::inexpressible(model, "Azure NSGs", from, to, "NSG rules cannot select ICMP types"));
                return vec![];
            }
            protos.push((Protocol::Icmp, vec!["*".into()]));
        }
    }
    let (from_name, to_name) = (&model.zone(from).name, &model.zone(to).name);
    let description = cloud::pair_description(from_name, to_name, set);
    let dir = if inbound { "in" } else { "out" };
    let mut out = Vec::new();
    for fam in [Family::V4, Family::V6] {
        let peer: Vec<String> = prefixes.iter().filter(|p| p.family == fam).map(Prefix::to_string).collect();
        if peer.is_empty() {
            continue;
        }
        let fam_s = if fam == Family::V4 { "v4" } else { "v6" };
        for (protocol, ports) in &protos {
            let proto_s = match protocol {
                Protocol::Tcp => "tcp",
                Protocol::Udp => "udp",
                Protocol::Icmp => "icmp",
                Protocol::Any => "any",
            };
            out.push(Rule {
                name: ["segc-", dir, "-", from_name, "-", to_name, "-", proto_s, "-", fam_s].concat(),
                direction: if inbound { Direction::Inbound } else { Direction::Outbound },
                priority: 0,
                access: Access::Allow,
                protocol: *protocol,
                peer: peer.clone(),
                ports: ports.clone(),
                description: description.clone(),
            });
        }
    }
    out
}

/// Stable priorities: each rule's name hashes to a slot in 100..4096; taken
/// slots move to the next free one, in name order, per direction.
fn assign_priorities(rules: &mut [Rule], first: u32) {
    rules.sort_by(|a, b| (a.direction, &a.name).cmp(&(b.direction, &b.name)));
    let span = DENY_PRIORITY - first;
    let mut taken: BTreeSet<(Direction, u32)> = BTreeSet::new();
    for r in rules.iter_mut() {
        let h = crate::sha256::digest(r.name.as_bytes());
        let mut slot = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) % span;
        while taken.contains(&(r.direction, slot)) {
            slot = (slot + 1) % span;
        }
        taken.insert((r.direction, slot));
        r.priority = first + slot;
    }
}

/// The deny-all rule of one direction (`Inbound`, `Outbound`), at 4096: below
/// every segc rule, above the NSG's own default allow rules.
pub fn deny_all(direction: Direction) -> Rule {
    Rule {
        name: format!("segc-deny-all-{}", direction.as_str().to_lowercase()),
        direction,
        priority: DENY_PRIORITY,
        access: Access::Deny,
        protocol: Protocol::Any,
        peer: vec!["*".into()],
        ports: vec!["*".into()],
        description: "default deny, above the NSG's own allow rules".into(),
    }
}

/// The feed deny rules of every NSG, both directions: the blocked addresses
/// as peers, at 100.. so they come before every allow. Empty without feeds.
fn feed_rules(model: &Model, blocked: &[Prefix]) -> Vec<Rule> {
    let names = super::feeds::blocked_names(model).join(", ");
    let mut out = Vec::new();
    for direction in Direction::BOTH {
        let mut priority = FIRST_PRIORITY;
        for fam in [Family::V4, Family::V6] {
            let list: Vec<String> = blocked.iter().filter(|p| p.family == fam).map(Prefix::to_string).collect();
            let parts = list.len().div_ceil(PREFIXES_PER_RULE);
            for (i, chunk) in list.chunks(PREFIXES_PER_RULE).enumerate() {
                let fam_s = if fam == Family::V4 { "v4" } else { "v6" };
                let dir = if direction == Direction::Inbound { "in" } else { "out" };
                out.push(Rule {
                    name: format!("segc-feed-{dir}-{fam_s}-{i}"),
                    direction,
                    priority,
                    access: Access::Deny,
                    protocol: Protocol::Any,
                    peer: chunk.to_vec(),
                    ports: vec!["*".into()],
                    description: format!("blocked feeds {names} (part {} of {parts})", i + 1).chars().take(140).collect(),
                });
                priority += 1;
            }
        }
    }
    out
}

/// T001 when the feed rules do not fit below the allows, T002 for a bound
/// zone that a feed cuts itself (an NSG's rules name peers, not members).
fn check_feeds(model: &Model, plan: &cloud::Plan, blocked: &super::feeds::Blocked, feed: &[Rule], diags: &mut Vec<Diagnostic>) {
    let per_direction = feed.iter().filter(|r| r.direction == Direction::Inbound).count();
    let room = (FIRST_ALLOW_WITH_FEEDS - FIRST_PRIORITY) as usize;
    let span = model.feeds.iter().find(|f| f.blocked).and_then(|f| f.block_span).unwrap_or(model.zones[0].span);
    if per_direction > room {
        diags.push(
            Diagnostic::new(
                Code::T001,
                span,
                format!(
                    "the blocked feeds need {per_direction} deny rules per direction in every NSG ({PREFIXES_PER_RULE} prefixes each); Azure NSGs get {room}: {} too many",
                    per_direction - room
                ),
            )
            .with_help("block fewer or smaller feeds on Azure, or enforce them on the hosts (bpf, nft)"),
        );
    }
    for b in &plan.bound {
        if blocked.cuts(b.zone) {
            diags.push(super::feeds::self_cut(model, "Azure NSGs", b.zone));
        }
    }
}

pub fn lower(model: &Model) -> Result<Vec<Nsg>, Vec<Diagnostic>> {
    let plan = cloud::plan(model, "azure.nsg", "Azure")?;
    let mut diags = Vec::new();
    let ev = crate::ir::eval::Evaluator::new(model);
    let blocked = super::feeds::Blocked::of(&ev);
    let feed = feed_rules(model, &blocked.prefixes());
    if !feed.is_empty() {
        check_feeds(model, &plan, &blocked, &feed, &mut diags);
    }
    let first_allow = if feed.is_empty() { FIRST_PRIORITY } else { FIRST_ALLOW_WITH_FEEDS };
    let mut nsgs = Vec::with_capacity(plan.bound.len());
    for b in &plan.bound {
        // Mostly one rule a grant and family; room never written costs nothing.
        let mut rules = Vec::with_capacity(2 * (b.ingress.len() + b.egress.len()) + 2 + feed.len());
        for g in &b.ingress {
            rules.extend(rules_for(model, &plan, g, b.zone, true, &mut diags));
        }
        for g in &b.egress {
            rules.extend(rules_for(model, &plan, g, b.zone, false, &mut diags));
        }
        let total = rules.len() + 2 + feed.len();
        if total > MAX_RULES {
            diags.push(
                Diagnostic::new(
                    Code::T001,
                    model.zone(b.zone).span,
                    format!("NSG `{}` needs {total} rules; Azure allows {MAX_RULES}: {} too many", b.binding, total - MAX_RULES),
                )
                .with_help("merge port ranges, or split the zone"),
            );
            continue;
        }
        assign_priorities(&mut rules, first_allow);
        rules.extend(feed.iter().cloned());
        for dir in Direction::BOTH {
            rules.push(deny_all(dir));
        }
        rules.sort_by_key(|r| (r.direction, r.priority));
        nsgs.push(Nsg { name: b.binding.clone(), zone: model.zone(b.zone).name.clone(), rules });
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    nsgs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(nsgs)
}

fn prefixes_field(list: &[String]) -> (&'static str, Value) {
    if list.len() == 1 {
        ("", json!(list[0]))
    } else {
        ("es", json!(list))
    }
}

/// A rule's ARM `properties`, as the template and the REST API both take them.
pub fn rule_properties(r: &Rule) -> Value {
    let inbound = r.direction == Direction::Inbound;
    let (peer_suffix, peer) = prefixes_field(&r.peer);
    let (port_suffix, ports) = if r.ports.len() == 1 { ("Range", json!(r.ports[0])) } else { ("Ranges", json!(r.ports)) };
    let mut p = serde_json::Map::new();
    p.insert("priority".into(), json!(r.priority));
    p.insert("direction".into(), json!(r.direction.as_str()));
    p.insert("access".into(), json!(r.access.as_str()));
    p.insert("protocol".into(), json!(r.protocol.as_str()));
    p.insert("sourcePortRange".into(), json!("*"));
    p.insert(format!("destinationPort{port_suffix}"), ports);
    let (peer_key, own_key) =
        if inbound { ("sourceAddressPrefix", "destinationAddressPrefix") } else { ("destinationAddressPrefix", "sourceAddressPrefix") };
    p.insert(format!("{peer_key}{peer_suffix}"), peer);
    p.insert(own_key.into(), json!("*"));
    p.insert("description".into(), json!(r.description));
    Value::Object(p)
}

/// NSG semantics: per direction, rules in priority order, the first match
/// decides; the source's NSG outbound and the destination's NSG inbound must
/// both allow. `nsg_of` gives an address's NSG. `None` when neither end has one.
pub fn eval(nsgs: &[Nsg], nsg_of: &dyn Fn(IpAddr) -> Option<String>, src: IpAddr, dst: IpAddr, proto: Proto) -> Option<bool> {
    let (ns, nd) = (nsg_of(src), nsg_of(dst));
    if ns.is_none() && nd.is_none() {
        return None;
    }
    if src.is_ipv4() != dst.is_ipv4() {
        return Some(false);
    }
    let matches = |r: &Rule, peer: IpAddr| {
        let peer_ok = r.peer.iter().any(|p| {
            p == "*"
                || Prefix::parse(p).is_ok_and(|pf| {
                    let (f, a) = crate::ir::addr::addr_bits(peer);
                    pf.contains_addr(f, a)
                })
        });
        let port_ok = |x: u16| {
            r.ports.iter().any(|p| {
                if p == "*" {
                    return true;
                }
                let (lo, hi) = p.split_once('-').unwrap_or((p, p));
                lo.parse::<u16>().is_ok_and(|lo| lo <= x) && hi.parse::<u16>().is_ok_and(|hi| x <= hi)
            })
        };
        let proto_ok = match (r.protocol, proto) {
            (Protocol::Any, _) => true,
            (Protocol::Tcp, Proto::Tcp(x)) | (Protocol::Udp, Proto::Udp(x)) => port_ok(x),
            (Protocol::Icmp, Proto::Icmp(_)) => true,
            _ => false,
        };
        peer_ok && proto_ok
    };
    let decide = |nsg: &Option<String>, dir: Direction, peer: IpAddr| -> bool {
        let Some(name) = nsg else { return true };
        let Some(n) = nsgs.iter().find(|n| &n.name == name) else { return true };
        let mut rules: Vec<&Rule> = n.rules.iter().filter(|r| r.direction == dir).collect();
        rules.sort_by_key(|r| r.priority);
        // Past our deny-all come the NSG's default rules; our deny-all always matches first.
        rules.iter().find(|r| matches(r, peer)).is_some_and(|r| r.access == Access::Allow)
    };
    Some(decide(&nd, Direction::Inbound, src) && decide(&ns, Direction::Outbound, dst))
}
