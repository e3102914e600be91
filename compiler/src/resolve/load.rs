//! Loading a policy tree: the root file, what it imports (E103, E104), and
//! the standard library, each parsed.

use crate::hash::HashMap;
use std::collections::BTreeMap;

use super::{stdlib::STDLIB, Tree};
use crate::diag::{Code, Diagnostic, FileId, Span};
use crate::source::{join_import, LoadError, Loader, SourceMap};
use crate::syntax::ast::{self, Item};
use crate::syntax::parse;

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
    let mut tree = Tree {
        sources: SourceMap::default(),
        parsed: Vec::new(),
        user_files: Vec::new(),
        std_modules: BTreeMap::new(),
        feed_data: BTreeMap::new(),
    };
    let bytes = loader.read(root).map_err(|e| match e {
        LoadError::NotFound => RootError::NotFound(root.to_string()),
        LoadError::OutsideRoot => RootError::Io(root.to_string(), "outside the root folder".into()),
        LoadError::Io(m) => RootError::Io(root.to_string(), m),
    })?;
    let root_id = add_file(&mut tree, root.to_string(), bytes, false, diags);
    let mut loaded: HashMap<String, FileId> = HashMap::from_iter([(root.to_string(), root_id)]);
    let mut stack = vec![root_id];
    load_imports(&mut tree, loader, root_id, &mut stack, &mut loaded, diags);
    read_feeds(&mut tree, loader);
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

/// Reads the source of every `feed` item once; `check` parses the bytes and
/// reports what is wrong with them.
fn read_feeds(tree: &mut Tree, loader: &dyn Loader) {
    let mut wanted = Vec::new();
    for (file, _, item) in tree.user_items() {
        let Item::Feed(f) = item else { continue };
        let Some(ast::ValueKind::Str(source)) = f.body.get("source").map(|a| &a.value.kind) else { continue };
        if let Ok(location) = crate::source::feed_location(&tree.sources.get(file).name, source) {
            wanted.push(location);
        }
    }
    for location in wanted {
        if let std::collections::btree_map::Entry::Vacant(e) = tree.feed_data.entry(location) {
            let data = loader.feed(e.key());
            e.insert(data);
        }
    }
}
