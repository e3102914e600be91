//! The eBPF tables: zone LPM entries per family and one policy LPM whose keys
//! are (source zone, destination zone, protocol class, port prefix). A port
//! range becomes at most 30 prefixes, so the table grows with the policy's
//! ranges, not with its packets, and a lookup costs the same whatever the
//! number of flows. Only what is allowed (flows minus denies, exactly) is
//! stored; a miss is a deny.
//!
//! `policy.bundle` is the binary form the loader reads: a versioned header, a
//! SHA-256 of the body, then the three tables. `policy.json` is the same, for
//! people.

use serde::Serialize;

mod bundle;

pub use bundle::{bundle, parse_bundle, BundleError};

use super::atoms::range_to_prefixes;
use crate::diag::{Code, Diagnostic, FileId, Span};
use crate::ir::{Family, Model, RangeSet};

/// Protocol classes, as in `runtime-bpf/c/segc.h`.
pub const CLASS_ICMP: u8 = 1;
pub const CLASS_TCP: u8 = 6;
pub const CLASS_UDP: u8 = 17;
pub const CLASS_OTHER: u8 = 255;

/// Map capacities, as in `runtime-bpf/c/segc.h`. Every policy gets maps of
/// its own (a swap fills fresh ones), so one policy may use all of each.
pub const ZONES4_MAX: usize = 65536;
pub const ZONES6_MAX: usize = 65536;
pub const RULES_MAX: usize = 1_048_576;
pub const PORTS_MAX: usize = 1_048_576;
pub const PAIRS_MAX: usize = 262_144;

/// Blocks of at most this many ports are stored port by port in the exact
/// table (as `runtime-bpf/c/segc.h` says); larger ones stay prefix blocks.
pub const EXACT_BLOCK_MAX: u32 = 8;

/// How the runtime stores the rules: exact (zone pair, class, port) entries,
/// range blocks for the LPM, and the (zone pair, class) keys that have ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    pub exact: Vec<(u32, u32, u8, u16)>,
    pub ranges: Vec<RuleEntry>,
    pub ranged_pairs: Vec<(u32, u32, u8)>,
}

pub fn placement(rules: &[RuleEntry]) -> Placement {
    let mut p = Placement::default();
    for r in rules {
        let size = 1u32 << (16 - u32::from(r.port_bits));
        if r.class == CLASS_OTHER {
            p.exact.push((r.src_zone, r.dst_zone, r.class, 0));
        } else if size <= EXACT_BLOCK_MAX {
            for port in u32::from(r.port)..u32::from(r.port) + size {
                p.exact.push((r.src_zone, r.dst_zone, r.class, port as u16));
            }
        } else {
            p.ranges.push(r.clone());
            p.ranged_pairs.push((r.src_zone, r.dst_zone, r.class));
        }
    }
    p.ranged_pairs.dedup();
    p
}

pub const MAGIC: &[u8; 8] = b"SEGCBNDL";
/// 2: feed tries after the rules. Version 1 bundles (no feeds) still read.
pub const VERSION: u32 = 2;

/// Feed tries' capacity, per family, as in `runtime-bpf/c/segc.h`.
pub const FEEDS4_MAX: usize = 1_048_576;
pub const FEEDS6_MAX: usize = 1_048_576;

/// Set on a zone's trie value when the zone is untrusted and the policy
/// blocks feeds: only then does the runtime look its addresses up in the
/// feed tries. The zone id is the value without it.
pub const ZONE_FEED: u32 = 1 << 31;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ZoneEntry {
    /// The prefix, as text.
    pub prefix: String,
    #[serde(skip)]
    pub addr: [u8; 16],
    pub len: u8,
    /// Zone id + 1 (0 means no zone in the runtime).
    pub zone: u32,
}

/// One prefix of a blocked feed, as the feed tries hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct FeedPrefix {
    #[serde(skip)]
    pub addr: [u8; 16],
    pub len: u8,
    /// Feed index + 1 (into `Tables::feeds`).
    pub feed: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RuleEntry {
    pub src_zone: u32,
    pub dst_zone: u32,
    pub class: u8,
    /// The first port (or ICMP type) of the prefix block.
    pub port: u16,
    /// Significant leading bits of `port` (0 to 16).
    pub port_bits: u8,
}

