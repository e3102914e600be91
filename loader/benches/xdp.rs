//! `cargo bench -p segc-loader --bench xdp` (root): ns per packet of the filter
//! against the empty XDP program in the same run, at 10 zones / 10 flows and at
//! 10000 zones / 100000 flows, and the time to swap in a 100000-flow policy.

use std::time::Duration;

use segc_compiler::ir::Proto;
use segc_compiler::lower::bpf;
use segc_compiler::{compile_str, Options};
use segc_loader::{packet, Filter, XDP_DROP, XDP_PASS};
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

/// The time per packet of `program` for `frame`, which must get `verdict`.
fn per_packet(filter: &Filter, program: &str, frame: &[u8], verdict: u32) -> Duration {
    // Median of several batches of 1e6 runs; the kernel reports the mean per run.
    let mut v: Vec<Duration> = (0..7)
        .map(|_| {
            let (ret, d) = filter.run_xdp(program, frame, 1_000_000).expect("test run");
            assert_eq!(ret, verdict, "{program}: unexpected verdict");
            d
        })
        .collect();
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
    let sizes: &[(usize, usize)] = if quick { &[(10, 10)] } else { &[(10, 10), (10_000, 100_000)] };
    let (c, s) = ("10.0.0.5".parse().unwrap(), "10.0.1.5".parse().unwrap());
    let allowed = packet::frame(c, s, Proto::Tcp(443)).unwrap();
    let denied = packet::frame(c, s, Proto::Tcp(444)).unwrap();
    // An allowed packet that opens no connection (RST+ACK, from a source port
    // no connection uses: `allowed` opens one from port 40000): the path of a new connection's first packet, both
    // table lookups and the policy, less the insert.
    let mut fresh = allowed.clone();
    fresh[34..36].copy_from_slice(&50_000u16.to_be_bytes());
    fresh[47] = 0x14;
    for &(zones, flows) in sizes {
        let model = compile_str(&policy(zones, flows), &Options::default()).model;
        let t = bpf::tables(&model);
        let swap = filter.install(&t).expect("install");
        assert!(filter.verdict(c, s, Proto::Tcp(443)).unwrap());
        let ns = |d: Duration| d.as_nanos() as f64;
        let empty = ns(per_packet(&filter, names::XDP_EMPTY, &allowed, XDP_PASS));
        filter.set_options(segc_runtime_bpf::F_NO_CONNTRACK, 0).expect("config");
        let policy_only = ns(per_packet(&filter, names::XDP, &allowed, XDP_PASS));
        let policy_only_deny = ns(per_packet(&filter, names::XDP, &denied, XDP_DROP));
        filter.set_options(0, 0).expect("config");
        let new = ns(per_packet(&filter, names::XDP, &fresh, XDP_PASS));
        let established = ns(per_packet(&filter, names::XDP, &allowed, XDP_PASS));
        let deny = ns(per_packet(&filter, names::XDP, &denied, XDP_DROP));
        println!(
            "xdp {zones:>6} zones {flows:>7} flows ({} entries): empty {empty:.0} ns; filter, conntrack on: allowed new {new:.0} ns (+{:.0}), \
             allowed established {established:.0} ns (+{:.0}), denied {deny:.0} ns (+{:.0}); policy alone (conntrack off) allowed {policy_only:.0} ns (+{:.0}), denied {policy_only_deny:.0} ns (+{:.0}); \
             swap prepared in {:.1} ms, flipped in {:.3} ms",
            swap.entries,
            new - empty,
            established - empty,
            deny - empty,
            policy_only - empty,
            policy_only_deny - empty,
            swap.prepare.as_secs_f64() * 1e3,
            swap.flip.as_secs_f64() * 1e3
        );
        // The agent's steady state: every swap fills fresh maps and replaces
        // the idle slot's (the policy before last), which the kernel frees.
        let again = (0..3).map(|_| filter.install(&t).expect("install")).last().expect("swaps");
        println!(
            "xdp {zones:>6} zones {flows:>7} flows: steady-state swap prepared in {:.1} ms, flipped in {:.3} ms",
            again.prepare.as_secs_f64() * 1e3,
            again.flip.as_secs_f64() * 1e3
        );
    }
}
