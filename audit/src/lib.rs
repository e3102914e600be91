//! The audit log: every build, deploy, swap, drift finding and denied-packet
//! sample is an event in an append-only, hash-chained, authenticated log (PCI
//! DSS 10.2, 10.3, 10.5.1). It holds against someone who can write its folder
//! but does not hold the key:
//!
//! - Each event carries the SHA-256 of the previous one, and its own
//!   HMAC-SHA256 over its sequence number and hash: an event added, replaced,
//!   removed or reordered without the key fails `verify`.
//! - The key lives outside the folder (`key`): a file with its owner and mode
//!   checked, the kernel keyring, or a systemd credential.
//! - `HEAD` (authenticated) names the newest event, so cutting the newest
//!   events off is found; `checkpoint`s taken out of the folder (the SIEM
//!   export) prove the log still holds everything up to them, so a log deleted
//!   whole, or cut back and given an old `HEAD`, is found too.
//! - Appends hold an exclusive `flock` (verify a shared one), so concurrent
//!   processes never interleave; an event is fsynced before `append` returns,
//!   so a crash loses no acknowledged event; a torn last line is cut off on
//!   the next append. An append reads only the first and the last line of the
//!   open segment.
//! - Segments rotate by size and by day; segments older than 90 days are
//!   compressed (zstd), older than 365 days removed, and an authenticated
//!   `ANCHOR` records where the chain now starts.

mod export;
pub mod key;
mod mac;
mod migrate;
mod retention;
mod segments;
mod verify;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use export::{cef, cef_checkpoint, rfc3339, rfc5424, rfc5424_checkpoint};
pub use key::KeySource;
pub use verify::{Checkpoint, Problem, ProblemKind};

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
    /// The agent attached its filter again (an interface came back).
    Reattach,
    /// A legacy log (key in its folder, no per-event MACs) was migrated.
    Migrate,
    /// `segc probes --run`: what the probes observed.
    ProbeRun,
    /// A policy revision published to a fleet.
    FleetPublish,
    /// An earlier revision published again.
    FleetRollback,
    /// A controller became the fleet's leader.
    FleetLeader,
    /// The leader marked an agent whose heartbeats stopped.
    FleetAgentSilent,
    /// The agent read a feed again and swapped its tries.
    FeedRefresh,
    /// A feed read again was refused (fetch, parse, size, shrink): the last
    /// good copy stays.
    FeedRefused,
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
        Kind::Reattach,
        Kind::Migrate,
        Kind::ProbeRun,
        Kind::FleetPublish,
        Kind::FleetRollback,
        Kind::FleetLeader,
        Kind::FleetAgentSilent,
        Kind::FeedRefresh,
        Kind::FeedRefused,
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
            Kind::Reattach => "agent.reattach",
            Kind::Migrate => "audit.migrate",
            Kind::ProbeRun => "probes.run",
            Kind::FleetPublish => "fleet.publish",
            Kind::FleetRollback => "fleet.rollback",
            Kind::FleetLeader => "fleet.leader",
            Kind::FleetAgentSilent => "fleet.agent_silent",
            Kind::FeedRefresh => "feed.refresh",
            Kind::FeedRefused => "feed.refused",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// Whether a SIEM should see the event as a warning (denied traffic, drift).
    pub fn is_warning(self) -> bool {
        matches!(
            self,
            Kind::DenySample
                | Kind::Drift
                | Kind::PolicyRefused
                | Kind::DeployFailed
                | Kind::Reattach
                | Kind::FleetAgentSilent
                | Kind::FeedRefused
        )
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
    #[error("audit key: {0}")]
    Key(String),
}

pub(crate) fn io<T>(what: impl Into<String>, r: std::io::Result<T>) -> Result<T, Error> {
    r.map_err(|e| Error::Io(what.into(), e))
}

