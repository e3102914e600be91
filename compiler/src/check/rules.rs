//! Groups, flows, denies, asserts and test cases. An end of a flow, deny or
//! assert names zones and groups (`flow stores, kiosk -> pay_gw`); the item
//! becomes one rule (or assert) per zone pair, each remembering the groups it
//! came through. A test case end is an address, a zone or a group.

use crate::hash::{HashMap, HashSet};
use std::collections::BTreeSet;

use super::attrs::{check_block, Attrs};
use super::prefix_error;
use super::schema;
use super::services::Services;
use crate::diag::{Code, Diagnostic, Span};
use crate::ir::{self, Action, Date, Model, Prefix, Review, RuleService, ServiceSet, Via, ZoneId};
use crate::resolve::{Def, DefId, DefKind, Scope as Names, Tree};
use crate::syntax::ast::{self, Item, ServiceRef, ValueKind, ZoneList};

/// The zones of one end, each with the group it came through.
type End = Vec<(ZoneId, Option<String>)>;

/// What a name in an end stands for: one zone (no list to allocate, as for
/// most ends), or a group's zones.
enum Members {
    Zone(ZoneId),
    Group(Vec<ZoneId>),
}

impl Members {
    fn as_slice(&self) -> &[ZoneId] {
        match self {
            Members::Zone(z) => std::slice::from_ref(z),
            Members::Group(zones) => zones,
        }
    }
}

/// Resolves zone and group names to zones; groups are flattened (nested
/// groups included), memoised, and checked for cycles (E207).
struct Zones<'t> {
    tree: &'t Tree,
    names: &'t Names,
    ids: &'t HashMap<DefId, ZoneId>,
    groups: HashMap<DefId, Option<Vec<ZoneId>>>,
}

