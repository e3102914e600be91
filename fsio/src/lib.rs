//! File-system IO that more than one part of segc needs, in one place:
//!
//! - [`FsLoader`]: the compiler's [`Loader`] over a folder on disk, with the
//!   checks only the file system can make (symlinks that leave the root folder,
//!   files that are not regular files, absurd sizes). The CLI, the agent and
//!   the language server all read policies through it.
//! - [`write_atomically`] and [`Staged`]: a temporary file in the same folder,
//!   fsynced, then renamed over the target, so a reader sees the old file or
//!   the new one.
//! - [`clock`]: the one wall clock (seconds since the epoch, today's date).

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use segc_compiler::source::{LoadError, Loader};

pub mod clock;

/// Policy files larger than this are refused rather than read.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Reads policy files under one root folder.
pub struct FsLoader {
    root: PathBuf,
}

impl FsLoader {
    /// A loader for the folder `root`, which must exist.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        Ok(FsLoader { root: fs::canonicalize(root)? })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Loader for FsLoader {
    fn read(&self, path: &str) -> Result<Vec<u8>, LoadError> {
        let full = self.root.join(path);
        let canon = match fs::canonicalize(&full) {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(LoadError::NotFound),
            Err(e) => return Err(LoadError::Io(e.to_string())),
        };
        if !canon.starts_with(&self.root) {
            return Err(LoadError::OutsideRoot);
        }
        read_regular(&canon).map_err(LoadError::Io)
    }
}

/// Reads a regular file of at most [`MAX_FILE_BYTES`]. FIFOs, devices and
/// folders are refused before they are opened for reading (opening a FIFO
/// would block until a writer comes).
pub fn read_regular(path: &Path) -> Result<Vec<u8>, String> {
    let meta = fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("larger than {} MiB", MAX_FILE_BYTES >> 20));
    }
    // O_NONBLOCK: should the file have been swapped for a FIFO since the
    // metadata call, opening it does not wait for a writer.
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(|e| e.to_string())?;
    let meta = f.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    Read::by_ref(&mut f).take(MAX_FILE_BYTES + 1).read_to_end(&mut out).map_err(|e| e.to_string())?;
    if out.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {} MiB", MAX_FILE_BYTES >> 20));
    }
    Ok(out)
}

/// Where a policy is: its root folder and the root file's name in it.
#[derive(Clone, Debug)]
pub struct PolicyPath {
    pub dir: PathBuf,
    pub file: String,
}

/// Resolves the PATH argument: a root `.seg` file, or a folder holding `main.seg`.
pub fn policy_path(arg: &Path) -> Result<PolicyPath, String> {
    let meta = fs::metadata(arg).map_err(|e| format!("cannot read `{}`: {e}", arg.display()))?;
    let (dir, file) = if meta.is_dir() {
        (arg.to_path_buf(), "main.seg".to_string())
    } else {
        let dir = arg.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        let file =
            arg.file_name().and_then(|f| f.to_str()).ok_or_else(|| format!("`{}` is not a usable file name", arg.display()))?.to_string();
        (dir, file)
    };
    Ok(PolicyPath { dir, file })
}

/// Writes `bytes` to `path` through a temporary file beside it (fsynced, with
/// `mode`, or the old file's mode when `None` and it exists) and a rename, then
/// fsyncs the folder: a reader sees the old file or the new one, never half,
/// and a crash after return keeps the new one.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    let mut f = Staged::create(path, mode)?;
    f.write_all(bytes)?;
    f.commit()
}

/// A file being written in place of `path`: a temporary file beside it until
/// [`Staged::commit`] (fsync, rename over `path`, fsync of the folder);
/// dropped uncommitted, the temporary file is removed and `path` is as it was.
/// `segc build` streams every artifact into one and commits them only once
/// every target has lowered.
pub struct Staged {
    path: PathBuf,
    tmp: PathBuf,
    file: fs::File,
    committed: bool,
}

