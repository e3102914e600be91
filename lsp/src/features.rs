//! The requests: hover, definition, references, completion, formatting,
//! rename, document symbols and code actions.

use std::collections::HashMap;
use std::path::Path;

use lsp_types as lsp;
use segc_compiler::check::schema;
use segc_compiler::diag::{FileId, Span};
use segc_compiler::ir::{Date, Review, Scope, ZoneKind};
use segc_compiler::resolve::{Def, DefKind};
use segc_compiler::syntax::ast::{Item, ValueKind};
use segc_compiler::syntax::{fmt, parse};

use crate::convert::{offset, position, range};
use crate::index;
use crate::state::{normalize, path_of_uri, stdlib_path, State, Unit};

/// The file and text of a span in a unit, as a location.
fn location(unit: &Unit, span: Span) -> Option<lsp::Location> {
    let f = unit.comp.sources().get(span.file);
    let path = if f.std {
        let module = f.name.trim_start_matches("<std>/").trim_end_matches(".seg");
        stdlib_path(module)?
    } else {
        normalize(&unit.dir.join(&f.name))
    };
    let uri = lsp::Url::from_file_path(&path).ok()?;
    Some(lsp::Location { uri, range: range(&f.text, span.start as usize, span.end as usize) })
}

struct At<'s> {
    unit: &'s Unit,
    file: FileId,
    offset: usize,
}

fn at<'s>(state: &'s State, doc: &lsp::TextDocumentPositionParams) -> Option<At<'s>> {
    let path = path_of_uri(&doc.text_document.uri)?;
    let (unit, file) = state.locate(&path)?;
    let text = &unit.comp.sources().get(file).text;
    Some(At { unit, file, offset: offset(text, doc.position) })
}

fn def_at<'s>(a: &At<'s>) -> Option<(Span, &'s Def)> {
    let (span, occ) = index::at(&a.unit.comp, a.file, a.offset)?;
    Some((span, index::resolve(&a.unit.comp, &occ)?))
}

pub fn definition(state: &State, p: &lsp::GotoDefinitionParams) -> Option<lsp::GotoDefinitionResponse> {
    let a = at(state, &p.text_document_position_params)?;
    let (_, def) = def_at(&a)?;
    Some(lsp::GotoDefinitionResponse::Scalar(location(a.unit, def.span)?))
}

pub fn references(state: &State, p: &lsp::ReferenceParams) -> Option<Vec<lsp::Location>> {
    let a = at(state, &p.text_document_position)?;
    let (_, def) = def_at(&a)?;
    let spans = index::references(&a.unit.comp, def);
    Some(spans.into_iter().filter(|s| p.context.include_declaration || *s != def.span).filter_map(|s| location(a.unit, s)).collect())
}

const KEYWORDS: &[&str] = &[
    "policy",
    "use",
    "import",
    "service",
    "zone",
    "flow",
    "deny",
    "allow",
    "assert",
    "unreachable",
    "denied",
    "test",
    "on",
    "any",
    "icmp",
    "true",
    "false",
];

pub fn rename(state: &State, p: &lsp::RenameParams) -> Result<Option<lsp::WorkspaceEdit>, String> {
    let Some(a) = at(state, &p.text_document_position) else { return Ok(None) };
    let Some((_, def)) = def_at(&a) else { return Ok(None) };
    if def.std {
        return Err(format!("`{}` is in the standard library and cannot be renamed", def.name));
    }
    let new = &p.new_name;
    let ident = new.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && new.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ident || KEYWORDS.contains(&new.as_str()) {
        return Err(format!("`{new}` is not a valid name"));
    }
    if new != &def.name && (a.unit.comp.names.locals.contains_key(new) || a.unit.comp.names.explicit.contains_key(new)) {
        return Err(format!("`{new}` is already defined (E102)"));
    }
    let mut changes: HashMap<lsp::Url, Vec<lsp::TextEdit>> = HashMap::new();
    for span in index::references(&a.unit.comp, def) {
        if let Some(loc) = location(a.unit, span) {
            changes.entry(loc.uri).or_default().push(lsp::TextEdit { range: loc.range, new_text: new.clone() });
        }
    }
    Ok(Some(lsp::WorkspaceEdit { changes: Some(changes), ..Default::default() }))
}

