//! `cargo bench -p segc-loader --bench xdp` (root): ns per packet of the filter
//! against the empty XDP program in the same run, at 10 zones / 10 flows and at
//! 10000 zones / 100000 flows, and the time to swap in a 100000-flow policy;
//! then the same large policy with an untrusted `internet` zone and a blocked
//! feed of 100000 prefixes, packets from the internet (so the feed trie is
//! looked up), a feed refresh (parse, validate, swap the feed tries alone) and
//! the kernel memory of the maps.

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

/// `n` /24 prefixes in 30.0.0.0/8 and up, as a netset.
fn feed(n: u32) -> String {
    (0..n).map(|i| format!("{}.{}.{}.0/24\n", 30 + i / 65536, (i / 256) % 256, i % 256)).collect()
}

/// The large policy with the internet, a flow from it, and a blocked feed.
fn with_feed(zones: usize, flows: usize, feed_text: &str) -> segc_compiler::ir::Model {
    let mut src = policy(zones, flows);
    src.push_str("zone internet {\n cidrs = [0.0.0.0/0]\n scope = untrusted\n}\nflow internet -> z1 on tcp/443\n");
    src.push_str("feed bad {\n source = \"bad.netset\"\n max_prefixes = 1000000\n}\nblock bad\n");
    let loader = segc_compiler::source::MemoryLoader::new().with("main.seg", &src).with("bad.netset", feed_text);
    let c = segc_compiler::compile("main.seg", &loader, &Options::default()).expect("in memory");
    assert!(!c.has_errors(), "{:?}", c.diagnostics.first());
    c.model
}

fn feeds(filter: &mut Filter) {
    let (n4, n6) = (100_000u32, 0usize);
    let text = feed(n4);
    let model = with_feed(10_000, 100_000, &text);
    let t = bpf::tables(&model);
    assert_eq!((t.feeds4.len(), t.feeds6.len()), (n4 as usize, n6));
    filter.install(&t).expect("install");
    let (inet, s) = ("198.51.100.7".parse().unwrap(), "10.0.1.5".parse().unwrap());
    let hostile = "30.0.5.9".parse().unwrap();
    assert!(filter.verdict(inet, s, Proto::Tcp(443)).unwrap());
    assert!(!filter.verdict(hostile, s, Proto::Tcp(443)).unwrap(), "the feed blocks");
    let allowed = packet::frame(inet, s, Proto::Tcp(443)).unwrap();
    let denied = packet::frame(inet, s, Proto::Tcp(444)).unwrap();
    let blocked = packet::frame(hostile, s, Proto::Tcp(443)).unwrap();
    let mut fresh = allowed.clone();
    fresh[34..36].copy_from_slice(&50_000u16.to_be_bytes());
    fresh[47] = 0x14;
    let ns = |d: Duration| d.as_nanos() as f64;
    let empty = ns(per_packet(filter, names::XDP_EMPTY, &allowed, XDP_PASS));
    filter.set_options(segc_runtime_bpf::F_NO_CONNTRACK, 0).expect("config");
    let policy_only = ns(per_packet(filter, names::XDP, &allowed, XDP_PASS));
    filter.set_options(segc_runtime_bpf::F_NO_FLOW_CACHE, 0).expect("config");
    let full = [(&fresh, XDP_PASS), (&allowed, XDP_PASS), (&denied, XDP_DROP), (&blocked, XDP_DROP)]
        .map(|(f, v)| format!("+{:.0}", ns(per_packet(filter, names::XDP, f, v)) - empty));
    filter.set_options(0, 0).expect("config");
    let new = ns(per_packet(filter, names::XDP, &fresh, XDP_PASS));
    let established = ns(per_packet(filter, names::XDP, &allowed, XDP_PASS));
    let deny = ns(per_packet(filter, names::XDP, &denied, XDP_DROP));
    let feed_deny = ns(per_packet(filter, names::XDP, &blocked, XDP_DROP));
    println!(
        "  full path (flow cache off), ns over the empty program: allowed new {}, established {}, denied {}, denied by the feed {}",
        full[0], full[1], full[2], full[3]
    );
    println!(
        "xdp  10000 zones  100000 flows + feed of {n4} prefixes, packets from the internet: empty {empty:.0} ns; allowed new {new:.0} ns (+{:.0}), \
         allowed established {established:.0} ns (+{:.0}), denied {deny:.0} ns (+{:.0}), denied by the feed {feed_deny:.0} ns (+{:.0}); policy alone (conntrack off) allowed {policy_only:.0} ns (+{:.0})",
        new - empty,
        established - empty,
        deny - empty,
        feed_deny - empty,
        policy_only - empty
    );
    // A refresh as the agent does it: parse and validate the new copy, build
    // the tries, swap them alone.
    let next = feed(n4 + 1000);
    let start = std::time::Instant::now();
    let entries = segc_compiler::ir::feed::parse(segc_compiler::ir::feed::FeedFormat::Netset, next.as_bytes(), 1_000_000).expect("parses");
    let parsed = start.elapsed();
    let (_, f4, f6) = bpf::feed_tries(std::iter::once(("bad", entries.as_slice())));
    let swap = filter.maps.swap_feeds(&f4, &f6).expect("feed swap");
    let total = start.elapsed();
    println!(
        "feed refresh of {} prefixes: parse and validate {:.1} ms, tries filled and swapped {:.1} ms (flip {:.3} ms); total {:.1} ms",
        f4.len(),
        parsed.as_secs_f64() * 1e3,
        (swap.prepare + swap.flip).as_secs_f64() * 1e3,
        swap.flip.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3
    );
    let mem: Vec<String> = filter.maps.live_memory().iter().map(|(n, b)| format!("{n} {:.1} MiB", *b as f64 / 1048576.0)).collect();
    println!("kernel memory of the live maps (memlock): {}", mem.join(", "));
    let million = feed(1_000_000);
    let entries =
        segc_compiler::ir::feed::parse(segc_compiler::ir::feed::FeedFormat::Netset, million.as_bytes(), 1_000_000).expect("parses");
    let (_, f4, f6) = bpf::feed_tries(std::iter::once(("bad", entries.as_slice())));
    let swap = filter.maps.swap_feeds(&f4, &f6).expect("1M feed swap");
    let mem = filter.maps.live_memory().into_iter().find(|(n, _)| *n == names::FEEDS4).map_or(0, |(_, b)| b);
    println!(
        "feed of 1000000 prefixes: swapped in {:.0} ms; its v4 trie holds {:.1} MiB of kernel memory",
        (swap.prepare + swap.flip).as_secs_f64() * 1e3,
        mem as f64 / 1048576.0
    );
}

