//! What every cloud and cluster target shares: which zones a target binds, the
//! exact service set each bound zone must accept from (ingress) and send to
//! (egress) every other zone, and how an unbound zone is addressed (its atoms:
//! its own addresses, without those of more specific zones).
//!
//! All four targets are allow lists with a conjunction: a packet between two
//! bound zones needs the source's egress and the destination's ingress, so
//! denies are compiled away by granting exactly `flows - denies` per pair.

use std::collections::BTreeMap;

use crate::diag::{Code, Diagnostic, FileId, Span};
use crate::ir::{Family, Model, Prefix, ServiceSet, ZoneId};

/// How a target reaches a zone's members.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Peer {
    /// By the zone's binding (a group, NSG, tag or pod selector).
    Bound(ZoneId),
    /// By address: the exact prefixes of the zone's atoms.
    Prefixes(Vec<Prefix>),
}

/// What one zone may receive from, or send to, another (the set is the
/// model's, for the pair).
#[derive(Clone, Debug)]
pub struct Grant<'m> {
    pub other: ZoneId,
    pub peer: Peer,
    pub set: &'m ServiceSet,
}

#[derive(Clone, Debug)]
pub struct BoundZone<'m> {
    pub zone: ZoneId,
    pub binding: String,
    pub ingress: Vec<Grant<'m>>,
    pub egress: Vec<Grant<'m>>,
}

/// The plan for one target: its bound zones, and each zone's prefixes as
/// atoms, for peers addressed by address.
pub struct Plan<'m> {
    pub bound: Vec<BoundZone<'m>>,
    pub prefixes: BTreeMap<ZoneId, Vec<Prefix>>,
    /// The atoms of the bound zones, which ingress prefixes may also cover
    /// where that saves prefixes (empty when the target does not widen).
    pub spare: Vec<(ZoneId, Vec<Prefix>)>,
}

impl Plan<'_> {
    /// The bound zones with addresses inside `p` (a widened ingress prefix).
    pub fn bound_within(&self, p: &Prefix) -> Vec<ZoneId> {
        self.spare.iter().filter(|(_, atoms)| atoms.iter().any(|a| p.covers(a) || a.covers(p))).map(|(z, _)| *z).collect()
    }

    /// Every bound zone's atoms, as one list.
    pub fn spare_prefixes(&self) -> Vec<Prefix> {
        self.spare.iter().flat_map(|(_, ps)| ps.iter().copied()).collect()
    }
}

pub fn span(model: &Model) -> Span {
    model.policy.span.unwrap_or(Span::new(FileId(0), 0, 0))
}

/// Builds the plan for the zones bound by `key` (e.g. `aws.security_group`).
/// Two zones sharing one binding cannot be told apart by the target: T002.
pub fn plan<'m>(model: &'m Model, key: &str, target: &str) -> Result<Plan<'m>, Vec<Diagnostic>> {
    plan_by(model, &|z: &crate::ir::Zone| z.bindings.by_key(key), key, target, true)
}

