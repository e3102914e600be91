//! The scope of a policy tree: local definitions (E102), `use` items (E101,
//! E102), and lookups with did-you-mean suggestions.

use crate::hash::{HashMap, HashSet};
use std::collections::BTreeMap;

use super::{Def, DefId, DefKind, Tree};
use crate::diag::{did_you_mean, Code, Diagnostic, FileId};
use crate::syntax::ast::{self, Item, Path, UseTree};

/// The user's definitions by name: hashed, because every name in every flow
/// is looked up here (a sorted map's string comparisons were a quarter of a
/// large policy's check); read in name order.
#[derive(Default)]
pub struct Defs(HashMap<String, Def>);

impl Defs {
    pub fn get(&self, name: &str) -> Option<&Def> {
        self.0.get(name)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn insert(&mut self, def: Def) {
        self.0.insert(def.name.clone(), def);
    }

    /// Every definition, in name order.
    pub fn values(&self) -> impl Iterator<Item = &Def> {
        let mut v: Vec<&Def> = self.0.values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v.into_iter()
    }
}

/// The names visible in the policy tree.
pub struct Scope {
    /// Items defined in the user's files.
    pub locals: Defs,
    /// Names brought in by explicit `use` items.
    pub explicit: BTreeMap<String, Def>,
    /// Names brought in by `use ...*`; locals and explicit uses shadow them.
    pub globs: BTreeMap<String, Def>,
    /// Members of each standard module.
    pub std: BTreeMap<String, BTreeMap<String, Def>>,
    /// Standard-library definitions named by an explicit `use`.
    pub used_std: HashSet<DefId>,
    /// Names whose E101 is not reported: they may be defined by an item that
    /// failed to parse or a file that failed to import, so the error already
    /// reported explains them (no cascades).
    pub silenced: HashSet<String>,
    /// An import failed: any unknown name may be defined in the missing file,
    /// so E101 for names is held back and listed on the E103 instead.
    pub import_failed: bool,
    /// The unknown names held back, for that note.
    pub held_back: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

fn defs_of(tree: &Tree, file: FileId, std: bool) -> Vec<Def> {
    tree.parsed[file.0 as usize]
        .file
        .items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let (kind, name) = match item {
                Item::Zone(z) => (DefKind::Zone, &z.name),
                Item::Service(s) => (DefKind::Service, &s.name),
                Item::Group(g) => (DefKind::Group, &g.name),
                Item::Feed(f) => (DefKind::Feed, &f.name),
                _ => return None,
            };
            Some(Def { id: DefId { file, item: i as u32 }, kind, name: name.name.clone(), span: name.span, std })
        })
        .collect()
}

/// Builds the scope: local definitions (E102 on duplicates) and `use` items
/// (E101 for unknown modules or members, E102 on clashes).
pub fn scope(tree: &Tree, diags: &mut Vec<Diagnostic>) -> Scope {
    let mut s = Scope {
        locals: Defs::default(),
        explicit: BTreeMap::new(),
        globs: BTreeMap::new(),
        std: BTreeMap::new(),
        used_std: HashSet::default(),
        silenced: HashSet::default(),
        import_failed: false,
        held_back: Default::default(),
    };
    s.import_failed = diags.iter().any(|d| d.code == Code::E103);
    for &file in &tree.user_files {
        if tree.parsed[file.0 as usize].has_errors() {
            s.silenced.extend(crate::syntax::defined_names(file, &tree.sources.get(file).text));
        }
    }
    for (module, &file) in &tree.std_modules {
        let members = defs_of(tree, file, true).into_iter().map(|d| (d.name.clone(), d)).collect();
        s.std.insert(module.clone(), members);
    }
    for &file in &tree.user_files {
        for def in defs_of(tree, file, false) {
            if let Some(first) = s.locals.get(&def.name) {
                diags.push(
                    Diagnostic::new(Code::E102, def.span, format!("`{}` is defined twice", def.name))
                        .with_label(def.span, "defined again here")
                        .with_label(first.span, "first defined here")
                        .with_help("names are global to the policy tree: rename one of them"),
                );
                continue;
            }
            s.locals.insert(def);
        }
    }
    for (_, _, item) in tree.user_items() {
        let Item::Use(u) = item else { continue };
        resolve_use(&mut s, u, diags);
    }
    s
}

