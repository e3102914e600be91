//! Source files and how imports find them. The compiler never touches the file
//! system: a [`Loader`] supplied by the caller reads files by their path relative
//! to the root folder, after [`join_import`] has made sure that path stays inside.

use crate::diag::{FileId, LineIndex, Span};

/// One file of the policy tree, or of the embedded standard library.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Path relative to the root folder, `/`-separated; `<std>/NAME.seg` for the
    /// standard library.
    pub name: String,
    pub text: String,
    pub std: bool,
    pub lines: LineIndex,
}

#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn add(&mut self, name: String, text: String, std: bool) -> FileId {
        let lines = LineIndex::new(&text);
        self.files.push(SourceFile { name, text, std, lines });
        FileId(u32::try_from(self.files.len() - 1).unwrap_or(u32::MAX))
    }

    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    pub fn files(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files.iter().enumerate().map(|(i, f)| (FileId(i as u32), f))
    }

    /// The policy's source hash: SHA-256 over every file of the tree, standard
    /// library included, as `name NUL text NUL` in load order. The manifest's
    /// `source_sha256` and the report's source hash are this one value.
    pub fn digest(&self) -> String {
        let mut bytes = Vec::new();
        for f in &self.files {
            bytes.extend_from_slice(f.name.as_bytes());
            bytes.push(0);
            bytes.extend_from_slice(f.text.as_bytes());
            bytes.push(0);
        }
        crate::sha256::hex(&bytes)
    }

    pub fn find(&self, name: &str) -> Option<FileId> {
        self.files().find(|(_, f)| f.name == name).map(|(id, _)| id)
    }

    /// 1-based line and column of a span's start.
    pub fn line_col(&self, span: Span) -> (usize, usize) {
        let f = self.get(span.file);
        f.lines.line_col(&f.text, span.start as usize)
    }

    /// `file:line`, how reports point at items.
    pub fn location(&self, span: Span) -> String {
        let (line, _) = self.line_col(span);
        format!("{}:{line}", self.get(span.file).name)
    }
}

/// Why a file could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    NotFound,
    /// The path exists but resolves (through a symlink) outside the root folder.
    OutsideRoot,
    Io(String),
}

/// Reads policy files by their path relative to the root folder, and the
/// feeds they name.
pub trait Loader {
    fn read(&self, path: &str) -> Result<Vec<u8>, LoadError>;

    /// A feed's bytes: `location` is a path relative to the root folder (read
    /// as any file), or an `https://` URL, which only loaders with a network
    /// client fetch.
    fn feed(&self, location: &str) -> Result<Vec<u8>, LoadError> {
        if is_url(location) {
            return Err(LoadError::Io("this tool does not fetch feeds over the network".into()));
        }
        self.read(location)
    }
}

/// Whether a feed source is a URL rather than a path.
pub fn is_url(source: &str) -> bool {
    source.contains("://")
}

/// Where a feed named as `source` in the file `importer` is read from: an
/// https URL as is; a path relative to the importing file, kept inside the
/// root folder like an import.
pub fn feed_location(importer: &str, source: &str) -> Result<String, String> {
    if is_url(source) {
        return if source.starts_with("https://") {
            Ok(source.to_string())
        } else {
            Err("only `https://` URLs are fetched: a feed that decides what is blocked must come over TLS".into())
        };
    }
    join_import(importer, source).map_err(|e| e.to_string().replace("import path", "feed path"))
}

/// Files held in memory, for tests, the LSP and fuzzing.
#[derive(Clone, Debug, Default)]
pub struct MemoryLoader {
    pub files: std::collections::BTreeMap<String, Vec<u8>>,
}

impl MemoryLoader {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, path: &str, text: &str) -> Self {
        self.files.insert(path.to_string(), text.as_bytes().to_vec());
        self
    }
}

impl Loader for MemoryLoader {
    fn read(&self, path: &str) -> Result<Vec<u8>, LoadError> {
        self.files.get(path).cloned().ok_or(LoadError::NotFound)
    }
}

/// Why an import path is refused (E103).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportPathError {
    Empty,
    Absolute,
    Escapes,
    Backslash,
}

impl std::fmt::Display for ImportPathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ImportPathError::Empty => "the import path is empty",
            ImportPathError::Absolute => "absolute import paths are not allowed",
            ImportPathError::Escapes => "the import path leaves the root folder",
            ImportPathError::Backslash => "import paths use `/`, not `\\`",
        })
    }
}

/// The path of `spec`, imported from the file at `importer` (both relative to the
/// root folder), normalised; refused when absolute or when it climbs above the
/// root folder.
pub fn join_import(importer: &str, spec: &str) -> Result<String, ImportPathError> {
    if spec.is_empty() {
        return Err(ImportPathError::Empty);
    }
    let b = spec.as_bytes();
    let drive = b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':';
    if spec.starts_with('/') || spec.starts_with('~') || drive {
        return Err(ImportPathError::Absolute);
    }
    if spec.contains('\\') {
        return Err(ImportPathError::Backslash);
    }
    let mut parts: Vec<&str> = importer.split('/').collect();
    parts.pop(); // the importing file's own name
    for comp in spec.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(ImportPathError::Escapes);
                }
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(ImportPathError::Empty);
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_paths_are_sanitised() {
        assert_eq!(join_import("main.seg", "zones/shared.seg").as_deref(), Ok("zones/shared.seg"));
        assert_eq!(join_import("zones/a.seg", "b.seg").as_deref(), Ok("zones/b.seg"));
        assert_eq!(join_import("zones/a.seg", "../b.seg").as_deref(), Ok("b.seg"));
        assert_eq!(join_import("zones/a.seg", "./x/../c.seg").as_deref(), Ok("zones/c.seg"));
        assert_eq!(join_import("main.seg", "../etc/passwd"), Err(ImportPathError::Escapes));
        assert_eq!(join_import("zones/a.seg", "../../x.seg"), Err(ImportPathError::Escapes));
        assert_eq!(join_import("main.seg", "/etc/passwd"), Err(ImportPathError::Absolute));
        assert_eq!(join_import("main.seg", "C:/x.seg"), Err(ImportPathError::Absolute));
        assert_eq!(join_import("main.seg", "a\\b.seg"), Err(ImportPathError::Backslash));
        assert_eq!(join_import("main.seg", ""), Err(ImportPathError::Empty));
    }
}
