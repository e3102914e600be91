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

use super::atoms::range_to_prefixes;
use crate::diag::{Code, Diagnostic, FileId, Span};
use crate::ir::eval::Evaluator;
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
pub fn feed_tries<'a>(feeds: impl Iterator<Item = &'a crate::ir::feed::Feed>) -> (Vec<String>, Vec<FeedPrefix>, Vec<FeedPrefix>) {
    let (mut names, mut v4, mut v6) = (Vec::new(), Vec::new(), Vec::new());
    for f in feeds {
        names.push(f.name.clone());
        let id = names.len() as u32;
        for e in &f.entries {
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
    let ev = Evaluator::new(model);
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
    for (from, to) in ev.pairs() {
        let allowed = ev.allowed(from, to);
        let (s, d) = (from.0 + 1, to.0 + 1);
        port_blocks(&allowed.tcp, CLASS_TCP, s, d, &mut rules);
        port_blocks(&allowed.udp, CLASS_UDP, s, d, &mut rules);
        port_blocks(&allowed.icmp, CLASS_ICMP, s, d, &mut rules);
        if allowed.other {
            rules.push(RuleEntry { src_zone: s, dst_zone: d, class: CLASS_OTHER, port: 0, port_bits: 0 });
        }
    }
    rules.sort();
    let (feeds, feeds4, feeds6) = feed_tries(model.feeds.iter().filter(|f| f.blocked));
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

/// The binary bundle: `MAGIC`, version, body length, SHA-256 of the body, body.
/// The body: three counts, then zone entries (16-byte address, length, 3 pad,
/// zone id), then rule entries (src, dst, class, port bits, port), all
/// little-endian except addresses, which are in network order.
pub fn bundle(t: &Tables) -> Vec<u8> {
    let mut body = Vec::new();
    for n in [t.zones4.len(), t.zones6.len(), t.rules.len()] {
        body.extend_from_slice(&(n as u32).to_le_bytes());
    }
    // Version 2: the feed counts and names come right after.
    for n in [t.feeds4.len(), t.feeds6.len(), t.feeds.len()] {
        body.extend_from_slice(&(n as u32).to_le_bytes());
    }
    for name in &t.feeds {
        body.extend_from_slice(&(name.len() as u32).to_le_bytes());
        body.extend_from_slice(name.as_bytes());
    }
    for z in t.zones4.iter().chain(&t.zones6) {
        body.extend_from_slice(&z.addr);
        body.extend_from_slice(&[z.len, 0, 0, 0]);
        body.extend_from_slice(&z.zone.to_le_bytes());
    }
    for r in &t.rules {
        body.extend_from_slice(&r.src_zone.to_le_bytes());
        body.extend_from_slice(&r.dst_zone.to_le_bytes());
        body.extend_from_slice(&[r.class, r.port_bits]);
        body.extend_from_slice(&r.port.to_le_bytes());
    }
    for f in t.feeds4.iter().chain(&t.feeds6) {
        body.extend_from_slice(&f.addr);
        body.extend_from_slice(&[f.len, 0, 0, 0]);
        body.extend_from_slice(&f.feed.to_le_bytes());
    }
    let mut out = Vec::with_capacity(body.len() + 48);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crate::sha256::digest(&body));
    out.extend_from_slice(&body);
    out
}

/// Why a bundle was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("not a segc policy bundle")]
    Magic,
    #[error("bundle version {0} is not supported (this segc reads version {VERSION})")]
    Version(u32),
    #[error("the bundle is truncated or has trailing bytes")]
    Length,
    #[error("the bundle's checksum does not match its contents")]
    Checksum,
}

/// A cursor over a bundle's body; every read is bounds-checked.
struct Reader<'a> {
    body: &'a [u8],
    off: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], BundleError> {
        let end = self.off.checked_add(n).filter(|&e| e <= self.body.len()).ok_or(BundleError::Length)?;
        let b = &self.body[self.off..end];
        self.off = end;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, BundleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A count of records of `size` bytes that must still fit in the body.
    fn count(&mut self, size: usize) -> Result<usize, BundleError> {
        let n = self.u32()? as usize;
        if n.checked_mul(size).is_none_or(|b| b > self.body.len()) {
            return Err(BundleError::Length);
        }
        Ok(n)
    }

    /// A 24-byte address record: 16 address bytes, length, 3 pad, value.
    fn addr_record(&mut self) -> Result<([u8; 16], u8, u32), BundleError> {
        let b = self.take(24)?;
        let mut addr = [0u8; 16];
        addr.copy_from_slice(&b[..16]);
        Ok((addr, b[16], u32::from_le_bytes([b[20], b[21], b[22], b[23]])))
    }
}

