//! Zones: their attributes, prefixes (E205, E209) and typed bindings (E202,
//! E203), and prefixes listed by two zones (E301).

use crate::hash::{HashMap, HashSet};

use super::attrs::{check_block, Attrs};
use super::schema;
use crate::diag::{Code, Diagnostic, Span};
use crate::ir::bindings::parse_selector;
use crate::ir::{self, Bindings, K8sBinding, Model, Prefix, Scope, ZoneId, ZoneKind, ZonePrefix};
use crate::resolve::{Def, DefId, DefKind, Scope as Names, Tree};
use crate::syntax::ast::{self, Item, Value, ValueKind};

/// Adds the zones to the model, sorted by name: the user's, plus the standard
/// zones the policy names (`referenced`: those its items name) or brings in
/// with `use`. Returns each zone definition's id.
pub fn build(
    tree: &Tree,
    names: &Names,
    referenced: &HashSet<DefId>,
    model: &mut Model,
    diags: &mut Vec<Diagnostic>,
) -> HashMap<DefId, ZoneId> {
    let mut zone_defs: Vec<&Def> = names.locals.values().filter(|d| d.kind == DefKind::Zone).collect();
    let mut std_zones: HashSet<DefId> = names.explicit.values().filter(|d| d.kind == DefKind::Zone).map(|d| d.id).collect();
    std_zones.extend(referenced);
    let std_defs: Vec<&Def> = names.std.values().flat_map(|m| m.values()).filter(|d| std_zones.contains(&d.id)).collect();
    zone_defs.extend(std_defs);
    zone_defs.sort_by(|a, b| (&a.name, a.std).cmp(&(&b.name, b.std)));
    let mut zone_ids = HashMap::default();
    for def in &zone_defs {
        let Item::Zone(z) = tree.item(def.id) else { continue };
        zone_ids.insert(def.id, ZoneId(model.zones.len() as u32));
        model.zones.push(zone(z, def.std, diags));
    }
    duplicate_prefixes(model, diags);
    probe_hosts_inside(model, diags);
    zone_ids
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
                Diagnostic::new(Code::E209, *span, format!("zone `{}` lists no prefixes", z.name.name))
                    .with_label(*span, "empty list")
                    .with_help("a zone needs at least one prefix in `cidrs`, such as `[10.0.9.0/24]`"),
            );
        }
    }
    let probe_hosts = probe_hosts(&attrs, diags);
    ir::Zone {
        name: z.name.name.clone(),
        scope: attrs.word("scope").and_then(Scope::parse).unwrap_or(Scope::Untrusted),
        kind: attrs.word("kind").and_then(ZoneKind::parse).unwrap_or(ZoneKind::Wired),
        prefixes,
        owner: attrs.str("owner"),
        description: attrs.str("description"),
        probe_hosts,
        bindings: bindings(z, &attrs, diags),
        span: z.name.span,
        std,
    }
}

/// A binding's value must be a name the target accepts.
struct NameRule {
    key: &'static str,
    max: usize,
    /// What the characters may be, for the message.
    allowed: &'static str,
    ok: fn(&str) -> bool,
}

const NAME_RULES: &[NameRule] = &[
    NameRule {
        key: "aws.security_group",
        max: 255,
        allowed: "letters, digits, spaces and ._-:/()#,@[]+=&;{}!$*",
        ok: |s| !s.starts_with("sg-") && s.chars().all(|c| c.is_ascii_alphanumeric() || " ._-:/()#,@[]+=&;{}!$*".contains(c)),
    },
    NameRule {
        key: "azure.nsg",
        max: 80,
        allowed: "letters, digits, `_`, `.` and `-`, starting with a letter or digit and ending with a letter, digit or `_`",
        ok: |s| {
            s.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                && s.starts_with(|c: char| c.is_ascii_alphanumeric())
                && s.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        },
    },
    NameRule {
        key: "gcp.tag",
        max: 63,
        allowed: "lowercase letters, digits and `-`, starting with a letter and not ending with `-`",
        ok: |s| {
            s.starts_with(|c: char| c.is_ascii_lowercase())
                && !s.ends_with('-')
                && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        },
    },
    NameRule {
        key: "k8s.namespace",
        max: 63,
        allowed: "lowercase letters, digits and `-`, starting and ending with a letter or digit",
        ok: |s| {
            s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && s.starts_with(|c: char| c.is_ascii_alphanumeric())
                && s.ends_with(|c: char| c.is_ascii_alphanumeric())
        },
    },
    NameRule {
        key: "windows.group",
        max: 200,
        allowed: "letters, digits, spaces and `_.-`",
        ok: |s| s.chars().all(|c| c.is_ascii_alphanumeric() || " _.-".contains(c)),
    },
];

