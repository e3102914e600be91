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

/// The perf gate's figure: `check` of 1000 zones / 20000 flows over SHA-256
/// of 16 MiB, each the median of five runs in this process.
fn gate() -> bool {
    let src = generate(1_000, 20_000);
    let opts = Options { today: Date::parse("2026-11-28") };
    let data = vec![0x5au8; 16 << 20];
    let time = |f: &dyn Fn()| {
        median(
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed()
                })
                .collect(),
        )
    };
    let check = time(&|| assert!(!compile_str(&src, &opts).has_errors()));
    let hash = time(&|| assert_eq!(segc_compiler::sha256::hex(&data).len(), 64));
    println!("check 1000x20000 {:.1} ms, sha256 16 MiB {:.1} ms", check.as_secs_f64() * 1e3, hash.as_secs_f64() * 1e3);
    gate::judge(&[("check_1000x20000", check.as_secs_f64() / hash.as_secs_f64())])
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
