//! nftables: one `table inet segc` with input, forward and output base chains,
//! so the same file serves a host or a router between zones.
//!
//! Zone membership cannot nest inside an nftables interval map, so addresses are
//! flattened into atoms (disjoint ranges, each in one zone). A concatenated
//! interval map `saddr . daddr` sends each zone pair with something allowed to
//! its own chain, which accepts exactly what the pair allows after denies.
//! Everything else falls through to the base chains' `policy drop`. Replies
//! pass through conntrack; loopback and IPv6 neighbour discovery keep working.

use std::fmt::Write;

use super::atoms::Atom;
use crate::ir::eval::Evaluator;
use crate::ir::{Family, Model, Prefix, Proto, RangeSet, ServiceSet, ZoneId};

/// One accept rule of a pair chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// Everything.
    All,
    Tcp(RangeSet),
    Udp(RangeSet),
    /// ICMP types for IPv4 packets and ICMPv6 types for IPv6 packets.
    Icmp(RangeSet),
    /// Every protocol but TCP, UDP, ICMP and ICMPv6.
    Other,
}

#[derive(Clone, Debug)]
pub struct PairChain {
    pub name: String,
    pub from: ZoneId,
    pub to: ZoneId,
    pub accepts: Vec<Match>,
    /// The flows and denies behind the chain, as `flow a -> b on x` text.
    pub sources: Vec<String>,
}

/// The ruleset as data: what `render` prints and what `eval` evaluates.
#[derive(Clone, Debug)]
pub struct Lowered {
    pub chains: Vec<PairChain>,
    /// (source range, destination range, chain index), per family.
    pub map4: Vec<(Atom, Atom, usize)>,
    pub map6: Vec<(Atom, Atom, usize)>,
    /// What the blocked feeds cut (inside untrusted zones), per family:
    /// sorted disjoint ranges, dropped both ways before the pair map.
    pub blocked4: Vec<(u128, u128)>,
    pub blocked6: Vec<(u128, u128)>,
}

/// `p3_dmz_card_vault`: the length of the first name keeps names unambiguous.
fn chain_name(from: &str, to: &str) -> String {
    ["p", from.len().to_string().as_str(), "_", from, "_", to].concat()
}

fn matches(set: &ServiceSet) -> Vec<Match> {
    if set.is_any() {
        return vec![Match::All];
    }
    let mut v = Vec::new();
    if !set.tcp.is_empty() {
        v.push(Match::Tcp(set.tcp.clone()));
    }
    if !set.udp.is_empty() {
        v.push(Match::Udp(set.udp.clone()));
    }
    if !set.icmp.is_empty() {
        v.push(Match::Icmp(set.icmp.clone()));
    }
    if set.other {
        v.push(Match::Other);
    }
    v
}

pub fn lower(model: &Model) -> Lowered {
    let ev = Evaluator::new(model);
    // Each zone's atoms by family, in address order.
    let mut atoms: Vec<[Vec<Atom>; 2]> = vec![[Vec::new(), Vec::new()]; model.zones.len()];
    for a in model.atoms() {
        atoms[a.zone.0 as usize][usize::from(a.family == Family::V6)].push(*a);
    }
    let by_zone = |z: ZoneId, f: Family| -> &[Atom] { &atoms[z.0 as usize][usize::from(f == Family::V6)] };
    let blocked = super::feeds::Blocked::of(&ev);
    let mut out = Lowered { chains: Vec::new(), map4: Vec::new(), map6: Vec::new(), blocked4: blocked.v4, blocked6: blocked.v6 };
    for (from, to, allowed) in model.allowed_pairs() {
        let (from, to) = (*from, *to);
        let idx = out.chains.len();
        let (from_name, to_name) = (&model.zone(from).name, &model.zone(to).name);
        // `flow a -> b on tcp/443`, for each flow and deny the pair has.
        let source = |verb: &str, rule: &crate::ir::Rule| {
            let mut line = String::with_capacity(from_name.len() + to_name.len() + 32);
            for piece in [verb, " ", from_name, " -> ", to_name, " on "] {
                line.push_str(piece);
            }
            for (i, s) in rule.services.iter().enumerate() {
                line.push_str(if i > 0 { ", " } else { "" });
                line.push_str(&s.text);
            }
            line
        };
        let mut sources = Vec::new();
        if let Some(rules) = ev.pair(from, to) {
            sources.extend(rules.flows.iter().map(|&id| source("flow", model.rule(crate::ir::Action::Allow, id))));
            sources.extend(rules.denies.iter().map(|&id| source("deny", model.rule(crate::ir::Action::Deny, id))));
        }
        out.chains.push(PairChain { name: chain_name(from_name, to_name), from, to, accepts: matches(allowed), sources });
        for (fam, map) in [(Family::V4, &mut out.map4), (Family::V6, &mut out.map6)] {
            let dsts = by_zone(to, fam);
            for s in by_zone(from, fam) {
                for d in dsts {
                    map.push((*s, *d, idx));
                }
            }
        }
    }
    out
}