#[derive(Clone, Debug, Serialize)]
pub struct Tables {
    pub version: u32,
    pub policy: Option<String>,
    /// Zone names by id (the runtime's ids are these indices + 1).
    pub zones: Vec<String>,
    pub zones4: Vec<ZoneEntry>,
    pub zones6: Vec<ZoneEntry>,
    pub rules: Vec<RuleEntry>,
    /// The blocked feeds' names, by id - 1.
    pub feeds: Vec<String>,
    /// The blocked feeds' prefixes (not in `policy.json`: the feed snapshots
    /// under `feeds/` list them).
    #[serde(skip)]
    pub feeds4: Vec<FeedPrefix>,
    #[serde(skip)]
    pub feeds6: Vec<FeedPrefix>,
}

/// A prefix's address bytes as the tries key it (network order, v4 in the
/// first four bytes).
pub fn addr_bytes(p: &crate::ir::Prefix) -> [u8; 16] {
    let mut addr = [0u8; 16];
    match p.family {
        Family::V4 => addr[..4].copy_from_slice(&(p.addr as u32).to_be_bytes()),
        Family::V6 => addr.copy_from_slice(&p.addr.to_be_bytes()),
    }
    addr
}

/// The feed tries of the blocked feeds (ids are indices into `names` + 1):
/// what a build embeds and what the agent rebuilds on a refresh.
pub fn feed_tries<'a>(
    feeds: impl Iterator<Item = (&'a str, &'a [crate::ir::feed::FeedEntry])>,
) -> (Vec<String>, Vec<FeedPrefix>, Vec<FeedPrefix>) {
    let (mut names, mut v4, mut v6) = (Vec::new(), Vec::new(), Vec::new());
    for (name, entries) in feeds {
        names.push(name.to_string());
        let id = names.len() as u32;
        for e in entries {
            let fp = FeedPrefix { addr: addr_bytes(&e.prefix), len: e.prefix.len, feed: id };
            match e.prefix.family {
                Family::V4 => v4.push(fp),
                Family::V6 => v6.push(fp),
            }
        }
    }
    // One entry per prefix: the first feed (by name) that lists it.
    for list in [&mut v4, &mut v6] {
        list.sort_by_key(|f| (f.addr, f.len, f.feed));
        list.dedup_by_key(|f| (f.addr, f.len));
    }
    (names, v4, v6)
}

fn port_blocks(set: &RangeSet, class: u8, src: u32, dst: u32, out: &mut Vec<RuleEntry>) {
    for &(lo, hi) in set.ranges() {
        for p in range_to_prefixes(Family::V4, u128::from(lo), u128::from(hi)) {
            // The range lives in 16 bits: a /N over 32 bits is /N-16 over 16.
            out.push(RuleEntry { src_zone: src, dst_zone: dst, class, port: p.addr as u16, port_bits: p.len - 16 });
        }
    }
}

/// The tables for a checked model.
pub fn tables(model: &Model) -> Tables {
    let mut zones4 = Vec::new();
    let mut zones6 = Vec::new();
    let blocks = model.blocks_feeds();
    for (i, z) in model.zones.iter().enumerate() {
        let flag = if blocks && z.scope == crate::ir::Scope::Untrusted { ZONE_FEED } else { 0 };
        for p in &z.prefixes {
            let p = p.prefix;
            let e = ZoneEntry { prefix: p.to_string(), addr: addr_bytes(&p), len: p.len, zone: (i as u32 + 1) | flag };
            match p.family {
                Family::V4 => zones4.push(e),
                Family::V6 => zones6.push(e),
            }
        }
    }
    zones4.sort_by_key(|z| (z.addr, z.len));
    zones6.sort_by_key(|z| (z.addr, z.len));
    let mut rules = Vec::new();
    for (from, to, allowed) in model.allowed_pairs() {
        let (s, d) = (from.0 + 1, to.0 + 1);
        port_blocks(&allowed.tcp, CLASS_TCP, s, d, &mut rules);
        port_blocks(&allowed.udp, CLASS_UDP, s, d, &mut rules);
        port_blocks(&allowed.icmp, CLASS_ICMP, s, d, &mut rules);
        if allowed.other {
            rules.push(RuleEntry { src_zone: s, dst_zone: d, class: CLASS_OTHER, port: 0, port_bits: 0 });
        }
    }
    rules.sort();
    let (feeds, feeds4, feeds6) = feed_tries(model.feeds.iter().filter(|f| f.blocked).map(|f| (f.name.as_str(), f.entries.as_slice())));
    Tables {
        version: VERSION,
        policy: model.policy.name.clone(),
        zones: model.zones.iter().map(|z| z.name.clone()).collect(),
        zones4,
        zones6,
        rules,
        feeds,
        feeds4,
        feeds6,
    }
}