/// Reads a bundle back into tables (zone names and the policy name are not in it).
pub fn parse_bundle(bytes: &[u8]) -> Result<Tables, BundleError> {
    if bytes.len() < 48 || &bytes[..8] != MAGIC {
        return Err(BundleError::Magic);
    }
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let version = u32_at(bytes, 8);
    if version != VERSION && version != 1 {
        return Err(BundleError::Version(version));
    }
    let len = u32_at(bytes, 12) as usize;
    let body = &bytes[48..];
    if body.len() != len {
        return Err(BundleError::Length);
    }
    if crate::sha256::digest(body)[..] != bytes[16..48] {
        return Err(BundleError::Checksum);
    }
    let mut r = Reader { body, off: 0 };
    let (n4, n6, nr) = (r.count(24)?, r.count(24)?, r.count(12)?);
    let (mut nf4, mut nf6, mut names) = (0, 0, Vec::new());
    if version >= 2 {
        (nf4, nf6) = (r.count(24)?, r.count(24)?);
        let nn = r.count(4)?;
        for _ in 0..nn {
            let l = r.u32()? as usize;
            names.push(String::from_utf8(r.take(l)?.to_vec()).map_err(|_| BundleError::Length)?);
        }
    }
    let zone = |r: &mut Reader<'_>, fam: Family| -> Result<ZoneEntry, BundleError> {
        let (addr, len, z) = r.addr_record()?;
        let bits = match fam {
            Family::V4 => u128::from(u32::from_be_bytes([addr[0], addr[1], addr[2], addr[3]])),
            Family::V6 => u128::from_be_bytes(addr),
        };
        if len > fam.max_len() {
            return Err(BundleError::Length);
        }
        Ok(ZoneEntry { prefix: crate::ir::Prefix { family: fam, addr: bits, len }.to_string(), addr, len, zone: z })
    };
    let zones4 = (0..n4).map(|_| zone(&mut r, Family::V4)).collect::<Result<Vec<_>, _>>()?;
    let zones6 = (0..n6).map(|_| zone(&mut r, Family::V6)).collect::<Result<Vec<_>, _>>()?;
    let rules = (0..nr)
        .map(|_| {
            let b = r.take(12)?;
            Ok(RuleEntry {
                src_zone: u32_at(b, 0),
                dst_zone: u32_at(b, 4),
                class: b[8],
                port_bits: b[9],
                port: u16::from_le_bytes([b[10], b[11]]),
            })
        })
        .collect::<Result<Vec<_>, BundleError>>()?;
    let feed = |r: &mut Reader<'_>, max: u8| -> Result<FeedPrefix, BundleError> {
        let (addr, len, f) = r.addr_record()?;
        if len > max || f == 0 || f as usize > names.len() {
            return Err(BundleError::Length);
        }
        Ok(FeedPrefix { addr, len, feed: f })
    };
    let feeds4 = (0..nf4).map(|_| feed(&mut r, 32)).collect::<Result<Vec<_>, _>>()?;
    let feeds6 = (0..nf6).map(|_| feed(&mut r, 128)).collect::<Result<Vec<_>, _>>()?;
    if r.off != body.len() {
        return Err(BundleError::Length);
    }
    Ok(Tables { version, policy: None, zones: Vec::new(), zones4, zones6, rules, feeds: names, feeds4, feeds6 })
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
mod tests {
    use super::*;
    use crate::{compile_str, Options};

    #[test]
    fn bundle_round_trips_and_detects_tampering() {
        let c = compile_str(
            "zone a {\n cidrs = [10.0.0.0/8, 2001:db8::/32]\n scope = connected\n}\nzone b {\n cidrs = [10.1.0.0/16]\n scope = connected\n}\nflow a -> b on tcp/1000-2000, icmp, any\n",
            &Options::default(),
        );
        let t = tables(&c.model);
        let bytes = bundle(&t);
        let back = parse_bundle(&bytes).expect("parses");
        assert_eq!(back.zones4, t.zones4);
        assert_eq!(back.zones6, t.zones6);
        assert_eq!(back.rules, t.rules);
        let mut bad = bytes.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(parse_bundle(&bad).err(), Some(BundleError::Checksum));
        assert_eq!(parse_bundle(&bytes[..bytes.len() - 1]).err(), Some(BundleError::Length));
        assert_eq!(parse_bundle(b"nonsense").err(), Some(BundleError::Magic));
        let mut v3 = bytes.clone();
        v3[8] = 3;
        assert_eq!(parse_bundle(&v3).err(), Some(BundleError::Version(3)));
    }

