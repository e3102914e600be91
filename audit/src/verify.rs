//! Verification: the whole chain, every event's MAC, the anchor and `HEAD`;
//! and checkpoints, which prove the log still holds everything up to them.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::{event_hash, mac, segments, Error, Event, Log, GENESIS};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    Modified,
    Removed,
    Reordered,
    Truncated,
    Unreadable,
    /// No events at all: deleted whole, or never written.
    Empty,
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

/// A position in the chain, authenticated, taken out of the log (printed by
/// `segc audit checkpoint`, sent with every SIEM export): one JSON line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Checkpoint {
    /// Always 1: what tells a checkpoint line from other lines of a file.
    pub segc_checkpoint: u32,
    pub seq: u64,
    pub hash: String,
    /// When it was taken.
    pub ts: u64,
    pub mac: String,
}

impl Checkpoint {
    /// The newest checkpoint in `text`: the last line holding one (a SIEM
    /// export's lines may carry it after a syslog or CEF prefix).
    pub fn newest_in(text: &str) -> Option<Checkpoint> {
        text.lines().rev().find_map(|l| {
            let at = l.find("{\"segc_checkpoint\"")?;
            serde_json::from_str::<Checkpoint>(&l[at..]).ok().filter(|c| c.segc_checkpoint == 1)
        })
    }

    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Log {
    /// Checks the whole chain, every MAC, the anchor and the head. `Ok(n)`
    /// with the number of events, or the first problem.
    pub fn verify(&self) -> Result<u64, Problem> {
        let _lock = self.lock(libc::LOCK_SH).map_err(|e| Problem::at(0, "LOCK", 0, ProblemKind::Unreadable, e.to_string()))?;
        if let Some(old) = &self.legacy {
            return crate::migrate::verify(self, old).map_err(|e| Problem::at(0, "", 0, ProblemKind::Modified, e.to_string()));
        }
        self.verify_locked().map(|(n, _, _)| n)
    }

    /// The chain's tip now, authenticated.
    pub fn checkpoint(&self) -> Result<Checkpoint, Error> {
        let _lock = self.lock(libc::LOCK_SH)?;
        let (_, seq, hash) =
            self.verify_locked().map_err(|p| Error::Corrupt(format!("no checkpoint of a log that does not verify: {}", p.message)))?;
        let ts = crate::now();
        Ok(Checkpoint { segc_checkpoint: 1, seq, hash: hash.clone(), ts, mac: mac::tag(&self.key, &mac::checkpoint(seq, &hash, ts)) })
    }

    /// Verifies the log, then that it still holds the event the checkpoint
    /// names (or that retention retired it behind the anchor).
    pub fn verify_checkpoint(&self, cp: &Checkpoint) -> Result<u64, Problem> {
        let here = |kind, msg: String| Problem::at(cp.seq, "checkpoint", 0, kind, msg);
        if !mac::check(&self.key, &mac::checkpoint(cp.seq, &cp.hash, cp.ts), &cp.mac) {
            return Err(here(ProblemKind::Modified, "the checkpoint is not authentic (wrong MAC, or another key)".into()));
        }
        let _lock = self.lock(libc::LOCK_SH).map_err(|e| here(ProblemKind::Unreadable, e.to_string()))?;
        if self.legacy.is_some() {
            return Err(here(
                ProblemKind::Modified,
                "the log is of the first format, which never held a checkpoint: it was downgraded and rewritten".into(),
            ));
        }
        let anchor = self.read_mark("ANCHOR");
        let n = match self.verify_locked() {
            Ok((n, _, _)) => n,
            Err(p) if p.kind == ProblemKind::Empty => {
                return Err(here(
                    ProblemKind::Truncated,
                    format!("the log holds no events, but the checkpoint names event {}: it was deleted", cp.seq),
                ))
            }
            Err(p) => return Err(p),
        };
        if anchor.as_ref().is_some_and(|a| a.seq >= cp.seq) {
            return Ok(n); // retired by retention, behind an authentic anchor
        }
        let events = self.events().map_err(|e| here(ProblemKind::Unreadable, e.to_string()))?;
        let last = events.last().map_or(0, |e| e.seq);
        match events.iter().find(|e| e.seq == cp.seq) {
            Some(e) if e.hash == cp.hash => Ok(n),
            Some(_) => {
                Err(here(ProblemKind::Modified, format!("event {} is not the one the checkpoint names: the log was rewritten", cp.seq)))
            }
            None => Err(here(
                ProblemKind::Truncated,
                format!("the log ends at event {last} but the checkpoint names event {}: newer events were removed", cp.seq),
            )),
        }
    }

    /// `(events, last seq, last hash)`.
    fn verify_locked(&self) -> Result<(u64, u64, String), Problem> {
        if self.dir.join("KEY").exists() {
            return Err(Problem::at(
                0,
                "KEY",
                0,
                ProblemKind::Modified,
                "a key file `KEY` was planted in the log folder (the log's key lives elsewhere and its events carry MACs)".into(),
            ));
        }
        let segs = segments::list(&self.dir).map_err(|e| Problem::at(0, "", 0, ProblemKind::Unreadable, e.to_string()))?;
        let anchor = self.read_mark("ANCHOR");
        if let Some(a) = &anchor {
            if !mac::check(&self.key, &mac::anchor(a.seq, &a.hash), &a.mac) {
                return Err(Problem::at(a.seq, "ANCHOR", 0, ProblemKind::Modified, "ANCHOR is not authentic".into()));
            }
        }
        let (mut seq, mut prev) = anchor.as_ref().map_or((0, GENESIS.to_string()), |a| (a.seq, a.hash.clone()));
        // Every line first, so that a gap can be told from a reordering.
        let mut lines: Vec<(String, usize, Result<Event, String>)> = Vec::new();
        for (_, path, zst) in &segs {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let text = segments::read(path, *zst).map_err(|e| Problem::at(seq + 1, &name, 0, ProblemKind::Unreadable, e.to_string()))?;
            for (i, line) in text.lines().enumerate() {
                lines.push((name.clone(), i + 1, serde_json::from_str::<Event>(line).map_err(|e| e.to_string())));
            }
        }
        let present: HashSet<u64> = lines.iter().filter_map(|(_, _, e)| e.as_ref().ok().map(|e| e.seq)).collect();
        let mut count = 0;
        let mut migrated = false;
        let mut by_seq: HashMap<u64, String> = HashMap::new();
        for (name, line, parsed) in &lines {
            let at = |kind, msg: String| Problem::at(seq + 1, name, *line, kind, msg);
            let e = parsed.as_ref().map_err(|err| at(ProblemKind::Modified, format!("not a valid event: {err}")))?;
            self.check_event(e, seq, &prev, &present, migrated).map_err(|(kind, msg)| at(kind, msg))?;
            migrated |= e.kind == crate::Kind::Migrate.as_str();
            seq = e.seq;
            prev = e.hash.clone();
            by_seq.insert(e.seq, e.hash.clone());
            count += 1;
        }
        self.check_head(anchor.as_ref(), count, seq, prev, &by_seq)
    }

    /// One event against the chain so far: its place, hash, link and MAC,
    /// and no second migration.
    fn check_event(&self, e: &Event, seq: u64, prev: &str, present: &HashSet<u64>, migrated: bool) -> Result<(), (ProblemKind, String)> {
        if e.seq <= seq {
            return Err((ProblemKind::Reordered, format!("event {} comes after event {seq}", e.seq)));
        }
        if e.seq > seq + 1 {
            return Err(if present.contains(&(seq + 1)) {
                (ProblemKind::Reordered, format!("event {} comes before event {}", e.seq, seq + 1))
            } else {
                (ProblemKind::Removed, format!("events {} to {} are missing", seq + 1, e.seq - 1))
            });
        }
        if event_hash(e.seq, e.ts, &e.kind, &e.actor, &e.data, &e.prev) != e.hash {
            return Err((ProblemKind::Modified, format!("event {} does not match its hash", e.seq)));
        }
        if e.prev != prev {
            return Err((ProblemKind::Modified, format!("event {} does not chain to event {seq}: replaced", e.seq)));
        }
        if !mac::check(&self.key, &mac::event(e.seq, &e.hash), &e.mac) {
            let why = if e.mac.is_empty() { "carries no MAC" } else { "has a MAC that is not authentic" };
            return Err((ProblemKind::Modified, format!("event {} {why}: it was not written with the log's key", e.seq)));
        }
        if e.kind == crate::Kind::Migrate.as_str() && migrated {
            return Err((
                ProblemKind::Modified,
                format!("event {} migrates the log a second time: it was downgraded and rewritten", e.seq),
            ));
        }
        Ok(())
    }

    /// HEAD against the events read: authentic, not ahead of them, and
    /// naming one of them (or the anchor's past).
    fn check_head(
        &self,
        anchor: Option<&crate::Mark>,
        count: u64,
        seq: u64,
        prev: String,
        by_seq: &HashMap<u64, String>,
    ) -> Result<(u64, u64, String), Problem> {
        let head = self.read_mark("HEAD");
        let Some(head) = head else {
            return match (count, anchor) {
                (0, None) => {
                    Err(Problem::at(0, "", 0, ProblemKind::Empty, "the log holds no events (deleted whole, or never written)".into()))
                }
                (0, Some(_)) => Ok((0, seq, prev)),
                _ => Err(Problem::at(seq, "HEAD", 0, ProblemKind::Truncated, "HEAD is missing".into())),
            };
        };
        if !mac::check(&self.key, &mac::head(head.seq, &head.hash), &head.mac) {
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
        // HEAD may lag (a crash between an event and HEAD): every event is
        // authenticated on its own, so lag admits nothing.
        let behind_anchor = anchor.is_some_and(|a| head.seq <= a.seq);
        if !behind_anchor && by_seq.get(&head.seq) != Some(&head.hash) && !(head.seq == seq && head.hash == prev) {
            return Err(Problem::at(head.seq, "HEAD", 0, ProblemKind::Modified, format!("HEAD does not match event {}", head.seq)));
        }
        Ok((count, seq, prev))
    }
}