fn addr_text(f: Family, a: u128) -> String {
    Prefix { family: f, addr: 0, len: 0 }.ip(a).to_string()
}

/// A range as nftables writes it: a prefix when it is one, else `first-last`.
fn range_text(a: &Atom) -> String {
    match a.prefixes().as_slice() {
        [p] => p.to_string(),
        _ => format!("{}-{}", addr_text(a.family, a.first), addr_text(a.family, a.last)),
    }
}

fn set_text(r: &RangeSet) -> String {
    let mut s = String::from("{ ");
    for (i, &(lo, hi)) in r.ranges().iter().enumerate() {
        s.push_str(if i > 0 { ", " } else { "" });
        s.push_str(&crate::ir::service::range_text(lo, hi));
    }
    s.push_str(" }");
    s
}

fn nft_string(s: &str) -> String {
    s.replace('"', "'")
}

/// The ruleset file, loadable with `nft -f` (one atomic transaction that
/// replaces any earlier `inet segc` table).
pub fn render(model: &Model) -> String {
    let l = lower(model);
    // About 90 bytes a map element and 200 a chain; room never written costs
    // nothing, where doubling from empty copies megabytes again and again.
    let mut s = String::with_capacity(4096 + 128 * (l.map4.len() + l.map6.len()) + 256 * l.chains.len());
    let name = model.policy.name.as_deref().unwrap_or("policy");
    let _ = writeln!(s, "#!/usr/sbin/nft -f");
    let _ = writeln!(s, "# segc {}: policy \"{}\". Generated; do not edit.", env!("CARGO_PKG_VERSION"), nft_string(name));
    s.push_str("table inet segc {}\ndelete table inet segc\n\ntable inet segc {\n");
    for (fam, ty, map) in [("4", "ipv4_addr", &l.map4), ("6", "ipv6_addr", &l.map6)] {
        let _ = writeln!(s, "  map pairs{fam} {{\n    type {ty} . {ty} : verdict\n    flags interval");
        if !map.is_empty() {
            s.push_str("    elements = {\n");
            // Each atom's text once: an atom is in the map once for every
            // zone its zone may talk to.
            let mut texts: std::collections::BTreeMap<(u128, u128), String> = std::collections::BTreeMap::new();
            for (a, b, _) in map {
                for atom in [a, b] {
                    texts.entry((atom.first, atom.last)).or_insert_with(|| range_text(atom));
                }
            }
            for (i, (a, b, c)) in map.iter().enumerate() {
                for piece in ["      ", &texts[&(a.first, a.last)], " . ", &texts[&(b.first, b.last)], " : jump ", &l.chains[*c].name] {
                    s.push_str(piece);
                }
                s.push_str(if i + 1 == map.len() { "\n" } else { ",\n" });
            }
            s.push_str("    }\n");
        }
        s.push_str("  }\n\n");
    }
    let feeds = super::feeds::blocked_names(model).join(", ");
    for (fam, ty, ranges) in [(Family::V4, "ipv4_addr", &l.blocked4), (Family::V6, "ipv6_addr", &l.blocked6)] {
        if ranges.is_empty() {
            continue;
        }
        let n = if fam == Family::V4 { "4" } else { "6" };
        let _ = writeln!(s, "  # blocked feeds ({feeds}), inside untrusted zones only\n  set feed{n} {{\n    type {ty}\n    flags interval\n    elements = {{");
        let prefixes: Vec<Prefix> = ranges.iter().flat_map(|&(a, b)| super::atoms::range_to_prefixes(fam, a, b)).collect();
        for (i, p) in prefixes.iter().enumerate() {
            let sep = if i + 1 == prefixes.len() { "" } else { "," };
            let _ = writeln!(s, "      {p}{sep}");
        }
        s.push_str("    }\n  }\n\n");
    }
    for c in &l.chains {
        for src in &c.sources {
            let _ = writeln!(s, "  # {src}");
        }
        let _ = writeln!(s, "  chain {} {{", c.name);
        let _ = writeln!(s, "    comment \"{}\"", nft_string(&model.pair_text(c.from, c.to)));
        for m in &c.accepts {
            let line = match m {
                Match::All => "accept".to_string(),
                Match::Tcp(r) if r.ranges() == [(0, u16::MAX)] => "meta l4proto tcp accept".to_string(),
                Match::Udp(r) if r.ranges() == [(0, u16::MAX)] => "meta l4proto udp accept".to_string(),
                Match::Tcp(r) => format!("meta l4proto tcp th dport {} accept", set_text(r)),
                Match::Udp(r) => format!("meta l4proto udp th dport {} accept", set_text(r)),
                Match::Icmp(r) if r.ranges() == [(0, 255)] => "meta l4proto { icmp, ipv6-icmp } accept".to_string(),
                Match::Icmp(r) => format!(
                    "meta l4proto icmp icmp type {set} accept\n    meta l4proto ipv6-icmp icmpv6 type {set} accept",
                    set = set_text(r)
                ),
                Match::Other => "meta l4proto != { tcp, udp, icmp, ipv6-icmp } accept".to_string(),
            };
            let _ = writeln!(s, "    {line}");
        }
        s.push_str("  }\n\n");
    }
    s.push_str("  chain classify {\n");
    if !l.blocked4.is_empty() {
        s.push_str("    ip saddr @feed4 drop\n    ip daddr @feed4 drop\n");
    }
    if !l.blocked6.is_empty() {
        s.push_str("    ip6 saddr @feed6 drop\n    ip6 daddr @feed6 drop\n");
    }
    s.push_str("    ip saddr . ip daddr vmap @pairs4\n    ip6 saddr . ip6 daddr vmap @pairs6\n  }\n");
    for (hook, lo) in [("input", "iif \"lo\" accept\n"), ("forward", ""), ("output", "oif \"lo\" accept\n")] {
        let _ = write!(s, "\n  chain {hook} {{\n    type filter hook {hook} priority filter; policy drop;\n");
        if !lo.is_empty() {
            let _ = write!(s, "    {lo}");
        }
        s.push_str("    ct state established,related accept\n    ct state invalid drop\n");
        if hook != "forward" {
            // Neighbour discovery is link-local: hop limit 255 proves it was not routed.
            s.push_str("    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } ip6 hoplimit 255 accept\n");
        }
        s.push_str("    jump classify\n  }\n");
    }
    s.push_str("}\n");
    s
}

