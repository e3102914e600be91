//! Parsing never fails: `parse` returns a tree plus diagnostics. Lexical errors are
//! reported and their bytes skipped; syntax errors are recovered from at item,
//! attribute and test-case boundaries.

use lalrpop_util::ParseError;

use super::ast::File;
use super::grammar::FileParser;
use super::lexer::{lex, Comment, Tok};
use crate::diag::{Code, Diagnostic, FileId, Span};

/// Past this many syntax errors in one file, the rest are counted, not listed:
/// a binary file would otherwise bury the terminal.
const MAX_SYNTAX_ERRORS: usize = 100;

/// The token stream never carries errors: the lexer reports them as diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoLexError;

/// A parsed file: the tree, its comments (for the formatter) and diagnostics.
pub struct Parsed {
    pub file: File,
    pub comments: Vec<Comment>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Parsed {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

pub fn parse(file: FileId, src: &str) -> Parsed {
    let lexed = lex(file, src);
    let mut diagnostics = lexed.diagnostics;
    let mut recovered = Vec::new();
    let balanced = super::repair::repair(file, src, lexed.tokens, &mut diagnostics);
    // Every item starts with an item word, so there are no more items than
    // them (`deny` is also a test case's: an upper bound, and room never
    // written costs nothing).
    let items = balanced.iter().filter(|t| t.1.starts_item()).count();
    let tokens = balanced.iter().map(|&t| Ok::<_, NoLexError>(t));
    let result = FileParser::new().parse(file, &mut recovered, items, tokens);
    // The token before an error, to tell a reserved word used as a name.
    let before = |at: usize| balanced.iter().position(|t| t.0 == at).and_then(|i| i.checked_sub(1)).map(|i| balanced[i].1);
    for rec in recovered {
        diagnostics.push(syntax_error(file, src, rec.error, &before));
    }
    let ast = match result {
        Ok(ast) => ast,
        Err(e) => {
            diagnostics.push(syntax_error(file, src, e, &before));
            File { items: Vec::new() }
        }
    };
    crate::diag::sort(&mut diagnostics);
    diagnostics.dedup();
    if diagnostics.len() > MAX_SYNTAX_ERRORS {
        let dropped = diagnostics.len() - MAX_SYNTAX_ERRORS;
        diagnostics.truncate(MAX_SYNTAX_ERRORS);
        if let Some(last) = diagnostics.last_mut() {
            last.notes.push(format!("{dropped} more syntax errors in this file are not shown"));
        }
    }
    Parsed { file: ast, comments: lexed.comments, diagnostics }
}

fn syntax_error<'a>(
    file: FileId,
    src: &str,
    e: ParseError<usize, Tok<'a>, NoLexError>,
    before: &dyn Fn(usize) -> Option<Tok<'a>>,
) -> Diagnostic {
    match e {
        ParseError::UnrecognizedToken { token: (l, tok, r), expected } => {
            let span = Span::new(file, l, r);
            let found = describe(tok);
            let d = Diagnostic::new(Code::E001, span, format!("expected {}, found {found}", expected_list(&expected)))
                .with_label(span, format!("unexpected {found}"));
            let word = keyword_text(tok);
            let naming = matches!(before(l), Some(Tok::Zone | Tok::Service | Tok::Group | Tok::Feed));
            if naming && word != "literal" && word.chars().all(|c| c.is_ascii_alphabetic()) {
                d.with_help(format!("`{word}` is a reserved word and cannot be a name: rename it, e.g. `{word}_env`"))
            } else {
                d
            }
        }
        ParseError::UnrecognizedEof { location, expected } => {
            // Point at the last character rather than past the end.
            let end = src.len();
            let start = location.min(end).saturating_sub(usize::from(end > 0));
            let span = Span::new(file, start, end);
            Diagnostic::new(Code::E001, span, format!("expected {}, found end of file", expected_list(&expected)))
                .with_label(span, "the file ends here")
        }
        ParseError::ExtraToken { token: (l, tok, r) } => {
            let span = Span::new(file, l, r);
            Diagnostic::new(Code::E001, span, format!("unexpected {}", describe(tok)))
        }
        ParseError::InvalidToken { location } => {
            let span = Span::new(file, location, location + 1);
            Diagnostic::new(Code::E002, span, "invalid token")
        }
        ParseError::User { error: NoLexError } => Diagnostic::new(Code::E001, Span::new(file, 0, 0), "syntax error"),
    }
}

fn describe(tok: Tok<'_>) -> String {
    match tok {
        Tok::Ident(s) => format!("name `{s}`"),
        Tok::ServiceLit(s) => format!("service `{s}`"),
        Tok::Int(s) => format!("number `{s}`"),
        Tok::Date(s) => format!("date `{s}`"),
        Tok::Duration(s) => format!("duration `{s}`"),
        Tok::Addr(s) => format!("address `{s}`"),
        Tok::Str(s) => {
            let short: String = s.chars().take(30).collect();
            if short.len() < s.len() {
                format!("string `{short}...`")
            } else {
                format!("string `{s}`")
            }
        }
        other => format!("`{}`", keyword_text(other)),
    }
}

fn keyword_text(tok: Tok<'_>) -> &'static str {
    match tok {
        Tok::Policy => "policy",
        Tok::Use => "use",
        Tok::Import => "import",
        Tok::Service => "service",
        Tok::Zone => "zone",
        Tok::Group => "group",
        Tok::Feed => "feed",
        Tok::Block => "block",
        Tok::Flow => "flow",
        Tok::Deny => "deny",
        Tok::Allow => "allow",
        Tok::Assert => "assert",
        Tok::Unreachable => "unreachable",
        Tok::Denied => "denied",
        Tok::Test => "test",
        Tok::On => "on",
        Tok::Any => "any",
        Tok::Icmp => "icmp",
        Tok::True => "true",
        Tok::False => "false",
        Tok::LBrace => "{",
        Tok::RBrace => "}",
        Tok::LBracket => "[",
        Tok::RBracket => "]",
        Tok::Comma => ",",
        Tok::Eq => "=",
        Tok::Arrow => "->",
        Tok::Dot => ".",
        Tok::Star => "*",
        Tok::Ident(_)
        | Tok::ServiceLit(_)
        | Tok::Int(_)
        | Tok::Date(_)
        | Tok::Duration(_)
        | Tok::Addr(_)
        | Tok::Str(_)
        | Tok::HyphenName(_)
        | Tok::ColonService(_)
        | Tok::SlashDate(_) => "literal",
    }
}

/// Turns lalrpop's terminal names into a readable, deterministic list.
fn expected_list(expected: &[String]) -> String {
    let mut names: Vec<String> = expected
        .iter()
        .map(|e| {
            let e = e.trim_matches('"');
            match e {
                "IDENT" => "a name".to_string(),
                "SERVICE" => "a service such as `tcp/443`".to_string(),
                "INT" => "a number".to_string(),
                "DATE" => "a date".to_string(),
                "DURATION" => "a duration".to_string(),
                "ADDR" => "an address".to_string(),
                "STR" => "a string".to_string(),
                kw => format!("`{}`", kw.replace("\\\"", "\"")),
            }
        })
        .collect();
    names.sort();
    names.dedup();
    match names.len() {
        0 => "nothing more".to_string(),
        1 => names.remove(0),
        n if n <= 6 => {
            let last = names.pop().unwrap_or_default();
            format!("{} or {last}", names.join(", "))
        }
        _ if expected.iter().any(|e| e == "\"zone\"") => "an item (`zone`, `flow`, `service`, ...)".to_string(),
        _ if expected.iter().any(|e| e == "STR") => "a value".to_string(),
        _ => {
            names.truncate(6);
            format!("{}, ...", names.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(src: &str) -> Vec<String> {
        parse(FileId(0), src).diagnostics.iter().map(|d| format!("{} {}", d.code, d.message)).collect()
    }

    #[test]
    fn full_example_parses_clean() {
        let src = r#"
policy "acme" { owner = "netsec" review_interval = 180d }
use std.services.{https, ssh}
use std.services.*
use std.zones.internet
import "zones/shared.seg"
service dns = udp/53, tcp/53
service telnet = tcp/23 { insecure = true }
zone vault { cidrs = [10.0.9.0/24, 2001:db8:9::/48] scope = cde aws.security_group = "vault-sg" }
flow dmz -> vault on postgres, tcp/8443 { justification = "x" reviewed = 2026-10-01 }
deny corp -> dmz on telnet
assert unreachable internet -> vault
assert denied corp -> vault on ssh
test "t" { allow 10.0.1.5 -> 10.0.9.7 on tcp/5432 deny dmz -> vault on ssh }
"#;
        let p = parse(FileId(0), src);
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        assert_eq!(p.file.items.len(), 13);
    }

    #[test]
    fn recovers_and_reports_every_error() {
        let src = "zone a { cidrs = }\nzone b { scope = cde }\nflow a -> on x\nflow a -> b on tcp/1\n";
        let p = parse(FileId(0), src);
        assert_eq!(p.diagnostics.len(), 2, "{:?}", codes(src));
        // The good items around the errors are still there.
        assert_eq!(p.file.items.len(), 3);
    }

    #[test]
    fn eof_is_an_error_not_a_panic() {
        assert_eq!(codes("zone a {").len(), 1);
        assert_eq!(codes("flow").len(), 1);
    }
}