#[path = "../../perf/gate.rs"]
mod gate;

/// The perf gate's figures: the filter over the yardstick program (the
/// primitives every packet pays for, written apart from the filter), at 1000
/// zones and 10000 flows, for an established, an allowed-new and a denied
/// packet, with the flow cache and without. The empty program's figures are
/// printed, not gated: how much the filter costs over an empty program moved
/// by half between hosts of the same kind with the same code, where its cost
/// over the yardstick held (docs/BENCHMARKS.md). Each round measures every
/// program once, one after another; the gate takes each ratio's median over
/// the rounds, so a slow minute of a shared host moves numerator and
/// denominator alike.
fn gate(filter: &mut Filter) -> bool {
    let model = compile_str(&policy(1_000, 10_000), &Options::default()).model;
    filter.install(&bpf::tables(&model)).expect("install");
    let (c, s) = ("10.0.0.5".parse().unwrap(), "10.0.1.5".parse().unwrap());
    assert!(filter.verdict(c, s, Proto::Tcp(443)).unwrap());
    let allowed = packet::frame(c, s, Proto::Tcp(443)).unwrap();
    let denied = packet::frame(c, s, Proto::Tcp(444)).unwrap();
    let mut fresh = allowed.clone();
    fresh[34..36].copy_from_slice(&50_000u16.to_be_bytes());
    fresh[47] = 0x14;
    let once = |filter: &Filter, program: &str, frame: &[u8], verdict: u32| -> f64 {
        let (ret, d) = filter.run_xdp(program, frame, 300_000).expect("test run");
        assert_eq!(ret, verdict, "{program}: unexpected verdict");
        d.as_nanos() as f64
    };
    const ROUNDS: usize = 15;
    // Per round: empty, yardstick, established, allowed new, denied, and the
    // full path's allowed new and denied (the path a tuple's first packet takes).
    let mut rounds: Vec<[f64; 7]> = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        filter.set_options(0, 0).expect("config");
        let empty = once(filter, names::XDP_EMPTY, &allowed, XDP_PASS);
        let yard = once(filter, names::XDP_YARDSTICK, &allowed, XDP_PASS);
        let established = once(filter, names::XDP, &allowed, XDP_PASS);
        let new = once(filter, names::XDP, &fresh, XDP_PASS);
        let deny = once(filter, names::XDP, &denied, XDP_DROP);
        filter.set_options(segc_runtime_bpf::F_NO_FLOW_CACHE, 0).expect("config");
        let full_new = once(filter, names::XDP, &fresh, XDP_PASS);
        let full_deny = once(filter, names::XDP, &denied, XDP_DROP);
        rounds.push([empty, yard, established, new, deny, full_new, full_deny]);
    }
    filter.set_options(0, 0).expect("config");
    let median = |f: &dyn Fn(&[f64; 7]) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ns: Vec<f64> = (0..7).map(|i| median(&|r| r[i])).collect();
    println!(
        "xdp 1000 zones 10000 flows, medians of {ROUNDS} rounds: empty {:.0} ns, yardstick {:.0}, established {:.0}, allowed new {:.0}, denied {:.0}; \
         full path (flow cache off): allowed new {:.0}, denied {:.0}",
        ns[0], ns[1], ns[2], ns[3], ns[4], ns[5], ns[6]
    );
    let over = |i: usize, by: usize| median(&|r| r[i] / r[by]);
    println!(
        "over the empty program (not gated): yardstick {:.2}, established {:.2}, allowed new {:.2}, denied {:.2}, full path {:.2} / {:.2}",
        over(1, 0),
        over(2, 0),
        over(3, 0),
        over(4, 0),
        over(5, 0),
        over(6, 0)
    );
    gate::judge(&[
        ("xdp_established", over(2, 1)),
        ("xdp_allowed_new", over(3, 1)),
        ("xdp_denied", over(4, 1)),
        ("xdp_full_allowed_new", over(5, 1)),
        ("xdp_full_denied", over(6, 1)),
    ])
}

