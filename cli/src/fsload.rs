//! Reading a policy tree from disk: the [`Loader`] the compiler asks for, with the
//! checks only the file system can make (symlinks leading outside the root
//! folder, files that are not regular files, absurd sizes).

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use segc_compiler::source::{LoadError, Loader};

/// Policy files larger than this are refused rather than read.
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

pub struct FsLoader {
    root: PathBuf,
}

impl FsLoader {
    /// A loader for the folder `root`, which must exist.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        Ok(FsLoader { root: fs::canonicalize(root)? })
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
        let meta = fs::metadata(&canon).map_err(|e| LoadError::Io(e.to_string()))?;
        if !meta.is_file() {
            return Err(LoadError::Io("not a regular file".into()));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(LoadError::Io(format!("larger than {} MiB", MAX_FILE_BYTES >> 20)));
        }
        fs::read(&canon).map_err(|e| LoadError::Io(e.to_string()))
    }
}

/// Where a policy is: its root folder and the root file's name in it.
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
