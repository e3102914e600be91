//! GCP VPC firewall rules (`gcp/firewall.json`). A zone with `gcp.tag` is the
//! instances carrying that network tag. Ingress rules target the destination's
//! tag with the source's tag or ranges; egress rules target the source's tag
//! with the destination's ranges (GCP egress rules cannot name tags), followed
//! by a deny-all egress rule per tag, because GCP's implied egress rule allows
//! everything. Rules hold one address family and at most 256 ranges.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::cloud::{self, Grant, Peer};
use super::json::Json;
use crate::diag::Diagnostic;
use crate::ir::{Family, Model, Prefix, Proto, ServiceSet, ZoneId};

pub const MAX_RANGES: usize = 256;
pub const ALLOW_PRIORITY: u32 = 1000;
/// Feed deny rules: ahead of every allow.
pub const FEED_PRIORITY: u32 = 900;
/// Target tags one rule may name.
pub const MAX_TARGET_TAGS: usize = 70;
/// Firewall rules a project holds (the quota segc plans for).
pub const MAX_RULES: usize = 500;
pub const DENY_PRIORITY: u32 = 65000;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Allowed {
    #[serde(rename = "IPProtocol")]
    pub ip_protocol: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub name: String,
    pub direction: String,
    pub priority: u32,
    pub target_tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ranges: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_ranges: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<Allowed>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied: Vec<Allowed>,
    pub description: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Output {
    pub version: u32,
    pub policy: Option<String>,
    pub firewall_rules: Vec<Rule>,
}

/// A GCP resource name: lowercase letters, digits and dashes, at most 63.
fn name(parts: &[&str]) -> String {
    // Every byte written is an ASCII letter, digit or dash.
    let mut raw: Vec<u8> = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            raw.push(b'-');
        }
        if part.is_ascii() {
            raw.extend(part.bytes().map(|b| if b.is_ascii_alphanumeric() { b.to_ascii_lowercase() } else { b'-' }));
        } else {
            // Some letters lower-case to ASCII ones (KELVIN SIGN to `k`).
            raw.extend(part.chars().flat_map(char::to_lowercase).map(|c| if c.is_ascii_alphanumeric() { c as u8 } else { b'-' }));
        }
    }
    let raw = String::from_utf8(raw).unwrap_or_default();
    if raw.len() <= 63 {
        return raw;
    }
    let h = crate::sha256::hex(raw.as_bytes());
    format!("{}-{}", &raw[..50], &h[..12])
}

fn allowed(model: &Model, set: &ServiceSet, fam: Option<Family>, from: ZoneId, to: ZoneId, diags: &mut Vec<Diagnostic>) -> Vec<Allowed> {
    if set.is_any() {
        return vec![Allowed { ip_protocol: "all".into(), ports: vec![] }];
    }
    if set.other {
        diags.push(cloud::inexpressible(model, "GCP firewall rules", from, to, "other IP protocols are allowed, but not all protocols"));
        return vec![];
    }
    let ports =
        |r: &crate::ir::RangeSet| -> Vec<String> { r.ranges().iter().map(|&(lo, hi)| crate::ir::service::range_text(lo, hi)).collect() };
    let mut v = Vec::new();
    if !set.tcp.is_empty() {
        v.push(Allowed { ip_protocol: "tcp".into(), ports: if set.tcp.ranges() == [(0, u16::MAX)] { vec![] } else { ports(&set.tcp) } });
    }
    if !set.udp.is_empty() {
        v.push(Allowed { ip_protocol: "udp".into(), ports: if set.udp.ranges() == [(0, u16::MAX)] { vec![] } else { ports(&set.udp) } });
    }
    if !set.icmp.is_empty() {
        if set.icmp.ranges() != [(0, 255)] {
            diags.push(cloud::inexpressible(model, "GCP firewall rules", from, to, "GCP rules cannot select ICMP types"));
            return vec![];
        }
        if fam != Some(Family::V6) {
            v.push(Allowed { ip_protocol: "icmp".into(), ports: vec![] });
        }
        if fam != Some(Family::V4) {
            v.push(Allowed { ip_protocol: "58".into(), ports: vec![] });
        }
    }
    v
}

fn tag(model: &Model, z: ZoneId) -> String {
    model.zone(z).bindings.gcp_tag.clone().unwrap_or_default()
}

