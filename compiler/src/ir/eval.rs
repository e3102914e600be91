//! The reference evaluator. This *is* the semantics of a policy: every target is
//! tested against it.
//!
//! - An address belongs to the zone with the longest matching prefix, or to none.
//! - An address in a blocked feed is denied both ways, before any flow, unless
//!   its zone's scope is not `untrusted` (a feed never cuts your own networks).
//! - A packet is allowed iff no deny between its zones matches it and some flow
//!   between its zones does. Everything else is denied, traffic inside one zone
//!   included.

use crate::hash::HashMap;
use std::net::IpAddr;

use crate::ir::addr::addr_bits;
use crate::ir::{Action, Family, FeedId, Model, Prefix, Proto, RuleId, Scope, ServiceSet, ZoneId};

/// The rules between one ordered pair of zones.
#[derive(Clone, Debug, Default)]
pub struct PairRules {
    pub flows: Vec<RuleId>,
    pub denies: Vec<RuleId>,
}

/// Why a packet got its verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The source, the destination or both are in no zone.
    NoZone { src: bool, dst: bool },
    /// Source and destination are of different address families.
    FamilyMismatch,
    /// This deny matched.
    Deny(RuleId),
    /// This flow matched and no deny did.
    Flow(RuleId),
    /// No flow between the zones matches.
    Default,
    /// The source (`dst` false) or destination is in a blocked feed, at this
    /// line of it, and its zone is `untrusted`.
    Feed { feed: FeedId, line: u32, prefix: Prefix, dst: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allow: bool,
    pub src: Option<(ZoneId, Prefix)>,
    pub dst: Option<(ZoneId, Prefix)>,
    pub decision: Decision,
}

/// Longest-prefix lookup: one hash map per prefix length, longest first.
/// The first value inserted for a prefix stays.
#[derive(Clone, Debug)]
struct Lpm<T> {
    by_len: Vec<(u8, PrefixMap<T>)>,
}

/// The prefixes of one length: network address -> (value, prefix).
type PrefixMap<T> = HashMap<u128, (T, Prefix)>;

impl<T> Default for Lpm<T> {
    fn default() -> Self {
        Lpm { by_len: Vec::new() }
    }
}

impl<T: Copy> Lpm<T> {
    fn insert(&mut self, p: Prefix, v: T) {
        match self.by_len.iter_mut().find(|(l, _)| *l == p.len) {
            Some((_, m)) => {
                m.entry(p.addr).or_insert((v, p));
            }
            None => {
                self.by_len.push((p.len, HashMap::from_iter([(p.addr, (v, p))])));
                self.by_len.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
            }
        }
    }

    fn lookup(&self, family: Family, addr: u128) -> Option<(T, Prefix)> {
        self.by_len.iter().find_map(|(len, m)| m.get(&(addr & Prefix::mask_of(family, *len))).copied())
    }
}

/// The prefixes of the blocked feeds, per family: (feed, line).
#[derive(Clone, Debug, Default)]
struct FeedLpm {
    v4: Lpm<(FeedId, u32)>,
    v6: Lpm<(FeedId, u32)>,
}

/// What the evaluator looks up: the zones' and feeds' prefixes and the rules
/// per pair. Built once per finished model ([`Model::index`]) and shared by
/// every evaluator of it: the analyses and each target make their own.
#[derive(Debug)]
pub(crate) struct Index {
    v4: Lpm<ZoneId>,
    v6: Lpm<ZoneId>,
    feeds: FeedLpm,
    pairs: HashMap<(ZoneId, ZoneId), PairRules>,
}

impl Index {
    pub(crate) fn build(model: &Model) -> Index {
        let mut v4 = Lpm::default();
        let mut v6 = Lpm::default();
        for (i, z) in model.zones.iter().enumerate() {
            for p in &z.prefixes {
                match p.prefix.family {
                    Family::V4 => v4.insert(p.prefix, ZoneId(i as u32)),
                    Family::V6 => v6.insert(p.prefix, ZoneId(i as u32)),
                }
            }
        }
        let mut pairs: HashMap<(ZoneId, ZoneId), PairRules> = HashMap::default();
        for (i, r) in model.flows.iter().enumerate() {
            pairs.entry((r.from, r.to)).or_default().flows.push(RuleId(i as u32));
        }
        for (i, r) in model.denies.iter().enumerate() {
            pairs.entry((r.from, r.to)).or_default().denies.push(RuleId(i as u32));
        }
        let mut feeds = FeedLpm::default();
        for (i, f) in model.feeds.iter().enumerate().filter(|(_, f)| f.blocked) {
            for e in &f.entries {
                match e.prefix.family {
                    Family::V4 => feeds.v4.insert(e.prefix, (FeedId(i as u32), e.line)),
                    Family::V6 => feeds.v6.insert(e.prefix, (FeedId(i as u32), e.line)),
                }
            }
        }
        Index { v4, v6, feeds, pairs }
    }
}