/// The review status of a flow, as P104 and the report compute it.
fn review_text(review: Review, interval: u32) -> String {
    match review {
        Review::Never => "never reviewed".to_string(),
        Review::Current { date, age, due } => format!("reviewed {date}, {age} days ago; next review due {due}"),
        Review::Overdue { date, age, due } => {
            format!("reviewed {date}, {age} days ago: **overdue** since {due} (review interval {interval} days)")
        }
        Review::Future { date } => format!("review date {date} is in the future: not a review"),
    }
}

pub fn hover(state: &State, p: &lsp::HoverParams, today: Date) -> Option<lsp::Hover> {
    let a = at(state, &p.text_document_position_params)?;
    let comp = &a.unit.comp;
    let markdown = |value: String| lsp::HoverContents::Markup(lsp::MarkupContent { kind: lsp::MarkupKind::Markdown, value });
    if let Some((span, def)) = def_at(&a) {
        let text = def_hover(&comp.model, def)?;
        return Some(lsp::Hover {
            contents: markdown(text),
            range: Some(range(&comp.sources().get(a.file).text, span.start as usize, span.end as usize)),
        });
    }
    Some(lsp::Hover { contents: markdown(flow_hover(&a, today)?), range: None })
}

/// A zone, group or service where it is defined or named.
fn def_hover(model: &segc_compiler::ir::Model, def: &Def) -> Option<String> {
    Some(match def.kind {
        DefKind::Zone => {
            let z = model.zones.iter().find(|z| z.name == def.name)?;
            let id = model.zone_id(&z.name)?;
            let prefixes: Vec<String> = z.prefixes.iter().map(|p| format!("`{}`", p.prefix)).collect();
            let mut s =
                format!("**zone `{}`**: scope `{}`, kind `{}`\n\n{}", z.name, z.scope.as_str(), z.kind.as_str(), prefixes.join(", "));
            if let Some(o) = &z.owner {
                s.push_str(&format!("\n\nowner: {o}"));
            }
            if let Some(d) = &z.description {
                s.push_str(&format!("\n\n{d}"));
            }
            let ins: Vec<String> = model
                .flows
                .iter()
                .filter(|f| f.to == id)
                .map(|f| format!("`{}` on {}", model.zone(f.from).name, f.services_text()))
                .collect();
            let outs: Vec<String> = model
                .flows
                .iter()
                .filter(|f| f.from == id)
                .map(|f| format!("`{}` on {}", model.zone(f.to).name, f.services_text()))
                .collect();
            s.push_str(&format!("\n\nflows in ({}): {}", ins.len(), ins.iter().take(10).cloned().collect::<Vec<_>>().join("; ")));
            s.push_str(&format!("\n\nflows out ({}): {}", outs.len(), outs.iter().take(10).cloned().collect::<Vec<_>>().join("; ")));
            s
        }
        DefKind::Group => {
            let g = model.groups.iter().find(|g| g.name == def.name)?;
            let zones: Vec<String> = g.zones.iter().map(|z| format!("`{}`", model.zone(*z).name)).collect();
            format!("**group `{}`**: {} zone{}: {}", g.name, zones.len(), if zones.len() == 1 { "" } else { "s" }, zones.join(", "))
        }
        DefKind::Feed => {
            let f = model.feeds.iter().find(|f| f.name == def.name)?;
            format!(
                "**feed `{}`**: {} prefixes from `{}` ({}), refreshed every {} s{}",
                f.name,
                f.entries.len(),
                f.source,
                f.format.as_str(),
                f.refresh_secs,
                if f.blocked { ", blocked" } else { ", not blocked" }
            )
        }
        DefKind::Service => {
            let svc = model.services.iter().find(|s| s.name == def.name);
            match svc {
                Some(s) => {
                    let mut t = format!("**service `{}`**: {}", s.name, s.set);
                    if s.insecure {
                        t.push_str("\n\n**insecure** (P108 near the cde)");
                    }
                    if let Some(d) = &s.description {
                        t.push_str(&format!("\n\n{d}"));
                    }
                    t
                }
                None => format!("**service `{}`**", def.name),
            }
        }
    })
}

