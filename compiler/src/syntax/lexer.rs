//! The lexer: logos turns source text into tokens; comments are kept aside as trivia
//! for the formatter, and bad input becomes E002 diagnostics instead of tokens.

use logos::Logos;

use crate::diag::{Code, Diagnostic, FileId, Span};

#[derive(Logos, Clone, Copy, Debug, PartialEq, Eq)]
#[logos(skip r"[ \t\r\n\f]+")]
pub enum Tok<'a> {
    #[token("policy")]
    Policy,
    #[token("use")]
    Use,
    #[token("import")]
    Import,
    #[token("service")]
    Service,
    #[token("zone")]
    Zone,
    #[token("flow")]
    Flow,
    #[token("deny")]
    Deny,
    #[token("allow")]
    Allow,
    #[token("assert")]
    Assert,
    #[token("unreachable")]
    Unreachable,
    #[token("denied")]
    Denied,
    #[token("test")]
    Test,
    #[token("on")]
    On,
    #[token("any")]
    Any,
    #[token("icmp")]
    Icmp,
    #[token("true")]
    True,
    #[token("false")]
    False,

    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token(",")]
    Comma,
    #[token("=")]
    Eq,
    #[token("->")]
    Arrow,
    #[token(".")]
    Dot,
    #[token("*")]
    Star,

    #[regex(r"[A-Za-z_][A-Za-z0-9_]*")]
    Ident(&'a str),
    /// `proto/port`, `proto/lo-hi`: the protocol name is checked later (E202).
    #[regex(r"[A-Za-z_][A-Za-z0-9_]*/[0-9]+(-[0-9]+)?")]
    ServiceLit(&'a str),
    #[regex(r"[0-9]+")]
    Int(&'a str),
    /// Anything shaped like a date; validated later (E206).
    #[regex(r"[0-9]+-[0-9]+-[0-9]+")]
    Date(&'a str),
    /// A number with a unit; validated later (E206).
    #[regex(r"[0-9]+[A-Za-z_][A-Za-z0-9_]*", priority = 3)]
    Duration(&'a str),
    /// Anything shaped like an IPv4 or IPv6 address or prefix; validated later (E205).
    #[regex(r"[0-9]+(\.[0-9]+)+(/[0-9]+)?")]
    #[regex(r"[0-9A-Fa-f]*:[0-9A-Fa-f:.]*(/[0-9]+)?")]
    Addr(&'a str),
    #[regex(r#""([^"\\\n]|\\[^\n])*""#)]
    Str(&'a str),
}

/// What went wrong at an unlexable position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bad {
    UnterminatedString,
    Char(char),
}

/// A comment, kept for the formatter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    pub span: Span,
    /// The text after `#`, without the line end.
    pub text: String,
}

/// The tokens of a file, with byte positions, plus comments and lexical diagnostics.
pub struct Lexed<'a> {
    pub tokens: Vec<(usize, Tok<'a>, usize)>,
    pub comments: Vec<Comment>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Splits `src` into tokens. Never fails: bad characters and unterminated strings
/// become E002 diagnostics and are skipped.
pub fn lex(file: FileId, src: &str) -> Lexed<'_> {
    let mut tokens = Vec::new();
    let mut comments = Vec::new();
    let mut diagnostics = Vec::new();
    // Comments run to the end of a line; logos never sees them, so that a `#`
    // inside a string stays part of the string.
    let mut pos = 0;
    let bytes = src.as_bytes();
    while pos < src.len() {
        // Lex up to the next `#` that is outside a string.
        let seg_end = next_comment(src, pos);
        lex_segment(file, src, pos, seg_end, &mut tokens, &mut diagnostics);
        if seg_end >= src.len() {
            break;
        }
        let line_end = src[seg_end..].find('\n').map_or(src.len(), |i| seg_end + i);
        let text = src[seg_end + 1..line_end].trim_end_matches('\r').to_string();
        comments.push(Comment { span: Span::new(file, seg_end, line_end), text });
        pos = line_end;
        debug_assert!(pos <= bytes.len());
    }
    Lexed { tokens, comments, diagnostics }
}

/// Offset of the first `#` at or after `from` that starts a comment (not inside a
/// string literal on the same line), or `src.len()`.
fn next_comment(src: &str, from: usize) -> usize {
    let bytes = src.as_bytes();
    let mut i = from;
    let mut in_str = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_str => i += 1,
            b'"' => in_str = !in_str,
            b'\n' => in_str = false,
            b'#' if !in_str => return i,
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

fn lex_segment<'a>(
    file: FileId,
    src: &'a str,
    start: usize,
    end: usize,
    tokens: &mut Vec<(usize, Tok<'a>, usize)>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let seg = &src[start..end];
    let mut lexer = Tok::lexer(seg);
    let mut bad: Option<(usize, usize, Bad)> = None;
    let flush = |bad: &mut Option<(usize, usize, Bad)>, diagnostics: &mut Vec<Diagnostic>| {
        if let Some((s, e, kind)) = bad.take() {
            diagnostics.push(bad_token(file, start + s, start + e, kind));
        }
    };
    while let Some(result) = lexer.next() {
        let range = lexer.span();
        match result {
            Ok(tok) => {
                flush(&mut bad, diagnostics);
                if let Tok::Str(text) = tok {
                    if let Some((off, len)) = bad_escape(text) {
                        diagnostics.push(
                            Diagnostic::new(
                                Code::E002,
                                Span::new(file, start + range.start + off, start + range.start + off + len),
                                format!("unknown escape `{}` in string", &text[off..off + len]),
                            )
                            .with_label(
                                Span::new(file, start + range.start + off, start + range.start + off + len),
                                "not an escape",
                            )
                            .with_help("strings allow the escapes `\\\"`, `\\\\` and `\\n`"),
                        );
                    }
                }
                tokens.push((start + range.start, tok, start + range.end));
            }
            Err(()) => {
                let kind = if seg[range.start..].starts_with('"') {
                    Bad::UnterminatedString
                } else {
                    Bad::Char(seg[range.start..].chars().next().unwrap_or('\u{fffd}'))
                };
                if kind == Bad::UnterminatedString {
                    flush(&mut bad, diagnostics);
                    let line_end = seg[range.start..].find('\n').map_or(seg.len(), |i| range.start + i);
                    diagnostics.push(bad_token(file, start + range.start, start + line_end, kind));
                    // The parser still sees a string, so one missing quote is one error.
                    tokens.push((start + range.start, Tok::Str(&seg[range.start..line_end]), start + line_end));
                    // Skip the rest of the line: it is the unterminated string's body.
                    lexer.bump(line_end.saturating_sub(range.end));
                    continue;
                }
                // Merge a run of bad characters into one diagnostic.
                match &mut bad {
                    Some((_, e, Bad::Char(_))) if *e == range.start => *e = range.end,
                    _ => {
                        flush(&mut bad, diagnostics);
                        bad = Some((range.start, range.end, kind));
                    }
                }
            }
        }
    }
    flush(&mut bad, diagnostics);
}

fn bad_token(file: FileId, start: usize, end: usize, kind: Bad) -> Diagnostic {
    let span = Span::new(file, start, end);
    match kind {
        Bad::UnterminatedString => Diagnostic::new(Code::E002, span, "unterminated string")
            .with_label(span, "this string has no closing `\"`")
            .with_help("close the string with `\"` before the end of the line"),
        Bad::Char(c) => {
            let shown = if c.is_control() || c == '\u{fffd}' {
                format!("U+{:04X}", c as u32)
            } else {
                c.to_string()
            };
            Diagnostic::new(Code::E002, span, format!("unexpected character `{shown}`"))
                .with_label(span, "not part of any token")
        }
    }
}

/// The first escape in a string literal (quotes included) that is not `\"`, `\\`
/// or `\n`: its offset and byte length.
fn bad_escape(lit: &str) -> Option<(usize, usize)> {
    let mut chars = lit.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some((_, '"' | '\\' | 'n')) => {}
                Some((_, other)) => return Some((i, 1 + other.len_utf8())),
                None => return Some((i, 1)),
            }
        }
    }
    None
}

/// The value of a string literal (quotes included); unknown escapes are kept as is.
pub fn unescape(lit: &str) -> String {
    // The body runs to the first unescaped quote; an unterminated literal has none.
    let inner = lit.strip_prefix('"').unwrap_or(lit);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else if c == '"' {
            break;
        } else {
            out.push(c);
        }
    }
    out
}

/// A string literal for `value`, escaped canonically.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Tok<'_>> {
        let l = lex(FileId(0), src);
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        l.tokens.into_iter().map(|(_, t, _)| t).collect()
    }

    #[test]
    fn literals() {
        assert_eq!(
            kinds("10.0.9.0/24 2001:db8::/32 ::/0 fe80::1 tcp/8000-8100 icmp/8 icmp any 180d 2026-10-01 42"),
            vec![
                Tok::Addr("10.0.9.0/24"),
                Tok::Addr("2001:db8::/32"),
                Tok::Addr("::/0"),
                Tok::Addr("fe80::1"),
                Tok::ServiceLit("tcp/8000-8100"),
                Tok::ServiceLit("icmp/8"),
                Tok::Icmp,
                Tok::Any,
                Tok::Duration("180d"),
                Tok::Date("2026-10-01"),
                Tok::Int("42"),
            ]
        );
    }

    #[test]
    fn comments_are_trivia_and_hash_in_strings_is_text() {
        let l = lex(FileId(0), "zone a # the # zone\nowner = \"a#b\" # x");
        assert_eq!(l.comments.len(), 2);
        assert_eq!(l.comments[0].text, " the # zone");
        assert!(l.tokens.iter().any(|(_, t, _)| *t == Tok::Str("\"a#b\"")));
    }

    #[test]
    fn bad_input_is_reported_not_fatal() {
        let l = lex(FileId(0), "zone $$ a \"open\nzone b");
        let codes: Vec<_> = l.diagnostics.iter().map(|d| d.code).collect();
        assert_eq!(codes, vec![Code::E002, Code::E002]);
        // The unterminated string still reaches the parser as a string.
        assert_eq!(l.tokens.len(), 5);
    }

    #[test]
    fn escapes_round_trip() {
        let v = "a \"quoted\" \\ line\nnext";
        assert_eq!(unescape(&escape(v)), v);
    }
}
