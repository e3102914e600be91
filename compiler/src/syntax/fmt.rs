//! The canonical formatter: two-space indents, one attribute per line, lists and
//! service lists on one line, comments kept, blank lines between items kept (at
//! most one). Formatting is idempotent: `fmt(fmt(x)) == fmt(x)`.

use super::ast::*;
use super::lexer::{escape, Comment};
use super::Parsed;

/// Formats a file that parsed without errors.
pub fn format(src: &str, parsed: &Parsed) -> String {
    let mut p = Printer { src, comments: &parsed.comments, next: 0, out: String::new(), last: 0, fresh: true };
    for item in &parsed.file.items {
        p.start_node(item.span().start as usize, 0);
        p.item(item);
        p.end_node(item.span().end as usize);
        p.out.push('\n');
    }
    p.leading(src.len() + 1, 0);
    p.out
}

/// Whether the source between two offsets holds an empty line.
fn has_blank_line(gap: &str) -> bool {
    let lines: Vec<&str> = gap.split('\n').collect();
    lines.len() > 2 && lines[1..lines.len() - 1].iter().any(|l| l.trim().is_empty())
}

struct Printer<'a> {
    src: &'a str,
    comments: &'a [Comment],
    next: usize,
    out: String,
    /// The source offset where the last printed piece ended.
    last: usize,
    /// Nothing printed yet at this level (file start, or just after `{`).
    fresh: bool,
}

impl Printer<'_> {
    /// Keeps one empty line before something at `pos` if the source had one.
    fn gap(&mut self, pos: usize) {
        if !self.fresh && pos > self.last && has_blank_line(&self.src[self.last..pos]) {
            self.out.push('\n');
        }
        self.fresh = false;
    }

    /// Prints the comments before a node at `pos`, then its indent.
    fn start_node(&mut self, pos: usize, indent: usize) {
        self.leading(pos, indent);
        self.gap(pos);
        self.indent(indent);
    }

    /// Records the end of a node and prints a comment on the same line after it.
    fn end_node(&mut self, end: usize) {
        self.last = end;
        self.trailing(end);
    }

    /// Emits, each on its own line, the comments that start before `pos`.
    fn leading(&mut self, pos: usize, indent: usize) {
        while let Some(c) = self.comments.get(self.next) {
            if c.span.start as usize >= pos {
                break;
            }
            self.gap(c.span.start as usize);
            self.indent(indent);
            self.comment(c);
            self.out.push('\n');
            self.last = c.span.end as usize;
            self.next += 1;
        }
    }

    /// Appends a comment that follows `end` on the same line with nothing between.
    fn trailing(&mut self, end: usize) {
        if let Some(c) = self.comments.get(self.next) {
            let start = c.span.start as usize;
            if start >= end && self.src[end..start].trim().is_empty() && !self.src[end..start].contains('\n') {
                self.out.push(' ');
                self.comment(c);
                self.last = c.span.end as usize;
                self.next += 1;
            }
        }
    }

    /// After an opening brace: a comment on the same line, then a fresh level.
    fn open(&mut self, brace_end: usize, first_inner: usize) {
        if self.comments.get(self.next).is_some_and(|c| (c.span.start as usize) < first_inner) {
            self.trailing(brace_end);
        }
        self.last = self.last.max(brace_end);
        self.out.push('\n');
        self.fresh = true;
    }

    /// Before a closing brace: the comments inside the block, then `}`.
    fn close(&mut self, close: usize) {
        self.leading(close, 1);
        self.out.push('}');
        self.last = close + 1;
        self.fresh = false;
    }

    fn comment(&mut self, c: &Comment) {
        self.out.push('#');
        self.out.push_str(c.text.trim_end());
    }

    fn indent(&mut self, n: usize) {
        for _ in 0..n {
            self.out.push_str("  ");
        }
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Policy(p) => {
                self.out.push_str(&format!("policy {}", escape(&p.name.value)));
                self.block(&p.body);
            }
            Item::Use(u) => {
                self.out.push_str("use ");
                self.out.push_str(&u.path.dotted());
                match &u.tree {
                    UseTree::Single => {}
                    UseTree::Glob => self.out.push_str(".*"),
                    UseTree::Group(names) => {
                        let n: Vec<&str> = names.iter().map(|i| i.name.as_str()).collect();
                        self.out.push_str(&format!(".{{{}}}", n.join(", ")));
                    }
                }
            }
            Item::Import(i) => self.out.push_str(&format!("import {}", escape(&i.path.value))),
            Item::Service(s) => {
                self.out.push_str(&format!("service {} = {}", s.name.name, services(&s.services)));
                if let Some(b) = &s.body {
                    self.block(b);
                }
            }
            Item::Zone(z) => {
                self.out.push_str(&format!("zone {}", z.name.name));
                self.block(&z.body);
            }
            Item::Group(g) => {
                let members: Vec<String> = g.members.iter().map(|m| m.dotted()).collect();
                self.out.push_str(&format!("group {} = [{}]", g.name.name, members.join(", ")));
            }
            Item::Feed(f) => {
                self.out.push_str(&format!("feed {}", f.name.name));
                self.block(&f.body);
            }
            Item::BlockFeeds(b) => {
                let feeds: Vec<String> = b.feeds.iter().map(|m| m.dotted()).collect();
                self.out.push_str(&format!("block {}", feeds.join(", ")));
            }
            Item::Flow(f) => {
                self.out.push_str(&format!("flow {} -> {} on {}", f.from.text(), f.to.text(), services(&f.services)));
                if let Some(b) = &f.body {
                    self.block(b);
                }
            }
            Item::Deny(d) => {
                self.out.push_str(&format!("deny {} -> {} on {}", d.from.text(), d.to.text(), services(&d.services)));
                if let Some(b) = &d.body {
                    self.block(b);
                }
            }
            Item::Assert(a) => match &a.kind {
                AssertKind::Unreachable => self.out.push_str(&format!("assert unreachable {} -> {}", a.from.text(), a.to.text())),
                AssertKind::Denied(s) => {
                    self.out.push_str(&format!("assert denied {} -> {} on {}", a.from.text(), a.to.text(), services(s)))
                }
            },
            Item::Test(t) => {
                self.out.push_str(&format!("test {} {{", escape(&t.name.value)));
                let first = t.cases.first().map_or(t.close.start, |c| c.span.start) as usize;
                let brace = self.src[t.span.start as usize..first].rfind('{').map_or(first, |i| t.span.start as usize + i + 1);
                self.open(brace, first);
                for c in &t.cases {
                    self.start_node(c.span.start as usize, 1);
                    self.out.push_str(&test_case_text(c));
                    self.end_node(c.span.end as usize);
                    self.out.push('\n');
                }
                self.close(t.close.start as usize);
            }
        }
    }

    fn block(&mut self, b: &Block) {
        if b.attrs.is_empty() && self.comments.get(self.next).is_none_or(|c| c.span.start >= b.close.start) {
            self.out.push_str(" {}");
            self.last = b.span.end as usize;
            return;
        }
        self.out.push_str(" {");
        let first = b.attrs.first().map_or(b.close.start, |a| a.span.start) as usize;
        self.open(b.span.start as usize + 1, first);
        for a in &b.attrs {
            self.start_node(a.span.start as usize, 1);
            self.out.push_str(&format!("{} = {}", a.name.dotted(), value(&a.value)));
            self.end_node(a.span.end as usize);
            self.out.push('\n');
        }
        self.close(b.close.start as usize);
    }
}

