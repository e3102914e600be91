//! Watching the policy's files. A compile reads through a [`Recording`]
//! loader, so the snapshot of what was compiled is exactly the bytes the
//! compiler saw (a file saved half-way and refused is retried once the save
//! completes, because its bytes then differ from the snapshot). A poll re-reads
//! only the files of the snapshot (missing imports included) and compiles
//! only when one of them changed.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use segc_compiler::source::{LoadError, Loader};
use segc_compiler::{compile, Compilation, Options};
use segc_fsio::{FsLoader, PolicyPath};

/// Each file a compile asked for, and what it got.
pub type Snapshot = Vec<(String, Result<Vec<u8>, LoadError>)>;

/// The last good bytes of each feed, by location: what a compile reads
/// instead of the source, once the agent has it (the feed refresher, not a
/// policy reload, decides when a feed changes).
#[derive(Clone, Default)]
pub struct FeedCache {
    pub bytes: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, Vec<u8>>>>,
    /// The feed thread, which fetches URLs from the host's namespace (the
    /// agent's own thread may be in another, where the server is unreachable).
    pub fetcher: std::sync::Arc<std::sync::Mutex<Option<std::sync::mpsc::Sender<super::feeds::Msg>>>>,
}

/// A loader that remembers every read of the policy's files; feeds come
/// from the cache (read once, at the first compile), and are not watched.
struct Recording {
    inner: FsLoader,
    reads: RefCell<Snapshot>,
    feeds: FeedCache,
}

impl Loader for Recording {
    fn read(&self, path: &str) -> Result<Vec<u8>, LoadError> {
        let r = self.inner.read(path);
        self.reads.borrow_mut().push((path.to_string(), r.clone()));
        r
    }

    fn feed(&self, location: &str) -> Result<Vec<u8>, LoadError> {
        if let Some(b) = self.feeds.bytes.lock().ok().and_then(|c| c.get(location).cloned()) {
            return Ok(b);
        }
        let fetcher = self.feeds.fetcher.lock().ok().and_then(|f| f.clone());
        let b = if let (true, Some(tx)) = (segc_compiler::source::is_url(location), fetcher) {
            let (reply, rx) = std::sync::mpsc::channel();
            tx.send(super::feeds::Msg::Fetch { url: location.to_string(), reply })
                .map_err(|_| LoadError::Io("the feed thread is gone".into()))?;
            rx.recv_timeout(crate::feeds::TIMEOUT + std::time::Duration::from_secs(5))
                .map_err(|_| LoadError::Io("the feed thread did not answer".into()))?
                .map_err(LoadError::Io)?
        } else if segc_compiler::source::is_url(location) {
            crate::feeds::fetch_url(
                location,
                crate::feeds::size_limit(segc_compiler::ir::feed::DEFAULT_MAX_PREFIXES),
                crate::feeds::TIMEOUT,
            )
            .map_err(LoadError::Io)?
        } else {
            self.inner.read(location)?
        };
        if let Ok(mut c) = self.feeds.bytes.lock() {
            c.insert(location.to_string(), b.clone());
        }
        Ok(b)
    }
}

/// The policy's root folder and file, resolved once, before any lockdown.
pub struct Watch {
    root: PathBuf,
    file: String,
    /// Shared with the feed refresher.
    pub feeds: FeedCache,
}

impl Watch {
    /// Resolves PATH against the current folder now: after lockdown the agent
    /// cannot ask for it (and the folder may change under a relative path).
    pub fn new(arg: &Path) -> Result<Watch> {
        let PolicyPath { dir, file } = segc_fsio::policy_path(arg).map_err(anyhow::Error::msg)?;
        let root = std::fs::canonicalize(&dir).with_context(|| format!("cannot open folder `{}`", dir.display()))?;
        Ok(Watch { root, file, feeds: FeedCache::default() })
    }

    /// The policy's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Compiles the policy, and returns the exact bytes it was compiled from.
    pub fn compile(&self, opts: &Options) -> Result<(Compilation, Snapshot)> {
        let rec = Recording { inner: FsLoader::new(&self.root)?, reads: RefCell::new(Vec::new()), feeds: self.feeds.clone() };
        let c = compile(&self.file, &rec, opts)?;
        Ok((c, rec.reads.into_inner()))
    }

    /// Whether any file of `snapshot` reads differently now.
    pub fn changed(&self, snapshot: &Snapshot) -> bool {
        let Ok(loader) = FsLoader::new(&self.root) else { return true };
        snapshot.iter().any(|(path, before)| &loader.read(path) != before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_is_what_was_compiled_and_a_completed_save_is_noticed() {
        let d = std::env::temp_dir().join(format!("segc-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        std::fs::write(d.join("main.seg"), "zone a { cidrs = [10.0.0.0/8]\n").expect("half a save");
        let w = Watch::new(&d.join("main.seg")).expect("watch");
        let (c, snap) = w.compile(&Options::default()).expect("compile");
        assert!(c.has_errors(), "the half-written file is refused");
        assert!(!w.changed(&snap), "nothing changed since");
        std::fs::write(d.join("main.seg"), "zone a {\n  cidrs = [10.0.0.0/8]\n  scope = connected\n}\n").expect("the rest");
        assert!(w.changed(&snap), "the completed save is noticed, although the refused one was never deployed");
        // A missing import is watched too: creating it is a change.
        std::fs::write(d.join("main.seg"), "import \"more.seg\"\n").expect("write");
        let (_, snap) = w.compile(&Options::default()).expect("compile");
        assert!(!w.changed(&snap));
        std::fs::write(d.join("more.seg"), "").expect("create the import");
        assert!(w.changed(&snap));
    }
}
