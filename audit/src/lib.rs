//! The audit log: every build, deploy, swap, drift finding and denied-packet
//! sample is an event in an append-only, hash-chained log (PCI DSS 10.2, 10.3,
//! 10.5.1).
//!
//! - Each event carries the SHA-256 of the previous one, so a modified,
//!   removed or reordered event breaks the chain where it happened.
//! - `HEAD` holds the newest event's sequence number and hash, authenticated
//!   with an HMAC key kept apart from the log (`SEGC_AUDIT_KEY_FILE`), so
//!   deleting the newest events is detected too.
//! - Appends hold an exclusive `flock`, so concurrent processes never
//!   interleave; an event is fsynced before `append` returns, so a crash loses
//!   no acknowledged event; a torn last line is cut off on the next append.
//! - Segments rotate by size and by day; segments whose events are all older
//!   than 90 days are compressed (zstd); older than 365 days are removed, and
//!   `ANCHOR` records where the chain now starts.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

mod export;
pub use export::{cef, rfc3339, rfc5424};

pub const MAX_SEGMENT_BYTES: u64 = 8 << 20;
pub const COMPRESS_AFTER_DAYS: u64 = 90;
pub const RETAIN_DAYS: u64 = 365;
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What an event records. Stored as its dotted name (`deploy.apply`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Build,
    DeployPlan,
    DeployApply,
    DeployFailed,
    Undeploy,
    Swap,
    Drift,
    PolicyRefused,
    DenySample,
    AgentStart,
    AgentStop,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::Build,
        Kind::DeployPlan,
        Kind::DeployApply,
        Kind::DeployFailed,
        Kind::Undeploy,
        Kind::Swap,
        Kind::Drift,
        Kind::PolicyRefused,
        Kind::DenySample,
        Kind::AgentStart,
        Kind::AgentStop,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Build => "build",
            Kind::DeployPlan => "deploy.plan",
            Kind::DeployApply => "deploy.apply",
            Kind::DeployFailed => "deploy.failed",
            Kind::Undeploy => "undeploy",
            Kind::Swap => "swap",
            Kind::Drift => "drift",
            Kind::PolicyRefused => "policy.refused",
            Kind::DenySample => "deny.sample",
            Kind::AgentStart => "agent.start",
            Kind::AgentStop => "agent.stop",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// Whether a SIEM should see the event as a warning (denied traffic, drift).
    pub fn is_warning(self) -> bool {
        matches!(self, Kind::DenySample | Kind::Drift | Kind::PolicyRefused | Kind::DeployFailed)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("audit log {0}: {1}")]
    Io(String, std::io::Error),
    #[error("audit log: {0}")]
    Corrupt(String),
}

fn io<T>(what: impl Into<String>, r: std::io::Result<T>) -> Result<T, Error> {
    r.map_err(|e| Error::Io(what.into(), e))
}

/// One event. `hash` covers every other field, `prev` included.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub seq: u64,
    /// Seconds since the Unix epoch, UTC.
    pub ts: u64,
    pub kind: String,
    pub actor: String,
    pub data: Value,
    pub prev: String,
    pub hash: String,
}

#[derive(Serialize)]
struct Hashed<'a> {
    seq: u64,
    ts: u64,
    kind: &'a str,
    actor: &'a str,
    data: &'a Value,
    prev: &'a str,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn event_hash(seq: u64, ts: u64, kind: &str, actor: &str, data: &Value, prev: &str) -> String {
    let canon = serde_json::to_vec(&Hashed { seq, ts, kind, actor, data, prev }).unwrap_or_default();
    segc_compiler::sha256::hex(&canon)
}

fn hmac(key: &[u8], msg: &[u8]) -> String {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    hex(&outer.finalize())
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Head {
    seq: u64,
    hash: String,
    mac: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Anchor {
    /// The last removed event: the chain continues from it.
    seq: u64,
    hash: String,
}

/// Seconds since the epoch, from the one clock.
pub fn now() -> u64 {
    segc_fsio::clock::unix_now()
}

/// The user running segc, for `actor`.
pub fn actor() -> String {
    // SAFETY: getuid has no failure mode and no arguments.
    let uid = unsafe { libc::getuid() };
    std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).map_or_else(|_| format!("uid {uid}"), |u| format!("{u} (uid {uid})"))
}

/// Where the log lives: `$SEGC_AUDIT_DIR`, else `/var/lib/segc/audit` for
/// root, else `$XDG_STATE_HOME/segc/audit` (or `~/.local/state/segc/audit`).
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SEGC_AUDIT_DIR") {
        return PathBuf::from(d);
    }
    // SAFETY: geteuid has no failure mode.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/segc/audit");
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    state.join("segc/audit")
}

