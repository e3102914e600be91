//! AWS Security Groups (`aws/security-groups.json`). A zone with
//! `aws.security_group = "NAME"` is the group NAME; other zones are addressed
//! by CIDR. Each flow becomes ingress rules on the destination's group and
//! egress rules on the source's, so that their conjunction is exactly the
//! policy; the default allow-all egress is not part of a managed group.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;

use super::cloud::{self, Grant, Peer, Plan};
use super::json::Json;
use crate::diag::{Code, Diagnostic};
use crate::ir::{Family, Model, Prefix, Proto, ServiceSet, ZoneId};

pub const ASSUMPTION: &str = "each instance of a zone carries only that zone's group; an ingress rule from a zone addressed by CIDR may also cover bound zones' addresses where that saves rules (the rule's `covers` names them), and those zones' own egress rules decide";

/// The longest description EC2 stores.
pub const DESCRIPTION_MAX: usize = 255;

/// Quotas, per group and direction, counted per address family.
pub const RULES_PER_DIRECTION: usize = 60;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SgPeer {
    Group(String),
    Cidr(String),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct SgRule {
    /// `tcp`, `udp`, `icmp`, `icmpv6` or `-1` (everything).
    pub protocol: String,
    /// A port, or an ICMP type; -1 for all.
    pub from_port: i32,
    /// A port, or -1 for all ICMP codes.
    pub to_port: i32,
    pub peer: SgPeer,
    /// The zone pairs the rule serves (`internet to web; partners to web`),
    /// in the characters EC2 accepts, at most 255 of them.
    pub description: String,
    /// Bound zones whose addresses the rule's CIDR also covers, because that
    /// saved rules: their members' own egress rules decide.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub covers: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SecurityGroup {
    pub name: String,
    pub zone: String,
    pub description: String,
    pub ingress: Vec<SgRule>,
    pub egress: Vec<SgRule>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Output {
    pub version: u32,
    pub policy: Option<String>,
    /// What exactness rests on, for the people who review these groups.
    pub assumption: &'static str,
    pub security_groups: Vec<SecurityGroup>,
}

/// A rule before its peer: protocol, ports, and the one address family it
/// is limited to (ICMP types are per family).
type Shape = (&'static str, i32, i32, Option<Family>);

/// The rule shapes of a service set, or T002 for what a group rule cannot say.
fn shapes(model: &Model, set: &ServiceSet, from: ZoneId, to: ZoneId, diags: &mut Vec<Diagnostic>) -> Vec<Shape> {
    if set.is_any() {
        return vec![("-1", -1, -1, None)];
    }
    if set.other {
        diags.push(cloud::inexpressible(
            model,
            "AWS security groups",
            from,
            to,
            "other IP protocols are allowed, but not all of TCP, UDP and ICMP; a group rule is one protocol or all of them",
        ));
        return Vec::new();
    }
    let mut out = Vec::new();
    for &(lo, hi) in set.tcp.ranges() {
        out.push(("tcp", i32::from(lo), i32::from(hi), None));
    }
    for &(lo, hi) in set.udp.ranges() {
        out.push(("udp", i32::from(lo), i32::from(hi), None));
    }
    if set.icmp.ranges() == [(0, 255)] {
        out.push(("icmp", -1, -1, Some(Family::V4)));
        out.push(("icmpv6", -1, -1, Some(Family::V6)));
    } else {
        for &(lo, hi) in set.icmp.ranges() {
            for t in lo..=hi {
                out.push(("icmp", i32::from(t), -1, Some(Family::V4)));
                out.push(("icmpv6", i32::from(t), -1, Some(Family::V6)));
            }
        }
    }
    out
}

/// What one direction of a group allows for one shape: the groups it names
/// (with the zone pairs each serves) and the zones it reaches by address.
#[derive(Default)]
struct Wanted<'m> {
    groups: BTreeMap<&'m str, BTreeSet<String>>,
    by_address: BTreeSet<ZoneId>,
}

/// One direction of a bound zone's group. Each rule appears once (EC2
/// refuses a second rule with the same protocol, ports and peer, whatever its
/// description). Zones reached by address on the same shape share their
/// rules: the fewest CIDRs covering all of them, exactly (egress), or with
/// bound zones' addresses as don't-cares where that saves rules (ingress;
/// the rule's `covers` names those zones).
fn direction<'m>(
    model: &'m Model,
    plan: &Plan,
    spare: &[Prefix],
    zone: ZoneId,
    grants: &[Grant],
    ingress: bool,
    diags: &mut Vec<Diagnostic>,
) -> Vec<SgRule> {
    let pair = |other: ZoneId| {
        let (from, to) = if ingress { (other, zone) } else { (zone, other) };
        format!("{} to {}", model.zone(from).name, model.zone(to).name)
    };
    let mut per: BTreeMap<Shape, Wanted<'m>> = BTreeMap::new();
    for g in grants {
        let (from, to) = if ingress { (g.other, zone) } else { (zone, g.other) };
        for shape in shapes(model, g.set, from, to, diags) {
            let w = per.entry(shape).or_default();
            match &g.peer {
                Peer::Bound(z) => {
                    w.groups.entry(binding(model, *z)).or_default().insert(pair(g.other));
                }
                Peer::Prefixes(_) => {
                    w.by_address.insert(g.other);
                }
            }
        }
    }
    let spare = if ingress { spare } else { &[] };
    let mut out = Vec::new();
    for ((protocol, from_port, to_port, fam), w) in per {
        let rule = |peer: SgPeer, pairs: Vec<String>, covers: Vec<String>| {
            let suffix = if covers.is_empty() {
                String::new()
            } else {
                format!(" (also covers bound zones {}: their egress decides)", covers.join(", "))
            };
            SgRule { protocol: protocol.into(), from_port, to_port, peer, description: description(&pairs, &suffix), covers }
        };
        for (group, pairs) in w.groups {
            out.push(rule(SgPeer::Group(group.to_string()), pairs.into_iter().collect(), Vec::new()));
        }
        let atoms = |z: &ZoneId| plan.prefixes.get(z).into_iter().flatten().filter(|p| fam.is_none_or(|f| p.family == f)).copied();
        let own: Vec<Prefix> = w.by_address.iter().flat_map(atoms).collect();
        for p in cloud::cover(&own, spare) {
            let pairs: Vec<String> =
                w.by_address.iter().filter(|z| atoms(z).any(|a| p.covers(&a) || a.covers(&p))).map(|&z| pair(z)).collect();
            let covers: Vec<String> =
                if ingress { plan.bound_within(&p).into_iter().map(|z| model.zone(z).name.clone()).collect() } else { Vec::new() };
            out.push(rule(SgPeer::Cidr(p.to_string()), pairs, covers));
        }
    }
    out.sort();
    out
}

/// `items` joined with `; `, then `suffix`, in EC2's description characters
/// and at most [`DESCRIPTION_MAX`] long: what does not fit is counted (`+3 more`).
pub fn description(items: &[String], suffix: &str) -> String {
    // Every character outside EC2's set becomes `_`, so the text is ASCII
    // and a cleaned string is as long as its count of characters.
    let push_clean = |text: &mut String, t: &str| text.extend(t.chars().map(|c| if allowed_char(c) { c } else { '_' }));
    let suffix_len = suffix.chars().count();
    let mut text = String::with_capacity(64);
    for (i, item) in items.iter().enumerate() {
        let sep = if i == 0 { "" } else { "; " };
        let left = items.len() - i - 1;
        // `; +{left} more`
        let more = if left > 0 { 8 + left.ilog10() as usize + 1 } else { 0 };
        if text.len() + sep.len() + item.chars().count() + more + suffix_len > DESCRIPTION_MAX {
            let rest = format!("{sep}+{} more", items.len() - i);
            text.push_str(if i == 0 { rest.trim_start_matches("; ") } else { &rest });
            break;
        }
        text.push_str(sep);
        push_clean(&mut text, item);
    }
    push_clean(&mut text, suffix);
    text.truncate(DESCRIPTION_MAX);
    text
}

/// The characters EC2 accepts in a rule description.
pub fn allowed_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            ' ' | '.'
                | '_'
                | '-'
                | ':'
                | '/'
                | '('
                | ')'
                | '#'
                | ','
                | '@'
                | '['
                | ']'
                | '+'
                | '='
                | '&'
                | ';'
                | '{'
                | '}'
                | '!'
                | '$'
                | '*'
        )
}

