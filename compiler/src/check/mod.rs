//! Checking: turns the resolved tree into the IR, validating every attribute and
//! value on the way (E2xx, E301). Later phases run on the IR only.
//!
//! - `attrs`: attributes against each item's `schema`;
//! - `services`: service literals and named services as exact sets;
//! - `zones`: zones, their prefixes and typed bindings, E301;
//! - `rules`: groups, flows, denies, asserts and test cases, one rule per
//!   zone pair an item names.

mod attrs;
mod feeds;
mod rules;
pub mod schema;
mod services;
mod zones;

use crate::hash::{HashMap, HashSet};

pub use attrs::prefix_error;
pub use services::literal_set;

use crate::diag::{Code, Diagnostic, Span};
use crate::ir::{self, Date, Model, NamedService, ServiceSet, ZoneId};
use crate::resolve::{Def, DefId, DefKind, Scope as Names, Tree};
use crate::syntax::ast::{Item, ValueKind};

/// Builds the IR from a resolved tree. The model is complete only when no error
/// was reported; callers must not lower a model that came with errors.
/// `today` makes a `reviewed` date after it an error (E206).
pub fn build_model(tree: &Tree, names: &Names, today: Option<Date>, diags: &mut Vec<Diagnostic>) -> Model {
    let mut model = Model::default();
    policy_meta(tree, &mut model, diags);
    // One walk over every item's zone names, for the zones and for W503.
    let std_zones = rules::referenced_std_zones(tree, names);
    let zone_ids = zones::build(tree, names, &std_zones, &mut model, diags);
    feeds::build(tree, names, &mut model, diags);
    let mut services = services::Services::new(tree, names);
    rules::build(tree, names, &zone_ids, &mut services, today, &mut model, diags);
    named_services(tree, names, &mut services, &mut model, diags);
    unused_uses(tree, names, &services.used, &zone_ids, &std_zones, diags);
    sort_rules(&mut model.flows);
    sort_rules(&mut model.denies);
    model.tests.sort_by(|a, b| a.name.cmp(&b.name));
    model
}

/// The order of rules: zone pair, service set, services as written,
/// justification, groups; stable. Compared in place (no key is built: a key
/// cloned a set and three texts per rule), a sort of indices, then the rules
/// moved once each into their places (a rule is a few hundred bytes).
fn sort_rules(rules: &mut [ir::Rule]) {
    // The zone pair packed beside each index, so most comparisons (pairs
    // differ) read neither rule; ties go to the whole order, then to the
    // index, which makes the unstable sort the stable one.
    let mut keyed: Vec<(u64, u32)> =
        rules.iter().enumerate().map(|(i, r)| ((u64::from(r.from.0) << 32) | u64::from(r.to.0), i as u32)).collect();
    keyed.sort_unstable_by(|&(ka, a), &(kb, b)| {
        ka.cmp(&kb).then_with(|| rule_order(&rules[a as usize], &rules[b as usize])).then(a.cmp(&b))
    });
    let mut order: Vec<u32> = keyed.into_iter().map(|(_, i)| i).collect();
    // order[k] is the index of the rule that belongs at k: follow each cycle.
    const DONE: u32 = u32::MAX;
    for start in 0..rules.len() {
        if order[start] == DONE {
            continue;
        }
        let mut k = start;
        loop {
            let src = order[k] as usize;
            order[k] = DONE;
            if src == start {
                break;
            }
            rules.swap(k, src);
            k = src;
        }
    }
}

fn rule_order(a: &ir::Rule, b: &ir::Rule) -> std::cmp::Ordering {
    (a.from, a.to)
        .cmp(&(b.from, b.to))
        .then_with(|| a.set.cmp(&b.set))
        .then_with(|| services_bytes(a).cmp(services_bytes(b)))
        .then_with(|| a.justification.cmp(&b.justification))
        .then_with(|| a.via.cmp(&b.via))
}

/// The bytes of `Rule::services_text` (the texts joined by ", "), unjoined.
fn services_bytes(r: &ir::Rule) -> impl Iterator<Item = u8> + '_ {
    r.services.iter().enumerate().flat_map(|(i, s)| {
        let sep: &'static [u8] = if i == 0 { b"" } else { b", " };
        sep.iter().copied().chain(s.text.bytes())
    })
}

/// Checks every user service, referenced or not, and records the named ones.
fn named_services(tree: &Tree, names: &Names, services: &mut services::Services<'_>, model: &mut Model, diags: &mut Vec<Diagnostic>) {
    let mut service_defs: Vec<&Def> = names.locals.values().filter(|d| d.kind == DefKind::Service).collect();
    let used = services.used.clone();
    service_defs.extend(names.std.values().flat_map(|m| m.values()).filter(|d| used.contains(&d.id)));
    service_defs.sort_by(|a, b| (&a.name, a.std).cmp(&(&b.name, b.std)));
    for def in service_defs {
        let Some((set, insecure)) = services.named(def, diags) else { continue };
        let description = match tree.item(def.id) {
            Item::Service(s) => s.body.as_ref().and_then(|b| b.get("description")).and_then(|a| match &a.value.kind {
                ValueKind::Str(s) => Some(s.clone()),
                _ => None,
            }),
            _ => None,
        };
        model.services.push(NamedService {
            name: def.name.clone(),
            set,
            insecure,
            description,
            std: def.std,
            used: used.contains(&def.id),
            span: def.span,
        });
    }
}

