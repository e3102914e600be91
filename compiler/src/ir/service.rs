//! Service sets: exact sets of (protocol, port or ICMP type) with interval
//! arithmetic, so every analysis works on sets rather than samples.

use std::fmt;

use serde::Serialize;

/// A set of `u16` values kept as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct RangeSet(Vec<(u16, u16)>);

impl RangeSet {
    pub fn empty() -> Self {
        RangeSet(Vec::new())
    }

    pub fn range(lo: u16, hi: u16) -> Self {
        debug_assert!(lo <= hi);
        RangeSet(vec![(lo, hi)])
    }

    pub fn from_ranges(mut ranges: Vec<(u16, u16)>) -> Self {
        ranges.sort_unstable();
        let mut out: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match out.last_mut() {
                Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        RangeSet(out)
    }

    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, v: u16) -> bool {
        let i = self.0.partition_point(|&(_, hi)| hi < v);
        self.0.get(i).is_some_and(|&(lo, _)| lo <= v)
    }

    /// How many values the set holds.
    pub fn count(&self) -> u32 {
        self.0.iter().map(|&(lo, hi)| u32::from(hi) - u32::from(lo) + 1).sum()
    }

    pub fn union(&self, other: &RangeSet) -> RangeSet {
        let mut all = self.0.clone();
        all.extend_from_slice(&other.0);
        RangeSet::from_ranges(all)
    }

    pub fn intersect(&self, other: &RangeSet) -> RangeSet {
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < self.0.len() && j < other.0.len() {
            let (a_lo, a_hi) = self.0[i];
            let (b_lo, b_hi) = other.0[j];
            let lo = a_lo.max(b_lo);
            let hi = a_hi.min(b_hi);
            if lo <= hi {
                out.push((lo, hi));
            }
            if a_hi < b_hi {
                i += 1;
            } else {
                j += 1;
            }
        }
        RangeSet(out)
    }

    pub fn difference(&self, other: &RangeSet) -> RangeSet {
        let mut out = Vec::new();
        let mut j = 0;
        for &(lo, hi) in &self.0 {
            let mut cur = u32::from(lo);
            let hi32 = u32::from(hi);
            while j < other.0.len() && u32::from(other.0[j].1) < cur {
                j += 1;
            }
            let mut k = j;
            while cur <= hi32 && k < other.0.len() && u32::from(other.0[k].0) <= hi32 {
                let (b_lo, b_hi) = (u32::from(other.0[k].0), u32::from(other.0[k].1));
                if b_lo > cur {
                    out.push((cur as u16, (b_lo - 1) as u16));
                }
                cur = cur.max(b_hi + 1);
                k += 1;
            }
            if cur <= hi32 {
                out.push((cur as u16, hi));
            }
        }
        RangeSet(out)
    }

    pub fn is_subset(&self, other: &RangeSet) -> bool {
        self.difference(other).is_empty()
    }

    /// The smallest value in the set.
    pub fn first(&self) -> Option<u16> {
        self.0.first().map(|&(lo, _)| lo)
    }
}

/// The ports, ICMP types and other protocols a rule matches.
///
/// `other` stands for every IP protocol except TCP, UDP, ICMP and ICMPv6; only
/// `any` reaches it. ICMP types cover ICMP for IPv4 and ICMPv6 for IPv6.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ServiceSet {
    pub tcp: RangeSet,
    pub udp: RangeSet,
    pub icmp: RangeSet,
    pub other: bool,
}

impl ServiceSet {
    pub fn any() -> Self {
        ServiceSet { tcp: RangeSet::range(0, u16::MAX), udp: RangeSet::range(0, u16::MAX), icmp: RangeSet::range(0, 255), other: true }
    }

    pub fn is_empty(&self) -> bool {
        self.tcp.is_empty() && self.udp.is_empty() && self.icmp.is_empty() && !self.other
    }

    /// Every protocol and port (checked in place: targets ask this of every
    /// rule, and `ServiceSet::any()` allocates).
    pub fn is_any(&self) -> bool {
        self.other && self.tcp.ranges() == [(0, u16::MAX)] && self.udp.ranges() == [(0, u16::MAX)] && self.icmp.ranges() == [(0, 255)]
    }

    pub fn union(&self, o: &ServiceSet) -> ServiceSet {
        ServiceSet {
            tcp: self.tcp.union(&o.tcp),
            udp: self.udp.union(&o.udp),
            icmp: self.icmp.union(&o.icmp),
            other: self.other || o.other,
        }
    }

    pub fn intersect(&self, o: &ServiceSet) -> ServiceSet {
        ServiceSet {
            tcp: self.tcp.intersect(&o.tcp),
            udp: self.udp.intersect(&o.udp),
            icmp: self.icmp.intersect(&o.icmp),
            other: self.other && o.other,
        }
    }