/// [`plan`] with the binding computed from the zone (Kubernetes binds by
/// namespace and selector); `widen` lets ingress from unbound zones also name
/// bound zones' addresses (see `docs/DECISIONS.md`).
pub fn plan_by<'m>(
    model: &'m Model,
    ident: &dyn Fn(&crate::ir::Zone) -> Option<String>,
    key: &str,
    target: &str,
    widen: bool,
) -> Result<Plan<'m>, Vec<Diagnostic>> {
    let mut prefixes: BTreeMap<ZoneId, Vec<Prefix>> = BTreeMap::new();
    for a in model.atoms() {
        prefixes.entry(a.zone).or_default().extend(a.prefixes());
    }
    // Each zone's binding, asked once.
    let bindings: Vec<Option<String>> = model.zones.iter().map(ident).collect();
    let is_bound = |z: ZoneId| bindings[z.0 as usize].is_some();
    let mut seen: BTreeMap<&str, ZoneId> = BTreeMap::new();
    let mut diags = Vec::new();
    for (i, z) in model.zones.iter().enumerate() {
        if let Some(b) = &bindings[i] {
            if let Some(&other) = seen.get(b.as_str()) {
                diags.push(
                    Diagnostic::new(
                        Code::T002,
                        z.span,
                        format!(
                            "zones `{}` and `{}` share the {target} binding `{b}`: {target} cannot tell their members apart",
                            model.zone(other).name,
                            z.name
                        ),
                    )
                    .with_label(z.span, "second zone")
                    .with_label(model.zone(other).span, "first zone")
                    .with_help(format!("give each zone its own `{key}`")),
                );
            }
            seen.insert(b, ZoneId(i as u32));
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    // A zone's own addresses, its atoms.
    let own = |z: ZoneId| prefixes.get(&z).map_or(&[][..], Vec::as_slice);
    let mut bound: BTreeMap<ZoneId, BoundZone<'m>> = bindings
        .iter()
        .enumerate()
        .filter_map(|(i, b)| {
            let id = ZoneId(i as u32);
            b.clone().map(|b| (id, BoundZone { zone: id, binding: b, ingress: Vec::new(), egress: Vec::new() }))
        })
        .collect();
    // Ingress from an unbound zone may also name bound zones' addresses where
    // that takes fewer prefixes (the fewest prefixes covering the source's
    // atoms, with bound zones' atoms as don't-cares): those sources are
    // members, whose own egress (always exact) still has to allow the packet.
    // A prefix is widened only when that saves one, so a group never names a
    // bound zone's subnet on its own.
    let spare: Vec<(ZoneId, Vec<Prefix>)> =
        (0..model.zones.len() as u32).map(ZoneId).filter(|&z| widen && is_bound(z)).map(|z| (z, own(z).to_vec())).collect();
    let spare_prefixes: Vec<Prefix> = spare.iter().flat_map(|(_, ps)| ps.iter().copied()).collect();
    // An unbound zone's peer (and its widened cover as an ingress peer) is
    // the same in every grant naming it: made once a zone.
    let mut egress_peers: BTreeMap<ZoneId, Peer> = BTreeMap::new();
    let mut ingress_peers: BTreeMap<ZoneId, Peer> = BTreeMap::new();
    for (from, to, set) in model.allowed_pairs() {
        let (from, to) = (*from, *to);
        if let Some(b) = bound.get_mut(&to) {
            let peer = if is_bound(from) {
                Peer::Bound(from)
            } else {
                ingress_peers.entry(from).or_insert_with(|| Peer::Prefixes(cover(own(from), &spare_prefixes))).clone()
            };
            b.ingress.push(Grant { other: from, peer, set });
        }
        if let Some(b) = bound.get_mut(&from) {
            let peer = if is_bound(to) {
                Peer::Bound(to)
            } else {
                egress_peers.entry(to).or_insert_with(|| Peer::Prefixes(own(to).to_vec())).clone()
            };
            b.egress.push(Grant { other: to, peer, set });
        }
    }
    Ok(Plan { bound: bound.into_values().collect(), prefixes, spare })
}

/// T002 for a service set the target cannot express exactly.
pub fn inexpressible(model: &Model, target: &str, from: ZoneId, to: ZoneId, what: &str) -> Diagnostic {
    let span = model.flows.iter().find(|f| f.from == from && f.to == to).map_or_else(|| span(model), |f| f.head);
    Diagnostic::new(
        Code::T002,
        span,
        format!("{target} cannot express the traffic from `{}` to `{}` exactly: {what}", model.zone(from).name, model.zone(to).name),
    )
    .with_label(span, "this flow")
    .with_help("change the flow or its denies so the target can express it, or do not bind these zones to the target")
}

/// `from -> to on SET`: what a cloud rule's description says of the flow it
/// serves (built without the formatting machinery: one for every rule).
pub fn pair_description(from: &str, to: &str, set: &ServiceSet) -> String {
    let mut d = String::with_capacity(from.len() + to.len() + 24);
    d.push_str(from);
    d.push_str(" -> ");
    d.push_str(to);
    d.push_str(" on ");
    set.push_text(&mut d);
    d
}

pub fn family_of(p: &Prefix) -> Family {
    p.family
}

/// The fewest prefixes covering exactly the union of `ps`.
pub fn merge(ps: &[Prefix]) -> Vec<Prefix> {
    let mut out = Vec::new();
    for fam in [Family::V4, Family::V6] {
        let mut ranges: Vec<(u128, u128)> =
            ps.iter().filter(|p| p.family == fam).map(|p| (p.addr, crate::ir::addr::addr_bits(p.last()).1)).collect();
        ranges.sort();
        let mut merged: Vec<(u128, u128)> = Vec::new();
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if last.1.checked_add(1).is_none_or(|n| lo <= n) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        for (lo, hi) in merged {
            out.extend(super::atoms::range_to_prefixes(fam, lo, hi));
        }
    }
    out
}

/// The fewest prefixes that cover every address of `own` and nothing outside
/// `own` and `spare` (addresses that may be covered or not). On a tie the
/// narrower prefixes win, so a spare address is covered only to save a prefix.
pub fn cover(own: &[Prefix], spare: &[Prefix]) -> Vec<Prefix> {
    let mut out = Vec::new();
    for fam in [Family::V4, Family::V6] {
        let own = ranges(own, fam);
        if own.is_empty() {
            continue;
        }
        let mut allowed_set: Vec<Prefix> = spare.iter().filter(|p| p.family == fam).copied().collect();
        allowed_set.extend(own.iter().flat_map(|&(lo, hi)| super::atoms::range_to_prefixes(fam, lo, hi)));
        let allowed = ranges(&allowed_set, fam);
        out.extend(cover_node(fam, 0, 0, &own, &allowed).1);
    }
    out
}

/// Sorted, merged address ranges of the prefixes of one family.
fn ranges(ps: &[Prefix], fam: Family) -> Vec<(u128, u128)> {
    let mut r: Vec<(u128, u128)> =
        ps.iter().filter(|p| p.family == fam).map(|p| (p.addr, crate::ir::addr::addr_bits(p.last()).1)).collect();
    r.sort();
    let mut merged: Vec<(u128, u128)> = Vec::new();
    for (lo, hi) in r {
        match merged.last_mut() {
            Some(last) if last.1.checked_add(1).is_none_or(|n| lo <= n) => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

fn intersects(rs: &[(u128, u128)], lo: u128, hi: u128) -> bool {
    rs.iter().any(|&(a, b)| a <= hi && lo <= b)
}

fn within(rs: &[(u128, u128)], lo: u128, hi: u128) -> bool {
    rs.iter().any(|&(a, b)| a <= lo && hi <= b)
}

/// The cover of the prefix `addr/len` (its cost, its prefixes); only nodes
/// on a boundary of `own` are split, so the work is boundaries times bits.
fn cover_node(fam: Family, addr: u128, len: u8, own: &[(u128, u128)], allowed: &[(u128, u128)]) -> (usize, Vec<Prefix>) {
    let bits = fam.max_len();
    let host = if bits - len >= 128 { u128::MAX } else { (1u128 << (bits - len)) - 1 };
    let (lo, hi) = (addr, addr | host);
    if !intersects(own, lo, hi) {
        return (0, Vec::new());
    }
    let this = Prefix { family: fam, addr, len };
    if within(own, lo, hi) || len == bits {
        return (1, vec![this]);
    }
    let half = 1u128 << (bits - len - 1);
    let (lc, mut lp) = cover_node(fam, addr, len + 1, own, allowed);
    let (rc, rp) = cover_node(fam, addr | half, len + 1, own, allowed);
    if lc + rc > 1 && within(allowed, lo, hi) {
        return (1, vec![this]);
    }
    lp.extend(rp);
    (lc + rc, lp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).expect("prefix")
    }

    fn count_in(ps: &[Prefix], fam: Family, lo: u128, hi: u128) -> bool {
        ranges(ps, fam).iter().any(|&(a, b)| a <= lo && hi <= b)
    }

    #[test]
    fn spare_addresses_are_covered_only_to_save_prefixes() {
        // The internet around one bound /24: one prefix instead of 24.
        let own = merge(&[
            p("0.0.0.0/5"),
            p("8.0.0.0/7"),
            p("11.0.0.0/8"),
            p("12.0.0.0/6"),
            p("16.0.0.0/4"),
            p("32.0.0.0/3"),
            p("64.0.0.0/2"),
            p("128.0.0.0/1"),
        ]);
        assert_eq!(cover(&own, &[p("10.0.0.0/8")]), vec![p("0.0.0.0/0")]);
        // A neighbour's /24 next to a bound /24: a tie, so the exact prefix.
        assert_eq!(cover(&[p("10.9.1.0/24")], &[p("10.9.0.0/24")]), vec![p("10.9.1.0/24")]);
        // Two halves of a /23 around nothing: merged without any spare.
        assert_eq!(cover(&[p("10.9.0.0/24"), p("10.9.1.0/24")], &[]), vec![p("10.9.0.0/23")]);
        // Spare space that saves nothing is left alone.
        assert_eq!(cover(&[p("192.168.0.0/24")], &[p("10.0.0.0/8")]), vec![p("192.168.0.0/24")]);
    }

    fn prefix4() -> impl Strategy<Value = Prefix> {
        (any::<u32>(), 8u8..=32).prop_map(|(a, len)| {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            Prefix { family: Family::V4, addr: u128::from(a & mask), len }
        })
    }

    proptest! {
        /// The cover holds every own address, nothing outside own and spare,
        /// and never more prefixes than the own addresses merged alone.
        #[test]
        fn cover_is_exact_up_to_spare_and_never_larger(own in prop::collection::vec(prefix4(), 1..6), spare in prop::collection::vec(prefix4(), 0..6)) {
            let spare: Vec<Prefix> = spare.into_iter().filter(|s| !own.iter().any(|o| o.covers(s) || s.covers(o))).collect();
            let c = cover(&own, &spare);
            for o in &own {
                let (lo, hi) = (o.addr, crate::ir::addr::addr_bits(o.last()).1);
                prop_assert!(count_in(&c, Family::V4, lo, hi), "{} not covered by {:?}", o, c);
            }
            let mut allowed = own.clone();
            allowed.extend(spare.iter().copied());
            for w in &c {
                let (lo, hi) = (w.addr, crate::ir::addr::addr_bits(w.last()).1);
                prop_assert!(count_in(&allowed, Family::V4, lo, hi), "{} is outside own and spare", w);
            }
            prop_assert!(c.len() <= merge(&own).len());
        }
    }
}
