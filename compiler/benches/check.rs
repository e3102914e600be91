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

fn main() {
    // `cargo test --benches` runs this binary with `--bench` absent: keep it quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    if quick {
        bench(100, 2_000, 1);
        return;
    }
    bench(1_000, 20_000, 7);
    bench(10_000, 100_000, 3);
}