/// Evaluates the lowered ruleset for a new connection's first packet: the
/// semantics `render` expresses, used to prove it agrees with the reference.
pub fn eval(l: &Lowered, src: std::net::IpAddr, dst: std::net::IpAddr, proto: Proto) -> bool {
    let (fs, s) = crate::ir::addr::addr_bits(src);
    let (fd, d) = crate::ir::addr::addr_bits(dst);
    if fs != fd {
        return false;
    }
    let blocked = if fs == Family::V4 { &l.blocked4 } else { &l.blocked6 };
    if super::feeds::contains(blocked, s) || super::feeds::contains(blocked, d) {
        return false;
    }
    let map = if fs == Family::V4 { &l.map4 } else { &l.map6 };
    let Some(&(_, _, c)) = map.iter().find(|(a, b, _)| a.first <= s && s <= a.last && b.first <= d && d <= b.last) else {
        return false;
    };
    l.chains[c].accepts.iter().any(|m| match (m, proto) {
        (Match::All, _) => true,
        (Match::Tcp(r), Proto::Tcp(p)) | (Match::Udp(r), Proto::Udp(p)) => r.contains(p),
        (Match::Icmp(r), Proto::Icmp(t)) => r.contains(u16::from(t)),
        (Match::Other, Proto::Other(_)) => true,
        _ => false,
    })
}
