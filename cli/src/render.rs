//! Rendering diagnostics: ariadne for people, JSON and SARIF 2.1.0 for machines.

use std::io::Write;

use ariadne::{CharSet, Config, IndexType, Label, Report, ReportKind};
use segc_compiler::diag::{Code, Diagnostic, Severity, Span};
use segc_compiler::source::SourceMap;
use serde_json::{json, Value};

/// Lines longer than this are not drawn; the diagnostic is printed as text.
const MAX_DRAWN_LINE: usize = 400;

/// Where each code's documentation lives, for SARIF and the LSP.
pub const DOCS_BASE: &str = "https://segc.dev/docs/diagnostics";

pub fn doc_url(code: Code) -> String {
    format!("{DOCS_BASE}/{code}.md")
}

fn kind(sev: Severity) -> ReportKind<'static> {
    match sev {
        Severity::Error => ReportKind::Error,
        Severity::Warning => ReportKind::Warning,
        Severity::Note => ReportKind::Advice,
    }
}

fn line_too_long(sources: &SourceMap, span: Span) -> bool {
    let text = &sources.get(span.file).text;
    let start = text[..(span.start as usize).min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let end = text[(span.end as usize).min(text.len())..].find('\n').map_or(text.len(), |i| span.end as usize + i);
    end.saturating_sub(start) > MAX_DRAWN_LINE
}

/// Renders diagnostics for a terminal or a log, with or without colour.
pub fn human(sources: &SourceMap, diags: &[Diagnostic], color: bool, out: &mut dyn Write) -> std::io::Result<()> {
    // One cache for every report: building it splits each file into lines.
    let mut cache = ariadne::sources(sources.files().map(|(_, f)| (f.name.clone(), f.text.as_str())).collect::<Vec<_>>());
    for d in diags {
        let spans = std::iter::once(d.span).chain(d.labels.iter().map(|l| l.span));
        if spans.clone().any(|s| line_too_long(sources, s)) {
            plain(sources, d, out)?;
            continue;
        }
        let name = |s: Span| sources.get(s.file).name.clone();
        let mut report = Report::build(kind(d.severity), (name(d.span), d.span.range()))
            .with_config(Config::default().with_color(color).with_index_type(IndexType::Byte).with_char_set(if color {
                CharSet::Unicode
            } else {
                CharSet::Ascii
            }))
            .with_code(d.code)
            .with_message(&d.message);
        // ariadne draws only labels with a message: make sure the primary span has
        // one, unless other labels already point inside it.
        let inside =
            |l: &segc_compiler::diag::Label| l.span.file == d.span.file && l.span.start >= d.span.start && l.span.end <= d.span.end;
        if !d.labels.iter().any(inside) {
            report = report.with_label(Label::new((name(d.span), d.span.range())).with_message("here").with_order(-1));
        }
        for (i, l) in d.labels.iter().enumerate() {
            report = report.with_label(Label::new((name(l.span), l.span.range())).with_message(&l.message).with_order(i as i32));
        }
        for n in &d.notes {
            report = report.with_note(n);
        }
        if let Some(h) = &d.help {
            report = report.with_help(h);
        }
        report.finish().write(&mut cache, &mut *out)?;
    }
    Ok(())
}

/// One diagnostic as plain text, for lines too long to draw.
fn plain(sources: &SourceMap, d: &Diagnostic, out: &mut dyn Write) -> std::io::Result<()> {
    let (line, col) = sources.line_col(d.span);
    writeln!(out, "{}[{}]: {}", d.severity.as_str(), d.code, d.message)?;
    writeln!(out, "  --> {}:{line}:{col}", sources.get(d.span.file).name)?;
    for l in &d.labels {
        let (line, col) = sources.line_col(l.span);
        writeln!(out, "  {}:{line}:{col}: {}", sources.get(l.span.file).name, l.message)?;
    }
    for n in &d.notes {
        writeln!(out, "  = note: {n}")?;
    }
    if let Some(h) = &d.help {
        writeln!(out, "  = help: {h}")?;
    }
    Ok(())
}

fn location(sources: &SourceMap, span: Span) -> Value {
    let f = sources.get(span.file);
    let (line, column) = f.lines.line_col(&f.text, span.start as usize);
    let (end_line, end_column) = f.lines.line_col(&f.text, span.end as usize);
    json!({
        "file": f.name,
        "line": line,
        "column": column,
        "end_line": end_line,
        "end_column": end_column,
        "start": span.start,
        "end": span.end,
    })
}

/// The `--format json` document.
pub fn json(sources: &SourceMap, diags: &[Diagnostic], policy: Option<&str>) -> Value {
    let items: Vec<Value> = diags
        .iter()
        .map(|d| {
            json!({
                "code": d.code.as_str(),
                "severity": d.severity.as_str(),
                "message": d.message,
                "location": location(sources, d.span),
                "labels": d.labels.iter().map(|l| json!({"message": l.message, "location": location(sources, l.span)})).collect::<Vec<_>>(),
                "notes": d.notes,
                "help": d.help,
            })
        })
        .collect();
    let count = |s: Severity| diags.iter().filter(|d| d.severity == s).count();
    json!({
        "version": 1,
        "tool": "segc",
        "policy": policy,
        "diagnostics": items,
        "summary": {"errors": count(Severity::Error), "warnings": count(Severity::Warning), "notes": count(Severity::Note)},
    })
}

fn sarif_region(sources: &SourceMap, span: Span) -> Value {
    let f = sources.get(span.file);
    let (line, column) = f.lines.line_col(&f.text, span.start as usize);
    let (end_line, end_column) = f.lines.line_col(&f.text, span.end as usize);
    json!({
        "physicalLocation": {
            "artifactLocation": {"uri": f.name, "uriBaseId": "POLICYROOT"},
            "region": {"startLine": line, "startColumn": column, "endLine": end_line, "endColumn": end_column,
                       "byteOffset": span.start, "byteLength": span.end - span.start},
        }
    })
}

/// The `--format sarif` document (SARIF 2.1.0).
pub fn sarif(sources: &SourceMap, diags: &[Diagnostic]) -> Value {
    let rules: Vec<Value> = Code::ALL
        .iter()
        .map(|c| {
            json!({
                "id": c.as_str(),
                "shortDescription": {"text": c.summary()},
                "helpUri": doc_url(*c),
                "defaultConfiguration": {"level": sarif_level(c.severity())},
            })
        })
        .collect();
    let results: Vec<Value> = diags
        .iter()
        .map(|d| {
            let mut text = d.message.clone();
            if let Some(h) = &d.help {
                text.push_str(&format!("\nhelp: {h}"));
            }
            json!({
                "ruleId": d.code.as_str(),
                "ruleIndex": Code::ALL.iter().position(|c| *c == d.code),
                "level": sarif_level(d.severity),
                "message": {"text": text},
                "locations": [sarif_region(sources, d.span)],
                "relatedLocations": d.labels.iter().enumerate().map(|(i, l)| {
                    let mut loc = sarif_region(sources, l.span);
                    loc["id"] = json!(i);
                    loc["message"] = json!({"text": l.message});
                    loc
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "segc",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://segc.dev",
                "rules": rules,
            }},
            "originalUriBaseIds": {"POLICYROOT": {"description": {"text": "the folder of the root policy file"}}},
            "results": results,
        }],
    })
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "note",
    }
}
