//! The per-CPU flow cache decides and counts as the full path would: the same
//! packets through a filter with the cache and one without
//! (`F_NO_FLOW_CACHE`) get the same verdicts, global counters and per-pair
//! traffic; a cached connection expires on its timeout; a SYN back on a
//! reply's tuple is never taken for a reply. (The connection-table model in
//! conntrack.rs runs with the cache on as well.)

mod common;
mod craft;

use craft::*;
use segc_compiler::lower::bpf;
use segc_compiler::{compile_str, Options};
use segc_loader::{Filter, XDP_DROP, XDP_PASS};
use segc_runtime_bpf as rt;

const POLICY: &str = "zone c {\n cidrs = [10.1.0.0/24]\n scope = connected\n}\nzone s {\n cidrs = [10.2.0.0/24]\n scope = connected\n}\n\
                      flow c -> s on tcp/443, udp/53\n";

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().expect("address")
}

fn filter(flags: u32) -> Filter {
    let c = compile_str(POLICY, &Options::default());
    assert!(!c.has_errors(), "{:?}", c.diagnostics.first());
    let mut f = Filter::load_for_test_runs().expect("the object loads");
    f.install(&bpf::tables(&c.model)).expect("install");
    f.set_options(flags, 1).expect("config");
    f
}

fn counters(f: &Filter) -> Vec<(u64, u64)> {
    let arr: aya::maps::PerCpuArray<&aya::maps::MapData, rt::Counter> =
        aya::maps::PerCpuArray::try_from(f.ebpf.map(rt::names::COUNTERS).expect("counters")).expect("per-CPU array");
    (0..rt::CNT_MAX).map(|i| arr.get(&i, 0).expect("read").iter().fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes))).collect()
}

#[test]
fn the_cache_decides_and_counts_as_the_full_path() {
    if !common::require_root("flow cache parity") {
        return;
    }
    let (c, s) = (ip("10.1.0.5"), ip("10.2.0.9"));
    let tcp = |src, dst, sport, dport, flags| frame(src, dst, &L4::Tcp { sport, dport, flags });
    let udp = |src, dst, sport, dport| frame(src, dst, &L4::Udp { sport, dport });
    // (frame, times sent in a row): each kind of packet the cache answers,
    // and the ones that must take the full path between them.
    let steps: Vec<(Vec<u8>, u32)> = vec![
        (tcp(s, c, 443, 40000, SYN | ACK), 20), // no connection yet: denied, cached as such
        (tcp(c, s, 40000, 443, SYN), 1),        // opens: the cached "no" no longer holds
        (tcp(s, c, 443, 40000, SYN | ACK), 20), // the reply, then from the cache
        (tcp(c, s, 40000, 443, ACK), 50),       // established
        (tcp(s, c, 443, 40000, SYN), 20),       // a SYN back on the reply's tuple: never a reply
        (tcp(c, s, 40001, 444, SYN), 50),       // denied by the policy
        (tcp(c, s, 40002, 443, RST | ACK), 50), // allowed, opens nothing
        (udp(c, s, 5353, 53), 30),              // opens
        (udp(s, c, 53, 5353), 30),              // the reply
        (tcp(c, s, 40000, 443, FIN | ACK), 5),  // closes: full path each time
        (tcp(s, c, 443, 40000, ACK), 10),
    ];
    let cached = filter(0);
    let full = filter(rt::F_NO_FLOW_CACHE);
    for (i, (fr, n)) in steps.iter().enumerate() {
        let a = cached.run_xdp(rt::names::XDP, fr, *n).expect("run").0;
        let b = full.run_xdp(rt::names::XDP, fr, *n).expect("run").0;
        assert_eq!(a, b, "step {i}: the cache decides otherwise than the full path");
    }
    // Spot checks against what the policy says, so both cannot be wrong alike.
    assert_eq!(cached.run_xdp(rt::names::XDP, &steps[3].0, 1).expect("run").0, XDP_PASS);
    assert_eq!(cached.run_xdp(rt::names::XDP, &steps[4].0, 1).expect("run").0, XDP_DROP);
    assert_eq!(cached.run_xdp(rt::names::XDP, &steps[5].0, 1).expect("run").0, XDP_DROP);
    assert_eq!(full.run_xdp(rt::names::XDP, &steps[3].0, 1).expect("run").0, XDP_PASS);
    assert_eq!(full.run_xdp(rt::names::XDP, &steps[4].0, 1).expect("run").0, XDP_DROP);
    assert_eq!(full.run_xdp(rt::names::XDP, &steps[5].0, 1).expect("run").0, XDP_DROP);
    let (ca, cb) = (counters(&cached), counters(&full));
    assert_eq!(ca, cb, "counters (packets, bytes) by index");
    assert!(ca[rt::CNT_ESTABLISHED as usize].0 >= 100 && ca[rt::CNT_DENY as usize].0 >= 90, "{ca:?}");
    let (mut cached, mut full) = (cached, full);
    let mut pa = cached.pair_traffic().expect("pairs");
    let mut pb = full.pair_traffic().expect("pairs");
    pa.sort();
    pb.sort();
    assert_eq!(pa, pb, "per-pair traffic");
}

#[test]
fn a_cached_connection_expires_on_its_timeout() {
    if !common::require_root("flow cache expiry") {
        return;
    }
    let mut f = filter(0);
    let mut timeouts = rt::DEFAULT_TIMEOUTS;
    timeouts[rt::TO_UDP] = 1;
    timeouts[rt::TO_UDP_REPLIED] = 1;
    f.set_link_options(&[], timeouts).expect("timeouts");
    let (c, s) = (ip("10.1.0.5"), ip("10.2.0.9"));
    let query = frame(c, s, &L4::Udp { sport: 5353, dport: 53 });
    let answer = frame(s, c, &L4::Udp { sport: 53, dport: 5353 });
    assert_eq!(f.run_xdp(rt::names::XDP, &query, 1).expect("run").0, XDP_PASS);
    assert_eq!(f.run_xdp(rt::names::XDP, &answer, 100).expect("run").0, XDP_PASS, "the answer, from the cache after the first");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(f.run_xdp(rt::names::XDP, &answer, 1).expect("run").0, XDP_DROP, "the connection expired: an answer is no longer one");
    assert_eq!(f.run_xdp(rt::names::XDP, &answer, 100).expect("run").0, XDP_DROP, "and stays denied");
}