    pub fn difference(&self, o: &ServiceSet) -> ServiceSet {
        ServiceSet {
            tcp: self.tcp.difference(&o.tcp),
            udp: self.udp.difference(&o.udp),
            icmp: self.icmp.difference(&o.icmp),
            other: self.other && !o.other,
        }
    }

    pub fn is_subset(&self, o: &ServiceSet) -> bool {
        self.difference(o).is_empty()
    }

    pub fn contains(&self, proto: Proto) -> bool {
        match proto {
            Proto::Tcp(p) => self.tcp.contains(p),
            Proto::Udp(p) => self.udp.contains(p),
            Proto::Icmp(t) => self.icmp.contains(u16::from(t)),
            Proto::Other(_) => self.other,
        }
    }

    /// One concrete protocol value in the set, to show as an example.
    pub fn sample(&self) -> Option<Proto> {
        if let Some(p) = self.tcp.first() {
            return Some(Proto::Tcp(p));
        }
        if let Some(p) = self.udp.first() {
            return Some(Proto::Udp(p));
        }
        if let Some(t) = self.icmp.first() {
            return Some(Proto::Icmp(t as u8));
        }
        self.other.then_some(Proto::Other(47))
    }
}

impl ServiceSet {
    /// The canonical text (`any`, or `tcp/22, udp/1-2, icmp`), piece by
    /// piece into `put`: what `Display` writes, without the formatting
    /// machinery (targets describe tens of thousands of rules with it).
    pub fn write_text(&self, put: &mut dyn FnMut(&str)) {
        if self.is_any() {
            return put("any");
        }
        let mut first = true;
        let mut sep = |put: &mut dyn FnMut(&str)| {
            if !first {
                put(", ");
            }
            first = false;
        };
        for (name, set, full) in [("tcp", &self.tcp, u16::MAX), ("udp", &self.udp, u16::MAX), ("icmp", &self.icmp, 255)] {
            if set.ranges() == [(0, full)] {
                sep(put);
                put(name);
                continue;
            }
            for &(lo, hi) in set.ranges() {
                sep(put);
                put(name);
                put("/");
                put(Decimal::of(lo).as_str());
                if lo != hi {
                    put("-");
                    put(Decimal::of(hi).as_str());
                }
            }
        }
        if self.other {
            sep(put);
            put("other protocols");
        }
        if first {
            put("nothing");
        }
    }

    /// [`ServiceSet::write_text`] onto the end of `out`.
    pub fn push_text(&self, out: &mut String) {
        self.write_text(&mut |piece| out.push_str(piece));
    }
}

/// `lo`, or `lo-hi`: a port range as targets write it.
pub fn range_text(lo: u16, hi: u16) -> String {
    let mut s = String::with_capacity(11);
    s.push_str(Decimal::of(lo).as_str());
    if lo != hi {
        s.push('-');
        s.push_str(Decimal::of(hi).as_str());
    }
    s
}

/// A port or type in decimal, on the stack.
struct Decimal {
    digits: [u8; 5],
    start: usize,
}

impl Decimal {
    fn of(mut v: u16) -> Decimal {
        let mut d = Decimal { digits: [b'0'; 5], start: 5 };
        loop {
            d.start -= 1;
            d.digits[d.start] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                return d;
            }
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.digits[self.start..]).unwrap_or_default()
    }
}

impl fmt::Display for ServiceSet {
    /// Canonical text: `any`, or a comma-separated list of `tcp/22`, `udp/1-2`, `icmp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut result = Ok(());
        self.write_text(&mut |piece| {
            if result.is_ok() {
                result = f.write_str(piece);
            }
        });
        result
    }
}

/// The protocol part of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Proto {
    Tcp(u16),
    Udp(u16),
    /// An ICMP type (ICMPv6 type for IPv6 packets).
    Icmp(u8),
    /// Any other IP protocol, by number.
    Other(u8),
}