    /// Feed tries travel in the bundle; untrusted zones carry the feed flag
    /// only when the policy blocks a feed; a hostile count is refused, not
    /// allocated.
    #[test]
    fn feeds_round_trip_through_the_bundle() {
        let src = "zone web {\n cidrs = [10.0.1.0/24]\n scope = connected\n}\nzone net {\n cidrs = [0.0.0.0/0, ::/0]\n scope = untrusted\n}\nfeed f {\n source = \"f.netset\"\n}\nblock f\nflow net -> web on tcp/443\n";
        let loader = crate::source::MemoryLoader::new().with("main.seg", src).with("f.netset", "192.0.2.0/24\n2001:db8::/32\n");
        let c = crate::compile("main.seg", &loader, &Options::default()).unwrap();
        assert!(!c.has_errors(), "{:?}", c.diagnostics);
        let t = tables(&c.model);
        assert_eq!((t.feeds.as_slice(), t.feeds4.len(), t.feeds6.len()), (&["f".to_string()][..], 1, 1));
        assert!(t.zones4.iter().any(|z| z.zone == (1 | ZONE_FEED)) && t.zones4.iter().any(|z| z.zone == 2));
        let bytes = bundle(&t);
        let back = parse_bundle(&bytes).expect("parses");
        assert_eq!((back.feeds, back.feeds4, back.feeds6), (t.feeds.clone(), t.feeds4.clone(), t.feeds6.clone()));
        let ip = |s: &str| -> std::net::IpAddr { s.parse().unwrap() };
        assert!(!eval(&t, ip("192.0.2.9"), ip("10.0.1.5"), crate::ir::Proto::Tcp(443)));
        assert!(eval(&t, ip("198.51.100.9"), ip("10.0.1.5"), crate::ir::Proto::Tcp(443)));
        // A forged feed count larger than the body: refused before allocating.
        let mut body = bytes[48..].to_vec();
        body[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut forged = bytes[..16].to_vec();
        forged.extend_from_slice(&crate::sha256::digest(&body));
        forged.extend_from_slice(&body);
        assert_eq!(parse_bundle(&forged).err(), Some(BundleError::Length));
    }

    #[test]
    fn port_ranges_become_prefix_blocks() {
        let c = compile_str(
            "zone a {\n cidrs = [10.0.0.0/8]\n scope = connected\n}\nflow a -> a on tcp/1-6, udp/1024-2047\n",
            &Options::default(),
        );
        let t = tables(&c.model);
        let tcp: Vec<(u16, u8)> = t.rules.iter().filter(|r| r.class == CLASS_TCP).map(|r| (r.port, r.port_bits)).collect();
        assert_eq!(tcp, [(1, 16), (2, 15), (4, 15), (6, 16)]);
        let udp: Vec<(u16, u8)> = t.rules.iter().filter(|r| r.class == CLASS_UDP).map(|r| (r.port, r.port_bits)).collect();
        assert_eq!(udp, [(1024, 6)]);
    }

    /// A generated policy over the maps' capacity is refused with T001, naming
    /// each map and its excess.
    #[test]
    fn oversized_policies_are_refused() {
        let mut src = String::new();
        for i in 0..280 {
            src.push_str(&format!("zone z{i} {{\n cidrs = [10.{}.{}.0/24]\n scope = connected\n}}\n", i / 256, i % 256));
        }
        for i in 0..280 {
            for j in 0..280 {
                src.push_str(&format!("flow z{i} -> z{j} on tcp/1-65534\n"));
            }
        }
        let c = compile_str(&src, &Options::default());
        assert!(!c.has_errors());
        let t = tables(&c.model);
        let p = placement(&t.rules);
        assert!(p.ranges.len() > RULES_MAX && p.exact.len() > PORTS_MAX);
        let d = check_capacity(&c.model, &t);
        let msgs: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(d.len(), 2, "{msgs:?}");
        assert!(d.iter().all(|d| d.code == Code::T001));
        assert!(msgs[0].contains("`segc_ports`") && msgs[0].contains(&format!("{} too many", p.exact.len() - PORTS_MAX)), "{msgs:?}");
        assert!(msgs[1].contains("`segc_rules`") && msgs[1].contains(&format!("{} too many", p.ranges.len() - RULES_MAX)), "{msgs:?}");
    }

    #[test]
    fn small_blocks_go_exact_and_large_ones_to_the_trie() {
        let c = compile_str(
            "zone a {\n cidrs = [10.0.0.0/8]\n scope = connected\n}\nzone b {\n cidrs = [10.1.0.0/16]\n scope = connected\n}\nflow a -> a on tcp/8-31\nflow a -> b on any\n",
            &Options::default(),
        );
        let p = placement(&tables(&c.model).rules);
        // tcp/8-31 is 8-15 (8 ports, exact) and 16-31 (a block of 16, ranged);
        // `any` is other exactly and the rest as whole blocks.
        assert!(p.exact.contains(&(1, 1, CLASS_TCP, 8)) && p.exact.contains(&(1, 1, CLASS_TCP, 15)));
        assert!(!p.exact.contains(&(1, 1, CLASS_TCP, 16)));
        assert!(p.ranges.iter().any(|r| (r.src_zone, r.dst_zone, r.class, r.port, r.port_bits) == (1, 1, CLASS_TCP, 16, 12)));
        assert!(p.exact.contains(&(1, 2, CLASS_OTHER, 0)));
        assert!(p.ranges.iter().any(|r| r.dst_zone == 2 && r.class == CLASS_TCP && r.port_bits == 0));
        assert!(p.ranged_pairs.contains(&(1, 1, CLASS_TCP)) && p.ranged_pairs.contains(&(1, 2, CLASS_UDP)));
    }
}
