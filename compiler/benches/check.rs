//! `cargo bench -p segc-compiler --bench check`: times `check` end to end (parse,
//! resolve, check, PCI checks, hygiene, asserts) on generated policies, and
//! prints the median of several runs.

use std::time::{Duration, Instant};

use segc_compiler::{compile_str, ir::Date, Options};

#[path = "support/generate.rs"]
mod support;
use support::generate;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn bench(zones: usize, flows: usize, runs: usize) {
    let src = generate(zones, flows);
    let opts = Options { today: Date::parse("2026-11-28") };
    let mut times = Vec::new();
    let mut diags = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let c = compile_str(&src, &opts);
        times.push(t.elapsed());
        diags = c.diagnostics.len();
        assert!(!c.has_errors(), "the generated policy is valid: {:?}", c.diagnostics.iter().find(|d| d.is_error()));
    }
    println!(
        "check {zones:>6} zones {flows:>7} flows ({:>5.1} MiB source, {diags} warnings): median {:>8.1} ms over {runs} runs",
        src.len() as f64 / (1 << 20) as f64,
        median(times).as_secs_f64() * 1e3
    );
}

#[path = "../../perf/gate.rs"]
mod gate;

/// The perf gate's figure: `check` of 1000 zones / 20000 flows over a
/// yardstick of the same kind of work, in this process.
fn gate() -> bool {
    let src = generate(1_000, 20_000);
    let opts = Options { today: Date::parse("2026-11-28") };
    // The yardstick: work of the same kind as a compile (hash maps, sorting,
    // allocation), in the same process and build.
    let yardstick = || {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut v: Vec<u64> = (0..1_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            })
            .collect();
        let m: std::collections::HashMap<u64, usize> = v.iter().enumerate().map(|(i, k)| (*k, i)).collect();
        v.sort_unstable();
        assert_eq!(m.len(), v.len());
    };
    let time = |f: &dyn Fn()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64()
    };
    // Interleaved rounds, each ratio within one round, the median over the
    // rounds: a slow second of a shared host moves both sides of a ratio.
    const ROUNDS: usize = 11;
    let rounds: Vec<(f64, f64)> =
        (0..ROUNDS).map(|_| (time(&|| assert!(!compile_str(&src, &opts).has_errors())), time(&yardstick))).collect();
    let median = |f: &dyn Fn(&(f64, f64)) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratio = median(&|r| r.0 / r.1);
    println!(
        "check 1000x20000 {:.1} ms, yardstick (1M hash-map inserts, 1M sorted) {:.1} ms, medians of {ROUNDS} rounds",
        median(&|r| r.0) * 1e3,
        median(&|r| r.1) * 1e3
    );
    gate::judge(&[("check_1000x20000", ratio)])
}

fn main() {
    if std::env::args().any(|a| a == "--gate") {
        std::process::exit(if gate() { 0 } else { 1 });
    }
    // `cargo test --benches` runs this binary with `--bench` absent: keep it quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    if quick {
        bench(100, 2_000, 1);
        return;
    }
    bench(1_000, 20_000, 7);
    bench(10_000, 100_000, 3);
}
