//! `segc diff`: what a policy change newly allows and newly denies, exactly.
//!
//! Addresses are split into regions on which both policies agree on zone
//! membership (the atoms of the union of both policies' prefixes). For every
//! pair of regions, the services allowed before and after are compared as
//! exact sets, so a moved prefix shows up as well as a changed flow.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;

use crate::ir::eval::Evaluator;
use crate::ir::{Family, Model, Prefix, Proto, ServiceSet, ZoneId};

/// One end of a changed pair: the zone before and after (by name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Side {
    pub old: Option<String>,
    pub new: Option<String>,
}

impl Side {
    /// `dmz`, or `office=>dmz` when the addresses changed zone.
    pub fn label(&self) -> String {
        match (&self.old, &self.new) {
            (Some(a), Some(b)) if a == b => a.clone(),
            (a, b) => format!("{}=>{}", a.as_deref().unwrap_or("(none)"), b.as_deref().unwrap_or("(none)")),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Change {
    pub from: Side,
    pub to: Side,
    /// Whether either end is a cde zone, before or after.
    pub cde: bool,
    /// The services whose verdict changed.
    pub services: String,
    #[serde(skip)]
    pub set: ServiceSet,
    /// One concrete packet whose verdict changed.
    pub sample: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Diff {
    pub newly_allowed: Vec<Change>,
    pub newly_denied: Vec<Change>,
    /// Addresses that changed zone.
    pub moved: Vec<Moved>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.newly_allowed.is_empty() && self.newly_denied.is_empty() && self.moved.is_empty()
    }
}

/// The addresses of `prefix`, less those of more specific prefixes in either
/// policy, moved from one zone to another.
#[derive(Clone, Debug, Serialize)]
pub struct Moved {
    pub prefix: String,
    pub except: Vec<String>,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// A region: addresses whose zone is `old` before and `new` after, with one
/// example address per family it covers.
#[derive(Clone, Debug)]
struct Region {
    old: Option<ZoneId>,
    new: Option<ZoneId>,
    samples: BTreeMap<Family, u128>,
}

/// An address in `p` not covered by any prefix of `inner` (all inside `p`).
fn witness(p: Prefix, inner: &[Prefix]) -> Option<u128> {
    let inside: Vec<Prefix> = inner.iter().copied().filter(|q| p.covers(q)).collect();
    if inside.is_empty() {
        return Some(p.addr);
    }
    if inside.iter().any(|q| q.len == p.len) || p.len >= p.family.max_len() {
        return None;
    }
    let bit = 1u128 << (u32::from(p.family.max_len()) - u32::from(p.len) - 1);
    let lo = Prefix { family: p.family, addr: p.addr, len: p.len + 1 };
    let hi = Prefix { family: p.family, addr: p.addr | bit, len: p.len + 1 };
    witness(lo, &inside).or_else(|| witness(hi, &inside))
}

fn regions(old: &Evaluator<'_>, new: &Evaluator<'_>, moved: &mut Vec<Moved>) -> Vec<Region> {
    let mut all: BTreeSet<Prefix> = BTreeSet::new();
    for m in [old.model, new.model] {
        for z in &m.zones {
            all.extend(z.prefixes.iter().map(|p| p.prefix));
        }
    }
    let all: Vec<Prefix> = all.into_iter().collect();
    let mut by_zone: BTreeMap<(Option<ZoneId>, Option<ZoneId>), Region> = BTreeMap::new();
    for (i, &p) in all.iter().enumerate() {
        // Prefixes strictly inside `p` follow it in sorted order.
        let inner: Vec<Prefix> = all[i + 1..].iter().take_while(|q| p.covers(q)).copied().collect();
        let Some(addr) = witness(p, &inner) else { continue };
        let ip = p.ip(addr);
        let (o, n) = (old.zone_of(ip).map(|z| z.0), new.zone_of(ip).map(|z| z.0));
        let name = |m: &Model, z: Option<ZoneId>| z.map(|z| m.zone(z).name.clone());
        if name(old.model, o) != name(new.model, n) {
            // The direct children: inner prefixes not inside another inner one.
            let except = inner.iter().filter(|q| !inner.iter().any(|r| r != *q && r.covers(q))).map(|q| q.to_string()).collect();
            moved.push(Moved { prefix: p.to_string(), except, old: name(old.model, o), new: name(new.model, n) });
        }
        by_zone
            .entry((o, n))
            .or_insert_with(|| Region { old: o, new: n, samples: BTreeMap::new() })
            .samples
            .entry(p.family)
            .or_insert(addr);
    }
    by_zone.into_values().collect()
}

fn allowed(ev: &Evaluator<'_>, a: Option<ZoneId>, b: Option<ZoneId>) -> ServiceSet {
    match (a, b) {
        (Some(a), Some(b)) => ev.allowed(a, b),
        _ => ServiceSet::default(),
    }
}

/// The difference between two checked policies.
pub fn diff(old: &Model, new: &Model) -> Diff {
    let (eo, en) = (Evaluator::new(old), Evaluator::new(new));
    let mut moved = Vec::new();
    let regions = regions(&eo, &en, &mut moved);
    // Only region pairs where some rule exists before or after can change.
    let mut ruled_old: BTreeSet<(ZoneId, ZoneId)> = eo.pairs().into_iter().collect();
    let ruled_new: BTreeSet<(ZoneId, ZoneId)> = en.pairs().into_iter().collect();
    let mut by_old: BTreeMap<ZoneId, Vec<usize>> = BTreeMap::new();
    let mut by_new: BTreeMap<ZoneId, Vec<usize>> = BTreeMap::new();
    for (i, r) in regions.iter().enumerate() {
        if let Some(z) = r.old {
            by_old.entry(z).or_default().push(i);
        }
        if let Some(z) = r.new {
            by_new.entry(z).or_default().push(i);
        }
    }
    let mut candidates: BTreeSet<(usize, usize)> = BTreeSet::new();
    for (a, b) in std::mem::take(&mut ruled_old) {
        for &i in by_old.get(&a).map_or(&[][..], Vec::as_slice) {
            for &j in by_old.get(&b).map_or(&[][..], Vec::as_slice) {
                candidates.insert((i, j));
            }
        }
    }
    for (a, b) in ruled_new {
        for &i in by_new.get(&a).map_or(&[][..], Vec::as_slice) {
            for &j in by_new.get(&b).map_or(&[][..], Vec::as_slice) {
                candidates.insert((i, j));
            }
        }
    }
    let side = |r: &Region| Side { old: r.old.map(|z| old.zone(z).name.clone()), new: r.new.map(|z| new.zone(z).name.clone()) };
    let cde = |r: &Region| r.old.is_some_and(|z| old.zone(z).is_cde()) || r.new.is_some_and(|z| new.zone(z).is_cde());
    let mut out = Diff::default();
    for (i, j) in candidates {
        let (s, d) = (&regions[i], &regions[j]);
        // A packet has one family: the pair matters only where both regions have it.
        let Some((&fam, &sa)) = s.samples.iter().find(|(f, _)| d.samples.contains_key(f)) else { continue };
        let da = d.samples[&fam];
        let before = allowed(&eo, s.old, d.old);
        let after = allowed(&en, s.new, d.new);
        for (set, list) in [(after.difference(&before), &mut out.newly_allowed), (before.difference(&after), &mut out.newly_denied)] {
            if set.is_empty() {
                continue;
            }
            let p = set.sample().unwrap_or(Proto::Tcp(0));
            let ip = |a: u128| -> IpAddr { Prefix { family: fam, addr: 0, len: 0 }.ip(a) };
            list.push(Change {
                from: side(s),
                to: side(d),
                cde: cde(s) || cde(d),
                services: set.to_string(),
                set,
                sample: format!("{} {} {p}", ip(sa), ip(da)),
            });
        }
    }
    for list in [&mut out.newly_allowed, &mut out.newly_denied] {
        list.sort_by(|a, b| (!a.cde, &a.from, &a.to, &a.services).cmp(&(!b.cde, &b.from, &b.to, &b.services)));
    }
    out.moved = moved;
    out
}
