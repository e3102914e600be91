//! Logs of the first format kept their key in the folder (`KEY`) and had no
//! per-event MACs. Such a log still verifies (with a warning: its key is in
//! the folder, so verification proves nothing against whoever can write it),
//! but nothing is appended to it until `segc audit migrate` converts it,
//! once, by the operator's decision: never automatically, since an attacker
//! can make any folder look like a log of the first format.
//!
//! Migration verifies the chain and `HEAD` with the old key (a log that does
//! not verify is refused), gives every event its MAC under the new key
//! (segment by segment, each rewritten atomically), authenticates `ANCHOR` and
//! `HEAD` anew, removes `KEY`, and records an `audit.migrate` event. A second
//! `audit.migrate` in one log means it was downgraded and migrated again:
//! `verify` refuses that. A `KEY` in a folder whose events carry MACs was
//! planted: it is never read, and `verify` reports it.

use std::fs;

use crate::{io, mac, segments, Error, Event, Kind, Log, Mark, GENESIS};

/// The old key, when the folder holds a log of the first format: a `KEY`
/// file, and no event with a MAC.
pub fn legacy_key(log: &Log) -> Result<Option<Vec<u8>>, Error> {
    let Ok(bytes) = fs::read(log.dir.join("KEY")) else { return Ok(None) };
    let newest = match segments::list(&log.dir)?.last() {
        Some((_, path, false)) => segments::tail(path)?,
        Some((_, path, true)) => segments::read(path, true)?.lines().last().and_then(|l| serde_json::from_str::<Event>(l).ok()),
        None => None,
    };
    if newest.is_some_and(|e| !e.mac.is_empty()) {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&bytes).trim().as_bytes().to_vec()))
}

/// Verifies a log of the first format with its old key; `Ok(events)`.
pub fn verify(log: &Log, key: &[u8]) -> Result<u64, Error> {
    let events = log.events()?;
    check_legacy(log, key, &events)?;
    Ok(events.len() as u64)
}

pub fn run(log: &Log, legacy_key: &[u8]) -> Result<u64, Error> {
    let legacy_key_path = log.dir.join("KEY");
    let events = log.events()?;
    check_legacy(log, legacy_key, &events)?;
    if events.iter().any(|e| e.kind == Kind::Migrate.as_str()) {
        return Err(Error::Corrupt(format!(
            "{} holds a `KEY` although the log was migrated before: someone downgraded it; not migrated again",
            log.dir.display()
        )));
    }
    for (_, path, zst) in segments::list(&log.dir)? {
        let text = segments::read(&path, zst)?;
        let mut out = String::with_capacity(text.len() + 80 * text.lines().count());
        for line in text.lines() {
            let mut e: Event = serde_json::from_str(line).map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))?;
            e.mac = mac::tag(&log.key, &mac::event(e.seq, &e.hash));
            out.push_str(&serde_json::to_string(&e).map_err(|e| Error::Corrupt(e.to_string()))?);
            out.push('\n');
        }
        let bytes = if zst { io("compress", zstd::stream::encode_all(out.as_bytes(), 19))? } else { out.into_bytes() };
        io("rewrite a segment", segc_fsio::write_atomically(&path, &bytes, Some(0o644)))?;
    }
    if let Some(a) = log.read_mark("ANCHOR") {
        let mac = mac::tag(&log.key, &mac::anchor(a.seq, &a.hash));
        log.write_mark("ANCHOR", &Mark { mac, ..a })?;
    }
    let last = events.last().map(|e| (e.seq, e.hash.clone()));
    if let Some((seq, hash)) = &last {
        log.write_mark("HEAD", &Mark { seq: *seq, hash: hash.clone(), mac: mac::tag(&log.key, &mac::head(*seq, hash)) })?;
    }
    io("remove the old key", fs::remove_file(&legacy_key_path))?;
    let data = serde_json::json!({
        "legacy_events": events.len(),
        "legacy_head": last.map(|(s, h)| serde_json::json!({"seq": s, "hash": h})),
        "key": log.source.to_string(),
    });
    log.append_locked(Kind::Migrate, data, crate::now())?;
    Ok(events.len() as u64)
}

/// The first format's rules: the chain, and `HEAD` under the old key.
fn check_legacy(log: &Log, key: &[u8], events: &[Event]) -> Result<(), Error> {
    let refuse =
        |why: String| Error::Corrupt(format!("the log of the first format in {} does not verify with its key ({why})", log.dir.display()));
    let (mut seq, mut prev) = log.read_mark("ANCHOR").map_or((0, GENESIS.to_string()), |a| (a.seq, a.hash));
    for e in events {
        if e.seq != seq + 1 || e.prev != prev || crate::event_hash(e.seq, e.ts, &e.kind, &e.actor, &e.data, &e.prev) != e.hash {
            return Err(refuse(format!("event {} breaks the chain", e.seq)));
        }
        seq = e.seq;
        prev = e.hash.clone();
    }
    match log.read_mark("HEAD") {
        Some(h) if mac::check(key, &mac::legacy_head(h.seq, &h.hash), &h.mac) && h.seq <= seq && h.seq + 1 >= seq => Ok(()),
        None if events.is_empty() => Ok(()),
        _ => Err(refuse("HEAD does not match".into())),
    }
}