fn services(list: &[ServiceRef]) -> String {
    let parts: Vec<String> = list.iter().map(service).collect();
    parts.join(", ")
}

pub fn service(s: &ServiceRef) -> String {
    match s {
        ServiceRef::Literal { text, .. } => text.clone(),
        ServiceRef::Icmp(_) => "icmp".into(),
        ServiceRef::Any(_) => "any".into(),
        ServiceRef::Name(p) => p.dotted(),
    }
}

fn endpoint(e: &Endpoint) -> String {
    match e {
        Endpoint::Addr { text, .. } => text.clone(),
        Endpoint::Zone(p) => p.dotted(),
    }
}

/// `allow 10.0.1.5 -> 10.0.9.7 on tcp/5432`
pub fn test_case_text(c: &TestCase) -> String {
    format!("{} {} -> {} on {}", c.expect.as_str(), endpoint(&c.from), endpoint(&c.to), service(&c.service))
}

pub fn value(v: &Value) -> String {
    match &v.kind {
        ValueKind::Str(s) => escape(s),
        ValueKind::Int(t)
        | ValueKind::Date(t)
        | ValueKind::Duration(t)
        | ValueKind::Addr(t)
        | ValueKind::Service(t)
        | ValueKind::Word(t) => t.clone(),
        ValueKind::Bool(b) => b.to_string(),
        ValueKind::List(items) => {
            let parts: Vec<String> = items.iter().map(value).collect();
            format!("[{}]", parts.join(", "))
        }
    }
}
