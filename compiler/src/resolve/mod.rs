//! Name resolution: loads the policy tree (root file, imports, the embedded
//! standard library; `load`), builds the global name table and resolves every
//! reference (`scope`).

mod load;
mod scope;
mod stdlib;

use std::collections::BTreeMap;

use crate::diag::{FileId, Span};
use crate::source::SourceMap;
use crate::syntax::ast::Item;
use crate::syntax::Parsed;

pub use load::{load, RootError};
pub use scope::{scope, Scope};
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
    Feed,
}

impl DefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DefKind::Zone => "zone",
            DefKind::Service => "service",
            DefKind::Group => "group",
            DefKind::Feed => "feed",
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
    /// The bytes of every feed source the policy names, by location (a path
    /// relative to the root folder, or a URL), or why it could not be read.
    pub feed_data: BTreeMap<String, Result<Vec<u8>, crate::source::LoadError>>,
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
