//! AWS Security Groups (`aws/security-groups.json`). A zone with
//! `aws.security_group = "NAME"` is the group NAME; other zones are addressed
//! by CIDR. Each flow becomes ingress rules on the destination's group and
//! egress rules on the source's, so that their conjunction is exactly the
//! policy; the default allow-all egress is not part of a managed group.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use super::cloud::{self, Grant, Peer, Plan};
use crate::diag::{Code, Diagnostic};
use crate::ir::{Family, Model, Prefix, Proto, ZoneId};

pub const ASSUMPTION: &str = "each instance of a zone carries only that zone's group; ingress rules from zones addressed by CIDR also cover the bound zones' addresses, whose own egress rules decide";

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
    /// The zones and services the rule comes from.
    pub description: String,
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

fn rules_for(model: &Model, plan: &Plan, g: &Grant, from: ZoneId, to: ZoneId, diags: &mut Vec<Diagnostic>) -> Vec<SgRule> {
    let peers: Vec<(SgPeer, Option<Family>)> = match &g.peer {
        Peer::Bound(z) => vec![(SgPeer::Group(binding(model, *z)), None)],
        Peer::Prefixes(ps) => ps.iter().map(|p| (SgPeer::Cidr(p.to_string()), Some(p.family))).collect(),
    };
    let _ = plan;
    let description = format!("{} on {}", model.pair_text(from, to), g.set);
    let mut out = Vec::new();
    let mut push = |protocol: &str, from_port: i32, to_port: i32, fam: Option<Family>| {
        for (peer, pf) in &peers {
            if fam.is_some() && pf.is_some() && fam != *pf {
                continue;
            }
            out.push(SgRule { protocol: protocol.into(), from_port, to_port, peer: peer.clone(), description: description.clone() });
        }
    };
    let s = &g.set;
    if s.is_any() {
        push("-1", -1, -1, None);
        return out;
    }
    if s.other {
        diags.push(cloud::inexpressible(
            model,
            "AWS security groups",
            from,
            to,
            "other IP protocols are allowed, but not all of TCP, UDP and ICMP; a group rule is one protocol or all of them",
        ));
        return out;
    }
    for &(lo, hi) in s.tcp.ranges() {
        push("tcp", i32::from(lo), i32::from(hi), None);
    }
    for &(lo, hi) in s.udp.ranges() {
        push("udp", i32::from(lo), i32::from(hi), None);
    }
    if s.icmp.ranges() == [(0, 255)] {
        push("icmp", -1, -1, Some(Family::V4));
        push("icmpv6", -1, -1, Some(Family::V6));
    } else {
        for &(lo, hi) in s.icmp.ranges() {
            for t in lo..=hi {
                push("icmp", i32::from(t), -1, Some(Family::V4));
                push("icmpv6", i32::from(t), -1, Some(Family::V6));
            }
        }
    }
    out
}

fn binding(model: &Model, z: ZoneId) -> String {
    model.zone(z).bindings.aws_security_group.clone().unwrap_or_default()
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
    for b in &plan.bound {
        let mut ingress = Vec::new();
        for g in &b.ingress {
            ingress.extend(rules_for(model, &plan, g, g.other, b.zone, &mut diags));
        }
        let mut egress = Vec::new();
        for g in &b.egress {
            egress.extend(rules_for(model, &plan, g, b.zone, g.other, &mut diags));
        }
        ingress.sort();
        ingress.dedup();
        egress.sort();
        egress.dedup();
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

pub fn render(out: &Output) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(out).unwrap_or_default();
    v.push(b'\n');
    v
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
