//! Name resolution: loads the policy tree (root file, imports, the embedded
//! standard library), builds the global name table and resolves every reference.

mod stdlib;

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::diag::{did_you_mean, Code, Diagnostic, FileId, Span};
use crate::source::{join_import, LoadError, Loader, SourceMap};
use crate::syntax::ast::{self, Item, Path, UseTree};
use crate::syntax::{parse, Parsed};

pub use stdlib::STDLIB;

/// What a name refers to: a zone, service or group item in some file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DefId {
    pub file: FileId,
    pub item: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefKind {
    Zone,
    Service,
    Group,
}

impl DefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DefKind::Zone => "zone",
            DefKind::Service => "service",
            DefKind::Group => "group",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Def {
    pub id: DefId,
    pub kind: DefKind,
    pub name: String,
    /// The name where it is defined.
    pub span: Span,
    pub std: bool,
}

/// All files of a policy tree, parsed.
pub struct Tree {
    pub sources: SourceMap,
    /// Parsed files, indexed by `FileId`.
    pub parsed: Vec<Parsed>,
    /// The files of the user's tree (not the standard library), root first.
    pub user_files: Vec<FileId>,
    /// Standard library modules: `services` -> file.
    pub std_modules: BTreeMap<String, FileId>,
}

impl Tree {
    pub fn item(&self, id: DefId) -> &Item {
        &self.parsed[id.file.0 as usize].file.items[id.item as usize]
    }

    pub fn user_items(&self) -> impl Iterator<Item = (FileId, u32, &Item)> {
        self.user_files
            .iter()
            .flat_map(move |&f| self.parsed[f.0 as usize].file.items.iter().enumerate().map(move |(i, it)| (f, i as u32, it)))
    }
}

/// Why the root file could not be read; the caller reports it (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("cannot read `{0}`: not found")]
    NotFound(String),
    #[error("cannot read `{0}`: {1}")]
    Io(String, String),
}

/// Decodes file bytes; invalid UTF-8 is replaced and reported as E002.
fn decode(file_name: &str, bytes: Vec<u8>) -> (String, Option<usize>) {
    let _ = file_name;
    match String::from_utf8(bytes) {
        Ok(s) => (s, None),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            (String::from_utf8_lossy(e.as_bytes()).into_owned(), Some(at))
        }
    }
}

/// Loads and parses the root file, everything it imports, and the standard
/// library. Import problems become E103/E104 diagnostics.
pub fn load(root: &str, loader: &dyn Loader, diags: &mut Vec<Diagnostic>) -> Result<Tree, RootError> {
    let mut tree = Tree { sources: SourceMap::default(), parsed: Vec::new(), user_files: Vec::new(), std_modules: BTreeMap::new() };
    let bytes = loader.read(root).map_err(|e| match e {
        LoadError::NotFound => RootError::NotFound(root.to_string()),
        LoadError::OutsideRoot => RootError::Io(root.to_string(), "outside the root folder".into()),
        LoadError::Io(m) => RootError::Io(root.to_string(), m),
    })?;
    let root_id = add_file(&mut tree, root.to_string(), bytes, false, diags);
    let mut loaded: HashMap<String, FileId> = HashMap::from([(root.to_string(), root_id)]);
    let mut stack = vec![root_id];
    load_imports(&mut tree, loader, root_id, &mut stack, &mut loaded, diags);
    for (module, text) in STDLIB {
        let id = add_file(&mut tree, format!("<std>/{module}.seg"), text.as_bytes().to_vec(), true, diags);
        tree.std_modules.insert((*module).to_string(), id);
    }
    Ok(tree)
}

fn add_file(tree: &mut Tree, name: String, bytes: Vec<u8>, std: bool, diags: &mut Vec<Diagnostic>) -> FileId {
    let (text, bad_utf8) = decode(&name, bytes);
    let id = tree.sources.add(name, text, std);
    let text = &tree.sources.get(id).text;
    let parsed = parse(id, text);
    if let Some(at) = bad_utf8 {
        let span = Span::new(id, at, at + text[at..].chars().next().map_or(0, char::len_utf8));
        diags.push(
            Diagnostic::new(Code::E002, span, "the file is not valid UTF-8")
                .with_label(span, "first invalid byte here")
                .with_help("save the file as UTF-8"),
        );
    }
    diags.extend(parsed.diagnostics.iter().cloned());
    tree.parsed.push(parsed);
    if !std {
        tree.user_files.push(id);
    }
    id
}

fn load_imports(
    tree: &mut Tree,
    loader: &dyn Loader,
    file: FileId,
    stack: &mut Vec<FileId>,
    loaded: &mut HashMap<String, FileId>,
    diags: &mut Vec<Diagnostic>,
) {
    let imports: Vec<ast::Import> = tree.parsed[file.0 as usize]
        .file
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Import(imp) => Some(imp.clone()),
            _ => None,
        })
        .collect();
    let importer = tree.sources.get(file).name.clone();
    for imp in imports {
        let span = imp.path.span;
        let target = match join_import(&importer, &imp.path.value) {
            Ok(t) => t,
            Err(e) => {
                diags.push(
                    Diagnostic::new(Code::E103, span, format!("cannot import `{}`: {e}", imp.path.value))
                        .with_label(span, "this import")
                        .with_help("import files by a path relative to the importing file, inside the root folder"),
                );
                continue;
            }
        };
        if let Some(&existing) = loaded.get(&target) {
            if let Some(pos) = stack.iter().position(|&f| f == existing) {
                let mut chain: Vec<String> = stack[pos..].iter().map(|&f| format!("`{}`", tree.sources.get(f).name)).collect();
                chain.push(format!("`{target}`"));
                diags.push(
                    Diagnostic::new(Code::E104, span, format!("import cycle: {}", chain.join(" imports ")))
                        .with_label(span, "this import closes the cycle")
                        .with_help("move the shared items into a file that both import"),
                );
            }
            continue;
        }
        match loader.read(&target) {
            Ok(bytes) => {
                let id = add_file(tree, target.clone(), bytes, false, diags);
                loaded.insert(target, id);
                stack.push(id);
                load_imports(tree, loader, id, stack, loaded, diags);
                stack.pop();
            }
            Err(e) => {
                let why = match e {
                    LoadError::NotFound => "not found".to_string(),
                    LoadError::OutsideRoot => "it resolves outside the root folder".to_string(),
                    LoadError::Io(m) => m,
                };
                diags.push(
                    Diagnostic::new(Code::E103, span, format!("cannot import `{}`: {why}", imp.path.value))
                        .with_label(span, format!("looked for `{target}`")),
                );
            }
        }
    }
}

/// The names visible in the policy tree.
pub struct Scope {
    /// Items defined in the user's files.
    pub locals: BTreeMap<String, Def>,
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
        locals: BTreeMap::new(),
        explicit: BTreeMap::new(),
        globs: BTreeMap::new(),
        std: BTreeMap::new(),
        used_std: HashSet::new(),
        silenced: HashSet::new(),
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
            s.locals.insert(def.name.clone(), def);
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