/// A flow: its zone pairs (groups expanded), justification and review status.
fn flow_hover(a: &At<'_>, today: Date) -> Option<String> {
    let comp = &a.unit.comp;
    let model = &comp.model;
    // A flow: its justification and review status.
    let items = &comp.tree.parsed[a.file.0 as usize].file.items;
    let Some(Item::Flow(f)) = items.iter().find(|i| {
        let s = i.span();
        s.start as usize <= a.offset && a.offset <= s.end as usize
    }) else {
        return None;
    };
    let attr = |name: &str| f.body.as_ref().and_then(|b| b.get(name)).map(|a| &a.value.kind);
    let mut s = format!("**flow `{} -> {}`**", f.from.text(), f.to.text());
    let rules: Vec<&segc_compiler::ir::Rule> = model.flows.iter().filter(|r| r.span == f.span).collect();
    if rules.len() > 1 || rules.iter().any(|r| r.via.from.is_some() || r.via.to.is_some()) {
        let pairs: Vec<String> = rules.iter().map(|r| format!("`{}`{}", model.pair_text(r.from, r.to), r.via_text())).collect();
        s.push_str(&format!("\n\none rule per zone pair ({}): {}", pairs.len(), pairs.join("; ")));
    }
    match attr("justification") {
        Some(ValueKind::Str(j)) => s.push_str(&format!("\n\njustification: {j}")),
        _ => s.push_str("\n\nno justification"),
    }
    let interval = model.policy.review_interval_days;
    let review = match rules.first() {
        Some(r) => r.review(today, interval),
        None => Review::of(attr("reviewed").and_then(|v| if let ValueKind::Date(d) = v { Date::parse(d) } else { None }), today, interval),
    };
    s.push_str(&format!("\n\n{}", review_text(review, interval)));
    Some(s)
}

fn item(label: &str, kind: lsp::CompletionItemKind, detail: Option<String>) -> lsp::CompletionItem {
    lsp::CompletionItem { label: label.to_string(), kind: Some(kind), detail, ..Default::default() }
}

/// Completion from the text before the cursor, so it works in broken files.
pub fn completion(state: &State, p: &lsp::CompletionParams) -> Option<lsp::CompletionResponse> {
    let path = path_of_uri(&p.text_document_position.text_document.uri)?;
    let text = state.text(&path)?;
    let off = offset(&text, p.text_document_position.position);
    let line_start = text[..off].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[line_start..off];
    let trimmed = line.trim_start();
    let word_start = line.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).map_or(0, |i| i + 1);
    let before = line[..word_start].trim_end();
    let names = |kind: DefKind| -> Vec<lsp::CompletionItem> {
        let Some((unit, _)) = state.locate(&path).or_else(|| state.units.first().map(|u| (u, FileId(0)))) else { return vec![] };
        let n = &unit.comp.names;
        let mut v: Vec<lsp::CompletionItem> = n
            .locals
            .values()
            .chain(n.explicit.values())
            .chain(n.globs.values())
            .filter(|d| d.kind == kind)
            .map(|d| {
                item(&d.name, if kind == DefKind::Zone { lsp::CompletionItemKind::MODULE } else { lsp::CompletionItemKind::CONSTANT }, None)
            })
            .collect();
        v.sort_by(|a, b| a.label.cmp(&b.label));
        v.dedup_by(|a, b| a.label == b.label);
        v
    };
    let enum_values = |values: &[&str]| values.iter().map(|v| item(v, lsp::CompletionItemKind::ENUM_MEMBER, None)).collect::<Vec<_>>();
    let items: Vec<lsp::CompletionItem> = if before.ends_with("scope =") || before.ends_with("scope=") {
        enum_values(Scope::NAMES)
    } else if before.ends_with("kind =") || before.ends_with("kind=") {
        enum_values(ZoneKind::NAMES)
    } else if before.ends_with("->")
        || ["flow", "deny", "unreachable", "denied", "allow"].iter().any(|k| before == *k || before.ends_with(&format!(" {k}")))
    {
        names(DefKind::Zone)
    } else if before.ends_with(" on")
        || (before.ends_with(',')
            && (trimmed.starts_with("flow")
                || trimmed.starts_with("deny")
                || trimmed.starts_with("service")
                || trimmed.starts_with("assert")))
        || before.ends_with(" =") && trimmed.starts_with("service")
    {
        names(DefKind::Service)
    } else if trimmed.starts_with("use std.") || trimmed == "use" {
        let module_path = trimmed.trim_start_matches("use").trim();
        match module_path.rsplit_once('.') {
            Some(("std", _)) | None => {
                vec![item("services", lsp::CompletionItemKind::MODULE, None), item("zones", lsp::CompletionItemKind::MODULE, None)]
            }
            Some((m, _)) => {
                let module = m.trim_start_matches("std.").trim_start_matches('{');
                segc_compiler::resolve::STDLIB
                    .iter()
                    .filter(|(name, _)| *name == module)
                    .flat_map(|(_, src)| {
                        parse(FileId(0), src).file.items.into_iter().filter_map(|i| match i {
                            Item::Zone(z) => Some(item(&z.name.name, lsp::CompletionItemKind::MODULE, None)),
                            Item::Service(s) => Some(item(&s.name.name, lsp::CompletionItemKind::CONSTANT, None)),
                            _ => None,
                        })
                    })
                    .collect()
            }
        }
    } else if before.is_empty() && line_start > 0 {
        // Inside a block: its attributes; at the top level: keywords.
        let spec = enclosing_block_spec(state, &path, off);
        match spec {
            Some(spec) => spec.iter().map(|a| item(a.name, lsp::CompletionItemKind::PROPERTY, Some(a.doc.to_string()))).collect(),
            None => KEYWORDS.iter().map(|k| item(k, lsp::CompletionItemKind::KEYWORD, None)).collect(),
        }
    } else if before.is_empty() {
        KEYWORDS.iter().map(|k| item(k, lsp::CompletionItemKind::KEYWORD, None)).collect()
    } else {
        return None;
    };
    Some(lsp::CompletionResponse::Array(items))
}

