//! The files of a log: `segments/<first seq>.jsonl` (`.jsonl.zst` once
//! compressed), read whole only by `events` and `verify`; appends read just
//! the first line (the segment's day) and the last (the chain's tip).

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::{io, Error, Event};

/// A segment: the sequence number of its first event, its path, compressed.
pub type Segment = (u64, PathBuf, bool);

/// Segment files, oldest first.
pub fn list(dir: &Path) -> Result<Vec<Segment>, Error> {
    let seg = dir.join("segments");
    let mut v = Vec::new();
    let entries = match fs::read_dir(&seg) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(v),
        Err(e) => return Err(Error::Io("list segments".into(), e)),
    };
    for e in entries {
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

pub fn read(path: &Path, zst: bool) -> Result<String, Error> {
    let raw = io(path.display().to_string(), fs::read(path))?;
    let bytes = if zst { io(path.display().to_string(), zstd::stream::decode_all(&raw[..]))? } else { raw };
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The first event of a plain segment (its day decides rotation).
pub fn first(path: &Path) -> Option<Event> {
    let f = File::open(path).ok()?;
    let line = BufReader::new(f).lines().next()?.ok()?;
    serde_json::from_str(&line).ok()
}

/// The newest event of a plain segment, reading backwards from its end only
/// as far as the last line; a torn last line (a crash mid-write, never
/// acknowledged) is cut off first.
pub fn tail(path: &Path) -> Result<Option<Event>, Error> {
    let mut f = io("open the segment", OpenOptions::new().read(true).write(true).open(path))?;
    let len = io("stat the segment", f.metadata())?.len();
    let mut chunk = 4096u64;
    loop {
        let start = len.saturating_sub(chunk);
        io("read the segment", f.seek(SeekFrom::Start(start)))?;
        let mut buf = Vec::with_capacity((len - start) as usize);
        io("read the segment", (&mut f).take(len - start).read_to_end(&mut buf))?;
        // Where complete lines end: after the last newline.
        let keep = buf.iter().rposition(|&b| b == b'\n').map(|i| i + 1);
        if keep.is_none() && start > 0 {
            chunk *= 4;
            continue;
        }
        let keep = keep.unwrap_or(0);
        if keep < buf.len() {
            io("repair the segment", f.set_len(start + keep as u64))?;
            io("repair the segment", f.sync_all())?;
        }
        let lines = &buf[..keep];
        let body = lines.strip_suffix(b"\n").unwrap_or(lines);
        if body.is_empty() {
            if start == 0 {
                return Ok(None);
            }
            chunk *= 4;
            continue;
        }
        match body.iter().rposition(|&b| b == b'\n') {
            Some(i) => return parse_last(&body[i + 1..], path),
            None if start == 0 => return parse_last(body, path),
            None => chunk *= 4,
        }
    }
}

fn parse_last(line: &[u8], path: &Path) -> Result<Option<Event>, Error> {
    serde_json::from_slice(line).map(Some).map_err(|e| Error::Corrupt(format!("the last event of {} is not valid: {e}", path.display())))
}