impl Staged {
    /// Creates the temporary file (and `path`'s folder), with `mode`, or the
    /// old file's mode when `None` and it exists, else 0644.
    pub fn create(path: &Path, mode: Option<u32>) -> std::io::Result<Staged> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let dir = folder_of(path);
        fs::create_dir_all(dir)?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let prefix = format!(".{name}.segc-tmp-");
        sweep_leftovers(dir, &prefix);
        let tmp = dir.join(format!("{prefix}{}", Writer::this().next_suffix()));
        let mode = mode.or_else(|| fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o7777)).unwrap_or(0o644);
        let file = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        let staged = Staged { path: path.to_path_buf(), tmp, file, committed: false };
        staged.file.set_permissions(fs::Permissions::from_mode(mode))?;
        Ok(staged)
    }

    /// Starts writing the bytes written so far to the disk without waiting
    /// for it: [`Staged::commit`]'s fsync then has little left to wait for.
    pub fn start_writeback(&self) {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid descriptor; the call only schedules writeback.
        // Advisory: where it is unsupported, commit's fsync does the work.
        unsafe { libc::sync_file_range(self.file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    }

    /// Makes the written bytes the file at `path`, durably.
    pub fn commit(self) -> std::io::Result<()> {
        commit_all(vec![self])
    }

    fn rename_into_place(&mut self) -> std::io::Result<()> {
        fs::rename(&self.tmp, &self.path)?;
        self.committed = true;
        Ok(())
    }
}

/// Who writes a temporary file: this process (its id, and a nonce telling
/// it from an earlier process that had the same id) and a count of the
/// files it has staged. `.NAME.segc-tmp-PID-NONCE-N`.
struct Writer {
    pid: u32,
    nonce: u64,
    next: std::sync::atomic::AtomicU64,
}

impl Writer {
    fn this() -> &'static Writer {
        static THIS: std::sync::OnceLock<Writer> = std::sync::OnceLock::new();
        THIS.get_or_init(|| {
            // Random per process: the standard library seeds its hash keys
            // from the operating system's randomness.
            use std::hash::{BuildHasher, Hasher};
            let nonce = std::collections::hash_map::RandomState::new().build_hasher().finish();
            Writer { pid: std::process::id(), nonce, next: std::sync::atomic::AtomicU64::new(0) }
        })
    }

    fn next_suffix(&self) -> String {
        format!("{}-{:x}-{}", self.pid, self.nonce, self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }

    /// Whether a temporary file with this suffix (`PID-...`) may still be
    /// written to: this process's own, or another live process's.
    fn in_use(&self, suffix: &str) -> bool {
        let (pid, rest) = suffix.split_once('-').unwrap_or((suffix, ""));
        let Some(pid) = pid.parse::<u32>().ok().filter(|&p| p > 0 && p <= i32::MAX as u32) else { return false };
        if pid == self.pid {
            return rest.split('-').next() == Some(format!("{:x}", self.nonce).as_str());
        }
        // SAFETY: signal 0 only asks whether the process exists; pid > 0, so
        // never a process group.
        let r = unsafe { libc::kill(pid as i32, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
}

/// Removes the temporary files for one name that a writer killed halfway
/// left (a dead process's, or an earlier process's that had this one's id):
/// they would otherwise stay, and one could take the name a new write needs.
/// Best effort: what cannot be listed or removed is left.
fn sweep_leftovers(dir: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(suffix) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else { continue };
        if !Writer::this().in_use(suffix) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// The folder a file is in (`.` for a bare name).
fn folder_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Commits several staged files: every one's bytes to the disk first, then
/// the renames, each on a thread of its own when there are several (ext4
/// frees a replaced file's blocks inside the rename: 3-5 ms for 20 MB), then
/// one fsync per folder. On an error, the files not renamed are removed;
/// those renamed stay (a build's manifest, written after, still names the
/// old hashes, so the mix shows).
pub fn commit_all(mut files: Vec<Staged>) -> std::io::Result<()> {
    for f in &files {
        f.file.sync_all()?;
    }
    let mut folders: Vec<PathBuf> = Vec::new();
    for f in &files {
        if !folders.iter().any(|d| d == folder_of(&f.path)) {
            folders.push(folder_of(&f.path).to_path_buf());
        }
    }
    if let [one] = files.as_mut_slice() {
        one.rename_into_place()?;
    } else {
        let renamed: Vec<std::io::Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = files.into_iter().map(|mut f| s.spawn(move || f.rename_into_place())).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
        });
        renamed.into_iter().collect::<std::io::Result<()>>()?;
    }
    for d in folders {
        if let Ok(d) = fs::File::open(d) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

impl Write for Staged {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.file.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("segc-fsio-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let d = scratch("fifo");
        let p = d.join("main.seg");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let l = FsLoader::new(&d).unwrap();
        assert_eq!(l.read("main.seg"), Err(LoadError::Io("not a regular file".into())));
    }

    #[test]
    fn a_symlink_out_of_the_root_is_refused() {
        let d = scratch("escape");
        std::os::unix::fs::symlink("/etc/hostname", d.join("x.seg")).unwrap();
        assert_eq!(FsLoader::new(&d).unwrap().read("x.seg"), Err(LoadError::OutsideRoot));
    }

    #[test]
    fn atomic_write_replaces_and_keeps_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let d = scratch("atomic");
        let p = d.join("f");
        write_atomically(&p, b"one", Some(0o600)).unwrap();
        write_atomically(&p, b"two", None).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1, "no temporary file left behind");
    }

    #[test]
    fn a_staged_file_dropped_uncommitted_leaves_the_old_one() {
        let d = scratch("staged");
        let p = d.join("f");
        write_atomically(&p, b"old", None).unwrap();
        let mut f = Staged::create(&p, None).unwrap();
        f.write_all(b"half of the new").unwrap();
        assert_eq!(fs::read_dir(&d).unwrap().count(), 2, "the new bytes go to a temporary file");
        drop(f);
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1, "the temporary file is removed");
        let mut f = Staged::create(&p, None).unwrap();
        f.write_all(b"new").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
    }

    #[test]
    fn a_commit_that_cannot_rename_fails_and_leaves_no_temporary_file() {
        let d = scratch("commit");
        let (good, blocked) = (d.join("good"), d.join("blocked"));
        // A non-empty folder where a file should go: its rename fails.
        fs::create_dir_all(blocked.join("inside")).unwrap();
        let mut a = Staged::create(&good, None).unwrap();
        a.write_all(b"a").unwrap();
        let mut b = Staged::create(&blocked, None).unwrap();
        b.write_all(b"b").unwrap();
        assert!(commit_all(vec![a, b]).is_err());
        let mut left: Vec<String> = fs::read_dir(&d).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, ["blocked", "good"], "no temporary file left");
        assert!(blocked.join("inside").is_dir(), "the folder in the way is untouched");
    }

    /// A build killed halfway leaves its temporary files; the process id in
    /// their names comes round again. Neither may stop a later write, and
    /// the dead process's leftovers are cleared; a live writer's are not.
    #[test]
    fn a_dead_writers_leftovers_neither_block_nor_stay() {
        let d = scratch("leftovers");
        let path = d.join("nsg.json");
        fs::write(&path, b"old").unwrap();
        // What killed builds left: one of an earlier process that had this
        // process's id, one of a process that is gone.
        let ours = d.join(format!(".nsg.json.segc-tmp-{}", std::process::id()));
        let dead = d.join(".nsg.json.segc-tmp-4194304-7");
        // A live process's (pid 1): a concurrent writer, left alone.
        let live = d.join(".nsg.json.segc-tmp-1-0");
        for f in [&ours, &dead, &live] {
            fs::write(f, b"half").unwrap();
        }
        write_atomically(&path, b"new", None).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert!(!dead.exists(), "a dead writer's temporary file is removed");
        assert!(live.exists(), "a live writer's temporary file is left");
        let mut left: Vec<String> = fs::read_dir(&d).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert!(!ours.exists(), "an earlier process's with this one's id is removed");
        assert_eq!(left, [".nsg.json.segc-tmp-1-0", "nsg.json"]);
    }
}
