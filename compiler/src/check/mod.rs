//! Checking: turns the resolved tree into the IR, validating every attribute and
//! value (E201 to E206, E301) on the way. Later phases run on the IR only.

pub mod pci;
pub mod schema;

use std::collections::{BTreeMap, HashMap, HashSet};

use schema::{AttrSpec, Ty};

use crate::diag::{did_you_mean, Code, Diagnostic, Span};
use crate::ir::{self, Action, Date, Model, NamedService, Prefix, RangeSet, RuleService, Scope, ServiceSet, ZoneId, ZoneKind, ZonePrefix};
use crate::resolve::{Def, DefId, DefKind, Scope as Names, Tree};
use crate::syntax::ast::{self, Block, Item, ServiceRef, Value, ValueKind};

/// The attributes of one block that passed their type checks.
struct Attrs<'a> {
    values: BTreeMap<&'static str, &'a Value>,
}

impl<'a> Attrs<'a> {
    fn str(&self, name: &str) -> Option<String> {
        match self.values.get(name).map(|v| &v.kind) {
            Some(ValueKind::Str(s)) => Some(s.clone()),
            _ => None,
        }
    }

    fn word(&self, name: &str) -> Option<&'a str> {
        match self.values.get(name).map(|v| &v.kind) {
            Some(ValueKind::Word(s)) => Some(s.as_str()),
            _ => None,
        }
    }

    fn bool(&self, name: &str) -> Option<bool> {
        match self.values.get(name).map(|v| &v.kind) {
            Some(ValueKind::Bool(b)) => Some(*b),
            _ => None,
        }
    }
}

/// Checks a block against its schema. Values of the wrong type are reported and
/// left out; required attributes that are missing are reported at `owner_span`.
fn check_block<'a>(
    block: Option<&'a Block>,
    spec: &'static [AttrSpec],
    what: &str,
    owner_span: Span,
    diags: &mut Vec<Diagnostic>,
) -> Attrs<'a> {
    let mut values = BTreeMap::new();
    let mut seen: HashMap<String, Span> = HashMap::new();
    for attr in block.iter().flat_map(|b| &b.attrs) {
        let name = attr.name.dotted();
        let Some(s) = spec.iter().find(|s| s.name == name) else {
            let mut d = Diagnostic::new(Code::E201, attr.name.span, format!("unknown attribute `{name}` on {what}"))
                .with_label(attr.name.span, "not an attribute here");
            if let Some(best) = did_you_mean(&name, spec.iter().map(|s| s.name)) {
                d = d.with_help(format!("did you mean `{best}`?"));
            } else {
                let names: Vec<String> = spec.iter().map(|s| format!("`{}`", s.name)).collect();
                d = d.with_note(format!("{what} accepts {}", names.join(", ")));
            }
            diags.push(d);
            continue;
        };
        if let Some(first) = seen.get(&name) {
            diags.push(
                Diagnostic::new(Code::E102, attr.name.span, format!("attribute `{name}` is set twice"))
                    .with_label(attr.name.span, "set again here")
                    .with_label(*first, "first set here"),
            );
            continue;
        }
        seen.insert(name.clone(), attr.name.span);
        if check_value(&attr.value, s, diags) {
            values.insert(s.name, &attr.value);
        }
    }
    for s in spec.iter().filter(|s| s.required) {
        if !seen.contains_key(s.name) {
            diags.push(
                Diagnostic::new(Code::E203, owner_span, format!("{what} is missing the required attribute `{}`", s.name))
                    .with_label(owner_span, format!("needs `{}`", s.name))
                    .with_help(format!("add `{} = ...`: {}", s.name, s.ty.describe())),
            );
        }
    }
    Attrs { values }
}

fn wrong_type(v: &Value, s: &AttrSpec) -> Diagnostic {
    Diagnostic::new(Code::E202, v.span, format!("`{}` must be {}, found {}", s.name, s.ty.describe(), v.type_name()))
        .with_label(v.span, format!("this is {}", article(v.type_name())))
}

fn article(t: &str) -> String {
    if t.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {t}")
    } else {
        format!("a {t}")
    }
}

