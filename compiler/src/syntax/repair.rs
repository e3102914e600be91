//! Repairs to the token stream before parsing, each reported once, so one
//! mistake is one error and the rest of the file parses as written.
//!
//! Reserved words as names: `zone test {` is reported (E001, "reserved word")
//! and the word is read as a name.
//!
//! Unclosed braces: a `{` left open would otherwise
//! swallow the next items into its block and surface later as unrelated
//! errors (duplicate attributes, unknown names). An item keyword at the start
//! of a line inside a block means the block was never closed: report the `{`
//! where it opens, as rustc does, and close the block before that keyword so
//! the rest of the file parses as written. At the end of the file, every block
//! still open is reported and closed.

use super::lexer::Tok;
use crate::diag::{Code, Diagnostic, FileId, Span};

type Token<'a> = (usize, Tok<'a>, usize);

/// Blocks of attributes (`zone x { ... }`) and of test cases (`test "t" { ... }`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Attrs,
    Cases,
}

/// Whether `t` starts an item, and so cannot appear inside a block of `kind`
/// (`allow` and `deny` are also test cases).
fn starts_item(t: Tok<'_>, kind: Block) -> bool {
    t.starts_item() && (t != Tok::Deny || kind == Block::Attrs)
}

/// The tokens with reserved words after `zone`, `service` and `group` read
/// as names, and a `}` added where a block was left open; one E001 for each.
pub fn repair<'a>(file: FileId, src: &'a str, tokens: Vec<Token<'a>>, diags: &mut Vec<Diagnostic>) -> Vec<Token<'a>> {
    let mut out = Repaired { copy: None };
    let mut open: Vec<(usize, Block)> = Vec::new();
    for (i, &tok) in tokens.iter().enumerate() {
        let (start, t, end) = tok;
        let defining = i > 0 && matches!(tokens[i - 1].1, Tok::Zone | Tok::Service | Tok::Group | Tok::Feed);
        let word = &src[start..end];
        if defining && is_keyword(t) {
            let span = Span::new(file, start, end);
            diags.push(
                Diagnostic::new(Code::E001, span, format!("`{word}` is a reserved word and cannot be a name"))
                    .with_label(span, "reserved word")
                    .with_help(format!("rename it, e.g. `{word}_env` (and wherever it is used)")),
            );
            out.change(&tokens, i, (start, Tok::Ident(word), end));
            continue;
        }
        if let Some(&(brace, kind)) = open.last() {
            let line_start = i > 0 && src[tokens[i - 1].2..start].contains('\n');
            if line_start && starts_item(t, kind) {
                diags.push(unclosed(file, src, brace, Some(start)));
                out.change(&tokens, i, (start, Tok::RBrace, start));
                open.pop();
            }
        }
        match t {
            Tok::LBrace => {
                let cases = i >= 2 && matches!((tokens[i - 2].1, tokens[i - 1].1), (Tok::Test, Tok::Str(_)));
                open.push((start, if cases { Block::Cases } else { Block::Attrs }));
            }
            Tok::RBrace => {
                open.pop();
            }
            _ => {}
        }
        out.keep(tok);
    }
    while let Some((brace, _)) = open.pop() {
        diags.push(unclosed(file, src, brace, None));
        out.change(&tokens, tokens.len(), (src.len(), Tok::RBrace, src.len()));
    }
    out.copy.unwrap_or(tokens)
}

/// The repaired stream: a copy of the input made only at the first repair
/// (of the tokens before it), so a file that needs none is handed back as it
/// came instead of copied.
struct Repaired<'a> {
    copy: Option<Vec<Token<'a>>>,
}

impl<'a> Repaired<'a> {
    /// The next input token, unchanged.
    fn keep(&mut self, tok: Token<'a>) {
        if let Some(v) = &mut self.copy {
            v.push(tok);
        }
    }

    /// `tok` where the stream departs from the input, whose first `at`
    /// tokens went through unchanged.
    fn change(&mut self, tokens: &[Token<'a>], at: usize, tok: Token<'a>) {
        let v = self.copy.get_or_insert_with(|| {
            let mut v = Vec::with_capacity(tokens.len() + 16);
            v.extend_from_slice(&tokens[..at]);
            v
        });
        v.push(tok);
    }
}

/// Whether a token is a reserved word.
fn is_keyword(t: Tok<'_>) -> bool {
    !matches!(
        t,
        Tok::Ident(_)
            | Tok::ServiceLit(_)
            | Tok::Int(_)
            | Tok::Date(_)
            | Tok::Duration(_)
            | Tok::Addr(_)
            | Tok::Str(_)
            | Tok::HyphenName(_)
            | Tok::ColonService(_)
            | Tok::SlashDate(_)
            | Tok::LBrace
            | Tok::RBrace
            | Tok::LBracket
            | Tok::RBracket
            | Tok::Comma
            | Tok::Eq
            | Tok::Arrow
            | Tok::Dot
            | Tok::Star
    )
}

fn unclosed(file: FileId, src: &str, brace: usize, next: Option<usize>) -> Diagnostic {
    let span = Span::new(file, brace, brace + 1);
    let d = Diagnostic::new(Code::E001, span, "unclosed `{`").with_label(span, "this `{` is never closed");
    match next {
        Some(at) => {
            let word_end = src[at..].find(|c: char| !c.is_ascii_alphabetic()).map_or(src.len(), |n| at + n);
            let next_span = Span::new(file, at, word_end);
            d.with_label(next_span, "the next item starts here").with_help(format!("add `}}` before `{}`", &src[at..word_end]))
        }
        None => d.with_label(Span::new(file, src.len().saturating_sub(1), src.len()), "the file ends here").with_help("add `}` at the end"),
    }
}