/// W503 for each name a `use` brings in that nothing uses.
fn unused_uses(
    tree: &Tree,
    names: &Names,
    services: &HashSet<DefId>,
    zones: &HashMap<DefId, ZoneId>,
    used_zones: &HashSet<DefId>,
    diags: &mut Vec<Diagnostic>,
) {
    for (_, _, item) in tree.user_items() {
        let Item::Use(u) = item else { continue };
        let members: Vec<&crate::syntax::ast::Ident> = match &u.tree {
            crate::syntax::ast::UseTree::Group(list) => list.iter().collect(),
            crate::syntax::ast::UseTree::Single => u.path.segments.last().into_iter().collect(),
            crate::syntax::ast::UseTree::Glob => continue,
        };
        for m in members {
            let Some(def) = names.explicit.get(&m.name) else { continue };
            let used = match def.kind {
                DefKind::Service => services.contains(&def.id),
                DefKind::Zone | DefKind::Group => zones.contains_key(&def.id) && used_zones.contains(&def.id),
                DefKind::Feed => true,
            };
            if !used {
                diags.push(
                    Diagnostic::new(Code::W503, m.span, format!("`{}` is brought in by `use` but never used", m.name))
                        .with_label(m.span, "unused")
                        .with_help("remove it from the `use`"),
                );
            }
        }
    }
}

/// A named service's set, looked up as the policy sees it, else in the
/// standard library: for `explain ... ssh`.
pub fn service_set(tree: &Tree, names: &Names, name: &str) -> Option<ServiceSet> {
    let def = names
        .locals
        .get(name)
        .or_else(|| names.explicit.get(name))
        .or_else(|| names.globs.get(name))
        .filter(|d| d.kind == DefKind::Service)
        .or_else(|| names.std.get("services").and_then(|m| m.get(name)))?;
    let mut services = services::Services::new(tree, names);
    services.named(def, &mut Vec::new()).map(|(set, _)| set)
}

fn policy_meta(tree: &Tree, model: &mut Model, diags: &mut Vec<Diagnostic>) {
    let mut first: Option<Span> = None;
    for (_, _, item) in tree.user_items() {
        let Item::Policy(p) = item else { continue };
        if let Some(f) = first {
            diags.push(
                Diagnostic::new(Code::E102, p.name.span, "a policy tree has at most one `policy` item")
                    .with_label(p.name.span, "second `policy` here")
                    .with_label(f, "first `policy` here"),
            );
            continue;
        }
        first = Some(p.name.span);
        let attrs = attrs::check_block(Some(&p.body), schema::POLICY, "`policy`", p.name.span, diags);
        model.policy.name = Some(p.name.value.clone());
        model.policy.owner = attrs.str("owner");
        model.policy.description = attrs.str("description");
        model.policy.span = Some(p.span);
        if let Some(ValueKind::Duration(d)) = attrs.values.get("review_interval").map(|v| &v.kind) {
            if let Ok(days) = ir::date::parse_duration_days(d) {
                model.policy.review_interval_days = days;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Action, RangeSet, RuleService, Via};

    /// The order as it was first written: a key per rule, cloned.
    fn by_cloned_keys(rules: &mut [ir::Rule]) {
        rules.sort_by_cached_key(|r| (r.from, r.to, r.set.clone(), r.services_text(), r.justification.clone(), r.via.clone()));
    }

    fn rule(from: u32, to: u32, ports: &[u16], texts: &[&str], just: Option<&str>, via: Option<&str>, tag: usize) -> ir::Rule {
        let nowhere = Span::new(crate::diag::FileId(0), 0, 0);
        let set = ServiceSet { tcp: RangeSet::from_ranges(ports.iter().map(|&p| (p, p)).collect()), ..ServiceSet::default() };
        let services =
            texts.iter().map(|t| RuleService { text: t.to_string(), set: set.clone(), insecure: false, span: nowhere }).collect();
        ir::Rule {
            action: Action::Allow,
            from: ZoneId(from),
            to: ZoneId(to),
            services,
            set,
            justification: just.map(str::to_string),
            owner: None,
            reviewed: None,
            // Tells equal keys apart: a stable sort keeps their order.
            description: Some(tag.to_string()),
            span: nowhere,
            head: nowhere,
            via: Via { from: via.map(str::to_string), to: None },
        }
    }

    proptest::proptest! {
        #[test]
        fn rules_sort_as_by_their_cloned_keys(
            spec in proptest::collection::vec(
                (0u32..3, 0u32..3, proptest::collection::vec(0u16..4, 0..3),
                 // Texts where joining matters: `a, b` against `a,`, `a` against `a, `.
                 proptest::collection::vec(proptest::sample::select(vec!["a", "a,", "a, b", "b", "", " "]), 0..3),
                 proptest::option::of(proptest::sample::select(vec!["x", "y"])),
                 proptest::option::of(proptest::sample::select(vec!["g", "h"]))),
                0..40),
        ) {
            let rules: Vec<ir::Rule> = spec
                .iter()
                .enumerate()
                .map(|(i, (f, t, ports, texts, just, via))| rule(*f, *t, ports, texts, *just, *via, i))
                .collect();
            let (mut ours, mut theirs) = (rules.clone(), rules);
            sort_rules(&mut ours);
            by_cloned_keys(&mut theirs);
            let tags = |v: &[ir::Rule]| v.iter().map(|r| r.description.clone()).collect::<Vec<_>>();
            proptest::prop_assert_eq!(tags(&ours), tags(&theirs));
        }
    }
}