/// Checks one value; returns whether it is usable.
fn check_value(v: &Value, s: &AttrSpec, diags: &mut Vec<Diagnostic>) -> bool {
    match (s.ty, &v.kind) {
        (Ty::Str, ValueKind::Str(_)) | (Ty::Bool, ValueKind::Bool(_)) => true,
        (Ty::Date, ValueKind::Date(text)) => {
            if Date::parse(text).is_some() {
                true
            } else {
                diags.push(
                    Diagnostic::new(Code::E206, v.span, format!("`{text}` is not a valid date"))
                        .with_label(v.span, "not a calendar date")
                        .with_help("write dates as `YYYY-MM-DD`, such as `2026-10-01`"),
                );
                false
            }
        }
        (Ty::Duration, ValueKind::Duration(text)) => match ir::date::parse_duration_days(text) {
            Ok(_) => true,
            Err(why) => {
                diags.push(
                    Diagnostic::new(Code::E206, v.span, format!("`{text}` is not a valid duration"))
                        .with_label(v.span, why)
                        .with_help("write durations as days or weeks, such as `180d` or `26w`"),
                );
                false
            }
        },
        (Ty::Enum(names), ValueKind::Word(w)) => {
            if names.contains(&w.as_str()) {
                return true;
            }
            let mut d = Diagnostic::new(Code::E202, v.span, format!("`{w}` is not a valid `{}`", s.name))
                .with_label(v.span, format!("expected {}", s.ty.describe()));
            if let Some(best) = did_you_mean(w, names.iter().copied()) {
                d = d.with_help(format!("did you mean `{best}`?"));
            }
            diags.push(d);
            false
        }
        (Ty::Enum(names), ValueKind::Str(w)) if names.contains(&w.as_str()) => {
            diags.push(wrong_type(v, s).with_help(format!("write `{w}` without quotes")));
            false
        }
        (Ty::PrefixList, ValueKind::List(items)) => {
            let mut ok = true;
            for item in items {
                match &item.kind {
                    ValueKind::Addr(text) => {
                        if let Err(e) = Prefix::parse(text) {
                            diags.push(prefix_error(text, item.span, &e));
                            ok = false;
                        }
                    }
                    _ => {
                        diags.push(
                            Diagnostic::new(Code::E202, item.span, format!("`{}` must list prefixes, found {}", s.name, item.type_name()))
                                .with_label(item.span, "not a prefix"),
                        );
                        ok = false;
                    }
                }
            }
            ok
        }
        (Ty::PrefixList, ValueKind::Addr(text)) => {
            diags.push(wrong_type(v, s).with_help(format!("write a list: `[{text}]`")));
            false
        }
        (Ty::Duration, ValueKind::Int(n)) => {
            diags.push(wrong_type(v, s).with_help(format!("add a unit: `{n}d`")));
            false
        }
        (Ty::Date, ValueKind::Str(text)) if Date::parse(text).is_some() => {
            diags.push(wrong_type(v, s).with_help(format!("write the date without quotes: `{text}`")));
            false
        }
        _ => {
            diags.push(wrong_type(v, s));
            false
        }
    }
}

pub fn prefix_error(text: &str, span: Span, e: &ir::addr::PrefixError) -> Diagnostic {
    let mut d = Diagnostic::new(Code::E205, span, format!("invalid prefix `{text}`: {e}")).with_label(span, e.to_string());
    if let ir::addr::PrefixError::HostBitsSet { network } = e {
        d = d.with_help(format!("did you mean `{network}`?"));
    }
    d
}

/// Parses a service literal such as `tcp/443`, `udp/1000-2000` or `icmp/8`.
pub fn literal_set(text: &str, span: Span) -> Result<ServiceSet, Diagnostic> {
    let (proto, ports) = text.split_once('/').unwrap_or((text, ""));
    let max: u64 = match proto {
        "tcp" | "udp" => 65_535,
        "icmp" => 255,
        other => {
            let mut d = Diagnostic::new(Code::E202, span, format!("unknown protocol `{other}`"))
                .with_label(span, "expected `tcp`, `udp` or `icmp`");
            if let Some(best) = did_you_mean(other, ["tcp", "udp", "icmp"]) {
                d = d.with_help(format!("did you mean `{best}/{ports}`?"));
            } else {
                d = d.with_help("for every protocol, write `any`");
            }
            return Err(d);
        }
    };
    let what = if proto == "icmp" { "ICMP type" } else { "port" };
    let num = |s: &str| -> u64 { s.parse::<u64>().unwrap_or(u64::MAX) };
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (num(a), num(b)),
        None => (num(ports), num(ports)),
    };
    for n in [lo, hi] {
        if n > max {
            let shown = if n == u64::MAX { "the number".to_string() } else { n.to_string() };
            return Err(
                Diagnostic::new(Code::E204, span, format!("{what} {shown} is out of range 0..={max}")).with_label(span, "out of range")
            );
        }
    }
    if lo > hi {
        return Err(Diagnostic::new(Code::E204, span, format!("{what} range `{lo}-{hi}` is reversed"))
            .with_label(span, "the first must not exceed the second")
            .with_help(format!("did you mean `{proto}/{hi}-{lo}`?")));
    }
    let set = RangeSet::range(lo as u16, hi as u16);
    let mut s = ServiceSet::default();
    match proto {
        "tcp" => s.tcp = set,
        "udp" => s.udp = set,
        _ => s.icmp = set,
    }
    Ok(s)
}