fn binding(model: &Model, z: ZoneId) -> &str {
    model.zone(z).bindings.aws_security_group.as_deref().unwrap_or_default()
}

/// Counts rules per address family: a CIDR rule in its family, a group rule
/// in both.
fn per_family(rules: &[SgRule]) -> (usize, usize) {
    rules.iter().fold((0, 0), |(v4, v6), r| match &r.peer {
        SgPeer::Group(_) => (v4 + 1, v6 + 1),
        SgPeer::Cidr(c) if c.contains(':') => (v4, v6 + 1),
        SgPeer::Cidr(_) => (v4 + 1, v6),
    })
}

pub fn lower(model: &Model) -> Result<Output, Vec<Diagnostic>> {
    let plan = cloud::plan(model, "aws.security_group", "AWS")?;
    let mut diags = Vec::new();
    let mut groups = Vec::new();
    // Every bound zone's atoms, which ingress CIDR rules may also cover: one
    // list for all groups (a copy per group was a million prefixes copied
    // at a thousand zones).
    let spare = plan.spare_prefixes();
    for b in &plan.bound {
        let ingress = direction(model, &plan, &spare, b.zone, &b.ingress, true, &mut diags);
        let egress = direction(model, &plan, &spare, b.zone, &b.egress, false, &mut diags);
        for (dir, rules) in [("inbound", &ingress), ("outbound", &egress)] {
            let (v4, v6) = per_family(rules);
            for (fam, n) in [("IPv4", v4), ("IPv6", v6)] {
                if n > RULES_PER_DIRECTION {
                    let first = rules.first().map(|r| r.description.clone()).unwrap_or_default();
                    diags.push(
                        Diagnostic::new(
                            Code::T001,
                            model.zone(b.zone).span,
                            format!(
                                "security group `{}` needs {n} {dir} {fam} rules; the AWS quota is {RULES_PER_DIRECTION}: {} too many",
                                b.binding,
                                n - RULES_PER_DIRECTION
                            ),
                        )
                        .with_label(model.zone(b.zone).span, "this zone's group")
                        .with_note(format!("its rules come from flows such as `{first}`"))
                        .with_help(
                            "merge port ranges, bind the peer zones to groups (one rule instead of one per CIDR), or split the zone",
                        ),
                    );
                }
            }
        }
        groups.push(SecurityGroup {
            name: b.binding.clone(),
            zone: model.zone(b.zone).name.clone(),
            description: format!("segc zone {} ({})", model.zone(b.zone).name, model.zone(b.zone).scope.as_str()),
            ingress,
            egress,
        });
    }
    if !diags.is_empty() {
        diags.sort_by(|a, b| (a.span, &a.message).cmp(&(b.span, &b.message)));
        diags.dedup_by(|a, b| a.message == b.message);
        return Err(diags);
    }
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Output { version: 1, policy: model.policy.name.clone(), assumption: ASSUMPTION, security_groups: groups })
}