pub struct Log {
    dir: PathBuf,
    key: Vec<u8>,
    segment_limit: u64,
}

struct Lock(File);

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: unlocking a descriptor we own.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

fn fsync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Segment files, oldest first: (first seq, path, compressed).
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf, bool)>, Error> {
    let seg = dir.join("segments");
    let mut v = Vec::new();
    for e in io("list segments", fs::read_dir(&seg))? {
        let e = io("list segments", e)?;
        let name = e.file_name().to_string_lossy().into_owned();
        let (stem, zst) = match name.strip_suffix(".jsonl.zst") {
            Some(s) => (s.to_string(), true),
            None => match name.strip_suffix(".jsonl") {
                Some(s) => (s.to_string(), false),
                None => continue,
            },
        };
        if let Ok(n) = stem.parse::<u64>() {
            v.push((n, e.path(), zst));
        }
    }
    v.sort();
    Ok(v)
}

fn read_segment(path: &Path, zst: bool) -> Result<String, Error> {
    let raw = io(path.display().to_string(), fs::read(path))?;
    let bytes = if zst { io(path.display().to_string(), zstd::stream::decode_all(&raw[..]))? } else { raw };
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn day(ts: u64) -> u64 {
    ts / 86_400
}

impl Log {
    /// Opens (creating if needed) the log in `dir`. The HMAC key comes from
    /// `$SEGC_AUDIT_KEY_FILE`, else `dir/KEY` (created, mode 0600).
    pub fn open(dir: &Path) -> Result<Log, Error> {
        io("create the log folder", fs::create_dir_all(dir.join("segments")))?;
        let key_path = std::env::var_os("SEGC_AUDIT_KEY_FILE").map_or_else(|| dir.join("KEY"), PathBuf::from);
        if !key_path.exists() {
            let mut key = [0u8; 32];
            let mut rnd = io("read /dev/urandom", File::open("/dev/urandom"))?;
            io("read /dev/urandom", rnd.read_exact(&mut key))?;
            let mut f = io("create the key", OpenOptions::new().write(true).create_new(true).mode_0600().open(&key_path)).or_else(|e| {
                if key_path.exists() {
                    io("open the key", File::open(&key_path))
                } else {
                    Err(e)
                }
            })?;
            let _ = f.write_all(hex(&key).as_bytes());
            let _ = f.sync_all();
        }
        let key = io("read the key", fs::read(&key_path))?;
        Ok(Log { dir: dir.to_path_buf(), key, segment_limit: MAX_SEGMENT_BYTES })
    }

    /// Rotates segments at this size instead of 8 MiB.
    pub fn with_segment_limit(mut self, bytes: u64) -> Log {
        self.segment_limit = bytes;
        self
    }

    fn lock(&self) -> Result<Lock, Error> {
        let f = io("open LOCK", OpenOptions::new().create(true).truncate(false).write(true).open(self.dir.join("LOCK")))?;
        // SAFETY: flock on a descriptor we own; blocks until other writers are done.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::Io("lock".into(), std::io::Error::last_os_error()));
        }
        Ok(Lock(f))
    }

    fn anchor(&self) -> Option<Anchor> {
        fs::read(self.dir.join("ANCHOR")).ok().and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// The newest event of the current segment, after cutting off a torn tail.
    fn tail(&self, path: &Path) -> Result<Option<Event>, Error> {
        let mut f = io("open the segment", OpenOptions::new().read(true).write(true).open(path))?;
        let mut text = String::new();
        io("read the segment", f.read_to_string(&mut text))?;
        let keep = if text.ends_with('\n') || text.is_empty() { text.len() } else { text.rfind('\n').map_or(0, |i| i + 1) };
        if keep < text.len() {
            // A crash tore the last write: it was never acknowledged.
            io("repair the segment", f.set_len(keep as u64))?;
            io("repair the segment", f.sync_all())?;
        }
        let last = text[..keep].lines().last();
        match last {
            None => Ok(None),
            Some(l) => serde_json::from_str(l)
                .map(Some)
                .map_err(|e| Error::Corrupt(format!("the last event of {} is not valid: {e}", path.display()))),
        }
    }

    /// Appends one event and returns it once it is on disk.
    pub fn append(&self, kind: Kind, data: Value) -> Result<Event, Error> {
        self.append_at(kind, data, now())
    }

    /// [`Log::append`] with the event's time given: for events that carry
    /// their own (the kernel's deny samples) and for tests of rotation and
    /// retention. Times must not go backwards.
    pub fn append_at(&self, kind: Kind, data: Value, ts: u64) -> Result<Event, Error> {
        let kind = kind.as_str();
        let _lock = self.lock()?;
        let segs = segments(&self.dir)?;
        let (mut prev_seq, mut prev_hash) = match self.anchor() {
            Some(a) => (a.seq, a.hash),
            None => (0, GENESIS.to_string()),
        };
        let mut current: Option<PathBuf> = None;
        if let Some((_, path, zst)) = segs.last() {
            if *zst {
                let text = read_segment(path, true)?;
                if let Some(e) = text.lines().last().and_then(|l| serde_json::from_str::<Event>(l).ok()) {
                    (prev_seq, prev_hash) = (e.seq, e.hash);
                }
            } else {
                if let Some(e) = self.tail(path)? {
                    let size = fs::metadata(path).map_or(0, |m| m.len());
                    let first_ts = fs::File::open(path)
                        .ok()
                        .and_then(|f| BufReader::new(f).lines().next())
                        .and_then(|l| l.ok())
                        .and_then(|l| serde_json::from_str::<Event>(&l).ok())
                        .map_or(ts, |e| e.ts);
                    if size < self.segment_limit && day(first_ts) == day(ts) {
                        current = Some(path.clone());
                    }
                    (prev_seq, prev_hash) = (e.seq, e.hash);
                } else {
                    current = Some(path.clone());
                }
            }
        }
        let seq = prev_seq + 1;
        let actor = actor();
        let hash = event_hash(seq, ts, kind, &actor, &data, &prev_hash);
        let event = Event { seq, ts, kind: kind.to_string(), actor, data, prev: prev_hash, hash };
        // Compression and retention only change when a segment closes: do that
        // work on rotation, not on every append.
        let rotated = current.is_none();
        let path = current.unwrap_or_else(|| self.dir.join("segments").join(format!("{seq:020}.jsonl")));
        let mut line = serde_json::to_vec(&event).map_err(|e| Error::Corrupt(e.to_string()))?;
        line.push(b'\n');
        let mut f = io("open the segment", OpenOptions::new().create(true).append(true).open(&path))?;
        io("write the event", f.write_all(&line))?;
        io("fsync the event", f.sync_all())?;
        fsync_dir(&self.dir.join("segments"));
        self.write_head(seq, &event.hash)?;
        if rotated {
            self.maintain(ts)?;
        }
        Ok(event)
    }

    fn write_head(&self, seq: u64, hash: &str) -> Result<(), Error> {
        let mac = hmac(&self.key, format!("{seq}:{hash}").as_bytes());
        let head = serde_json::to_vec(&Head { seq, hash: hash.to_string(), mac }).map_err(|e| Error::Corrupt(e.to_string()))?;
        let tmp = self.dir.join("HEAD.tmp");
        let mut f = io("write HEAD", File::create(&tmp))?;
        io("write HEAD", f.write_all(&head))?;
        io("fsync HEAD", f.sync_all())?;
        io("replace HEAD", fs::rename(&tmp, self.dir.join("HEAD")))?;
        fsync_dir(&self.dir);
        Ok(())
    }

    /// Compresses closed segments older than 90 days and removes those older
    /// than 365, moving `ANCHOR` past them.
    fn maintain(&self, now: u64) -> Result<(), Error> {
        let segs = segments(&self.dir)?;
        let n = segs.len();
        for (i, (_, path, zst)) in segs.iter().enumerate() {
            if i + 1 == n {
                break; // the open segment
            }
            let text = read_segment(path, *zst)?;
            let Some(last) = text.lines().last().and_then(|l| serde_json::from_str::<Event>(l).ok()) else { continue };
            let age_days = day(now).saturating_sub(day(last.ts));
            if age_days > RETAIN_DAYS {
                let anchor =
                    serde_json::to_vec(&Anchor { seq: last.seq, hash: last.hash.clone() }).map_err(|e| Error::Corrupt(e.to_string()))?;
                let tmp = self.dir.join("ANCHOR.tmp");
                io("write ANCHOR", fs::write(&tmp, anchor))?;
                io("replace ANCHOR", fs::rename(&tmp, self.dir.join("ANCHOR")))?;
                io("remove an expired segment", fs::remove_file(path))?;
            } else if age_days > COMPRESS_AFTER_DAYS && !zst {
                let packed = io("compress", zstd::stream::encode_all(text.as_bytes(), 19))?;
                let target = path.with_extension("jsonl.zst");
                let mut f = io("compress", File::create(&target))?;
                io("compress", f.write_all(&packed))?;
                io("compress", f.sync_all())?;
                io("compress", fs::remove_file(path))?;
            }
        }
        fsync_dir(&self.dir.join("segments"));
        Ok(())
    }

    /// Every event, oldest first (does not verify).
    pub fn events(&self) -> Result<Vec<Event>, Error> {
        let mut v = Vec::new();
        for (_, path, zst) in segments(&self.dir)? {
            for l in read_segment(&path, zst)?.lines() {
                if let Ok(e) = serde_json::from_str::<Event>(l) {
                    v.push(e);
                }
            }
        }
        Ok(v)
    }

    /// Checks the whole chain and the head. `Ok(n)` with the number of events,
    /// or the first problem.
    pub fn verify(&self) -> Result<u64, Problem> {
        let segs = segments(&self.dir).map_err(|e| Problem::at(0, "", 0, ProblemKind::Unreadable, e.to_string()))?;
        let (mut seq, mut prev) = match self.anchor() {
            Some(a) => (a.seq, a.hash),
            None => (0, GENESIS.to_string()),
        };
        // Every line first, so that a gap can be told from a reordering.
        let mut lines: Vec<(String, usize, Result<Event, String>)> = Vec::new();
        for (_, path, zst) in &segs {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let text = read_segment(path, *zst).map_err(|e| Problem::at(seq + 1, &name, 0, ProblemKind::Unreadable, e.to_string()))?;
            for (i, line) in text.lines().enumerate() {
                lines.push((name.clone(), i + 1, serde_json::from_str::<Event>(line).map_err(|e| e.to_string())));
            }
        }
        let present: std::collections::HashSet<u64> = lines.iter().filter_map(|(_, _, e)| e.as_ref().ok().map(|e| e.seq)).collect();
        let mut count = 0;
        let mut by_seq: std::collections::HashMap<u64, String> = std::collections::HashMap::new();
        for (name, line, parsed) in &lines {
            let at = |kind, msg: String| Problem::at(seq + 1, name, *line, kind, msg);
            let e = parsed.as_ref().map_err(|err| at(ProblemKind::Modified, format!("not a valid event: {err}")))?;
            if e.seq <= seq {
                return Err(at(ProblemKind::Reordered, format!("event {} comes after event {seq}", e.seq)));
            }
            if e.seq > seq + 1 {
                let kind = if present.contains(&(seq + 1)) { ProblemKind::Reordered } else { ProblemKind::Removed };
                let msg = if kind == ProblemKind::Reordered {
                    format!("event {} comes before event {}", e.seq, seq + 1)
                } else {
                    format!("events {} to {} are missing", seq + 1, e.seq - 1)
                };
                return Err(at(kind, msg));
            }
            if event_hash(e.seq, e.ts, &e.kind, &e.actor, &e.data, &e.prev) != e.hash {
                return Err(at(ProblemKind::Modified, format!("event {} does not match its hash", e.seq)));
            }
            if e.prev != prev {
                return Err(at(ProblemKind::Modified, format!("event {} does not chain to event {seq}: replaced", e.seq)));
            }
            seq = e.seq;
            prev = e.hash.clone();
            by_seq.insert(e.seq, e.hash.clone());
            count += 1;
        }
        let head: Option<Head> = fs::read(self.dir.join("HEAD")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let Some(head) = head else {
            return if count == 0 { Ok(0) } else { Err(Problem::at(seq, "HEAD", 0, ProblemKind::Truncated, "HEAD is missing".into())) };
        };
        if hmac(&self.key, format!("{}:{}", head.seq, head.hash).as_bytes()) != head.mac {
            return Err(Problem::at(head.seq, "HEAD", 0, ProblemKind::Modified, "HEAD is not authentic".into()));
        }
        if head.seq > seq {
            return Err(Problem::at(
                seq + 1,
                "HEAD",
                0,
                ProblemKind::Truncated,
                format!("the log ends at event {seq} but HEAD names event {}: newer events were removed", head.seq),
            ));
        }
        // HEAD may lag the log by one event: a crash between writing the event and HEAD.
        if seq > head.seq + 1 || by_seq.get(&head.seq) != Some(&head.hash) {
            return Err(Problem::at(head.seq, "HEAD", 0, ProblemKind::Modified, format!("HEAD does not match event {}", head.seq)));
        }
        Ok(count)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    Modified,
    Removed,
    Reordered,
    Truncated,
    Unreadable,
}

/// The first bad event found by `verify`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub seq: u64,
    pub file: String,
    pub line: usize,
    pub kind: ProblemKind,
    pub message: String,
}

impl Problem {
    fn at(seq: u64, file: &str, line: usize, kind: ProblemKind, message: String) -> Problem {
        Problem { seq, file: file.to_string(), line, kind, message }
    }
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}