/// Resolves service references to sets, memoising named services and catching
/// services defined in terms of themselves.
struct Services<'t> {
    tree: &'t Tree,
    names: &'t Names,
    memo: HashMap<DefId, Option<(ServiceSet, bool)>>,
    visiting: Vec<DefId>,
    /// Named services referenced anywhere, for W503 and the IR.
    used: HashSet<DefId>,
}

impl<'t> Services<'t> {
    fn reference(&mut self, r: &ServiceRef, diags: &mut Vec<Diagnostic>) -> Option<RuleService> {
        let (text, set, insecure) = match r {
            ServiceRef::Literal { text, span } => match literal_set(text, *span) {
                Ok(set) => (text.clone(), set, false),
                Err(d) => {
                    diags.push(d);
                    return None;
                }
            },
            ServiceRef::Icmp(_) => ("icmp".to_string(), ServiceSet { icmp: RangeSet::range(0, 255), ..ServiceSet::default() }, false),
            ServiceRef::Any(_) => ("any".to_string(), ServiceSet::any(), false),
            ServiceRef::Name(path) => {
                let def = self.names.lookup(path, DefKind::Service, diags)?.clone();
                self.used.insert(def.id);
                let (set, insecure) = self.named(&def, diags)?;
                (path.dotted(), set, insecure)
            }
        };
        Some(RuleService { text, set, insecure, span: r.span() })
    }

    fn named(&mut self, def: &Def, diags: &mut Vec<Diagnostic>) -> Option<(ServiceSet, bool)> {
        if let Some(done) = self.memo.get(&def.id) {
            return done.clone();
        }
        if let Some(pos) = self.visiting.iter().position(|&d| d == def.id) {
            let mut d = Diagnostic::new(Code::E202, def.span, format!("service `{}` is defined in terms of itself", def.name));
            for &other in &self.visiting[pos + 1..] {
                if let Item::Service(s) = self.tree.item(other) {
                    d = d.with_label(s.name.span, format!("through `{}`", s.name.name));
                }
            }
            diags.push(d);
            self.memo.insert(def.id, None);
            return None;
        }
        let Item::Service(item) = self.tree.item(def.id) else { return None };
        self.visiting.push(def.id);
        let attrs = check_block(item.body.as_ref(), schema::SERVICE, "a service", item.name.span, diags);
        let mut set = ServiceSet::default();
        let mut insecure = attrs.bool("insecure").unwrap_or(false);
        let mut ok = true;
        for r in &item.services {
            match self.reference(r, diags) {
                Some(rs) => {
                    set = set.union(&rs.set);
                    insecure |= rs.insecure;
                }
                None => ok = false,
            }
        }
        self.visiting.pop();
        let result = ok.then_some((set, insecure));
        self.memo.insert(def.id, result.clone());
        result
    }
}

