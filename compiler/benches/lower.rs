//! `cargo bench -p segc-compiler --bench lower`: times lowering alone, each
//! target by itself and all six together (as `segc build` runs them, one
//! worker per core), on `xtask/scripts/bench_aerleon.py`'s kind of policy:
//! every zone bound to every cloud and cluster target, one `tcp` port a flow.
//! The bytes go to a sink that counts them, so no file system is timed.
//! `-- --bench gcp` times one target alone (for `perf record`).
//! `-- --bench --runs=1 gcp` under `valgrind --tool=cachegrind` counts its
//! instructions instead.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use segc_compiler::lower::{lower_into, Sink, Target};
use segc_compiler::{compile_str, ir::Date, Options};

/// The allocator `segc` uses (lowering allocates millions of small strings).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Counts what it is given and keeps nothing.
#[derive(Default)]
struct Count(AtomicU64);

impl Sink for Count {
    type Put = ();

    fn put(&self, _path: &str, body: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
        struct Counter<'a>(&'a AtomicU64);
        impl Write for Counter<'_> {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.fetch_add(b.len() as u64, Ordering::Relaxed);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        body(&mut Counter(&self.0))
    }
}

/// The policy `bench_aerleon.py` builds, with this file's own generator.
fn policy(zones: usize, flows: usize) -> String {
    let mut s = String::from("policy \"bench\" {}\n");
    for i in 0..zones {
        s.push_str(&format!(
            "zone z{i} {{\n  cidrs = [10.{}.{}.0/24]\n  scope = connected\n  aws.security_group = \"z{i}\"\n  azure.nsg = \"z{i}\"\n  gcp.tag = \"z{i}\"\n  k8s.namespace = \"z{i}\"\n}}\n",
            i / 256,
            i % 256
        ));
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..flows {
        let (a, b, p) = (next() % zones as u64, next() % zones as u64, 1000 + next() % 20_000);
        s.push_str(&format!("flow z{a} -> z{b} on tcp/{p}\n"));
    }
    s
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (zones, flows, mut runs) = if quick { (50, 500, 1) } else { (1_000, 20_000, 15) };
    // `--runs=1` under `valgrind --tool=cachegrind` counts instructions, which
    // this VM's varying speed does not blur.
    if let Some(n) = std::env::args().find_map(|a| a.strip_prefix("--runs=").and_then(|n| n.parse().ok())) {
        runs = n;
    }
    let c = compile_str(&policy(zones, flows), &Options { today: Date::parse("2026-11-28") });
    assert!(!c.has_errors(), "{:?}", c.diagnostics.iter().find(|d| d.is_error()));
    let model = &c.model;
    let six: BTreeSet<Target> = [Target::Bpf, Target::Nft, Target::Aws, Target::Azure, Target::Gcp, Target::K8s].into();
    let mut sets: Vec<(String, BTreeSet<Target>)> = six.iter().map(|t| (t.name().to_string(), BTreeSet::from([*t]))).collect();
    sets.push(("all six".into(), six));
    // `-- --bench gcp azure` times only those (for a profiler).
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    sets.retain(|(name, _)| only.is_empty() || only.contains(name));
    println!("lowering, {zones} zones / {flows} flows, every zone bound to every target ({runs} runs):");
    for (name, targets) in &sets {
        let sink = Count::default();
        let times: Vec<Duration> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                assert!(lower_into(model, targets, &sink).is_ok(), "{name} lowers");
                t.elapsed()
            })
            .collect();
        let bytes = sink.0.load(Ordering::Relaxed) / runs as u64;
        let fastest = times.iter().min().copied().unwrap_or_default();
        println!(
            "  {name:<8} median {:>6.1} ms, fastest {:>6.1} ms  {:>5.1} MB",
            median(times).as_secs_f64() * 1e3,
            fastest.as_secs_f64() * 1e3,
            bytes as f64 / 1e6
        );
    }
}