impl Proto {
    /// Parses `tcp/443`, `udp/53`, `icmp/8`, `icmp` (echo request, type 8) and
    /// `ip/N` for another IP protocol number.
    pub fn parse(text: &str) -> Result<Proto, String> {
        if text == "icmp" {
            return Ok(Proto::Icmp(8));
        }
        let (name, num) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a packet protocol (use tcp/PORT, udp/PORT, icmp/TYPE or ip/PROTO)"))?;
        let n: u32 = num.parse().map_err(|_| format!("`{num}` is not a number"))?;
        match name {
            "tcp" | "udp" => {
                let port = u16::try_from(n).map_err(|_| format!("port {n} is out of range 0..=65535"))?;
                Ok(if name == "tcp" { Proto::Tcp(port) } else { Proto::Udp(port) })
            }
            "icmp" => u8::try_from(n).map(Proto::Icmp).map_err(|_| format!("ICMP type {n} is out of range 0..=255")),
            "ip" => {
                let p = u8::try_from(n).map_err(|_| format!("protocol {n} is out of range 0..=255"))?;
                Ok(match p {
                    6 | 17 | 1 | 58 => return Err(format!("use tcp/PORT, udp/PORT or icmp/TYPE for protocol {p}")),
                    p => Proto::Other(p),
                })
            }
            other => Err(format!("unknown protocol `{other}` (use tcp, udp, icmp or ip)")),
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proto::Tcp(p) => write!(f, "tcp/{p}"),
            Proto::Udp(p) => write!(f, "udp/{p}"),
            Proto::Icmp(t) => write!(f, "icmp/{t}"),
            Proto::Other(n) => write!(f, "ip/{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_arithmetic() {
        let a = RangeSet::from_ranges(vec![(10, 20), (21, 30), (50, 60)]);
        assert_eq!(a.ranges(), &[(10, 30), (50, 60)]);
        let b = RangeSet::from_ranges(vec![(15, 55)]);
        assert_eq!(a.difference(&b).ranges(), &[(10, 14), (56, 60)]);
        assert_eq!(a.intersect(&b).ranges(), &[(15, 30), (50, 55)]);
        assert_eq!(RangeSet::range(0, u16::MAX).difference(&RangeSet::range(0, u16::MAX)), RangeSet::empty());
        assert_eq!(RangeSet::range(0, u16::MAX).difference(&RangeSet::range(5, 5)).ranges(), &[(0, 4), (6, u16::MAX)]);
        assert!(a.contains(30) && !a.contains(31) && a.contains(50));
        assert_eq!(a.count(), 32);
    }

    #[test]
    fn display_is_canonical() {
        let s = ServiceSet {
            tcp: RangeSet::from_ranges(vec![(443, 443), (8000, 8100)]),
            icmp: RangeSet::range(0, 255),
            ..ServiceSet::default()
        };
        assert_eq!(s.to_string(), "tcp/443, tcp/8000-8100, icmp");
        assert_eq!(ServiceSet::any().to_string(), "any");
    }

    /// The plain statement of the canonical text, through `format!`.
    fn reference(s: &ServiceSet) -> String {
        if s.is_any() {
            return "any".into();
        }
        let mut parts = Vec::new();
        for (name, set, full) in [("tcp", &s.tcp, u16::MAX), ("udp", &s.udp, u16::MAX), ("icmp", &s.icmp, 255)] {
            if set.ranges() == [(0, full)] {
                parts.push(name.to_string());
                continue;
            }
            for &(lo, hi) in set.ranges() {
                parts.push(if lo == hi { format!("{name}/{lo}") } else { format!("{name}/{lo}-{hi}") });
            }
        }
        if s.other {
            parts.push("other protocols".into());
        }
        if parts.is_empty() {
            return "nothing".into();
        }
        parts.join(", ")
    }

    proptest::proptest! {
        #[test]
        fn the_text_is_its_plain_statement(
            tcp in proptest::collection::vec((0u16..=u16::MAX, 0u16..2000), 0..4),
            udp in proptest::collection::vec((0u16..=u16::MAX, 0u16..2000), 0..3),
            icmp in proptest::collection::vec((0u16..=255, 0u16..40), 0..3),
            other: bool,
            full in 0u8..8,
        ) {
            let set = |v: &[(u16, u16)], max: u16, whole: bool| {
                if whole {
                    return RangeSet::range(0, max);
                }
                RangeSet::from_ranges(v.iter().map(|&(lo, n)| (lo.min(max), lo.saturating_add(n).min(max))).collect())
            };
            let s = ServiceSet {
                tcp: set(&tcp, u16::MAX, full & 1 != 0),
                udp: set(&udp, u16::MAX, full & 2 != 0),
                icmp: set(&icmp, 255, full & 4 != 0),
                other,
            };
            let mut pushed = String::from("x");
            s.push_text(&mut pushed);
            proptest::prop_assert_eq!(s.to_string(), reference(&s));
            proptest::prop_assert_eq!(pushed, format!("x{}", reference(&s)));
        }
    }

    #[test]
    fn packet_protocols() {
        assert_eq!(Proto::parse("tcp/443"), Ok(Proto::Tcp(443)));
        assert_eq!(Proto::parse("icmp"), Ok(Proto::Icmp(8)));
        assert_eq!(Proto::parse("ip/47"), Ok(Proto::Other(47)));
        assert!(Proto::parse("tcp/70000").is_err());
        assert!(Proto::parse("ip/6").is_err());
    }
}
