//! Names in a file: every definition and every reference, with its span, so
//! that hover, definition, references and rename share one walk of the tree.

use segc_compiler::diag::{FileId, Span};
use segc_compiler::resolve::{Def, DefId, DefKind};
use segc_compiler::syntax::ast::{self, Item, ServiceRef, UseTree};
use segc_compiler::Compilation;

#[derive(Clone, Debug)]
pub enum Occ {
    /// A zone, service or group being defined.
    Def(DefId),
    /// A reference by path.
    Ref(ast::Path, DefKind),
    /// A member named in a `use`: module, member.
    UseMember(String, ast::Ident),
}

/// Every name occurrence in `file`, with the span to highlight or rename (for
/// a path, its last segment).
pub fn occurrences(comp: &Compilation, file: FileId) -> Vec<(Span, Occ)> {
    let mut out = Vec::new();
    let items = &comp.tree.parsed[file.0 as usize].file.items;
    let zone = |p: &ast::Path, out: &mut Vec<(Span, Occ)>| out.push((last(p), Occ::Ref(p.clone(), DefKind::Zone)));
    let zones = |l: &ast::ZoneList, out: &mut Vec<(Span, Occ)>| {
        for p in &l.items {
            zone(p, out);
        }
    };
    let svcs = |list: &[ServiceRef], out: &mut Vec<(Span, Occ)>| {
        for s in list {
            if let ServiceRef::Name(p) = s {
                out.push((last(p), Occ::Ref(p.clone(), DefKind::Service)));
            }
        }
    };
    for (i, item) in items.iter().enumerate() {
        let id = DefId { file, item: i as u32 };
        match item {
            Item::Zone(z) => out.push((z.name.span, Occ::Def(id))),
            Item::Group(g) => {
                out.push((g.name.span, Occ::Def(id)));
                for m in &g.members {
                    zone(m, &mut out);
                }
            }
            Item::Feed(f) => out.push((f.name.span, Occ::Def(id))),
            Item::BlockFeeds(b) => {
                for p in &b.feeds {
                    out.push((last(p), Occ::Ref(p.clone(), DefKind::Feed)));
                }
            }
            Item::Service(s) => {
                out.push((s.name.span, Occ::Def(id)));
                svcs(&s.services, &mut out);
            }
            Item::Flow(f) => {
                zones(&f.from, &mut out);
                zones(&f.to, &mut out);
                svcs(&f.services, &mut out);
            }
            Item::Deny(d) => {
                zones(&d.from, &mut out);
                zones(&d.to, &mut out);
                svcs(&d.services, &mut out);
            }
            Item::Assert(a) => {
                zones(&a.from, &mut out);
                zones(&a.to, &mut out);
                if let ast::AssertKind::Denied(s) = &a.kind {
                    svcs(s, &mut out);
                }
            }
            Item::Test(t) => {
                for c in &t.cases {
                    for e in [&c.from, &c.to] {
                        if let ast::Endpoint::Zone(p) = e {
                            zone(p, &mut out);
                        }
                    }
                    svcs(std::slice::from_ref(&c.service), &mut out);
                }
            }
            Item::Use(u) => {
                let segs = &u.path.segments;
                let module = |n: usize| segs.get(n).map(|s| s.name.clone()).unwrap_or_default();
                match &u.tree {
                    UseTree::Single if segs.len() == 3 => out.push((segs[2].span, Occ::UseMember(module(1), segs[2].clone()))),
                    UseTree::Group(names) => {
                        for n in names {
                            out.push((n.span, Occ::UseMember(module(1), n.clone())));
                        }
                    }
                    _ => {}
                }
            }
            Item::Policy(_) | Item::Import(_) => {}
        }
    }
    out
}

fn last(p: &ast::Path) -> Span {
    p.segments.last().map_or(p.span, |s| s.span)
}

/// What an occurrence resolves to.
pub fn resolve<'c>(comp: &'c Compilation, occ: &Occ) -> Option<&'c Def> {
    match occ {
        Occ::Def(id) => comp.names.locals.values().chain(comp.names.std.values().flat_map(|m| m.values())).find(|d| d.id == *id),
        // A zone reference may name a group: both stand for zones.
        Occ::Ref(p, kind) => comp.names.find(p).filter(|d| d.kind == *kind || (*kind == DefKind::Zone && d.kind == DefKind::Group)),
        Occ::UseMember(module, name) => comp.names.std.get(module)?.get(&name.name),
    }
}

/// The occurrence under a byte offset.
pub fn at(comp: &Compilation, file: FileId, offset: usize) -> Option<(Span, Occ)> {
    occurrences(comp, file).into_iter().find(|(s, _)| s.start as usize <= offset && offset <= s.end as usize)
}

/// Every occurrence, in every user file, that resolves to `def`.
pub fn references(comp: &Compilation, def: &Def) -> Vec<Span> {
    let mut v = Vec::new();
    for &f in &comp.tree.user_files {
        for (span, occ) in occurrences(comp, f) {
            if resolve(comp, &occ).is_some_and(|d| d.id == def.id) {
                v.push(span);
            }
        }
    }
    if def.std {
        v.push(def.span);
    }
    v.sort();
    v.dedup();
    v
}