fn resolve_use(s: &mut Scope, u: &ast::Use, diags: &mut Vec<Diagnostic>) {
    let segs = &u.path.segments;
    // The module path: everything but the member for `use std.zones.internet`.
    let (module_segs, members): (&[ast::Ident], Vec<&ast::Ident>) = match &u.tree {
        UseTree::Single if segs.len() >= 2 => (&segs[..segs.len() - 1], vec![&segs[segs.len() - 1]]),
        UseTree::Single => (&segs[..], vec![]),
        UseTree::Group(names) => (&segs[..], names.iter().collect()),
        UseTree::Glob => (&segs[..], vec![]),
    };
    let module_span = module_segs.first().map_or(u.path.span, |f| f.span.to(module_segs[module_segs.len() - 1].span));
    let dotted: Vec<&str> = module_segs.iter().map(|i| i.name.as_str()).collect();
    let module_name = dotted.join(".");
    let module = match dotted.as_slice() {
        ["std", m] => s.std.get(*m).map(|m| (m.clone(), m.keys().cloned().collect::<Vec<_>>())),
        _ => None,
    };
    let Some((module, _)) = module else {
        let known: Vec<String> = s.std.keys().map(|k| format!("std.{k}")).collect();
        let mut d =
            Diagnostic::new(Code::E101, module_span, format!("unknown module `{module_name}`")).with_label(module_span, "no such module");
        if let Some(best) = did_you_mean(&module_name, known.iter().map(String::as_str)) {
            d = d.with_help(format!("did you mean `{best}`?"));
        } else {
            d = d.with_note(format!("the modules are {}", quoted_list(&known)));
        }
        diags.push(d);
        return;
    };
    if matches!(u.tree, UseTree::Single) && members.is_empty() {
        diags.push(
            Diagnostic::new(Code::E202, u.path.span, format!("`use {module_name}` names a module, not an item"))
                .with_help(format!("write `use {module_name}.*` or `use {module_name}.{{NAME, ...}}`")),
        );
        return;
    }
    if matches!(u.tree, UseTree::Glob) {
        for (name, def) in module {
            s.globs.entry(name).or_insert(def);
        }
        return;
    }
    for member in members {
        let Some(def) = module.get(&member.name) else {
            let mut d = Diagnostic::new(Code::E101, member.span, format!("`{}` is not in `{module_name}`", member.name))
                .with_label(member.span, "not found");
            if let Some(best) = did_you_mean(&member.name, module.keys().map(String::as_str)) {
                d = d.with_help(format!("did you mean `{best}`?"));
            }
            diags.push(d);
            continue;
        };
        if let Some(local) = s.locals.get(&member.name) {
            diags.push(
                Diagnostic::new(
                    Code::E102,
                    member.span,
                    format!("`{}` is imported from `{module_name}` and also defined in the policy", member.name),
                )
                .with_label(member.span, "imported here")
                .with_label(local.span, "defined here")
                .with_help("rename the local definition, or drop it from the `use`"),
            );
            continue;
        }
        if let Some(prev) = s.explicit.get(&member.name) {
            if prev.id != def.id {
                diags.push(
                    Diagnostic::new(Code::E102, member.span, format!("`{}` is imported twice", member.name))
                        .with_label(prev.span, "the other definition"),
                );
            }
            continue;
        }
        s.used_std.insert(def.id);
        s.explicit.insert(member.name.clone(), def.clone());
    }
}

/// `zone`, or `zone or group`.
fn kinds_text(kinds: &[DefKind]) -> String {
    let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    names.join(" or ")
}

fn quoted_list(items: &[String]) -> String {
    let q: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    q.join(", ")
}

impl Scope {
    /// Resolves a reference to a zone or a service. Unknown names are E101 with a
    /// suggestion; a name of the wrong kind is E202.
    pub fn lookup(&self, path: &Path, want: DefKind, diags: &mut Vec<Diagnostic>) -> Option<&Def> {
        self.lookup_kinds(path, want, &[want], diags)
    }

    /// Resolves an end of a flow: a zone or a group.
    pub fn lookup_zones(&self, path: &Path, diags: &mut Vec<Diagnostic>) -> Option<&Def> {
        self.lookup_kinds(path, DefKind::Zone, &[DefKind::Zone, DefKind::Group], diags)
    }

    fn lookup_kinds(&self, path: &Path, want: DefKind, kinds: &[DefKind], diags: &mut Vec<Diagnostic>) -> Option<&Def> {
        let found = self.find(path);
        match found {
            Some(def) if kinds.contains(&def.kind) => Some(def),
            Some(def) => {
                diags.push(
                    Diagnostic::new(
                        Code::E202,
                        path.span,
                        format!("expected a {}, found {} `{}`", kinds_text(kinds), def.kind.as_str(), path.dotted()),
                    )
                    .with_label(path.span, format!("this is a {}", def.kind.as_str()))
                    .with_label(def.span, format!("the {} is defined here", def.kind.as_str())),
                );
                None
            }
            None => {
                let name = path.dotted();
                if self.import_failed {
                    self.held_back.borrow_mut().insert(name);
                } else if !self.silenced.contains(&name) {
                    diags.push(self.unknown(path, want, kinds));
                }
                None
            }
        }
    }

    /// What a path names, without reporting anything.
    pub fn find(&self, path: &Path) -> Option<&Def> {
        match path.segments.as_slice() {
            [one] => self.locals.get(&one.name).or_else(|| self.explicit.get(&one.name)).or_else(|| self.globs.get(&one.name)),
            [std, module, member] if std.name == "std" => self.std.get(&module.name)?.get(&member.name),
            _ => None,
        }
    }

    fn unknown(&self, path: &Path, want: DefKind, kinds: &[DefKind]) -> Diagnostic {
        let name = path.dotted();
        let mut d =
            Diagnostic::new(Code::E101, path.span, format!("unknown {} `{name}`", kinds_text(kinds))).with_label(path.span, "not found");
        let visible = self
            .locals
            .values()
            .chain(self.explicit.values())
            .chain(self.globs.values())
            .filter(|d| kinds.contains(&d.kind))
            .map(|d| d.name.as_str());
        if let Some(best) = did_you_mean(&name, visible) {
            return d.with_help(format!("did you mean `{best}`?"));
        }
        // A standard-library item that was not brought into scope.
        for (module, members) in &self.std {
            if let Some(def) = members.get(&name).filter(|d| d.kind == want) {
                d = d.with_help(format!("`{}` is in the standard library: add `use std.{module}.{name}`", def.name));
                return d;
            }
        }
        for (module, members) in &self.std {
            let names = members.values().filter(|d| d.kind == want).map(|d| d.name.as_str());
            if let Some(best) = did_you_mean(&name, names) {
                return d.with_help(format!("did you mean `{best}` (add `use std.{module}.{best}`)?"));
            }
        }
        d
    }
}
