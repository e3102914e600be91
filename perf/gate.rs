//! The performance gate's verdict, shared by the benches that have a
//! `--gate` mode (included with `#[path]`). Each measured figure is a ratio
//! taken within one run (the filter against a yardstick XDP program made of
//! the primitives every packet pays for, `check` against a fixed hashing
//! workload), so the gate holds across machines; it
//! fails when a ratio is more than 25 % above its committed baseline in
//! `perf/baseline.json`. `SEGC_GATE_SCALE=0.5` scales the baselines, to see
//! the gate fail.

use std::path::PathBuf;

pub const TOLERANCE: f64 = 1.25;

fn baseline_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../perf/baseline.json")
}

/// Compares each (name, ratio) with its baseline; prints one line each and
/// returns whether all hold.
pub fn judge(figures: &[(&str, f64)]) -> bool {
    let text = std::fs::read_to_string(baseline_path()).unwrap_or_else(|e| panic!("{}: {e}", baseline_path().display()));
    let base: serde_json::Value = serde_json::from_str(&text).expect("perf/baseline.json is JSON");
    let scale: f64 = std::env::var("SEGC_GATE_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let mut ok = true;
    for (name, ratio) in figures {
        let Some(b) = base[*name]["ratio"].as_f64() else {
            println!("gate {name}: ratio {ratio:.2}, no baseline (add it to perf/baseline.json)");
            ok = false;
            continue;
        };
        let limit = b * scale * TOLERANCE;
        let verdict = if *ratio <= limit { "ok" } else { "REGRESSION" };
        println!("gate {name}: ratio {ratio:.2}, baseline {:.2}, limit {limit:.2}: {verdict}", b * scale);
        ok &= *ratio <= limit;
    }
    ok
}