fn main() {
    let gate_mode = std::env::args().any(|a| a == "--gate");
    let quick = !std::env::args().any(|a| a == "--bench");
    let mut filter = match Filter::load_for_test_runs() {
        Ok(mut f) => {
            f.load_bench_programs().expect("the empty and yardstick programs load");
            f
        }
        Err(e) => {
            eprintln!("SKIPPED xdp bench: {e}");
            return;
        }
    };
    if gate_mode {
        std::process::exit(if gate(&mut filter) { 0 } else { 1 });
    }
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
        // The full path (no flow cache): a tuple's first packet.
        filter.set_options(segc_runtime_bpf::F_NO_FLOW_CACHE, 0).expect("config");
        let full_new = ns(per_packet(&filter, names::XDP, &fresh, XDP_PASS));
        let full_established = ns(per_packet(&filter, names::XDP, &allowed, XDP_PASS));
        let full_deny = ns(per_packet(&filter, names::XDP, &denied, XDP_DROP));
        filter.set_options(0, 0).expect("config");
        let new = ns(per_packet(&filter, names::XDP, &fresh, XDP_PASS));
        let established = ns(per_packet(&filter, names::XDP, &allowed, XDP_PASS));
        let deny = ns(per_packet(&filter, names::XDP, &denied, XDP_DROP));
        println!(
            "xdp {zones:>6} zones {flows:>7} flows, full path (flow cache off): allowed new {full_new:.0} ns (+{:.0}), established {full_established:.0} ns (+{:.0}), denied {full_deny:.0} ns (+{:.0})",
            full_new - empty,
            full_established - empty,
            full_deny - empty
        );
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
        // the idle slot's (the policy before last), which the kernel frees
        // after the swap, on a worker. Policies change minutes apart: a
        // second between swaps lets that finish; back to back, each swap
        // shares the cores with the freeing of the one before.
        let ms = |s: &segc_loader::Swap| (s.prepare + s.flip).as_secs_f64() * 1e3;
        let mut paused: Vec<f64> = (0..3)
            .map(|_| {
                std::thread::sleep(Duration::from_secs(1));
                ms(&filter.install(&t).expect("install"))
            })
            .collect();
        let mut back_to_back: Vec<f64> = (0..3).map(|_| ms(&filter.install(&t).expect("install"))).collect();
        paused.sort_by(f64::total_cmp);
        back_to_back.sort_by(f64::total_cmp);
        println!(
            "xdp {zones:>6} zones {flows:>7} flows: steady-state swap (both slots full, fill and flip), median of 3: {:.1} ms a second apart, {:.1} ms back to back",
            paused[1], back_to_back[1]
        );
    }
    if !quick {
        feeds(&mut filter);
    }
}
