//! Positions and diagnostics between the compiler's byte offsets and LSP's
//! lines and UTF-16 columns.

use lsp_types as lsp;
use segc_compiler::diag::{Diagnostic, Severity};

/// LSP position (UTF-16 columns) of a byte offset.
pub fn position(text: &str, offset: usize) -> lsp::Position {
    let offset = offset.min(text.len());
    let offset = (0..=offset).rev().find(|&o| text.is_char_boundary(o)).unwrap_or(0);
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[..line_start].matches('\n').count();
    let character: usize = text[line_start..offset].chars().map(char::len_utf16).sum();
    lsp::Position { line: line as u32, character: character as u32 }
}

/// Byte offset of an LSP position; past the end of a line means its end.
pub fn offset(text: &str, pos: lsp::Position) -> usize {
    let mut line_start = 0;
    for _ in 0..pos.line {
        match text[line_start..].find('\n') {
            Some(i) => line_start += i + 1,
            None => return text.len(),
        }
    }
    let line_end = text[line_start..].find('\n').map_or(text.len(), |i| line_start + i);
    let mut units = 0u32;
    for (i, c) in text[line_start..line_end].char_indices() {
        if units >= pos.character {
            return line_start + i;
        }
        units += c.len_utf16() as u32;
    }
    line_end
}

pub fn range(text: &str, start: usize, end: usize) -> lsp::Range {
    lsp::Range { start: position(text, start), end: position(text, end) }
}

pub fn severity(s: Severity) -> lsp::DiagnosticSeverity {
    match s {
        Severity::Error => lsp::DiagnosticSeverity::ERROR,
        Severity::Warning => lsp::DiagnosticSeverity::WARNING,
        Severity::Note => lsp::DiagnosticSeverity::INFORMATION,
    }
}

pub const DOCS_BASE: &str = "https://segc.dev/docs/diagnostics";

/// An LSP diagnostic; `locate` maps a span to a URI and that file's text.
pub fn diagnostic(d: &Diagnostic, text: &str, locate: &dyn Fn(segc_compiler::diag::Span) -> Option<(lsp::Url, String)>) -> lsp::Diagnostic {
    let mut message = d.message.clone();
    for n in &d.notes {
        message.push_str(&format!("\nnote: {n}"));
    }
    if let Some(h) = &d.help {
        message.push_str(&format!("\nhelp: {h}"));
    }
    let related: Vec<lsp::DiagnosticRelatedInformation> = d
        .labels
        .iter()
        .filter(|l| l.span != d.span)
        .filter_map(|l| {
            let (uri, t) = locate(l.span)?;
            Some(lsp::DiagnosticRelatedInformation {
                location: lsp::Location { uri, range: range(&t, l.span.start as usize, l.span.end as usize) },
                message: l.message.clone(),
            })
        })
        .collect();
    lsp::Diagnostic {
        range: range(text, d.span.start as usize, d.span.end as usize),
        severity: Some(severity(d.severity)),
        code: Some(lsp::NumberOrString::String(d.code.as_str().to_string())),
        code_description: lsp::Url::parse(&format!("{DOCS_BASE}/{}.md", d.code)).ok().map(|href| lsp::CodeDescription { href }),
        source: Some("segc".into()),
        message,
        related_information: (!related.is_empty()).then_some(related),
        tags: None,
        data: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_columns_round_trip() {
        let t = "a\n  é𝄞x = 1\n";
        let p = position(t, t.find('x').unwrap());
        assert_eq!(p, lsp::Position { line: 1, character: 5 });
        assert_eq!(offset(t, p), t.find('x').unwrap());
        assert_eq!(offset(t, lsp::Position { line: 9, character: 0 }), t.len());
    }
}
