//! What the server knows: open documents by version, and the compilation units
//! (policy trees) they belong to. A change to any document recompiles every
//! unit, so editing an imported file re-checks the files that import it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use lsp_types::Url;
use segc_compiler::diag::FileId;
use segc_compiler::source::{LoadError, Loader};
use segc_compiler::{compile, Compilation, Options};
use segc_fsio::FsLoader;

/// Open documents take precedence over the disk.
struct OverlayLoader<'a> {
    root: &'a Path,
    docs: &'a BTreeMap<PathBuf, Doc>,
    /// `None` when the folder cannot be opened: only open documents are read.
    disk: Option<FsLoader>,
    /// https feeds, fetched once a session by the host binary's fetcher.
    feeds: &'a Feeds,
}

/// Reads an https feed's bytes, or says why not.
pub type Fetch = fn(&str) -> Result<Vec<u8>, String>;

/// How the server reads https feeds: the binary that embeds it passes a
/// fetcher; each URL is fetched once and kept for the session (an editor
/// must not hit a feed's server on every keystroke).
#[derive(Default)]
pub struct Feeds {
    pub fetch: Option<Fetch>,
    pub fetched: std::cell::RefCell<BTreeMap<String, Result<Vec<u8>, String>>>,
}

impl Loader for OverlayLoader<'_> {
    fn read(&self, path: &str) -> Result<Vec<u8>, LoadError> {
        let full = normalize(&self.root.join(path));
        if let Some(d) = self.docs.get(&full) {
            return Ok(d.text.as_bytes().to_vec());
        }
        match &self.disk {
            Some(d) => d.read(path),
            None => Err(LoadError::NotFound),
        }
    }

    fn feed(&self, location: &str) -> Result<Vec<u8>, LoadError> {
        if !segc_compiler::source::is_url(location) {
            return self.read(location);
        }
        let Some(fetch) = self.feeds.fetch else { return Err(LoadError::Io("this server does not fetch feeds".into())) };
        let mut cache = self.feeds.fetched.borrow_mut();
        cache.entry(location.to_string()).or_insert_with(|| fetch(location)).clone().map_err(LoadError::Io)
    }
}

/// Lexically normalised absolute path (no `.` or `..`), without touching disk.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

#[derive(Clone, Debug)]
pub struct Doc {
    pub version: i32,
    pub text: String,
}

/// One policy tree: its folder and its compilation.
pub struct Unit {
    pub dir: PathBuf,
    pub comp: Compilation,
}

impl Unit {
    pub fn path_of(&self, file: FileId) -> Option<PathBuf> {
        let f = self.comp.sources().get(file);
        (!f.std).then(|| normalize(&self.dir.join(&f.name)))
    }

    pub fn file_of(&self, path: &Path) -> Option<FileId> {
        self.comp.tree.user_files.iter().copied().find(|&f| self.path_of(f).as_deref() == Some(path))
    }
}

#[derive(Default)]
pub struct State {
    pub root: Option<PathBuf>,
    pub docs: BTreeMap<PathBuf, Doc>,
    pub units: Vec<Unit>,
    /// URIs that got diagnostics last time, to clear them when they go away.
    pub published: BTreeSet<Url>,
    pub feeds: Feeds,
}

pub fn path_of_uri(uri: &Url) -> Option<PathBuf> {
    uri.to_file_path().ok().map(|p| normalize(&p))
}

impl State {
    /// Recompiles every policy tree: the workspace's `main.seg`, and each open
    /// document that tree does not include, as a root of its own.
    pub fn rebuild(&mut self, opts: &Options) {
        let mut units = Vec::new();
        let mut covered: BTreeSet<PathBuf> = BTreeSet::new();
        let mut roots: Vec<PathBuf> = Vec::new();
        if let Some(root) = &self.root {
            let main = root.join("main.seg");
            if main.exists() || self.docs.contains_key(&main) {
                roots.push(main);
            }
        }
        let open: Vec<PathBuf> = self.docs.keys().cloned().collect();
        for file in roots.into_iter().chain(open) {
            if covered.contains(&file) {
                continue;
            }
            let (Some(dir), Some(name)) = (file.parent(), file.file_name().and_then(|n| n.to_str())) else { continue };
            let loader = OverlayLoader { root: dir, docs: &self.docs, disk: FsLoader::new(dir).ok(), feeds: &self.feeds };
            let Ok(comp) = compile(name, &loader, opts) else { continue };
            let unit = Unit { dir: dir.to_path_buf(), comp };
            for &f in &unit.comp.tree.user_files {
                if let Some(p) = unit.path_of(f) {
                    covered.insert(p);
                }
            }
            units.push(unit);
        }
        self.units = units;
    }

    /// The unit holding a file, and the file's id in it.
    pub fn locate(&self, path: &Path) -> Option<(&Unit, FileId)> {
        self.units.iter().find_map(|u| u.file_of(path).map(|f| (u, f)))
    }

    pub fn text(&self, path: &Path) -> Option<String> {
        if let Some(d) = self.docs.get(path) {
            return Some(d.text.clone());
        }
        self.locate(path).map(|(u, f)| u.comp.sources().get(f).text.clone())
    }
}

/// Where the standard library's files are written, so that "go to
/// definition" can open them.
pub fn stdlib_path(module: &str) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join("segc").join(format!("stdlib-{}", env!("CARGO_PKG_VERSION")));
    let text = segc_compiler::resolve::STDLIB.iter().find(|(m, _)| *m == module)?.1;
    let path = dir.join(format!("{module}.seg"));
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
        std::fs::create_dir_all(&dir).ok()?;
        std::fs::write(&path, text).ok()?;
    }
    Some(path)
}