fn by_family(ps: &[Prefix]) -> Vec<(Family, Vec<String>)> {
    let mut out = Vec::new();
    for fam in [Family::V4, Family::V6] {
        let mut list = ps.iter().filter(|p| p.family == fam).map(Prefix::to_string);
        loop {
            let chunk: Vec<String> = list.by_ref().take(MAX_RANGES).collect();
            if chunk.is_empty() {
                break;
            }
            out.push((fam, chunk));
        }
    }
    out
}

/// One peer zone's ranges as rules hold them ([`by_family`]), as an egress
/// and as an ingress peer.
type ZoneRanges = [Option<Vec<(Family, Vec<String>)>>; 2];

/// Each peer zone's ranges, made once a zone and direction: a bound zone is
/// the egress peer of every zone that sends to it.
struct Ranges(Vec<ZoneRanges>);

impl Ranges {
    fn new(model: &Model) -> Self {
        Ranges(vec![[None, None]; model.zones.len()])
    }

    fn of(&mut self, other: ZoneId, ingress: bool, prefixes: &[Prefix]) -> &[(Family, Vec<String>)] {
        self.0[other.0 as usize][usize::from(ingress)].get_or_insert_with(|| by_family(prefixes))
    }
}

fn grant_rules(
    model: &Model,
    plan: &cloud::Plan,
    ranges: &mut Ranges,
    g: &Grant,
    target: ZoneId,
    ingress: bool,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Rule> {
    let (from, to) = if ingress { (g.other, target) } else { (target, g.other) };
    let (from_name, to_name) = (&model.zone(from).name, &model.zone(to).name);
    let description = cloud::pair_description(from_name, to_name, g.set);
    let mut base = |suffix: &str, fam: Option<Family>| Rule {
        name: name(&["segc", if ingress { "in" } else { "out" }, from_name, to_name, suffix]),
        direction: if ingress { "INGRESS" } else { "EGRESS" }.into(),
        priority: ALLOW_PRIORITY,
        target_tags: vec![tag(model, target)],
        source_tags: vec![],
        source_ranges: vec![],
        destination_ranges: vec![],
        allowed: allowed(model, g.set, fam, from, to, diags),
        denied: vec![],
        description: description.clone(),
    };
    let prefixes: &[Prefix] = match &g.peer {
        Peer::Bound(z) if ingress => {
            let mut r = base("tag", None);
            r.source_tags = vec![tag(model, *z)];
            return vec![r];
        }
        // Egress cannot name tags: the bound zone's exact addresses (its atoms).
        Peer::Bound(z) => plan.prefixes.get(z).map_or(&[], Vec::as_slice),
        Peer::Prefixes(ps) => ps,
    };
    ranges
        .of(g.other, ingress, prefixes)
        .iter()
        .enumerate()
        .map(|(i, (fam, ranges))| {
            let mut suffix = String::from(if *fam == Family::V4 { "v4-" } else { "v6-" });
            suffix.push_str(&i.to_string());
            let mut r = base(&suffix, Some(*fam));
            if ingress {
                r.source_ranges = ranges.clone();
            } else {
                r.destination_ranges = ranges.clone();
            }
            r
        })
        .collect()
}

/// The feed deny rules: every bound tag, both directions, the blocked
/// addresses as peers (256 a rule), at a priority ahead of every allow.
fn feed_rules(model: &Model, plan: &cloud::Plan, blocked: &[Prefix]) -> Vec<Rule> {
    let mut tags: Vec<String> = plan.bound.iter().map(|b| b.binding.clone()).collect();
    tags.sort();
    tags.dedup();
    let names = super::feeds::blocked_names(model).join(", ");
    let mut out = Vec::new();
    for (ti, targets) in tags.chunks(MAX_TARGET_TAGS).enumerate() {
        for (i, (fam, ranges)) in by_family(blocked).into_iter().enumerate() {
            for ingress in [true, false] {
                let fam_s = if fam == Family::V4 { "v4" } else { "v6" };
                out.push(Rule {
                    name: name(&["segc", "feed", if ingress { "in" } else { "out" }, fam_s, &ti.to_string(), &i.to_string()]),
                    direction: if ingress { "INGRESS" } else { "EGRESS" }.into(),
                    priority: FEED_PRIORITY,
                    target_tags: targets.to_vec(),
                    source_tags: vec![],
                    source_ranges: if ingress { ranges.clone() } else { vec![] },
                    destination_ranges: if ingress { vec![] } else { ranges.clone() },
                    allowed: vec![],
                    denied: vec![Allowed { ip_protocol: "all".into(), ports: vec![] }],
                    description: format!("blocked feeds {names}"),
                });
            }
        }
    }
    out
}

pub fn lower(model: &Model) -> Result<Output, Vec<Diagnostic>> {
    let plan = cloud::plan(model, "gcp.tag", "GCP")?;
    let mut diags = Vec::new();
    let ev = crate::ir::eval::Evaluator::new(model);
    let blocked = super::feeds::Blocked::of(&ev);
    let mut rules = feed_rules(model, &plan, &blocked.prefixes());
    let feed_count = rules.len();
    // Mostly one rule a grant and family, two deny rules a zone; room never
    // written costs nothing, where doubling from small copies 40000 rules
    // several times.
    rules.reserve(plan.bound.iter().map(|b| 2 * (b.ingress.len() + b.egress.len()) + 2).sum());
    for b in &plan.bound {
        if !rules.is_empty() && blocked.cuts(b.zone) {
            diags.push(super::feeds::self_cut(model, "GCP firewall rules", b.zone));
        }
    }
    let mut ranges = Ranges::new(model);
    for b in &plan.bound {
        for g in &b.ingress {
            rules.extend(grant_rules(model, &plan, &mut ranges, g, b.zone, true, &mut diags));
        }
        for g in &b.egress {
            rules.extend(grant_rules(model, &plan, &mut ranges, g, b.zone, false, &mut diags));
        }
        for (fam, all) in [("v4", "0.0.0.0/0"), ("v6", "::/0")] {
            rules.push(Rule {
                name: name(&["segc", "deny-out", &model.zone(b.zone).name, fam]),
                direction: "EGRESS".into(),
                priority: DENY_PRIORITY,
                target_tags: vec![b.binding.clone()],
                source_tags: vec![],
                source_ranges: vec![],
                destination_ranges: vec![all.into()],
                allowed: vec![],
                denied: vec![Allowed { ip_protocol: "all".into(), ports: vec![] }],
                description: format!("default deny out of {}", model.zone(b.zone).name),
            });
        }
    }
    // The feed rules are what segc adds to a project on top of the flows'
    // own rules; where they push the project over its quota, say so (a
    // policy without feeds is left to the apply, which orders its writes
    // around the quota).
    if feed_count > 0 && rules.len() > MAX_RULES {
        let span = model.feeds.iter().find(|f| f.blocked).and_then(|f| f.block_span).unwrap_or(model.zones[0].span);
        diags.push(
            crate::diag::Diagnostic::new(
                crate::diag::Code::T001,
                span,
                format!(
                    "the policy needs {} GCP firewall rules, {feed_count} of them for blocked feeds; a project holds {MAX_RULES}: {} too many",
                    rules.len(),
                    rules.len() - MAX_RULES
                ),
            )
            .with_help("block fewer or smaller feeds on GCP (each rule holds 256 ranges), or enforce them on the hosts (bpf, nft)"),
        );
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    sort(&mut rules);
    Ok(Output { version: 1, policy: model.policy.name.clone(), firewall_rules: rules })
}

/// Sorts rules as `Ord` does (by name first), comparing the first 16 bytes
/// of each name as one integer and whole rules only where those tie: most
/// names share a long `segc-in-` head, and 42000 rules take 700000 comparisons.
/// Unstable is enough: rules that compare equal are the same bytes.
fn sort(rules: &mut Vec<Rule>) {
    let head = |name: &str| {
        let mut b = [0u8; 16];
        let n = name.len().min(16);
        b[..n].copy_from_slice(&name.as_bytes()[..n]);
        u128::from_be_bytes(b)
    };
    let mut order: Vec<(u128, usize)> = rules.iter().enumerate().map(|(i, r)| (head(&r.name), i)).collect();
    order.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| rules[a.1].cmp(&rules[b.1])));
    let mut taken: Vec<Option<Rule>> = std::mem::take(rules).into_iter().map(Some).collect();
    rules.extend(order.into_iter().map(|(_, i)| taken[i].take().expect("each rule once")));
}