/// One event. `hash` covers every field but `mac`, `prev` included; `mac`
/// authenticates `seq` and `hash`.
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
    /// HMAC-SHA256 of `seq` and `hash`; empty only in logs of the first
    /// format, before migration.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
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

pub fn event_hash(seq: u64, ts: u64, kind: &str, actor: &str, data: &Value, prev: &str) -> String {
    let canon = serde_json::to_vec(&Hashed { seq, ts, kind, actor, data, prev }).unwrap_or_default();
    segc_compiler::sha256::hex(&canon)
}

/// `HEAD` and `ANCHOR`: a position in the chain, authenticated.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Mark {
    pub seq: u64,
    pub hash: String,
    #[serde(default)]
    pub mac: String,
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
    source: KeySource,
    segment_limit: u64,
    /// The key of a log of the first format (`KEY` in the folder, no
    /// per-event MACs), until `segc audit migrate` converts it.
    legacy: Option<Vec<u8>>,
}

/// An `flock` held until dropped.
pub(crate) struct Lock(File);

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: unlocking a descriptor we own.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

pub(crate) fn fsync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn day(ts: u64) -> u64 {
    ts / 86_400
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, with the key the
    /// environment names (see [`KeySource::from_env`]).
    pub fn open(dir: &Path) -> Result<Log, Error> {
        Log::open_with(dir, KeySource::from_env()?)
    }

    /// Opens (creating if needed) the log in `dir` with the key from `source`.
    pub fn open_with(dir: &Path, source: KeySource) -> Result<Log, Error> {
        io("create the log folder", fs::create_dir_all(dir.join("segments")))?;
        let mut log = Log { dir: dir.to_path_buf(), key: Vec::new(), source, segment_limit: MAX_SEGMENT_BYTES, legacy: None };
        let _lock = log.lock(libc::LOCK_EX)?;
        log.key = log.source.load(dir)?;
        log.legacy = migrate::legacy_key(&log)?;
        drop(_lock);
        Ok(log)
    }

    /// Whether the log is of the first format (see [`Log::migrate`]).
    pub fn is_legacy(&self) -> bool {
        self.legacy.is_some()
    }

    /// Converts a log of the first format, once: see the `migrate` module.
    pub fn migrate(&mut self) -> Result<u64, Error> {
        let _lock = self.lock(libc::LOCK_EX)?;
        let Some(old) = self.legacy.take() else {
            return Err(Error::Corrupt("the log is not of the first format: nothing to migrate".into()));
        };
        match migrate::run(self, &old) {
            Ok(n) => Ok(n),
            Err(e) => {
                self.legacy = Some(old);
                Err(e)
            }
        }
    }

    /// Opens an existing log to read or verify it: nothing is created, and a
    /// missing folder is an error.
    pub fn open_existing(dir: &Path) -> Result<Log, Error> {
        if !dir.join("segments").is_dir() {
            return Err(Error::Corrupt(format!("there is no audit log in {} (deleted, or never written)", dir.display())));
        }
        Log::open(dir)
    }

    /// Rotates segments at this size instead of 8 MiB.
    pub fn with_segment_limit(mut self, bytes: u64) -> Log {
        self.segment_limit = bytes;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn key_source(&self) -> &KeySource {
        &self.source
    }

    pub(crate) fn lock(&self, mode: libc::c_int) -> Result<Lock, Error> {
        let f = io("open LOCK", OpenOptions::new().create(true).truncate(false).write(true).open(self.dir.join("LOCK")))?;
        // SAFETY: flock on a descriptor we own; blocks until the other holders are done.
        if unsafe { libc::flock(f.as_raw_fd(), mode) } != 0 {
            return Err(Error::Io("lock".into(), std::io::Error::last_os_error()));
        }
        Ok(Lock(f))
    }

    pub(crate) fn read_mark(&self, name: &str) -> Option<Mark> {
        fs::read(self.dir.join(name)).ok().and_then(|b| serde_json::from_slice(&b).ok())
    }

    pub(crate) fn write_mark(&self, name: &str, mark: &Mark) -> Result<(), Error> {
        let bytes = serde_json::to_vec(mark).map_err(|e| Error::Corrupt(e.to_string()))?;
        io(format!("write {name}"), segc_fsio::write_atomically(&self.dir.join(name), &bytes, Some(0o644)))
    }

    /// Appends one event and returns it once it is on disk.
    pub fn append(&self, kind: Kind, data: Value) -> Result<Event, Error> {
        self.append_at(kind, data, now())
    }

    /// [`Log::append`] with the event's time given: for events that carry
    /// their own (the kernel's deny samples) and for tests of rotation and
    /// retention. Times must not go backwards.
    pub fn append_at(&self, kind: Kind, data: Value, ts: u64) -> Result<Event, Error> {
        let _lock = self.lock(libc::LOCK_EX)?;
        self.append_locked(kind, data, ts)
    }

    pub(crate) fn append_locked(&self, kind: Kind, data: Value, ts: u64) -> Result<Event, Error> {
        if self.legacy.is_some() {
            return Err(Error::Corrupt(format!(
                "the audit log in {} is of the first format (its key in the folder, no per-event MACs): check it with `segc audit verify`, then run `segc audit migrate` once",
                self.dir.display()
            )));
        }
        let segs = segments::list(&self.dir)?;
        let (mut prev_seq, mut prev_hash) = match self.read_mark("ANCHOR") {
            Some(a) => (a.seq, a.hash),
            None => (0, GENESIS.to_string()),
        };
        let mut current: Option<PathBuf> = None;
        if let Some((_, path, zst)) = segs.last() {
            let last = if *zst {
                segments::read(path, true)?.lines().last().and_then(|l| serde_json::from_str::<Event>(l).ok())
            } else {
                let last = segments::tail(path)?;
                let size = fs::metadata(path).map_or(0, |m| m.len());
                let first_ts = segments::first(path).map_or(ts, |e| e.ts);
                if last.is_none() || (size < self.segment_limit && day(first_ts) == day(ts)) {
                    current = Some(path.clone());
                }
                last
            };
            if let Some(e) = last {
                (prev_seq, prev_hash) = (e.seq, e.hash);
            }
        }
        let seq = prev_seq + 1;
        let actor = actor();
        let hash = event_hash(seq, ts, kind.as_str(), &actor, &data, &prev_hash);
        let mac = mac::tag(&self.key, &mac::event(seq, &hash));
        let event = Event { seq, ts, kind: kind.to_string(), actor, data, prev: prev_hash, hash, mac };
        // Compression and retention only change when a segment closes: do that
        // work on rotation, not on every append.
        let rotated = current.is_none();
        let path = current.unwrap_or_else(|| self.dir.join("segments").join(format!("{seq:020}.jsonl")));
        let mut line = serde_json::to_vec(&event).map_err(|e| Error::Corrupt(e.to_string()))?;
        line.push(b'\n');
        let mut f = io("open the segment", OpenOptions::new().create(true).append(true).open(&path))?;
        io("write the event", f.write_all(&line))?;
        io("fsync the event", f.sync_data())?;
        if rotated {
            fsync_dir(&self.dir.join("segments"));
        }
        self.write_mark("HEAD", &Mark { seq, hash: event.hash.clone(), mac: mac::tag(&self.key, &mac::head(seq, &event.hash)) })?;
        if rotated {
            retention::maintain(self, ts)?;
        }
        Ok(event)
    }

    /// Every event, oldest first (does not verify).
    pub fn events(&self) -> Result<Vec<Event>, Error> {
        let mut v = Vec::new();
        for (_, path, zst) in segments::list(&self.dir)? {
            for l in segments::read(&path, zst)?.lines() {
                if let Ok(e) = serde_json::from_str::<Event>(l) {
                    v.push(e);
                }
            }
        }
        Ok(v)
    }
}