impl Zones<'_> {
    /// The zones a name stands for, and the group's name when it is a group.
    fn resolve(&mut self, path: &ast::Path, diags: &mut Vec<Diagnostic>) -> Option<(Members, Option<String>)> {
        let names = self.names;
        let def = names.lookup_zones(path, diags)?;
        match def.kind {
            DefKind::Group => Some((Members::Group(self.group(def, diags)?), Some(def.name.clone()))),
            _ => Some((Members::Zone(*self.ids.get(&def.id)?), None)),
        }
    }

    /// A group's zones, nested groups flattened.
    fn group(&mut self, def: &Def, diags: &mut Vec<Diagnostic>) -> Option<Vec<ZoneId>> {
        if let Some(done) = self.groups.get(&def.id) {
            return done.clone();
        }
        let mut zones = BTreeSet::new();
        let mut ok = true;
        let mut seen = HashSet::from_iter([def.id]);
        let mut work = vec![def.id];
        while let Some(g) = work.pop() {
            let Item::Group(item) = self.tree.item(g) else { continue };
            if item.members.is_empty() {
                diags.push(
                    Diagnostic::new(Code::E209, item.list, format!("group `{}` lists no zones", item.name.name))
                        .with_label(item.list, "empty list")
                        .with_help("a group names at least one zone or group"),
                );
                ok = false;
            }
            for m in &item.members {
                let Some(member) = self.names.lookup_zones(m, diags).cloned() else {
                    ok = false;
                    continue;
                };
                match member.kind {
                    DefKind::Group if member.id == def.id => {
                        diags.push(
                            Diagnostic::new(Code::E207, def.span, format!("group `{}` contains itself", def.name))
                                .with_label(m.span, "through this member")
                                .with_help("a group must end in zones: break the cycle"),
                        );
                        ok = false;
                    }
                    DefKind::Group => {
                        if seen.insert(member.id) {
                            work.push(member.id);
                        }
                    }
                    _ => zones.extend(self.ids.get(&member.id).copied()),
                }
            }
        }
        let result = ok.then(|| zones.into_iter().collect());
        self.groups.insert(def.id, result.clone());
        result
    }

    /// One end of an item: every zone it names, in order, each once.
    fn end(&mut self, list: &ZoneList, diags: &mut Vec<Diagnostic>) -> Option<End> {
        let mut out: End = Vec::new();
        let mut ok = true;
        for path in &list.items {
            match self.resolve(path, diags) {
                Some((zones, via)) => {
                    for &z in zones.as_slice() {
                        if !out.iter().any(|(o, _)| *o == z) {
                            out.push((z, via.clone()));
                        }
                    }
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

/// Every pair of an item's two ends.
fn pairs(from: &End, to: &End) -> Vec<(ZoneId, ZoneId, Via)> {
    from.iter().flat_map(|(a, va)| to.iter().map(move |(b, vb)| (*a, *b, Via { from: va.clone(), to: vb.clone() }))).collect()
}

/// Adds groups, flows, denies, asserts and tests to the model.
pub fn build(
    tree: &Tree,
    names: &Names,
    ids: &HashMap<DefId, ZoneId>,
    services: &mut Services<'_>,
    today: Option<Date>,
    model: &mut Model,
    diags: &mut Vec<Diagnostic>,
) {
    let mut zones = Zones { tree, names, ids, groups: HashMap::default() };
    let mut group_defs: Vec<&Def> = names.locals.values().filter(|d| d.kind == DefKind::Group).collect();
    group_defs.sort_by(|a, b| a.name.cmp(&b.name));
    for def in group_defs {
        if let Some(z) = zones.group(def, diags) {
            model.groups.push(ir::Group { name: def.name.clone(), zones: z, span: def.span });
        }
    }
    // One rule per flow at least (a group end makes more): reserved, not
    // doubled into (a 20000-flow policy's rules are several megabytes).
    let (flows, denies) = tree.user_items().fold((0, 0), |(f, d), (_, _, item)| match item {
        Item::Flow(_) => (f + 1, d),
        Item::Deny(_) => (f, d + 1),
        _ => (f, d),
    });
    model.flows.reserve(flows);
    model.denies.reserve(denies);
    for (_, _, item) in tree.user_items() {
        match item {
            Item::Flow(f) => {
                let attrs = check_block(f.body.as_ref(), schema::FLOW, "a flow", f.span, diags);
                let rule = Rule { action: Action::Allow, from: &f.from, to: &f.to, refs: &f.services, span: f.span };
                rule.lower(&attrs, &mut zones, services, today, diags, &mut model.flows);
            }
            Item::Deny(d) => {
                let attrs = check_block(d.body.as_ref(), schema::DENY, "a deny", d.span, diags);
                let rule = Rule { action: Action::Deny, from: &d.from, to: &d.to, refs: &d.services, span: d.span };
                rule.lower(&attrs, &mut zones, services, today, diags, &mut model.denies);
            }
            Item::Assert(a) => model.asserts.extend(assert(a, &mut zones, services, diags)),
            Item::Test(t) => {
                let cases = t.cases.iter().flat_map(|c| test_case(c, &mut zones, services, diags)).collect();
                model.tests.push(ir::Test { name: t.name.value.clone(), cases, span: t.span });
            }
            Item::Service(_)
            | Item::Zone(_)
            | Item::Policy(_)
            | Item::Use(_)
            | Item::Import(_)
            | Item::Group(_)
            | Item::Feed(_)
            | Item::BlockFeeds(_) => {}
        }
    }
}

/// A flow or deny item, before it is checked.
struct Rule<'a> {
    action: Action,
    from: &'a ZoneList,
    to: &'a ZoneList,
    refs: &'a [ServiceRef],
    span: Span,
}

impl Rule<'_> {
    /// One IR rule per zone pair the item names, pushed onto `out`.
    fn lower(
        &self,
        attrs: &Attrs<'_>,
        zones: &mut Zones<'_>,
        services: &mut Services<'_>,
        today: Option<Date>,
        diags: &mut Vec<Diagnostic>,
        out: &mut Vec<ir::Rule>,
    ) {
        let from = zones.end(self.from, diags);
        let to = zones.end(self.to, diags);
        // Every reference is checked (each reports its own errors).
        let mut list: Vec<RuleService> = Vec::with_capacity(self.refs.len());
        let mut refs_ok = true;
        for r in self.refs {
            match services.reference(r, diags) {
                Some(s) => list.push(s),
                None => refs_ok = false,
            }
        }
        let (Some(from), Some(to), true) = (from, to, refs_ok) else { return };
        let set = list.iter().fold(ServiceSet::default(), |acc, s| acc.union(&s.set));
        let reviewed = reviewed(attrs, today, diags);
        let head = self.span.with_end(self.refs.last().map_or(self.span.end, |r| r.span().end));
        let Some(((a, va), (b, vb))) = from.first().zip(to.first()) else { return };
        let first = out.len();
        out.push(ir::Rule {
            action: self.action,
            from: *a,
            to: *b,
            services: list,
            set,
            justification: attrs.str("justification"),
            owner: attrs.str("owner"),
            reviewed,
            description: attrs.str("description"),
            span: self.span,
            head,
            via: Via { from: va.clone(), to: vb.clone() },
        });
        // A group end makes more rules, copies of the first but for the pair,
        // in the order of the pairs (from major).
        for (i, (a, va)) in from.iter().enumerate() {
            for (j, (b, vb)) in to.iter().enumerate() {
                if i + j > 0 {
                    let rule = ir::Rule { from: *a, to: *b, via: Via { from: va.clone(), to: vb.clone() }, ..out[first].clone() };
                    out.push(rule);
                }
            }
        }
    }
}

/// The `reviewed` date; one after `today` is no review at all (E206).
fn reviewed(attrs: &Attrs<'_>, today: Option<Date>, diags: &mut Vec<Diagnostic>) -> Option<Date> {
    let v = attrs.values.get("reviewed")?;
    let ValueKind::Date(t) = &v.kind else { return None };
    let date = Date::parse(t)?;
    if let Some(today) = today.filter(|t| matches!(Review::of(Some(date), *t, 0), Review::Future { .. })) {
        diags.push(
            Diagnostic::new(Code::E206, v.span, format!("review date {date} is after today ({today})"))
                .with_label(v.span, "a review that has not happened yet")
                .with_help("write the date the flow was last reviewed; an assessor treats a future date as no review (PCI 1.2.7)"),
        );
        return None;
    }
    Some(date)
}

fn assert(a: &ast::Assert, zones: &mut Zones<'_>, services: &mut Services<'_>, diags: &mut Vec<Diagnostic>) -> Vec<ir::Assert> {
    let from = zones.end(&a.from, diags);
    let to = zones.end(&a.to, diags);
    let kind = match &a.kind {
        ast::AssertKind::Unreachable => Some(ir::AssertKind::Unreachable),
        ast::AssertKind::Denied(refs) => {
            let list: Vec<Option<RuleService>> = refs.iter().map(|r| services.reference(r, diags)).collect();
            list.into_iter().collect::<Option<Vec<_>>>().map(|services| {
                let set = services.iter().fold(ServiceSet::default(), |acc, s| acc.union(&s.set));
                ir::AssertKind::Denied { services, set }
            })
        }
    };
    let (Some(from), Some(to), Some(kind)) = (from, to, kind) else { return Vec::new() };
    pairs(&from, &to).into_iter().map(|(from, to, _)| ir::Assert { kind: kind.clone(), from, to, span: a.span }).collect()
}

/// A test case, once per zone pair when an end is a group.
fn test_case(c: &ast::TestCase, zones: &mut Zones<'_>, services: &mut Services<'_>, diags: &mut Vec<Diagnostic>) -> Vec<ir::TestCase> {
    let from = endpoint(&c.from, zones, diags);
    let to = endpoint(&c.to, zones, diags);
    let service = services.reference(&c.service, diags);
    let (Some(from), Some(to), Some(service)) = (from, to, service) else { return Vec::new() };
    if let ([(ir::Endpoint::Addr(a), _)], [(ir::Endpoint::Addr(b), _)]) = (from.as_slice(), to.as_slice()) {
        if a.is_ipv4() != b.is_ipv4() {
            diags.push(
                Diagnostic::new(Code::E208, c.span, "a test case cannot mix IPv4 and IPv6 addresses")
                    .with_label(c.from.span(), if a.is_ipv4() { "IPv4" } else { "IPv6" })
                    .with_label(c.to.span(), if b.is_ipv4() { "IPv4" } else { "IPv6" })
                    .with_help("use two addresses of one family: every packet has one"),
            );
            return Vec::new();
        }
    }
    let text = crate::syntax::fmt::test_case_text(c);
    let expanded = from.len() > 1 || to.len() > 1;
    let mut out = Vec::new();
    for (f, fname) in &from {
        for (t, tname) in &to {
            let text = match (expanded, fname, tname) {
                (true, Some(a), Some(b)) => format!("{text} [{a} -> {b}]"),
                _ => text.clone(),
            };
            out.push(ir::TestCase { expect: c.expect, from: f.clone(), to: t.clone(), service: service.clone(), text, span: c.span });
        }
    }
    out
}

/// A test case end: an address, or each zone a zone or group name stands for
/// (with the zone's name, for the case's text).
fn endpoint(e: &ast::Endpoint, zones: &mut Zones<'_>, diags: &mut Vec<Diagnostic>) -> Option<Vec<(ir::Endpoint, Option<String>)>> {
    match e {
        ast::Endpoint::Zone(p) => {
            let (ids, _) = zones.resolve(p, diags)?;
            Some(ids.as_slice().iter().map(|&z| (ir::Endpoint::Zone(z), Some(zone_name(zones, z)))).collect())
        }
        ast::Endpoint::Addr { text, span } => match Prefix::parse(text) {
            Ok(p) if p.len == p.family.max_len() => Some(vec![(ir::Endpoint::Addr(p.first()), None)]),
            Ok(_) => {
                diags.push(
                    Diagnostic::new(Code::E202, *span, format!("a test case names one address or a zone, not the prefix `{text}`"))
                        .with_label(*span, "a prefix")
                        .with_help("name one address of the prefix, or the zone it belongs to"),
                );
                None
            }
            Err(err) => {
                diags.push(prefix_error(text, *span, &err));
                None
            }
        },
    }
}

fn zone_name(zones: &Zones<'_>, z: ZoneId) -> String {
    let def = zones.ids.iter().find(|(_, id)| **id == z).map(|(d, _)| *d);
    match def.map(|d| zones.tree.item(d)) {
        Some(Item::Zone(item)) => item.name.name.clone(),
        _ => format!("#{}", z.0),
    }
}

/// The standard-library zones the policy's items name (directly, or as
/// members of its groups): they join the model.
pub fn referenced_std_zones(tree: &Tree, names: &Names) -> HashSet<DefId> {
    let mut out = HashSet::default();
    // A one-segment name reaches a standard zone only through a `use` of one
    // (locals are the user's): without such a use, only `std.zones.x` paths
    // are looked up.
    let single = names.explicit.values().chain(names.globs.values()).any(|d| d.std && d.kind == DefKind::Zone);
    let mut visit = |path: &ast::Path| {
        let may_be_std = match path.segments.as_slice() {
            [_] => single,
            [first, _, _] => first.name == "std",
            _ => false,
        };
        if !may_be_std {
            return;
        }
        if let Some(def) = names.find(path).filter(|d| d.std && d.kind == DefKind::Zone) {
            out.insert(def.id);
        }
    };
    for (_, _, item) in tree.user_items() {
        match item {
            Item::Flow(f) => f.from.items.iter().chain(&f.to.items).for_each(&mut visit),
            Item::Deny(d) => d.from.items.iter().chain(&d.to.items).for_each(&mut visit),
            Item::Assert(a) => a.from.items.iter().chain(&a.to.items).for_each(&mut visit),
            Item::Group(g) => g.members.iter().for_each(&mut visit),
            Item::Test(t) => t.cases.iter().flat_map(|c| [&c.from, &c.to]).for_each(|e| {
                if let ast::Endpoint::Zone(p) = e {
                    visit(p);
                }
            }),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::{compile_str, Options};

    #[test]
    fn a_group_end_is_one_rule_per_zone() {
        let c = compile_str(
            "zone a { cidrs = [10.0.1.0/24] scope = connected }\nzone b { cidrs = [10.0.2.0/24] scope = connected }\n\
             zone c { cidrs = [10.0.3.0/24] scope = connected }\ngroup ab = [a, b]\nflow ab -> c on tcp/443\n",
            &Options::default(),
        );
        assert!(!c.has_errors(), "{:?}", c.diagnostics);
        assert_eq!(c.model.flows.len(), 2);
        assert!(c.model.flows.iter().all(|f| f.via.from.as_deref() == Some("ab")));
    }
}
