//! The audit log's HMAC key: where it comes from, what is refused, and how
//! segc creates one. The key never lives in the log folder it protects.
//!
//! Sources, first match wins:
//! - `SEGC_AUDIT_KEY=keyring:NAME`: a `user` key in the kernel's user keyring;
//! - `SEGC_AUDIT_KEY_FILE=PATH`: a file owned by the running user or root,
//!   mode 0400 or 0600;
//! - `$CREDENTIALS_DIRECTORY/segc-audit-key`: a systemd credential;
//! - else the default file: `/etc/segc/audit.key` for root,
//!   `$XDG_CONFIG_HOME/segc/audit.key` (or `~/.config/...`) for others.
//!
//! A file or keyring key that does not exist is created with 32 random bytes,
//! atomically (a file appears whole, or not at all; creation happens under
//! the log's lock). A systemd credential is never created.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::Error;

/// Where the key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Keyring(String),
    Credential(PathBuf),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(p) => write!(f, "key file {}", p.display()),
            KeySource::Keyring(n) => write!(f, "keyring key `{n}`"),
            KeySource::Credential(p) => write!(f, "systemd credential {}", p.display()),
        }
    }
}

fn key_error(msg: String) -> Error {
    Error::Key(msg)
}

impl KeySource {
    /// The source the environment names, else the default file.
    pub fn from_env() -> Result<KeySource, Error> {
        if let Some(v) = std::env::var_os("SEGC_AUDIT_KEY") {
            let v = v.to_string_lossy().into_owned();
            return match v.strip_prefix("keyring:") {
                Some(name) if !name.is_empty() => Ok(KeySource::Keyring(name.to_string())),
                _ => Err(key_error(format!("SEGC_AUDIT_KEY=`{v}`: expected `keyring:NAME`"))),
            };
        }
        if let Some(p) = std::env::var_os("SEGC_AUDIT_KEY_FILE") {
            return Ok(KeySource::File(PathBuf::from(p)));
        }
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
            let p = Path::new(&dir).join("segc-audit-key");
            if p.exists() {
                return Ok(KeySource::Credential(p));
            }
        }
        Ok(KeySource::File(default_key_path()))
    }

    /// The key's bytes, creating the key when this source may and it is absent.
    /// `log_dir` is the folder the key protects: a key file inside it is refused.
    pub fn load(&self, log_dir: &Path) -> Result<Vec<u8>, Error> {
        match self {
            KeySource::File(p) => {
                refuse_inside(p, log_dir)?;
                if !p.exists() {
                    create_file(p)?;
                }
                read_file(p)
            }
            KeySource::Credential(p) => read_file(p),
            KeySource::Keyring(name) => keyring(name),
        }
    }
}

/// `/etc/segc/audit.key` for root; `$XDG_CONFIG_HOME/segc/audit.key` else.
pub fn default_key_path() -> PathBuf {
    // SAFETY: geteuid has no failure mode.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/etc/segc/audit.key");
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    config.join("segc/audit.key")
}

fn refuse_inside(key: &Path, log_dir: &Path) -> Result<(), Error> {
    let canon = |p: &Path| -> PathBuf {
        let parent = p.parent().and_then(|d| fs::canonicalize(d).ok());
        match (parent, p.file_name()) {
            (Some(d), Some(n)) => d.join(n),
            _ => p.to_path_buf(),
        }
    };
    let dir = fs::canonicalize(log_dir).unwrap_or_else(|_| log_dir.to_path_buf());
    if canon(key).starts_with(&dir) {
        return Err(key_error(format!(
            "the audit key {} is inside the log folder {} it protects: whoever can write the folder could sign forgeries; keep it elsewhere (SEGC_AUDIT_KEY_FILE, SEGC_AUDIT_KEY=keyring:NAME)",
            key.display(),
            log_dir.display()
        )));
    }
    Ok(())
}

/// 32 random bytes from the kernel.
fn random_key() -> Result<[u8; 32], Error> {
    let mut key = [0u8; 32];
    let mut got = 0;
    while got < key.len() {
        // SAFETY: getrandom writes at most the given length into our buffer.
        let n = unsafe { libc::getrandom(key[got..].as_mut_ptr().cast(), key.len() - got, 0) };
        if n < 0 {
            return Err(Error::Io("getrandom".into(), std::io::Error::last_os_error()));
        }
        got += n as usize;
    }
    Ok(key)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Creates the key file whole or not at all: written and fsynced under a
/// temporary name, then hard-linked into place (which fails if another
/// process got there first; then its key is used).
fn create_file(path: &Path) -> Result<(), Error> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| Error::Io(format!("create {}", dir.display()), e))?;
    let tmp = dir.join(format!(".{}.tmp-{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("key"), std::process::id()));
    let key = hex(&random_key()?);
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o400).open(&tmp)?;
        f.write_all(key.as_bytes())?;
        f.sync_all()?;
        match fs::hard_link(&tmp, path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if let Ok(d) = fs::File::open(dir) {
            d.sync_all()?;
        }
        Ok(())
    })();
    let _ = fs::remove_file(&tmp);
    result.map_err(|e| Error::Io(format!("create the audit key {}", path.display()), e))
}

/// Reads a key file after checking who owns it and who may read it.
fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    let meta = fs::metadata(path).map_err(|e| key_error(format!("cannot read the audit key {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(key_error(format!("the audit key {} is not a regular file", path.display())));
    }
    // SAFETY: geteuid has no failure mode.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Err(key_error(format!(
            "the audit key {} is owned by uid {}, not by this user (uid {me}) or root: refused",
            path.display(),
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o777;
    if mode != 0o400 && mode != 0o600 {
        return Err(key_error(format!(
            "the audit key {} has mode {mode:04o}: it must be readable by its owner only (0400 or 0600); run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    let bytes = fs::read(path).map_err(|e| key_error(format!("cannot read the audit key {}: {e}", path.display())))?;
    parse_key(&bytes).map_err(|why| key_error(format!("the audit key {}: {why}", path.display())))
}

/// A key is 64 hex digits, or at least 32 raw bytes.
fn parse_key(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let text = String::from_utf8_lossy(bytes);
    let t = text.trim();
    if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok((0..32).map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).unwrap_or(0)).collect());
    }
    if bytes.len() >= 32 {
        return Ok(bytes.to_vec());
    }
    Err(format!("{} bytes is too short: a key is 32 random bytes (64 hex digits)", bytes.len()))
}

/// The user key `name` from the kernel's user keyring, created when absent.
fn keyring(name: &str) -> Result<Vec<u8>, Error> {
    use linux_keyutils::{KeyRing, KeyRingIdentifier};
    let ring =
        KeyRing::from_special_id(KeyRingIdentifier::User, true).map_err(|e| key_error(format!("cannot open the user keyring: {e:?}")))?;
    let key = match ring.search(name) {
        Ok(k) => k,
        Err(_) => ring
            .add_key(name, &hex(&random_key()?))
            .map_err(|e| key_error(format!("cannot add key `{name}` to the user keyring: {e:?}")))?,
    };
    let bytes = key.read_to_vec().map_err(|e| key_error(format!("cannot read keyring key `{name}`: {e:?}")))?;
    parse_key(&bytes).map_err(|why| key_error(format!("keyring key `{name}`: {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_from_hex_or_raw_bytes() {
        assert_eq!(parse_key(&[b'a'; 64]).map(|k| k.len()), Ok(32));
        assert_eq!(parse_key(&[7u8; 40]).map(|k| k.len()), Ok(40));
        assert!(parse_key(b"").is_err());
        assert!(parse_key(b"short\n").is_err());
    }
}