/// Builds the IR from a resolved tree. The model is complete only when no error
/// was reported; callers must not lower a model that came with errors.
pub fn build_model(tree: &Tree, names: &Names, diags: &mut Vec<Diagnostic>) -> Model {
    let mut model = Model::default();
    policy_meta(tree, &mut model, diags);

    // Which zones exist: the user's, plus the standard zones the policy names.
    let mut zone_defs: Vec<&Def> = names.locals.values().filter(|d| d.kind == DefKind::Zone).collect();
    let mut std_zones: HashSet<DefId> = names.explicit.values().filter(|d| d.kind == DefKind::Zone).map(|d| d.id).collect();
    for (_, _, item) in tree.user_items() {
        for path in zone_paths(item) {
            if let Some(def) = names.find(path).filter(|d| d.std && d.kind == DefKind::Zone) {
                std_zones.insert(def.id);
            }
        }
    }
    let std_defs: Vec<&Def> = names.std.values().flat_map(|m| m.values()).filter(|d| std_zones.contains(&d.id)).collect();
    zone_defs.extend(std_defs);
    zone_defs.sort_by(|a, b| (&a.name, a.std).cmp(&(&b.name, b.std)));
    let mut zone_ids: HashMap<DefId, ZoneId> = HashMap::new();
    for def in &zone_defs {
        let Item::Zone(z) = tree.item(def.id) else { continue };
        zone_ids.insert(def.id, ZoneId(model.zones.len() as u32));
        model.zones.push(zone(z, def.std, diags));
    }
    duplicate_prefixes(&model, diags);

    let mut services = Services { tree, names, memo: HashMap::new(), visiting: Vec::new(), used: HashSet::new() };
    let zone_ref = |path: &ast::Path, diags: &mut Vec<Diagnostic>| -> Option<ZoneId> {
        names.lookup(path, DefKind::Zone, diags).and_then(|d| zone_ids.get(&d.id).copied())
    };

    for (_, _, item) in tree.user_items() {
        match item {
            Item::Flow(f) => {
                let attrs = check_block(f.body.as_ref(), schema::FLOW, "a flow", f.span, diags);
                if let Some(rule) = rule(Action::Allow, &f.from, &f.to, &f.services, &attrs, f.span, &zone_ref, &mut services, diags) {
                    model.flows.push(rule);
                }
            }
            Item::Deny(d) => {
                let attrs = check_block(d.body.as_ref(), schema::DENY, "a deny", d.span, diags);
                if let Some(rule) = rule(Action::Deny, &d.from, &d.to, &d.services, &attrs, d.span, &zone_ref, &mut services, diags) {
                    model.denies.push(rule);
                }
            }
            Item::Assert(a) => {
                let from = zone_ref(&a.from, diags);
                let to = zone_ref(&a.to, diags);
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
                if let (Some(from), Some(to), Some(kind)) = (from, to, kind) {
                    model.asserts.push(ir::Assert { kind, from, to, span: a.span });
                }
            }
            Item::Test(t) => {
                let mut cases = Vec::new();
                for c in &t.cases {
                    let from = endpoint(&c.from, &zone_ref, diags);
                    let to = endpoint(&c.to, &zone_ref, diags);
                    let service = services.reference(&c.service, diags);
                    let (Some(from), Some(to), Some(service)) = (from, to, service) else { continue };
                    if let (ir::Endpoint::Addr(a), ir::Endpoint::Addr(b)) = (&from, &to) {
                        if a.is_ipv4() != b.is_ipv4() {
                            diags.push(
                                Diagnostic::new(Code::E202, c.span, "a test case cannot mix IPv4 and IPv6 addresses")
                                    .with_label(c.from.span(), if a.is_ipv4() { "IPv4" } else { "IPv6" })
                                    .with_label(c.to.span(), if b.is_ipv4() { "IPv4" } else { "IPv6" }),
                            );
                            continue;
                        }
                    }
                    let text = crate::syntax::fmt::test_case_text(c);
                    cases.push(ir::TestCase { expect: c.expect, from, to, service, text, span: c.span });
                }
                model.tests.push(ir::Test { name: t.name.value.clone(), cases, span: t.span });
            }
            Item::Service(_) | Item::Zone(_) | Item::Policy(_) | Item::Use(_) | Item::Import(_) => {}
        }
    }

    // Check every user service, referenced or not, and record the named ones.
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

    let key = |r: &ir::Rule| (r.from, r.to, r.set.clone(), r.services_text(), r.justification.clone());
    model.flows.sort_by_key(key);
    model.denies.sort_by_key(key);
    model.tests.sort_by(|a, b| a.name.cmp(&b.name));
    model
}

fn zone_paths(item: &Item) -> Vec<&ast::Path> {
    match item {
        Item::Flow(f) => vec![&f.from, &f.to],
        Item::Deny(d) => vec![&d.from, &d.to],
        Item::Assert(a) => vec![&a.from, &a.to],
        Item::Test(t) => t
            .cases
            .iter()
            .flat_map(|c| [&c.from, &c.to])
            .filter_map(|e| match e {
                ast::Endpoint::Zone(p) => Some(p),
                ast::Endpoint::Addr { .. } => None,
            })
            .collect(),
        _ => vec![],
    }
}

