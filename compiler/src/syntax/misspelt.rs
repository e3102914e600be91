//! Spellings other tools accept and segc does not, each reported once with
//! the spelling segc reads: `backup-srv` (names have no `-`), `tcp:9001`
//! (`tcp/9001`), `09/01/2026` (`2026-09-01`). The lexer passes the token on as
//! what was meant, so the rest of the file parses.

use crate::diag::{Code, Diagnostic, Span};

/// E002 for `backup-srv`: names are `[A-Za-z_][A-Za-z0-9_]*`.
pub fn hyphen_name(span: Span, text: &str) -> Diagnostic {
    Diagnostic::new(Code::E002, span, format!("`{text}` is not a valid name: names cannot contain `-`"))
        .with_label(span, "`-` is not allowed in a name")
        .with_help(format!("did you mean `{}`?", text.replace('-', "_")))
}

/// E206 for `09/01/2026`: dates are ISO 8601, `YYYY-MM-DD`.
pub fn slash_date(span: Span, text: &str) -> Diagnostic {
    let parts: Vec<u32> = text.split('/').filter_map(|p| p.parse().ok()).collect();
    let mut d = Diagnostic::new(Code::E206, span, format!("`{text}` is not a date segc reads: write dates as `YYYY-MM-DD`"))
        .with_label(span, "not an ISO 8601 date");
    if let [a, b, y] = parts[..] {
        let y = if y < 100 { 2000 + y } else { y };
        let iso = |m: u32, d: u32| format!("{y:04}-{m:02}-{d:02}");
        let mut options = Vec::new();
        if (1..=12).contains(&a) && (1..=31).contains(&b) {
            options.push(format!("`{}` (month first)", iso(a, b)));
        }
        if (1..=12).contains(&b) && (1..=31).contains(&a) && a != b {
            options.push(format!("`{}` (day first)", iso(b, a)));
        }
        if !options.is_empty() {
            d = d.with_help(format!("did you mean {}?", options.join(" or ")));
        }
    }
    d
}

/// E002 for `tcp:9001`: a protocol and its port are separated by `/`.
pub fn colon_service(span: Span, text: &str) -> Diagnostic {
    Diagnostic::new(Code::E002, span, format!("`{text}` is not a service"))
        .with_label(span, "a protocol and a port are separated by `/`")
        .with_help(format!("did you mean `{}`?", text.replacen(':', "/", 1)))
}