/// Writes `aws/security-groups.json`: what `Output`'s `Serialize` writes,
/// pretty, written directly.
pub fn write(out: &Output, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut j = Json::new(w);
    j.open_document(out.version, out.policy.as_deref());
    j.str_field("assumption", out.assumption);
    j.key("security_groups");
    j.open_array();
    for g in &out.security_groups {
        j.element();
        j.open_object();
        j.str_field("name", &g.name);
        j.str_field("zone", &g.zone);
        j.str_field("description", &g.description);
        for (k, rules) in [("ingress", &g.ingress), ("egress", &g.egress)] {
            j.key(k);
            j.open_array();
            for r in rules {
                j.element();
                write_rule(&mut j, r);
            }
            j.close_array();
            j.flush_if_full()?;
        }
        j.close_object();
    }
    j.close_array();
    j.close_object();
    j.finish()
}

fn write_rule(j: &mut Json<'_>, r: &SgRule) {
    j.open_object();
    j.str_field("protocol", &r.protocol);
    j.int_field("from_port", r.from_port.into());
    j.int_field("to_port", r.to_port.into());
    j.key("peer");
    j.open_object();
    match &r.peer {
        SgPeer::Group(g) => j.str_field("group", g),
        SgPeer::Cidr(c) => j.str_field("cidr", c),
    }
    j.close_object();
    j.str_field("description", &r.description);
    if !r.covers.is_empty() {
        j.strings_field("covers", &r.covers);
    }
    j.close_object();
}

