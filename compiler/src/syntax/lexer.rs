//! The lexer: logos turns source text into tokens; comments are kept aside as trivia
//! for the formatter, and bad input becomes E002 diagnostics instead of tokens.

use logos::Logos;

use super::misspelt;
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
    #[token("group")]
    Group,
    #[token("feed")]
    Feed,
    #[token("block")]
    Block,
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
    /// Anything shaped like an IPv4 or IPv6 address or prefix, typos included
    /// (`10.0.1.x/24`, `2001:dg8::/48` are one token each); validated later (E205).
    #[regex(r"[0-9]+(\.[0-9A-Za-z]+)+(/[0-9A-Za-z]+)?")]
    #[regex(r"[0-9A-Fa-f]*:[0-9A-Za-z:.]*(/[0-9A-Za-z]+)?")]
    Addr(&'a str),
    /// `backup-srv`: a name with hyphens. Reported (E002, with the underscore
    /// spelling) and passed on as a name, so the rest of the file parses.
    #[regex(r"[A-Za-z_][A-Za-z0-9_]*(-[A-Za-z0-9_]+)+", priority = 1)]
    HyphenName(&'a str),
    /// `tcp:9001`: a service with a colon. Reported (E002) and passed on as a
    /// service.
    #[regex(r"(tcp|udp|icmp):[0-9]+(-[0-9]+)?")]
    ColonService(&'a str),
    /// `09/01/2026`: a date not in ISO form. Reported (E206) and passed on as a date.
    #[regex(r"[0-9]{1,2}/[0-9]{1,2}/[0-9]{2,4}")]
    SlashDate(&'a str),
    /// A string literal, quotes included; scanned by [`lex`], never by logos.
    Str(&'a str),
}

impl Tok<'_> {
    /// Whether the token is a word that starts an item (every item starts
    /// with one).
    pub fn starts_item(self) -> bool {
        matches!(
            self,
            Tok::Policy
                | Tok::Use
                | Tok::Import
                | Tok::Service
                | Tok::Zone
                | Tok::Group
                | Tok::Feed
                | Tok::Block
                | Tok::Flow
                | Tok::Deny
                | Tok::Assert
                | Tok::Test
        )
    }
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

/// Longer runs of token characters are refused (E002) without being lexed: no
/// real name, address or port is this long, and logos' generated matcher
/// recurses once per character.
pub const MAX_TOKEN_LEN: usize = 1024;

/// Splits `src` into tokens. Never fails: bad characters, overlong tokens and
/// unterminated strings become E002 diagnostics.
///
/// Comments and strings are scanned here, by hand, so their length is unbounded
/// and a `#` inside a string stays part of it; logos lexes what lies between.
pub fn lex(file: FileId, src: &str) -> Lexed<'_> {
    // Room for a token every four bytes: more than a policy has, and room
    // never written costs nothing (doubling from empty would copy and touch
    // the large buffers again and again).
    let mut tokens = Vec::with_capacity(src.len() / 4 + 16);
    let mut comments = Vec::new();
    let mut diagnostics = Vec::new();
    let bytes = src.as_bytes();
    let mut pos = 0;
    while pos < src.len() {
        let seg_end = memchr2(b'#', b'"', &bytes[pos..]).map_or(src.len(), |i| pos + i);
        lex_segment(file, src, pos, seg_end, &mut tokens, &mut diagnostics);
        if seg_end >= src.len() {
            break;
        }
        let line_end = src[seg_end..].find('\n').map_or(src.len(), |i| seg_end + i);
        if bytes[seg_end] == b'#' {
            let text = src[seg_end + 1..line_end].trim_end_matches('\r').to_string();
            comments.push(Comment { span: Span::new(file, seg_end, line_end), text });
            pos = line_end;
            continue;
        }
        pos = string(file, src, seg_end, line_end, &mut tokens, &mut diagnostics);
    }
    Lexed { tokens, comments, diagnostics }
}

fn memchr2(a: u8, b: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&c| c == a || c == b)
}

/// Scans the string literal starting at `start` (a `"`); returns where lexing
/// goes on. An unterminated string runs to the end of the line, is reported, and
/// still reaches the parser as a string, so one missing quote is one error.
fn string<'a>(
    file: FileId,
    src: &'a str,
    start: usize,
    line_end: usize,
    tokens: &mut Vec<(usize, Tok<'a>, usize)>,
    diagnostics: &mut Vec<Diagnostic>,
) -> usize {
    let bytes = src.as_bytes();
    let mut i = start + 1;
    while i < line_end {
        match bytes[i] {
            b'\\' => {
                let esc = src[i + 1..].chars().next().filter(|&c| c != '\n');
                match esc {
                    Some('"' | '\\' | 'n') => i += 2,
                    Some(c) => {
                        let span = Span::new(file, i, i + 1 + c.len_utf8());
                        diagnostics.push(
                            Diagnostic::new(Code::E002, span, format!("unknown escape `\\{c}` in string"))
                                .with_label(span, "not an escape")
                                .with_help("strings allow the escapes `\\\"`, `\\\\` and `\\n`"),
                        );
                        i += 1 + c.len_utf8();
                    }
                    None => i += 1,
                }
            }
            b'"' => {
                tokens.push((start, Tok::Str(&src[start..=i]), i + 1));
                return i + 1;
            }
            _ => i += 1,
        }
    }
    let end = line_end.min(src.len());
    diagnostics.push(bad_token(file, start, end, Bad::UnterminatedString));
    tokens.push((start, Tok::Str(&src[start..end]), end));
    end
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'/' | b'-')
}

/// Lexes `src[start..end]` (no comments or strings in it), refusing overlong
/// runs of token characters before logos sees them.
fn lex_segment<'a>(
    file: FileId,
    src: &'a str,
    start: usize,
    end: usize,
    tokens: &mut Vec<(usize, Tok<'a>, usize)>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let bytes = src.as_bytes();
    let mut from = start;
    let mut i = start;
    while i < end {
        if !is_token_char(bytes[i]) {
            i += 1;
            continue;
        }
        let run_start = i;
        while i < end && is_token_char(bytes[i]) {
            i += 1;
        }
        if i - run_start > MAX_TOKEN_LEN {
            lex_logos(file, src, from, run_start, tokens, diagnostics);
            let span = Span::new(file, run_start, i);
            diagnostics.push(
                Diagnostic::new(Code::E002, span, format!("token of {} characters is too long", i - run_start))
                    .with_label(Span::new(file, run_start, run_start + 1), format!("longer than {MAX_TOKEN_LEN} characters"))
                    .with_help("names, addresses and services are short: is this file a policy?"),
            );
            from = i;
        }
    }
    lex_logos(file, src, from, end, tokens, diagnostics);
}

fn lex_logos<'a>(
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
                let span = Span::new(file, start + range.start, start + range.end);
                let tok = match tok {
                    Tok::HyphenName(text) => {
                        diagnostics.push(misspelt::hyphen_name(span, text));
                        Tok::Ident(text)
                    }
                    Tok::ColonService(text) => {
                        diagnostics.push(misspelt::colon_service(span, text));
                        Tok::ServiceLit(text)
                    }
                    Tok::SlashDate(text) => {
                        diagnostics.push(misspelt::slash_date(span, text));
                        Tok::Date(text)
                    }
                    other => other,
                };
                tokens.push((span.start as usize, tok, span.end as usize));
            }
            Err(()) => {
                let kind = Bad::Char(seg[range.start..].chars().next().unwrap_or('\u{fffd}'));
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
            let shown = if c.is_control() || c == '\u{fffd}' { format!("U+{:04X}", c as u32) } else { c.to_string() };
            Diagnostic::new(Code::E002, span, format!("unexpected character `{shown}`")).with_label(span, "not part of any token")
        }
    }
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
    fn long_strings_lex_and_long_words_are_refused() {
        let long = format!("owner = \"{}\"", "x ".repeat(1 << 20));
        let l = lex(FileId(0), &long);
        assert!(l.diagnostics.is_empty());
        assert_eq!(l.tokens.len(), 3);
        let word = "a".repeat(MAX_TOKEN_LEN + 1);
        let src = format!("zone {word} {{");
        let l = lex(FileId(0), &src);
        assert_eq!(l.diagnostics.len(), 1);
        assert_eq!(l.diagnostics[0].code, Code::E002);
        assert_eq!(l.tokens.len(), 2, "the tokens around the refused run survive");
    }

    #[test]
    fn escapes_round_trip() {
        let v = "a \"quoted\" \\ line\nnext";
        assert_eq!(unescape(&escape(v)), v);
    }
}