/// The attribute schema of the block around `off`, if any.
fn enclosing_block_spec(state: &State, path: &Path, off: usize) -> Option<&'static [schema::AttrSpec]> {
    let (unit, file) = state.locate(path)?;
    let items = &unit.comp.tree.parsed[file.0 as usize].file.items;
    let inside = |s: Span| s.start as usize <= off && off <= s.end as usize;
    items.iter().find_map(|i| match i {
        Item::Zone(z) if inside(z.body.span) => Some(schema::ZONE),
        Item::Policy(p) if inside(p.body.span) => Some(schema::POLICY),
        Item::Flow(f) if f.body.as_ref().is_some_and(|b| inside(b.span)) => Some(schema::FLOW),
        Item::Deny(d) if d.body.as_ref().is_some_and(|b| inside(b.span)) => Some(schema::DENY),
        Item::Service(s) if s.body.as_ref().is_some_and(|b| inside(b.span)) => Some(schema::SERVICE),
        Item::Feed(f) if inside(f.body.span) => Some(schema::FEED),
        _ => None,
    })
}

pub fn formatting(state: &State, p: &lsp::DocumentFormattingParams) -> Option<Vec<lsp::TextEdit>> {
    let path = path_of_uri(&p.text_document.uri)?;
    let text = state.text(&path)?;
    let parsed = parse(FileId(0), &text);
    if parsed.has_errors() {
        return None;
    }
    let out = fmt::format(&text, &parsed);
    if out == text {
        return Some(vec![]);
    }
    Some(vec![lsp::TextEdit { range: range(&text, 0, text.len()), new_text: out }])
}