/// Evaluates the groups for a packet, as EC2 would: the destination's group
/// must allow it in and the source's group must allow it out (for the ends
/// that are instances). `member` says which group an address's instance is in.
/// `None` when neither end is an instance: AWS does not see that packet.
pub fn eval(out: &Output, member: &dyn Fn(IpAddr) -> Option<String>, src: IpAddr, dst: IpAddr, proto: Proto) -> Option<bool> {
    let (gs, gd) = (member(src), member(dst));
    if gs.is_none() && gd.is_none() {
        return None;
    }
    if src.is_ipv4() != dst.is_ipv4() {
        return Some(false);
    }
    let by_name: BTreeMap<&str, &SecurityGroup> = out.security_groups.iter().map(|g| (g.name.as_str(), g)).collect();
    let matches = |r: &SgRule, peer_ip: IpAddr, peer_group: &Option<String>| {
        let peer_ok = match &r.peer {
            SgPeer::Group(g) => peer_group.as_deref() == Some(g.as_str()),
            SgPeer::Cidr(c) => Prefix::parse(c).is_ok_and(|p| {
                let (f, a) = crate::ir::addr::addr_bits(peer_ip);
                p.contains_addr(f, a)
            }),
        };
        let proto_ok = match (r.protocol.as_str(), proto) {
            ("-1", _) => true,
            ("tcp", Proto::Tcp(p)) | ("udp", Proto::Udp(p)) => r.from_port <= i32::from(p) && i32::from(p) <= r.to_port,
            ("icmp", Proto::Icmp(t)) if src.is_ipv4() => r.from_port == -1 || r.from_port == i32::from(t),
            ("icmpv6", Proto::Icmp(t)) if src.is_ipv6() => r.from_port == -1 || r.from_port == i32::from(t),
            _ => false,
        };
        peer_ok && proto_ok
    };
    let inbound = gd.as_deref().and_then(|g| by_name.get(g)).is_none_or(|g| g.ingress.iter().any(|r| matches(r, src, &gs)));
    let outbound = gs.as_deref().and_then(|g| by_name.get(g)).is_none_or(|g| g.egress.iter().any(|r| matches(r, dst, &gd)));
    Some(inbound && outbound)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{allowed_char, description, DESCRIPTION_MAX};

    /// The plain statement of `description`: each piece cleaned, then
    /// measured.
    fn reference(items: &[String], suffix: &str) -> String {
        let clean = |t: &str| -> String { t.chars().map(|c| if allowed_char(c) { c } else { '_' }).collect() };
        let suffix = clean(suffix);
        let mut text = String::new();
        for (i, item) in items.iter().enumerate() {
            let item = clean(item);
            let sep = if i == 0 { "" } else { "; " };
            let left = items.len() - i - 1;
            let more = if left > 0 { format!("; +{left} more") } else { String::new() };
            if text.len() + sep.len() + item.len() + more.len() + suffix.len() > DESCRIPTION_MAX {
                let rest = format!("{sep}+{} more", items.len() - i);
                text.push_str(if i == 0 { rest.trim_start_matches("; ") } else { &rest });
                break;
            }
            text.push_str(sep);
            text.push_str(&item);
        }
        text.push_str(&suffix);
        text.chars().take(DESCRIPTION_MAX).collect()
    }

    #[test]
    fn a_long_list_is_counted_and_foreign_characters_replaced() {
        let items: Vec<String> = (0..40).map(|i| format!("zone_{i} to vault")).collect();
        let d = description(&items, " (also covers bound zones a, b: their egress decides)");
        assert!(d.len() <= DESCRIPTION_MAX && d.contains("more (also covers"), "{d}");
        assert_eq!(description(&["zö\"ne to b".into()], ""), "z__ne to b");
    }

    proptest! {
        #[test]
        fn description_is_its_plain_statement(
            items in proptest::collection::vec("[a-z_0-9 ;\u{e9}\u{1F600}\"]{0,40}", 0..120),
            suffix in "[a-z ():,\u{e9}]{0,80}",
        ) {
            prop_assert_eq!(description(&items, &suffix), reference(&items, &suffix));
        }
    }
}