fn endpoint(
    e: &ast::Endpoint,
    zone_ref: &dyn Fn(&ast::Path, &mut Vec<Diagnostic>) -> Option<ZoneId>,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::Endpoint> {
    match e {
        ast::Endpoint::Zone(p) => zone_ref(p, diags).map(ir::Endpoint::Zone),
        ast::Endpoint::Addr { text, span } => match Prefix::parse(text) {
            Ok(p) if p.len == p.family.max_len() => Some(ir::Endpoint::Addr(p.first())),
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

#[expect(clippy::too_many_arguments, reason = "one call site per rule kind; a struct would only rename them")]
fn rule(
    action: Action,
    from: &ast::Path,
    to: &ast::Path,
    refs: &[ServiceRef],
    attrs: &Attrs<'_>,
    span: Span,
    zone_ref: &dyn Fn(&ast::Path, &mut Vec<Diagnostic>) -> Option<ZoneId>,
    services: &mut Services<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::Rule> {
    let from = zone_ref(from, diags);
    let to = zone_ref(to, diags);
    let list: Vec<Option<RuleService>> = refs.iter().map(|r| services.reference(r, diags)).collect();
    let (from, to) = (from?, to?);
    let list: Vec<RuleService> = list.into_iter().collect::<Option<_>>()?;
    let set = list.iter().fold(ServiceSet::default(), |acc, s| acc.union(&s.set));
    let reviewed = match attrs.values.get("reviewed").map(|v| &v.kind) {
        Some(ValueKind::Date(t)) => Date::parse(t),
        _ => None,
    };
    Some(ir::Rule {
        action,
        from,
        to,
        services: list,
        set,
        justification: attrs.str("justification"),
        owner: attrs.str("owner"),
        reviewed,
        description: attrs.str("description"),
        span,
        head: span.with_end(refs.last().map_or(span.end, |r| r.span().end)),
    })
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
        let attrs = check_block(Some(&p.body), schema::POLICY, "`policy`", p.name.span, diags);
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

fn zone(z: &ast::Zone, std: bool, diags: &mut Vec<Diagnostic>) -> ir::Zone {
    let attrs = check_block(Some(&z.body), schema::ZONE, "a zone", z.name.span, diags);
    let mut prefixes = Vec::new();
    if let Some(Value { kind: ValueKind::List(items), span }) = attrs.values.get("cidrs") {
        for item in items {
            if let ValueKind::Addr(text) = &item.kind {
                if let Ok(prefix) = Prefix::parse(text) {
                    prefixes.push(ZonePrefix { prefix, span: item.span });
                }
            }
        }
        if items.is_empty() {
            diags.push(
                Diagnostic::new(Code::E202, *span, format!("zone `{}` lists no prefixes", z.name.name))
                    .with_label(*span, "empty list")
                    .with_help("a zone needs at least one prefix in `cidrs`"),
            );
        }
    }
    let bindings = attrs
        .values
        .iter()
        .filter(|(k, _)| k.contains('.'))
        .filter_map(|(k, v)| match &v.kind {
            ValueKind::Str(s) => Some(((*k).to_string(), s.clone())),
            _ => None,
        })
        .collect();
    ir::Zone {
        name: z.name.name.clone(),
        scope: attrs.word("scope").and_then(Scope::parse).unwrap_or(Scope::Untrusted),
        kind: attrs.word("kind").and_then(ZoneKind::parse).unwrap_or(ZoneKind::Wired),
        prefixes,
        owner: attrs.str("owner"),
        description: attrs.str("description"),
        bindings,
        span: z.name.span,
        std,
    }
}

/// E301: a prefix listed by two zones (or twice by one) makes membership ambiguous.
fn duplicate_prefixes(model: &Model, diags: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<Prefix, (&str, Span)> = HashMap::new();
    for z in &model.zones {
        for p in &z.prefixes {
            match seen.get(&p.prefix) {
                Some(&(other, first)) => {
                    let msg = if other == z.name {
                        format!("prefix `{}` is listed twice in zone `{other}`", p.prefix)
                    } else {
                        format!("prefix `{}` is in zones `{other}` and `{}`", p.prefix, z.name)
                    };
                    diags.push(
                        Diagnostic::new(Code::E301, p.span, msg)
                            .with_label(p.span, "listed again here")
                            .with_label(first, format!("already in `{other}`"))
                            .with_help("an address must belong to exactly one zone: remove one, or use a more specific prefix"),
                    );
                }
                None => {
                    seen.insert(p.prefix, (&z.name, p.span));
                }
            }
        }
    }
}