/// Writes `gcp/firewall.json`: what `Output`'s `Serialize` writes, pretty,
/// written directly (42000 rules for a thousand zones).
pub fn write(out: &Output, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut j = Json::new(w);
    j.open_document(out.version, out.policy.as_deref());
    j.key("firewall_rules");
    j.open_array();
    for r in &out.firewall_rules {
        j.element();
        write_rule(&mut j, r);
        j.flush_if_full()?;
    }
    j.close_array();
    j.close_object();
    j.finish()
}

fn write_rule(j: &mut Json<'_>, r: &Rule) {
    j.open_object();
    j.str_field("name", &r.name);
    j.str_field("direction", &r.direction);
    j.int_field("priority", r.priority.into());
    j.strings_field("targetTags", &r.target_tags);
    for (k, list) in [("sourceTags", &r.source_tags), ("sourceRanges", &r.source_ranges), ("destinationRanges", &r.destination_ranges)] {
        if !list.is_empty() {
            j.strings_field(k, list);
        }
    }
    for (k, list) in [("allowed", &r.allowed), ("denied", &r.denied)] {
        if list.is_empty() {
            continue;
        }
        j.key(k);
        j.open_array();
        for a in list {
            j.element();
            j.open_object();
            j.str_field("IPProtocol", &a.ip_protocol);
            if !a.ports.is_empty() {
                j.strings_field("ports", &a.ports);
            }
            j.close_object();
        }
        j.close_array();
    }
    j.str_field("description", &r.description);
    j.close_object();
}

