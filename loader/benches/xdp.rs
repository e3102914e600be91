//! `cargo bench -p segc-loader --bench xdp` (root): ns per packet of the filter
//! against the empty XDP program in the same run, at 10 zones / 10 flows and at
//! 10000 zones / 100000 flows, and the time to swap in a 100000-flow policy.

use std::time::Duration;

use segc_compiler::ir::Proto;
use segc_compiler::lower::bpf;
use segc_compiler::{compile_str, Options};
use segc_loader::{packet, Filter};
use segc_runtime_bpf::names;

fn policy(zones: usize, flows: usize) -> String {
    let mut s = String::new();
    for i in 0..zones {
        s.push_str(&format!("zone z{i} {{\n cidrs = [10.{}.{}.0/24]\n scope = connected\n}}\n", i / 256, i % 256));
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for f in 0..flows {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (a, b) = (x as usize % zones, (x >> 20) as usize % zones);
        let port = 1000 + (x >> 40) % 20_000;
        if f == 0 {
            // The measured packet's flow: z0 -> z1 on tcp/443.
            s.push_str("flow z0 -> z1 on tcp/443\n");
        }
        s.push_str(&format!("flow z{a} -> z{b} on tcp/{port}\n"));
    }
    s
}

fn per_packet(filter: &Filter, program: &str, frame: &[u8]) -> Duration {
    // Median of several batches of 1e6 runs; the kernel reports the mean per run.
    let mut v: Vec<Duration> = (0..7).map(|_| filter.run_xdp(program, frame, 1_000_000).expect("test run").1).collect();
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let mut filter = match Filter::load() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("SKIPPED xdp bench: {e}");
            return;
        }
    };
    filter.set_options(segc_runtime_bpf::F_NO_CONNTRACK, 0).expect("config");
    let sizes: &[(usize, usize)] = if quick { &[(10, 10)] } else { &[(10, 10), (10_000, 100_000)] };
    let allowed = packet::frame("10.0.0.5".parse().unwrap(), "10.0.1.5".parse().unwrap(), Proto::Tcp(443)).unwrap();
    let denied = packet::frame("10.0.0.5".parse().unwrap(), "10.0.1.5".parse().unwrap(), Proto::Tcp(444)).unwrap();
    for &(zones, flows) in sizes {
        let model = compile_str(&policy(zones, flows), &Options::default()).model;
        let t = bpf::tables(&model);
        let swap = filter.install(&t).expect("install");
        assert!(filter.verdict("10.0.0.5".parse().unwrap(), "10.0.1.5".parse().unwrap(), Proto::Tcp(443)).unwrap());
        let empty = per_packet(&filter, names::XDP_EMPTY, &allowed);
        let allow = per_packet(&filter, names::XDP, &allowed);
        let deny = per_packet(&filter, names::XDP, &denied);
        let ns = |d: Duration| d.as_nanos() as f64;
        println!(
            "xdp {zones:>6} zones {flows:>7} flows ({} entries): empty {:.0} ns, filter allow {:.0} ns (+{:.0}), deny {:.0} ns (+{:.0}); swap prepared in {:.1} ms, flipped in {:.3} ms",
            swap.entries,
            ns(empty),
            ns(allow),
            ns(allow) - ns(empty),
            ns(deny),
            ns(deny) - ns(empty),
            swap.prepare.as_secs_f64() * 1e3,
            swap.flip.as_secs_f64() * 1e3
        );
        // The agent's steady state: both buffers full, so each swap first
        // removes the idle buffer's old entries (the policy before last).
        let again = (0..2).map(|_| filter.install(&t).expect("install")).last().expect("two swaps");
        println!(
            "xdp {zones:>6} zones {flows:>7} flows: steady-state swap (idle buffer full) prepared in {:.1} ms, flipped in {:.3} ms",
            again.prepare.as_secs_f64() * 1e3,
            again.flip.as_secs_f64() * 1e3
        );
    }
}