/// Each policy map: its name, the entries this policy needs, its capacity.
pub fn usage(t: &Tables) -> [(&'static str, usize, usize); 7] {
    let placed = placement(&t.rules);
    [
        ("segc_feeds4", t.feeds4.len(), FEEDS4_MAX),
        ("segc_feeds6", t.feeds6.len(), FEEDS6_MAX),
        ("segc_zones4", t.zones4.len(), ZONES4_MAX),
        ("segc_zones6", t.zones6.len(), ZONES6_MAX),
        ("segc_ports", placed.exact.len(), PORTS_MAX),
        ("segc_rules", placed.ranges.len(), RULES_MAX),
        ("segc_pairs", placed.ranged_pairs.len(), PAIRS_MAX),
    ]
}

/// T001 when a table would not fit its map.
pub fn check_capacity(model: &Model, t: &Tables) -> Vec<Diagnostic> {
    let span = model.policy.span.unwrap_or(Span::new(FileId(0), 0, 0));
    let mut out = Vec::new();
    for (map, used, cap) in usage(t) {
        if used > cap {
            out.push(
                Diagnostic::new(
                    Code::T001,
                    span,
                    format!("the bpf map `{map}` needs {used} entries but holds {cap}: {} too many", used - cap),
                )
                .with_label(span, "this policy")
                .with_help("merge port ranges, or split the policy across hosts"),
            );
        }
    }
    out
}

/// Evaluates the tables as the runtime does (longest prefix per family, then
/// one policy lookup), to prove they agree with the reference evaluator.
pub fn eval(t: &Tables, src: std::net::IpAddr, dst: std::net::IpAddr, proto: crate::ir::Proto) -> bool {
    use crate::ir::Proto;
    if src.is_ipv4() != dst.is_ipv4() {
        return false;
    }
    let zone = |ip: std::net::IpAddr| -> (u32, bool) {
        let (entries, bytes): (&[ZoneEntry], [u8; 16]) = match ip {
            std::net::IpAddr::V4(a) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&a.octets());
                (&t.zones4, b)
            }
            std::net::IpAddr::V6(a) => (&t.zones6, a.octets()),
        };
        let z = entries.iter().filter(|e| prefix_match(&e.addr, &bytes, u32::from(e.len))).max_by_key(|e| e.len).map_or(0, |e| e.zone);
        let feeds = if ip.is_ipv4() { &t.feeds4 } else { &t.feeds6 };
        // The runtime looks feeds up only for zones flagged untrusted.
        let blocked = z & ZONE_FEED != 0 && feeds.iter().any(|f| prefix_match(&f.addr, &bytes, u32::from(f.len)));
        (z & !ZONE_FEED, blocked)
    };
    let ((s, sb), (d, db)) = (zone(src), zone(dst));
    if s == 0 || d == 0 || sb || db {
        return false;
    }
    let (class, port) = match proto {
        Proto::Tcp(p) => (CLASS_TCP, p),
        Proto::Udp(p) => (CLASS_UDP, p),
        Proto::Icmp(t) => (CLASS_ICMP, u16::from(t)),
        Proto::Other(_) => (CLASS_OTHER, 0),
    };
    t.rules.iter().any(|r| {
        r.src_zone == s
            && r.dst_zone == d
            && r.class == class
            && prefix_match(&r.port.to_be_bytes(), &port.to_be_bytes(), u32::from(r.port_bits))
    })
}

fn prefix_match(a: &[u8], b: &[u8], bits: u32) -> bool {
    let full = (bits / 8) as usize;
    if a[..full] != b[..full] {
        return false;
    }
    let rest = bits % 8;
    rest == 0 || (a[full] ^ b[full]) >> (8 - rest) == 0
}

#[cfg(test)]
mod tests;
