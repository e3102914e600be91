//! The random-policy generator shared by the property tests: policies are kept
//! as data, so a brute-force model written from the SPEC can evaluate them.
#![allow(dead_code, reason = "each test binary uses part of it")]

use std::net::IpAddr;

use proptest::prelude::*;
use segc_compiler::ir::Proto;

// ---------- a random policy, kept as data so the model can evaluate it ----------

#[derive(Clone, Debug)]
pub struct Net {
    pub v6: bool,
    pub addr: u128,
    pub len: u8,
}

impl Net {
    pub fn text(&self) -> String {
        if self.v6 {
            format!("{}/{}", std::net::Ipv6Addr::from(self.addr), self.len)
        } else {
            format!("{}/{}", std::net::Ipv4Addr::from(self.addr as u32), self.len)
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (v6, bits, width) = match ip {
            IpAddr::V4(a) => (false, u128::from(u32::from(a)), 32u32),
            IpAddr::V6(a) => (true, u128::from(a), 128u32),
        };
        if v6 != self.v6 {
            return false;
        }
        let host = width - u32::from(self.len);
        if host >= 128 {
            return true;
        }
        (bits >> host) == (self.addr >> host)
    }
}

#[derive(Clone, Debug)]
pub enum Svc {
    Tcp(u16, u16),
    Udp(u16, u16),
    IcmpAll,
    Icmp(u8),
    Any,
}

impl Svc {
    pub fn text(&self) -> String {
        match self {
            Svc::Tcp(a, b) if a == b => format!("tcp/{a}"),
            Svc::Tcp(a, b) => format!("tcp/{a}-{b}"),
            Svc::Udp(a, b) if a == b => format!("udp/{a}"),
            Svc::Udp(a, b) => format!("udp/{a}-{b}"),
            Svc::IcmpAll => "icmp".into(),
            Svc::Icmp(t) => format!("icmp/{t}"),
            Svc::Any => "any".into(),
        }
    }

