//! Feeds and blocks: each `feed` item's settings and snapshot (E103 when its
//! source cannot be read, E205 naming the lines that are not prefixes, E202
//! for a document of the wrong shape or over `max_prefixes`), each `block`
//! (E101/E202 for what is not a feed), and W503 for a feed nothing blocks.

use super::attrs::check_block;
use super::schema;
use crate::diag::{Code, Diagnostic, Span};
use crate::ir::feed::{self, Feed, FeedError, FeedFormat};
use crate::ir::Model;
use crate::resolve::{DefKind, Scope as Names, Tree};
use crate::source::LoadError;
use crate::syntax::ast::{Item, ValueKind};

pub fn build(tree: &Tree, names: &Names, model: &mut Model, diags: &mut Vec<Diagnostic>) {
    let defs: Vec<_> = names.locals.values().filter(|d| d.kind == DefKind::Feed).collect();
    for def in defs {
        let Item::Feed(f) = tree.item(def.id) else { continue };
        let attrs = check_block(Some(&f.body), schema::FEED, "a feed", f.name.span, diags);
        let format = attrs.word("format").and_then(FeedFormat::parse).unwrap_or(FeedFormat::Netset);
        let refresh_secs = match attrs.values.get("refresh").map(|v| &v.kind) {
            Some(ValueKind::Duration(d)) => crate::ir::date::parse_interval_secs(d).unwrap_or(feed::DEFAULT_REFRESH_SECS),
            _ => feed::DEFAULT_REFRESH_SECS,
        };
        let max_value = attrs.values.get("max_prefixes").copied();
        let max_prefixes = match max_value.map(|v| &v.kind) {
            Some(ValueKind::Int(n)) => n.parse().unwrap_or(feed::DEFAULT_MAX_PREFIXES),
            _ => feed::DEFAULT_MAX_PREFIXES,
        };
        let Some(source_value) = attrs.values.get("source") else { continue };
        let Some(source) = attrs.str("source") else { continue };
        let span = source_value.span;
        let location = match crate::source::feed_location(&tree.sources.get(def.id.file).name, &source) {
            Ok(l) => l,
            Err(why) => {
                diags.push(
                    Diagnostic::new(Code::E103, span, format!("cannot read feed `{}` from `{source}`: {why}", f.name.name))
                        .with_label(span, "this source"),
                );
                continue;
            }
        };
        let bytes = match tree.feed_data.get(&location) {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                let why = match e {
                    LoadError::NotFound => "not found".to_string(),
                    LoadError::OutsideRoot => "it resolves outside the root folder".to_string(),
                    LoadError::Io(m) => m.clone(),
                };
                diags.push(
                    Diagnostic::new(Code::E103, span, format!("cannot read feed `{}` from `{source}`: {why}", f.name.name))
                        .with_label(span, format!("looked for `{location}`"))
                        .with_help("a feed's file lives beside the policy (a path relative to this file), or is an https:// URL"),
                );
                continue;
            }
            None => continue,
        };
        let entries = match feed::parse(format, bytes, max_prefixes) {
            Ok(e) => e,
            Err(e) => {
                diags.push(refused(&f.name.name, &location, format, span, max_value.map(|v| v.span), &e));
                continue;
            }
        };
        model.feeds.push(Feed {
            name: f.name.name.clone(),
            source,
            location,
            format,
            refresh_secs,
            max_prefixes,
            blocked: false,
            sha256: crate::sha256::hex(bytes),
            entries,
            span: f.name.span,
            block_span: None,
        });
    }
    model.feeds.sort_by(|a, b| a.name.cmp(&b.name));
    blocks(tree, names, model, diags);
}

/// The diagnostic for a feed whose bytes were refused.
fn refused(name: &str, location: &str, format: FeedFormat, span: Span, max_span: Option<Span>, e: &FeedError) -> Diagnostic {
    match e {
        FeedError::Lines { bad, total } => {
            let mut d = Diagnostic::new(
                Code::E205,
                span,
                format!("feed `{name}`: {location}:{} is not a prefix: `{}` ({total} bad lines)", bad[0].line, bad[0].text),
            )
            .with_label(span, format!("read as `{}`", format.as_str()));
            for b in bad {
                d = d.with_note(format!("{location}:{}: `{}` {}", b.line, b.text, b.why));
            }
            d.with_help("fix the feed, or check `format`: a feed is used whole or not at all")
        }
        FeedError::Shape(why) => Diagnostic::new(Code::E202, span, format!("feed `{name}` is not `{}`: {why}", format.as_str()))
            .with_label(span, format!("read as `{}`", format.as_str()))
            .with_help(format!("`format` is one of {}", FeedFormat::NAMES.join(", "))),
        FeedError::TooMany { count, max } => {
            let at = max_span.unwrap_or(span);
            Diagnostic::new(Code::E202, at, format!("feed `{name}` has {count} prefixes, more than its max_prefixes = {max}"))
                .with_label(at, format!("{} too many", count - *max as usize))
                .with_help("raise `max_prefixes` if the feed really grew, or use a smaller list")
        }
    }
}

fn blocks(tree: &Tree, names: &Names, model: &mut Model, diags: &mut Vec<Diagnostic>) {
    for (_, _, item) in tree.user_items() {
        let Item::BlockFeeds(b) = item else { continue };
        for path in &b.feeds {
            let Some(def) = names.lookup(path, DefKind::Feed, diags) else { continue };
            if let Some(feed) = model.feeds.iter_mut().find(|f| f.name == def.name) {
                feed.blocked = true;
                let first = feed.block_span.get_or_insert(path.span);
                if (path.span.file, path.span.start) < (first.file, first.start) {
                    *first = path.span;
                }
            }
        }
    }
    for f in model.feeds.iter().filter(|f| !f.blocked) {
        diags.push(
            Diagnostic::new(Code::W503, f.span, format!("feed `{}` is never blocked", f.name))
                .with_label(f.span, "defined here, blocked nowhere")
                .with_help(format!("add `block {}`, or remove the feed", f.name)),
        );
    }
}