pub struct Evaluator<'m> {
    pub model: &'m Model,
    ix: &'m Index,
}

impl<'m> Evaluator<'m> {
    pub fn new(model: &'m Model) -> Self {
        Evaluator { model, ix: model.index() }
    }

    /// The blocked feed an address is in, with the line and prefix that put
    /// it there; whatever its zone.
    pub fn feed_of(&self, ip: IpAddr) -> Option<(FeedId, u32, Prefix)> {
        let (family, bits) = addr_bits(ip);
        let lpm = match family {
            Family::V4 => &self.ix.feeds.v4,
            Family::V6 => &self.ix.feeds.v6,
        };
        lpm.lookup(family, bits).map(|((feed, line), prefix)| (feed, line, prefix))
    }

    /// The feed that blocks an address of this zone, if the zone is one a
    /// feed may cut (scope `untrusted`).
    pub fn blocked(&self, ip: IpAddr, zone: ZoneId) -> Option<(FeedId, u32, Prefix)> {
        if self.model.zone(zone).scope != Scope::Untrusted {
            return None;
        }
        self.feed_of(ip)
    }

    /// The zone an address belongs to, with the prefix that put it there.
    pub fn zone_of(&self, ip: IpAddr) -> Option<(ZoneId, Prefix)> {
        let (family, bits) = addr_bits(ip);
        match family {
            Family::V4 => self.ix.v4.lookup(family, bits),
            Family::V6 => self.ix.v6.lookup(family, bits),
        }
    }

    pub fn pair(&self, from: ZoneId, to: ZoneId) -> Option<&PairRules> {
        self.ix.pairs.get(&(from, to))
    }

    /// Every zone pair that has at least one rule, in order.
    pub fn pairs(&self) -> Vec<(ZoneId, ZoneId)> {
        let mut v: Vec<_> = self.ix.pairs.keys().copied().collect();
        v.sort();
        v
    }

    pub fn verdict(&self, src: IpAddr, dst: IpAddr, proto: Proto) -> Verdict {
        let s = self.zone_of(src);
        let d = self.zone_of(dst);
        if src.is_ipv4() != dst.is_ipv4() {
            return Verdict { allow: false, src: s, dst: d, decision: Decision::FamilyMismatch };
        }
        let (Some((sz, _)), Some((dz, _))) = (s, d) else {
            return Verdict { allow: false, src: s, dst: d, decision: Decision::NoZone { src: s.is_none(), dst: d.is_none() } };
        };
        let feed = self.blocked(src, sz).map(|f| (f, false)).or_else(|| self.blocked(dst, dz).map(|f| (f, true)));
        if let Some(((feed, line, prefix), dst)) = feed {
            return Verdict { allow: false, src: s, dst: d, decision: Decision::Feed { feed, line, prefix, dst } };
        }
        let decision = self.decide(sz, dz, proto);
        Verdict { allow: matches!(decision, Decision::Flow(_)), src: s, dst: d, decision }
    }

    /// The decision for a packet between two zones.
    pub fn decide(&self, from: ZoneId, to: ZoneId, proto: Proto) -> Decision {
        let Some(rules) = self.ix.pairs.get(&(from, to)) else { return Decision::Default };
        if let Some(&id) = rules.denies.iter().find(|&&id| self.model.rule(Action::Deny, id).set.contains(proto)) {
            return Decision::Deny(id);
        }
        if let Some(&id) = rules.flows.iter().find(|&&id| self.model.rule(Action::Allow, id).set.contains(proto)) {
            return Decision::Flow(id);
        }
        Decision::Default
    }

    /// Everything allowed from one zone to another: the flows minus the denies.
    pub fn allowed(&self, from: ZoneId, to: ZoneId) -> ServiceSet {
        let Some(rules) = self.ix.pairs.get(&(from, to)) else { return ServiceSet::default() };
        let allowed = rules.flows.iter().fold(ServiceSet::default(), |acc, &id| acc.union(&self.model.rule(Action::Allow, id).set));
        rules.denies.iter().fold(allowed, |acc, &id| acc.difference(&self.model.rule(Action::Deny, id).set))
    }
}

impl Evaluator<'_> {
    /// The union of the flows between two zones, before denies.
    pub fn allowed_before_denies(&self, from: ZoneId, to: ZoneId) -> ServiceSet {
        self.ix.pairs.get(&(from, to)).map_or_else(ServiceSet::default, |rules| {
            rules.flows.iter().fold(ServiceSet::default(), |acc, &id| acc.union(&self.model.rule(Action::Allow, id).set))
        })
    }
}