    pub fn matches(&self, p: Proto) -> bool {
        match (self, p) {
            (Svc::Any, _) => true,
            (Svc::Tcp(a, b), Proto::Tcp(x)) | (Svc::Udp(a, b), Proto::Udp(x)) => *a <= x && x <= *b,
            (Svc::IcmpAll, Proto::Icmp(_)) => true,
            (Svc::Icmp(t), Proto::Icmp(x)) => *t == x,
            _ => false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub deny: bool,
    pub from: usize,
    pub to: usize,
    pub svcs: Vec<Svc>,
}

#[derive(Clone, Debug)]
pub struct Pol {
    pub zones: Vec<Vec<Net>>,
    pub rules: Vec<Rule>,
    /// Zones of scope `untrusted` (by index; missing means connected).
    pub untrusted: Vec<bool>,
    /// A blocked feed (`feed.netset`), when not empty.
    pub feed: Vec<Net>,
}

impl Pol {
    fn scope(&self, i: usize) -> &'static str {
        if self.untrusted.get(i).copied().unwrap_or(false) {
            "untrusted"
        } else {
            "connected"
        }
    }

    /// The feed item and its block, when the policy has a feed.
    fn feed_text(&self) -> String {
        if self.feed.is_empty() {
            return String::new();
        }
        "feed f {\n  source = \"feed.netset\"\n}\nblock f\n".to_string()
    }

    /// The files besides main.seg.
    pub fn files(&self) -> Vec<(String, String)> {
        if self.feed.is_empty() {
            return Vec::new();
        }
        let lines: Vec<String> = self.feed.iter().map(Net::text).collect();
        vec![("feed.netset".to_string(), lines.join("\n") + "\n")]
    }

    /// Compiles `text` (this policy's text, with or without bindings) with
    /// this policy's files.
    pub fn compile(&self, text: &str) -> segc_compiler::Compilation {
        let mut loader = segc_compiler::source::MemoryLoader::new().with("main.seg", text);
        for (path, body) in self.files() {
            loader = loader.with(&path, &body);
        }
        segc_compiler::compile("main.seg", &loader, &segc_compiler::Options::default()).expect("main.seg is in memory")
    }

    /// The text with extra attribute lines in some zones (bindings).
    pub fn text_with(&self, extra: &dyn Fn(usize) -> Vec<String>) -> String {
        let mut s = String::new();
        for (i, nets) in self.zones.iter().enumerate() {
            let cidrs: Vec<String> = nets.iter().map(Net::text).collect();
            s.push_str(&format!("zone z{i} {{\n  cidrs = [{}]\n  scope = {}\n", cidrs.join(", "), self.scope(i)));
            for line in extra(i) {
                s.push_str(&format!("  {line}\n"));
            }
            s.push_str("}\n");
        }
        for r in &self.rules {
            let svcs: Vec<String> = r.svcs.iter().map(Svc::text).collect();
            let kw = if r.deny { "deny" } else { "flow" };
            s.push_str(&format!("{kw} z{} -> z{} on {}\n", r.from, r.to, svcs.join(", ")));
        }
        s.push_str(&self.feed_text());
        s
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        for (i, nets) in self.zones.iter().enumerate() {
            let cidrs: Vec<String> = nets.iter().map(Net::text).collect();
            s.push_str(&format!("zone z{i} {{\n  cidrs = [{}]\n  scope = {}\n}}\n", cidrs.join(", "), self.scope(i)));
        }
        for r in &self.rules {
            let svcs: Vec<String> = r.svcs.iter().map(Svc::text).collect();
            let kw = if r.deny { "deny" } else { "flow" };
            s.push_str(&format!("{kw} z{} -> z{} on {}\n", r.from, r.to, svcs.join(", ")));
        }
        s.push_str(&self.feed_text());
        s
    }

    /// The SPEC's semantics, by brute force over the generator's own data.
    pub fn verdict(&self, src: IpAddr, dst: IpAddr, p: Proto) -> bool {
        let zone_of = |ip: IpAddr| -> Option<usize> {
            let mut best: Option<(u8, usize)> = None;
            for (z, nets) in self.zones.iter().enumerate() {
                for n in nets {
                    if n.contains(ip) && best.is_none_or(|(l, _)| n.len > l) {
                        best = Some((n.len, z));
                    }
                }
            }
            best.map(|(_, z)| z)
        };
        if src.is_ipv4() != dst.is_ipv4() {
            return false;
        }
        let (Some(a), Some(b)) = (zone_of(src), zone_of(dst)) else { return false };
        let fed = |ip: IpAddr, z: usize| self.untrusted.get(z).copied().unwrap_or(false) && self.feed.iter().any(|n| n.contains(ip));
        if fed(src, a) || fed(dst, b) {
            return false;
        }
        let hit = |deny: bool| self.rules.iter().any(|r| r.deny == deny && r.from == a && r.to == b && r.svcs.iter().any(|s| s.matches(p)));
        !hit(true) && hit(false)
    }
}

pub fn net() -> impl Strategy<Value = Net> {
    prop_oneof![
        (0u32..4, 0u32..4, 0u32..3, prop::sample::select(vec![8u8, 16, 24, 32])).prop_map(|(b, c, d, len)| {
            let addr = (10u32 << 24) | (b << 16) | (c << 8) | d;
            let host = 32 - u32::from(len);
            let addr = if host >= 32 { 0 } else { (addr >> host) << host };
            Net { v6: false, addr: u128::from(addr), len }
        }),
        (0u128..3, 0u128..3, prop::sample::select(vec![32u8, 48, 64, 128])).prop_map(|(b, c, len)| {
            let addr = (0x2001_0db8u128 << 96) | (b << 80) | (c << 64) | c;
            let host = 128 - u32::from(len);
            Net { v6: true, addr: (addr >> host) << host, len }
        }),
    ]
}

pub fn svc() -> impl Strategy<Value = Svc> {
    let port = 20u16..30;
    prop_oneof![
        4 => (port.clone(), 0u16..4).prop_map(|(a, w)| Svc::Tcp(a, a + w)),
        2 => (port, 0u16..4).prop_map(|(a, w)| Svc::Udp(a, a + w)),
        1 => Just(Svc::IcmpAll),
        1 => (0u8..4).prop_map(Svc::Icmp),
        1 => Just(Svc::Any),
    ]
}

pub fn policy() -> impl Strategy<Value = Pol> {
    prop::collection::vec(prop::collection::vec(net(), 1..4), 1..6)
        .prop_map(|zones| {
            // Every prefix in one zone only (E301 otherwise).
            let mut seen = std::collections::HashSet::new();
            zones
                .into_iter()
                .map(|nets| nets.into_iter().filter(|n| seen.insert((n.v6, n.addr, n.len))).collect::<Vec<_>>())
                .filter(|nets: &Vec<Net>| !nets.is_empty())
                .collect::<Vec<_>>()
        })
        .prop_filter("at least one zone", |z| !z.is_empty())
        .prop_flat_map(|zones| {
            let n = zones.len();
            let rule = (any::<bool>(), 0..n, 0..n, prop::collection::vec(svc(), 1..3)).prop_map(|(deny, from, to, svcs)| Rule {
                deny,
                from,
                to,
                svcs,
            });
            (Just(zones), prop::collection::vec(rule, 0..12)).prop_map(|(zones, rules)| Pol {
                zones,
                rules,
                untrusted: vec![],
                feed: vec![],
            })
        })
}

/// A policy with some untrusted zones and a blocked feed drawn from the same
/// address space, so feeds overlap zones of every scope.
pub fn policy_with_feeds() -> impl Strategy<Value = Pol> {
    (policy(), prop::collection::vec(any::<bool>(), 6), prop::collection::vec(net(), 0..6)).prop_map(|(mut p, untrusted, feed)| {
        p.untrusted = untrusted;
        p.feed = feed;
        p
    })
}

pub fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (prop::sample::select(vec![10u8, 11]), 0u8..4, 0u8..4, 0u8..4).prop_map(|(a, b, c, d)| IpAddr::from([a, b, c, d])),
        (0u16..3, 0u16..3, 0u16..3).prop_map(|(b, c, d)| IpAddr::from([0x2001, 0xdb8, b, c, 0, 0, 0, d])),
    ]
}

pub fn proto() -> impl Strategy<Value = Proto> {
    prop_oneof![
        (18u16..36).prop_map(Proto::Tcp),
        (18u16..36).prop_map(Proto::Udp),
        (0u8..5).prop_map(Proto::Icmp),
        prop::sample::select(vec![47u8, 50, 132]).prop_map(Proto::Other),
    ]
}