#[expect(deprecated, reason = "lsp-types requires the deprecated field in the struct literal")]
pub fn symbols(state: &State, p: &lsp::DocumentSymbolParams) -> Option<lsp::DocumentSymbolResponse> {
    let path = path_of_uri(&p.text_document.uri)?;
    let (unit, file) = state.locate(&path)?;
    let text = &unit.comp.sources().get(file).text;
    let sym = |name: String, kind: lsp::SymbolKind, whole: Span, sel: Span, detail: Option<String>| lsp::DocumentSymbol {
        name,
        detail,
        kind,
        tags: None,
        deprecated: None,
        range: range(text, whole.start as usize, whole.end as usize),
        selection_range: range(text, sel.start as usize, sel.end as usize),
        children: None,
    };
    let mut out = Vec::new();
    for i in &unit.comp.tree.parsed[file.0 as usize].file.items {
        match i {
            Item::Zone(z) => out.push(sym(z.name.name.clone(), lsp::SymbolKind::NAMESPACE, z.span, z.name.span, Some("zone".into()))),
            Item::Service(s) => out.push(sym(s.name.name.clone(), lsp::SymbolKind::CONSTANT, s.span, s.name.span, Some("service".into()))),
            Item::Flow(f) => out.push(sym(
                format!("{} -> {}", f.from.text(), f.to.text()),
                lsp::SymbolKind::EVENT,
                f.span,
                f.from.span.to(f.to.span),
                Some("flow".into()),
            )),
            Item::Deny(d) => out.push(sym(
                format!("{} -> {}", d.from.text(), d.to.text()),
                lsp::SymbolKind::EVENT,
                d.span,
                d.from.span.to(d.to.span),
                Some("deny".into()),
            )),
            Item::Test(t) => out.push(sym(t.name.value.clone(), lsp::SymbolKind::METHOD, t.span, t.name.span, Some("test".into()))),
            Item::Policy(p) => out.push(sym(p.name.value.clone(), lsp::SymbolKind::PACKAGE, p.span, p.name.span, Some("policy".into()))),
            _ => {}
        }
    }
    Some(lsp::DocumentSymbolResponse::Nested(out))
}

/// Quick fixes: "did you mean" replacements, a missing `use`, and a
/// `justification` skeleton for P103.
pub fn code_actions(state: &State, p: &lsp::CodeActionParams) -> Option<lsp::CodeActionResponse> {
    let uri = &p.text_document.uri;
    let path = path_of_uri(uri)?;
    let (unit, file) = state.locate(&path)?;
    let text = &unit.comp.sources().get(file).text;
    let (lo, hi) = (offset(text, p.range.start), offset(text, p.range.end));
    let mut out = Vec::new();
    let edit = |title: String, edits: Vec<lsp::TextEdit>, diag: &segc_compiler::diag::Diagnostic| {
        let mut changes = HashMap::new();
        changes.insert(uri.clone(), edits);
        lsp::CodeActionOrCommand::CodeAction(lsp::CodeAction {
            title,
            kind: Some(lsp::CodeActionKind::QUICKFIX),
            diagnostics: Some(vec![crate::convert::diagnostic(diag, text, &|_| None)]),
            edit: Some(lsp::WorkspaceEdit { changes: Some(changes), ..Default::default() }),
            is_preferred: Some(true),
            ..Default::default()
        })
    };
    for d in unit.comp.diagnostics.iter().filter(|d| d.span.file == file) {
        let (s, e) = (d.span.start as usize, d.span.end as usize);
        if e < lo || s > hi {
            continue;
        }
        let help = d.help.as_deref().unwrap_or("");
        if let Some(rest) = help.strip_prefix("did you mean `") {
            let Some(suggestion) = rest.split('`').next() else { continue };
            let r = range(text, s, e);
            out.push(edit(format!("replace with `{suggestion}`"), vec![lsp::TextEdit { range: r, new_text: suggestion.to_string() }], d));
        } else if let Some(rest) = help.split("add `use ").nth(1) {
            let Some(line) = rest.split('`').next() else { continue };
            let at = position(text, 0);
            out.push(edit(
                format!("add `use {line}`"),
                vec![lsp::TextEdit { range: lsp::Range { start: at, end: at }, new_text: format!("use {line}\n") }],
                d,
            ));
        } else if d.code.as_str() == "P103" {
            let items = &unit.comp.tree.parsed[file.0 as usize].file.items;
            let Some(Item::Flow(f)) = items.iter().find(|i| i.span().start <= d.span.start && d.span.end <= i.span().end) else { continue };
            let (at, new_text) = match &f.body {
                Some(b) => (b.span.start as usize + 1, "\n  justification = \"\"".to_string()),
                None => {
                    let head_end = f.services.last().map_or(f.span.end, |s| s.span().end) as usize;
                    (head_end, " {\n  justification = \"\"\n}".to_string())
                }
            };
            let pos = position(text, at);
            out.push(edit("add a `justification`".into(), vec![lsp::TextEdit { range: lsp::Range { start: pos, end: pos }, new_text }], d));
        }
    }
    Some(out)
}