/// GCP semantics: per direction, the matching rule of lowest priority number
/// decides (deny before allow at equal priority); implied rules deny ingress
/// and allow egress. `tag_of` gives an instance's tag. `None` when neither end
/// is a tagged instance.
pub fn eval(out: &Output, tag_of: &dyn Fn(IpAddr) -> Option<String>, src: IpAddr, dst: IpAddr, proto: Proto) -> Option<bool> {
    let (ts, td) = (tag_of(src), tag_of(dst));
    if ts.is_none() && td.is_none() {
        return None;
    }
    if src.is_ipv4() != dst.is_ipv4() {
        return Some(false);
    }
    let in_ranges = |ranges: &[String], ip: IpAddr| {
        ranges.iter().any(|r| {
            Prefix::parse(r).is_ok_and(|p| {
                let (f, a) = crate::ir::addr::addr_bits(ip);
                p.contains_addr(f, a)
            })
        })
    };
    let proto_ok = |list: &[Allowed]| {
        list.iter().any(|a| {
            let ports_ok = |x: u16| {
                a.ports.is_empty()
                    || a.ports.iter().any(|p| {
                        let (lo, hi) = p.split_once('-').unwrap_or((p, p));
                        lo.parse::<u16>().is_ok_and(|lo| lo <= x) && hi.parse::<u16>().is_ok_and(|hi| x <= hi)
                    })
            };
            match (a.ip_protocol.as_str(), proto) {
                ("all", _) => true,
                ("tcp", Proto::Tcp(x)) | ("udp", Proto::Udp(x)) => ports_ok(x),
                ("icmp", Proto::Icmp(_)) => src.is_ipv4(),
                ("58", Proto::Icmp(_)) => src.is_ipv6(),
                _ => false,
            }
        })
    };
    let decide = |dir: &str, tag: &Option<String>, peer_ip: IpAddr, peer_tag: &Option<String>, implied: bool| -> bool {
        let Some(tag) = tag else { return true };
        let mut matching: Vec<&Rule> = out
            .firewall_rules
            .iter()
            .filter(|r| r.direction == dir && r.target_tags.contains(tag))
            .filter(|r| {
                let peer = if dir == "INGRESS" {
                    r.source_tags.iter().any(|t| Some(t) == peer_tag.as_ref()) || in_ranges(&r.source_ranges, peer_ip)
                } else {
                    in_ranges(&r.destination_ranges, peer_ip)
                };
                peer && (proto_ok(&r.allowed) || proto_ok(&r.denied))
            })
            .collect();
        matching.sort_by_key(|r| (r.priority, r.allowed.len()));
        matching.first().map_or(implied, |r| !r.allowed.is_empty() && proto_ok(&r.allowed))
    };
    Some(decide("INGRESS", &td, src, &ts, false) && decide("EGRESS", &ts, dst, &td, true))
}
