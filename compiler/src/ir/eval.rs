//! The reference evaluator. This *is* the semantics of a policy: every target is
//! tested against it.
//!
//! - An address belongs to the zone with the longest matching prefix, or to none.
//! - A packet is allowed iff no deny between its zones matches it and some flow
//!   between its zones does. Everything else is denied, traffic inside one zone
//!   included.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::ir::addr::addr_bits;
use crate::ir::{Action, Family, Model, Prefix, Proto, RuleId, ServiceSet, ZoneId};

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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allow: bool,
    pub src: Option<(ZoneId, Prefix)>,
    pub dst: Option<(ZoneId, Prefix)>,
    pub decision: Decision,
}

/// Longest-prefix zone lookup: one hash map per prefix length, longest first.
#[derive(Clone, Debug, Default)]
struct Lpm {
    by_len: Vec<(u8, PrefixMap)>,
}

/// The prefixes of one length: network address -> (zone, prefix).
type PrefixMap = HashMap<u128, (ZoneId, Prefix)>;

impl Lpm {
    fn insert(&mut self, p: Prefix, z: ZoneId) {
        match self.by_len.iter_mut().find(|(l, _)| *l == p.len) {
            Some((_, m)) => {
                m.entry(p.addr).or_insert((z, p));
            }
            None => {
                self.by_len.push((p.len, HashMap::from([(p.addr, (z, p))])));
                self.by_len.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
            }
        }
    }

    fn lookup(&self, family: Family, addr: u128) -> Option<(ZoneId, Prefix)> {
        self.by_len.iter().find_map(|(len, m)| m.get(&(addr & Prefix::mask_of(family, *len))).copied())
    }
}

pub struct Evaluator<'m> {
    pub model: &'m Model,
    v4: Lpm,
    v6: Lpm,
    pairs: HashMap<(ZoneId, ZoneId), PairRules>,
}

impl<'m> Evaluator<'m> {
    pub fn new(model: &'m Model) -> Self {
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
        let mut pairs: HashMap<(ZoneId, ZoneId), PairRules> = HashMap::new();
        for (i, r) in model.flows.iter().enumerate() {
            pairs.entry((r.from, r.to)).or_default().flows.push(RuleId(i as u32));
        }
        for (i, r) in model.denies.iter().enumerate() {
            pairs.entry((r.from, r.to)).or_default().denies.push(RuleId(i as u32));
        }
        Evaluator { model, v4, v6, pairs }
    }

    /// The zone an address belongs to, with the prefix that put it there.
    pub fn zone_of(&self, ip: IpAddr) -> Option<(ZoneId, Prefix)> {
        let (family, bits) = addr_bits(ip);
        match family {
            Family::V4 => self.v4.lookup(family, bits),
            Family::V6 => self.v6.lookup(family, bits),
        }
    }

    pub fn pair(&self, from: ZoneId, to: ZoneId) -> Option<&PairRules> {
        self.pairs.get(&(from, to))
    }

    /// Every zone pair that has at least one rule, in order.
    pub fn pairs(&self) -> Vec<(ZoneId, ZoneId)> {
        let mut v: Vec<_> = self.pairs.keys().copied().collect();
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
        let decision = self.decide(sz, dz, proto);
        Verdict { allow: matches!(decision, Decision::Flow(_)), src: s, dst: d, decision }
    }

    /// The decision for a packet between two zones.
    pub fn decide(&self, from: ZoneId, to: ZoneId, proto: Proto) -> Decision {
        let Some(rules) = self.pairs.get(&(from, to)) else { return Decision::Default };
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
        let Some(rules) = self.pairs.get(&(from, to)) else { return ServiceSet::default() };
        let allowed = rules.flows.iter().fold(ServiceSet::default(), |acc, &id| acc.union(&self.model.rule(Action::Allow, id).set));
        rules.denies.iter().fold(allowed, |acc, &id| acc.difference(&self.model.rule(Action::Deny, id).set))
    }
}

impl Evaluator<'_> {
    /// The union of the flows between two zones, before denies.
    pub fn allowed_before_denies(&self, from: ZoneId, to: ZoneId) -> ServiceSet {
        self.pairs.get(&(from, to)).map_or_else(ServiceSet::default, |rules| {
            rules.flows.iter().fold(ServiceSet::default(), |acc, &id| acc.union(&self.model.rule(Action::Allow, id).set))
        })
    }
}
