//! What every cloud and cluster target shares: which zones a target binds, the
//! exact service set each bound zone must accept from (ingress) and send to
//! (egress) every other zone, and how an unbound zone is addressed (its atoms:
//! its own addresses, without those of more specific zones).
//!
//! All four targets are allow lists with a conjunction: a packet between two
//! bound zones needs the source's egress and the destination's ingress, so
//! denies are compiled away by granting exactly `flows - denies` per pair.

use std::collections::BTreeMap;

use super::atoms::atoms;
use crate::diag::{Code, Diagnostic, FileId, Span};
use crate::ir::eval::Evaluator;
use crate::ir::{Family, Model, Prefix, ServiceSet, ZoneId};

/// How a target reaches a zone's members.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Peer {
    /// By the zone's binding (a group, NSG, tag or pod selector).
    Bound(ZoneId),
    /// By address: the exact prefixes of the zone's atoms.
    Prefixes(Vec<Prefix>),
}

/// What one zone may receive from, or send to, another.
#[derive(Clone, Debug)]
pub struct Grant {
    pub other: ZoneId,
    pub peer: Peer,
    pub set: ServiceSet,
}

#[derive(Clone, Debug)]
pub struct BoundZone {
    pub zone: ZoneId,
    pub binding: String,
    pub ingress: Vec<Grant>,
    pub egress: Vec<Grant>,
}

/// The plan for one target: its bound zones, and each zone's prefixes as
/// atoms, for peers addressed by address.
pub struct Plan {
    pub bound: Vec<BoundZone>,
    pub prefixes: BTreeMap<ZoneId, Vec<Prefix>>,
}

pub fn span(model: &Model) -> Span {
    model.policy.span.unwrap_or(Span::new(FileId(0), 0, 0))
}

/// Builds the plan for the zones bound by `key` (e.g. `aws.security_group`).
/// Two zones sharing one binding cannot be told apart by the target: T002.
pub fn plan(model: &Model, key: &str, target: &str) -> Result<Plan, Vec<Diagnostic>> {
    plan_by(model, &|z: &crate::ir::Zone| z.bindings.by_key(key), key, target, true)
}

/// [`plan`] with the binding computed from the zone (Kubernetes binds by
/// namespace and selector); `widen` lets ingress from unbound zones also name
/// bound zones' addresses (see `docs/DECISIONS.md`).
pub fn plan_by(
    model: &Model,
    ident: &dyn Fn(&crate::ir::Zone) -> Option<String>,
    key: &str,
    target: &str,
    widen: bool,
) -> Result<Plan, Vec<Diagnostic>> {
    let ev = Evaluator::new(model);
    let mut prefixes: BTreeMap<ZoneId, Vec<Prefix>> = BTreeMap::new();
    for a in atoms(&ev) {
        prefixes.entry(a.zone).or_default().extend(a.prefixes());
    }
    let binding = |z: ZoneId| ident(model.zone(z));
    let mut seen: BTreeMap<String, ZoneId> = BTreeMap::new();
    let mut diags = Vec::new();
    for (i, z) in model.zones.iter().enumerate() {
        if let Some(b) = &ident(z) {
            if let Some(&other) = seen.get(b) {
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
            seen.insert(b.clone(), ZoneId(i as u32));
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let peer = |z: ZoneId| match binding(z) {
        Some(_) => Peer::Bound(z),
        None => Peer::Prefixes(prefixes.get(&z).cloned().unwrap_or_default()),
    };
    let mut bound: BTreeMap<ZoneId, BoundZone> = model
        .zones
        .iter()
        .enumerate()
        .filter_map(|(i, z)| {
            let id = ZoneId(i as u32);
            ident(z).map(|b| (id, BoundZone { zone: id, binding: b, ingress: Vec::new(), egress: Vec::new() }))
        })
        .collect();
    // Ingress from an unbound zone may also name the bound zones' addresses:
    // those sources are members, whose own egress (always exact) still has to
    // allow the packet. Fewer, larger prefixes fit the quotas better.
    let bound_atoms: Vec<Prefix> = model
        .zones
        .iter()
        .enumerate()
        .filter(|(_, z)| widen && ident(z).is_some())
        .flat_map(|(i, _)| prefixes.get(&ZoneId(i as u32)).cloned().unwrap_or_default())
        .collect();
    let ingress_peer = |z: ZoneId| match peer(z) {
        Peer::Prefixes(own) => {
            let mut all = own;
            all.extend(bound_atoms.iter().copied());
            Peer::Prefixes(merge(&all))
        }
        p => p,
    };
    for (from, to) in ev.pairs() {
        let set = ev.allowed(from, to);
        if set.is_empty() {
            continue;
        }
        if let Some(b) = bound.get_mut(&to) {
            b.ingress.push(Grant { other: from, peer: ingress_peer(from), set: set.clone() });
        }
        if let Some(b) = bound.get_mut(&from) {
            b.egress.push(Grant { other: to, peer: peer(to), set });
        }
    }
    Ok(Plan { bound: bound.into_values().collect(), prefixes })
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
