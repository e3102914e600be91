//! The canonical formatter: two-space indents, one attribute per line, lists and
//! service lists on one line, comments kept, blank lines between items kept (at
//! most one). Formatting is idempotent: `fmt(fmt(x)) == fmt(x)`.

use super::ast::*;
use super::lexer::{escape, Comment};
use super::Parsed;

/// Formats a file that parsed without errors.
pub fn format(src: &str, parsed: &Parsed) -> String {
    let mut p = Printer { src, comments: &parsed.comments, next: 0, out: String::new() };
    let mut prev_end: Option<usize> = None;
    for item in &parsed.file.items {
        let start = item.span().start as usize;
        if let Some(end) = prev_end {
            let gap_end = p.comments.get(p.next).map_or(start, |c| (c.span.start as usize).min(start));
            if has_blank_line(&src[end.min(gap_end)..gap_end]) {
                p.out.push('\n');
            }
        }
        p.leading(start, 0);
        p.item(item);
        prev_end = Some(item.span().end as usize);
        p.trailing(item.span().end as usize);
        p.out.push('\n');
    }
    // Comments after the last item.
    if let Some(end) = prev_end {
        if p.next < p.comments.len() && has_blank_line(&src[end..p.comments[p.next].span.start as usize]) {
            p.out.push('\n');
        }
    }
    p.leading(src.len() + 1, 0);
    p.out
}

fn has_blank_line(gap: &str) -> bool {
    gap.split('\n').skip(1).take(gap.matches('\n').count().saturating_sub(1)).any(|l| l.trim().is_empty())
}

struct Printer<'a> {
    src: &'a str,
    comments: &'a [Comment],
    next: usize,
    out: String,
}

impl Printer<'_> {
    /// Emits, each on its own line, the comments that start before `pos`.
    fn leading(&mut self, pos: usize, indent: usize) {
        while let Some(c) = self.comments.get(self.next) {
            if c.span.start as usize >= pos {
                break;
            }
            self.indent(indent);
            self.comment(c);
            self.out.push('\n');
            self.next += 1;
        }
    }

    /// Appends a comment that follows `end` on the same line.
    fn trailing(&mut self, end: usize) {
        if let Some(c) = self.comments.get(self.next) {
            let start = c.span.start as usize;
            if start >= end && !self.src[end..start].contains('\n') {
                self.out.push(' ');
                self.comment(c);
                self.next += 1;
            }
        }
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
            Item::Flow(f) => {
                self.out.push_str(&format!("flow {} -> {} on {}", f.from.dotted(), f.to.dotted(), services(&f.services)));
                if let Some(b) = &f.body {
                    self.block(b);
                }
            }
            Item::Deny(d) => {
                self.out.push_str(&format!("deny {} -> {} on {}", d.from.dotted(), d.to.dotted(), services(&d.services)));
                if let Some(b) = &d.body {
                    self.block(b);
                }
            }
            Item::Assert(a) => match &a.kind {
                AssertKind::Unreachable => {
                    self.out.push_str(&format!("assert unreachable {} -> {}", a.from.dotted(), a.to.dotted()))
                }
                AssertKind::Denied(s) => self.out.push_str(&format!(
                    "assert denied {} -> {} on {}",
                    a.from.dotted(),
                    a.to.dotted(),
                    services(s)
                )),
            },
            Item::Test(t) => {
                self.out.push_str(&format!("test {} {{", escape(&t.name.value)));
                self.trailing_in_header(t.span.start as usize, t.cases.first().map_or(t.close.start, |c| c.span.start));
                self.out.push('\n');
                for c in &t.cases {
                    self.leading(c.span.start as usize, 1);
                    self.indent(1);
                    self.out.push_str(&test_case_text(c));
                    self.trailing(c.span.end as usize);
                    self.out.push('\n');
                }
                self.leading(t.close.start as usize, 1);
                self.out.push('}');
            }
        }
    }

    /// A comment right after an opening brace, on the same line.
    fn trailing_in_header(&mut self, item_start: usize, first_inner: u32) {
        let open = self.src[item_start..first_inner as usize].find('{').map(|i| item_start + i + 1);
        if let Some(open) = open {
            self.trailing(open);
        }
    }

    fn block(&mut self, b: &Block) {
        if b.attrs.is_empty() && !self.comments.get(self.next).is_some_and(|c| c.span.start < b.close.start) {
            self.out.push_str(" {}");
            return;
        }
        self.out.push_str(" {");
        self.trailing(b.span.start as usize + 1);
        self.out.push('\n');
        for a in &b.attrs {
            self.leading(a.span.start as usize, 1);
            self.indent(1);
            self.out.push_str(&format!("{} = {}", a.name.dotted(), value(&a.value)));
            self.trailing(a.span.end as usize);
            self.out.push('\n');
        }
        self.leading(b.close.start as usize, 1);
        self.out.push('}');
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
