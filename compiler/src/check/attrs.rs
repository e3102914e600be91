//! Attribute checking: every `name = value` of a block against the item's
//! schema (E201 unknown, E102 twice, E202 wrong type or value, E203 missing,
//! E205/E206 malformed prefixes, dates and durations).

use crate::hash::HashMap;
use std::collections::BTreeMap;

use super::schema::{AttrSpec, Ty};
use crate::diag::{did_you_mean, Code, Diagnostic, Span};
use crate::ir::{self, Date, Prefix};
use crate::syntax::ast::{Block, Value, ValueKind};

/// The attributes of one block that passed their type checks.
pub struct Attrs<'a> {
    pub values: BTreeMap<&'static str, &'a Value>,
}

impl<'a> Attrs<'a> {
    pub fn str(&self, name: &str) -> Option<String> {
        match self.values.get(name).map(|v| &v.kind) {
            Some(ValueKind::Str(s)) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn word(&self, name: &str) -> Option<&'a str> {
        match self.values.get(name).map(|v| &v.kind) {
            Some(ValueKind::Word(s)) => Some(s.as_str()),
            _ => None,
        }
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.values.get(name).map(|v| &v.kind) {
            Some(ValueKind::Bool(b)) => Some(*b),
            _ => None,
        }
    }
}

/// Checks a block against its schema. Values of the wrong type are reported and
/// left out; required attributes that are missing are reported at `owner_span`.
pub fn check_block<'a>(
    block: Option<&'a Block>,
    spec: &'static [AttrSpec],
    what: &str,
    owner_span: Span,
    diags: &mut Vec<Diagnostic>,
) -> Attrs<'a> {
    let mut values = BTreeMap::new();
    let mut seen: HashMap<String, Span> = HashMap::default();
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
    // A block the parser closed for an unclosed `{` (E001 already) may have
    // lost its attributes to the end of the file: do not add E203 to it.
    let closed_for_us = block.is_some_and(|b| b.close.start == b.close.end);
    for s in spec.iter().filter(|s| s.required && !closed_for_us) {
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
            } else if text.contains('/') {
                false // `09/01/2026`: the lexer reported it, with the ISO spelling
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
        (Ty::Interval, ValueKind::Duration(text)) => match ir::date::parse_interval_secs(text) {
            Ok(_) => true,
            Err(why) => {
                diags.push(
                    Diagnostic::new(Code::E206, v.span, format!("`{text}` is not a valid duration"))
                        .with_label(v.span, why)
                        .with_help("write durations such as `15m`, `1h` or `1d`"),
                );
                false
            }
        },
        (Ty::Count, ValueKind::Int(text)) => {
            if text.parse::<u32>().is_ok_and(|n| n > 0) {
                return true;
            }
            diags.push(
                Diagnostic::new(Code::E202, v.span, format!("`{}` must be a whole number from 1 to {}, found `{text}`", s.name, u32::MAX))
                    .with_label(v.span, "out of range"),
            );
            false
        }
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
        (Ty::Duration | Ty::Interval, ValueKind::Int(n)) => {
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
