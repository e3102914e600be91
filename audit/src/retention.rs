//! Retention (PCI DSS 10.5.1): closed segments older than 90 days are
//! compressed; older than 365 days removed, with an authenticated `ANCHOR`
//! naming the last removed event so the chain goes on from it.

use std::fs::{self, File};
use std::io::Write;

use crate::{fsync_dir, io, mac, segments, Error, Event, Log, Mark, COMPRESS_AFTER_DAYS, RETAIN_DAYS};

fn day(ts: u64) -> u64 {
    ts / 86_400
}

pub fn maintain(log: &Log, now: u64) -> Result<(), Error> {
    let segs = segments::list(&log.dir)?;
    let n = segs.len();
    for (i, (_, path, zst)) in segs.iter().enumerate() {
        if i + 1 == n {
            break; // the open segment
        }
        let text = segments::read(path, *zst)?;
        let Some(last) = text.lines().last().and_then(|l| serde_json::from_str::<Event>(l).ok()) else { continue };
        let age_days = day(now).saturating_sub(day(last.ts));
        if age_days > RETAIN_DAYS {
            let mac = mac::tag(&log.key, &mac::anchor(last.seq, &last.hash));
            log.write_mark("ANCHOR", &Mark { seq: last.seq, hash: last.hash.clone(), mac })?;
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
    fsync_dir(&log.dir.join("segments"));
    Ok(())
}