/// The zone's bindings, each checked against what its target accepts.
fn bindings(z: &ast::Zone, attrs: &Attrs<'_>, diags: &mut Vec<Diagnostic>) -> Bindings {
    let mut get = |key: &str| -> Option<String> {
        let value = attrs.values.get(key)?;
        let text = attrs.str(key)?;
        let rule = NAME_RULES.iter().find(|r| r.key == key)?;
        if text.is_empty() || text.len() > rule.max || !(rule.ok)(&text) {
            diags.push(
                Diagnostic::new(Code::E202, value.span, format!("`{key}` of zone `{}` is not a valid name: `{text}`", z.name.name))
                    .with_label(value.span, "not accepted by the target")
                    .with_help(format!("use 1 to {} characters: {}", rule.max, rule.allowed)),
            );
            return None;
        }
        Some(text)
    };
    let namespace = get("k8s.namespace");
    let mut b = Bindings {
        aws_security_group: get("aws.security_group"),
        azure_nsg: get("azure.nsg"),
        gcp_tag: get("gcp.tag"),
        windows_group: get("windows.group"),
        k8s: None,
    };
    let selector = match (attrs.values.get("k8s.selector"), attrs.str("k8s.selector")) {
        (Some(v), Some(text)) => match parse_selector(&text) {
            Some(labels) => Some((v.span, labels)),
            None => {
                diags.push(
                    Diagnostic::new(
                        Code::E202,
                        v.span,
                        format!("`k8s.selector` of zone `{}` is not a label selector: `{text}`", z.name.name),
                    )
                    .with_label(v.span, "not `key=value` pairs")
                    .with_help("write `key=value` pairs separated by commas, such as `\"app=vault,tier=db\"`"),
                );
                return b;
            }
        },
        _ => None,
    };
    match (namespace, selector) {
        (Some(namespace), sel) => b.k8s = Some(K8sBinding { namespace, selector: sel.map(|(_, l)| l).unwrap_or_default() }),
        (None, Some((span, _))) if !attrs.values.contains_key("k8s.namespace") => diags.push(
            Diagnostic::new(Code::E203, span, format!("zone `{}` has `k8s.selector` without `k8s.namespace`", z.name.name))
                .with_label(span, "a selector picks pods within a namespace")
                .with_help("add `k8s.namespace = \"...\"`"),
        ),
        _ => {}
    }
    b
}

/// E301: a prefix listed by two zones (or twice by one) makes membership
/// ambiguous. The first listing in the source is "first listed"; later ones
/// are "listed again".
/// `probe_hosts`: single addresses (E202 names a prefix).
fn probe_hosts(attrs: &Attrs<'_>, diags: &mut Vec<Diagnostic>) -> Vec<ZonePrefix> {
    let Some(Value { kind: ValueKind::List(items), .. }) = attrs.values.get("probe_hosts") else { return Vec::new() };
    let mut hosts = Vec::new();
    for item in items {
        let ValueKind::Addr(text) = &item.kind else { continue };
        let Ok(prefix) = Prefix::parse(text) else { continue };
        if prefix.len != prefix.family.max_len() {
            diags.push(
                Diagnostic::new(Code::E202, item.span, format!("`probe_hosts` lists hosts, and `{text}` is a prefix"))
                    .with_label(item.span, "a prefix")
                    .with_help(format!("name one host inside it, such as `{}`", prefix.ip(prefix.addr + 1))),
            );
            continue;
        }
        hosts.push(ZonePrefix { prefix, span: item.span });
    }
    hosts
}

/// Every probe host belongs to its zone: the most specific prefix that holds
/// it is the zone's own (E202 names the zone it is in instead).
fn probe_hosts_inside(model: &Model, diags: &mut Vec<Diagnostic>) {
    for z in &model.zones {
        for h in &z.probe_hosts {
            let owner = model
                .zones
                .iter()
                .flat_map(|o| o.prefixes.iter().map(move |p| (p.prefix, o)))
                .filter(|(p, _)| p.covers(&h.prefix))
                .max_by_key(|(p, _)| p.len)
                .map(|(_, o)| o);
            if owner.is_some_and(|o| o.name == z.name) {
                continue;
            }
            let place = owner.map_or("in no zone".to_string(), |o| format!("in zone `{}`", o.name));
            diags.push(
                Diagnostic::new(Code::E202, h.span, format!("probe host `{}` of zone `{}` is {place}", h.prefix.first(), z.name))
                    .with_label(h.span, place.clone())
                    .with_help(format!("name an address of `{}`'s own prefixes", z.name)),
            );
        }
    }
}

fn duplicate_prefixes(model: &Model, diags: &mut Vec<Diagnostic>) {
    let mut all: Vec<(Span, &str, Prefix)> =
        model.zones.iter().flat_map(|z| z.prefixes.iter().map(move |p| (p.span, z.name.as_str(), p.prefix))).collect();
    all.sort_by_key(|(span, _, _)| (span.file, span.start));
    let mut seen: HashMap<Prefix, (&str, Span)> = HashMap::default();
    for (span, zone, prefix) in all {
        match seen.get(&prefix) {
            Some(&(other, first)) => {
                let msg = if other == zone {
                    format!("prefix `{prefix}` is listed twice in zone `{other}`")
                } else {
                    format!("prefix `{prefix}` is in zones `{other}` and `{zone}`")
                };
                diags.push(
                    Diagnostic::new(Code::E301, span, msg)
                        .with_label(span, format!("listed again here, in `{zone}`"))
                        .with_label(first, format!("first listed here, in `{other}`"))
                        .with_help("an address must belong to exactly one zone: remove one, or use a more specific prefix"),
                );
            }
            None => {
                seen.insert(prefix, (zone, span));
            }
        }
    }
}
