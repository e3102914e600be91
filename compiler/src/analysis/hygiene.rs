//! Rule hygiene, computed exactly on port-range and prefix sets: redundant flows
//! (W501), dead flows (W502), unused zones and services (W503), zones that can
//! never match (W504).

use crate::hash::HashSet;

use crate::analysis::pci::effective;
use crate::diag::{Code, Diagnostic};
use crate::ir::eval::Evaluator;
use crate::ir::{Action, Endpoint, Model, Prefix, RuleId, ServiceSet, ZoneId};
use crate::source::SourceMap;

pub fn run(ev: &Evaluator<'_>, sources: &SourceMap, diags: &mut Vec<Diagnostic>) {
    let model = ev.model;
    for (from, to) in ev.pairs() {
        let Some(rules) = ev.pair(from, to) else { continue };
        let eff: Vec<(RuleId, ServiceSet)> = rules.flows.iter().map(|&id| (id, effective(ev, id))).collect();
        // W502: nothing left after the denies.
        for (id, set) in &eff {
            if set.is_empty() {
                let r = model.rule(Action::Allow, *id);
                let mut d = Diagnostic::new(
                    Code::W502,
                    r.head,
                    format!("dead flow: every packet flow `{}` allows is denied", model.pair_text(r.from, r.to)),
                )
                .with_label(r.head, "allows nothing");
                for &dn in &rules.denies {
                    let deny = model.rule(Action::Deny, dn);
                    if !deny.set.intersect(&r.set).is_empty() {
                        d = d.with_label(deny.head, "denied by this");
                    }
                }
                diags.push(d.with_help("remove the flow, or narrow the deny"));
            }
        }
        // W501: covered by the other live flows. Later flows are judged first, so
        // of two identical flows the first one written in canonical order stays.
        let mut redundant: HashSet<RuleId> = HashSet::default();
        for (id, set) in eff.iter().rev() {
            if set.is_empty() {
                continue;
            }
            let others: Vec<&(RuleId, ServiceSet)> =
                eff.iter().filter(|(o, s)| o != id && !s.is_empty() && !redundant.contains(o)).collect();
            let union = others.iter().fold(ServiceSet::default(), |acc, (_, s)| acc.union(s));
            if !set.is_subset(&union) {
                continue;
            }
            redundant.insert(*id);
            let r = model.rule(Action::Allow, *id);
            let mut d = Diagnostic::new(
                Code::W501,
                r.head,
                format!(
                    "redundant flow: everything flow `{}` on {} allows is allowed by other flows",
                    model.pair_text(r.from, r.to),
                    r.services_text()
                ),
            )
            .with_label(r.head, "adds nothing");
            for (o, s) in others {
                if !s.intersect(set).is_empty() {
                    let other = model.rule(Action::Allow, *o);
                    d = d.with_label(other.head, format!("covered by this flow ({})", sources.location(other.span)));
                }
            }
            diags.push(d.with_help("remove the flow, or merge it into the covering one"));
        }
    }
    unused(model, diags);
    never_match(model, diags);
}

fn unused(model: &Model, diags: &mut Vec<Diagnostic>) {
    let mut used: HashSet<ZoneId> = HashSet::default();
    for r in model.flows.iter().chain(&model.denies) {
        used.insert(r.from);
        used.insert(r.to);
    }
    for a in &model.asserts {
        used.insert(a.from);
        used.insert(a.to);
    }
    for t in &model.tests {
        for c in &t.cases {
            for e in [&c.from, &c.to] {
                if let Endpoint::Zone(z) = e {
                    used.insert(*z);
                }
            }
        }
    }
    for (i, z) in model.zones.iter().enumerate() {
        if !z.std && !used.contains(&ZoneId(i as u32)) {
            diags.push(
                Diagnostic::new(Code::W503, z.span, format!("zone `{}` is not used by any flow, deny, assert or test", z.name))
                    .with_label(z.span, "unused zone")
                    .with_help("its addresses are denied everything; remove the zone, or add the flows it needs"),
            );
        }
    }
    for s in &model.services {
        if !s.std && !s.used {
            diags.push(
                Diagnostic::new(Code::W503, s.span, format!("service `{}` is never used", s.name))
                    .with_label(s.span, "unused service")
                    .with_help("remove it, or use it in a flow"),
            );
        }
    }
}

/// Whether `p` is covered entirely by the prefixes in `more_specific` (all
/// strictly inside `p`).
fn covered(p: Prefix, more_specific: &[Prefix]) -> bool {
    let inside: Vec<Prefix> = more_specific.iter().copied().filter(|q| p.covers(q)).collect();
    if inside.is_empty() {
        return false;
    }
    if inside.iter().any(|q| q.len == p.len) {
        return true;
    }
    if p.len >= p.family.max_len() {
        return false;
    }
    let bit = 1u128 << (u32::from(p.family.max_len()) - u32::from(p.len) - 1);
    let lo = Prefix { family: p.family, addr: p.addr, len: p.len + 1 };
    let hi = Prefix { family: p.family, addr: p.addr | bit, len: p.len + 1 };
    covered(lo, &inside) && covered(hi, &inside)
}

fn never_match(model: &Model, diags: &mut Vec<Diagnostic>) {
    // Sorted by (family, address, length): the prefixes inside `p` are the
    // contiguous run whose addresses fall in `p`'s range.
    let mut all: Vec<(Prefix, ZoneId)> = Vec::new();
    for (i, z) in model.zones.iter().enumerate() {
        for p in &z.prefixes {
            all.push((p.prefix, ZoneId(i as u32)));
        }
    }
    all.sort();
    let key = |p: &Prefix| (p.family, p.addr);
    for (i, z) in model.zones.iter().enumerate() {
        if z.prefixes.is_empty() {
            continue;
        }
        let me = ZoneId(i as u32);
        let dead = z.prefixes.iter().all(|zp| {
            let p = zp.prefix;
            let last = match p.last() {
                std::net::IpAddr::V4(a) => u128::from(u32::from(a)),
                std::net::IpAddr::V6(a) => u128::from(a),
            };
            let lo = all.partition_point(|(q, _)| key(q) < (p.family, p.addr));
            let hi = all.partition_point(|(q, _)| key(q) <= (p.family, last));
            let inner: Vec<Prefix> = all[lo..hi].iter().filter(|(q, owner)| *owner != me && q.len > p.len).map(|(q, _)| *q).collect();
            covered(p, &inner)
        });
        if dead {
            diags.push(
                Diagnostic::new(
                    Code::W504,
                    z.span,
                    format!("zone `{}` can never match: more specific zones cover all its prefixes", z.name),
                )
                .with_label(z.span, "no address ends up in this zone")
                .with_help("remove the zone, or give it addresses no other zone claims"),
            );
        }
    }
}
