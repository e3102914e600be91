//! A policy swap is atomic: while one thread swaps between two policies
//! thousands of times, packets run through the real program continuously, and
//! every verdict is one of the two policies' verdicts for that packet, never a
//! mix. The two policies are built so that a mix (one policy's zones with the
//! other's rules) would allow what neither allows.

mod common;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use segc_compiler::ir::eval::Evaluator;
use segc_compiler::ir::Proto;
use segc_compiler::lower::bpf;
use segc_compiler::{compile_str, Options};
use segc_loader::Filter;

const P1: &str = "zone a {\n cidrs = [10.0.0.0/24, 2001:db8::/64]\n scope = connected\n}\nzone b {\n cidrs = [10.0.1.0/24, 2001:db8:0:1::/64]\n scope = connected\n}\nflow a -> b on tcp/80\nflow b -> a on udp/53\n";
// Same zone ids (a, b sorted by name) but the prefixes exchanged, and other
// services: P1's zones with P2's rules allow 10.0.0.x -> 10.0.1.x on tcp/443,
// which neither policy allows.
const P2: &str = "zone a {\n cidrs = [10.0.1.0/24, 2001:db8:0:1::/64]\n scope = connected\n}\nzone b {\n cidrs = [10.0.0.0/24, 2001:db8::/64]\n scope = connected\n}\nflow a -> b on tcp/443\nflow b -> a on udp/5353\n";

#[test]
fn swaps_are_atomic_under_traffic() {
    if !common::require_root("swaps_are_atomic_under_traffic") {
        return;
    }
    let m1 = compile_str(P1, &Options::default()).model;
    let m2 = compile_str(P2, &Options::default()).model;
    let (t1, t2) = (bpf::tables(&m1), bpf::tables(&m2));
    let (e1, e2) = (Evaluator::new(&m1), Evaluator::new(&m2));
    let ip = |s: &str| -> IpAddr { s.parse().expect("address") };
    let mut packets = Vec::new();
    for (x, y) in
        [("10.0.0.5", "10.0.1.7"), ("10.0.1.7", "10.0.0.5"), ("2001:db8::5", "2001:db8:0:1::7"), ("2001:db8:0:1::7", "2001:db8::5")]
    {
        for p in [Proto::Tcp(80), Proto::Tcp(443), Proto::Udp(53), Proto::Udp(5353), Proto::Icmp(8)] {
            packets.push((ip(x), ip(y), p));
        }
    }
    let allowed: Vec<(bool, bool)> = packets.iter().map(|&(s, d, p)| (e1.verdict(s, d, p).allow, e2.verdict(s, d, p).allow)).collect();
    // The mix would allow 10.0.0.5 -> 10.0.1.7 tcp/443: neither policy does.
    assert_eq!(allowed[1], (false, false));

    let mut filter = Filter::load_for_test_runs().expect("load");
    filter.set_options(segc_runtime_bpf::F_NO_CONNTRACK, 0).expect("config");
    filter.install(&t1).expect("install");
    let Filter { ebpf, mut maps } = filter;
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) || n < 300 {
                maps.install(if n % 2 == 0 { &t2 } else { &t1 }).expect("swap");
                n += 1;
                if n >= 20_000 {
                    break;
                }
            }
            n
        })
    };
    let mut runs = 0u64;
    let mut seen = [[false; 2]; 20];
    while !swapper.is_finished() {
        for (i, &(s, d, p)) in packets.iter().enumerate() {
            let got = segc_loader::verdict(&ebpf, s, d, p).expect("test run");
            let (a, b) = allowed[i];
            assert!(got == a || got == b, "{s} -> {d} {p}: got {got}, policies say {a} and {b}");
            seen[i][usize::from(got)] = true;
            runs += 1;
        }
        if runs > 200_000 {
            stop.store(true, Ordering::Relaxed);
        }
    }
    let swaps = swapper.join().expect("swapper");
    assert!(swaps >= 300, "{swaps} swaps");
    // Packets whose verdict differs between the policies were seen both ways.
    for (i, &(a, b)) in allowed.iter().enumerate() {
        if a != b {
            assert!(seen[i][0] && seen[i][1], "packet {i} saw only one policy");
        }
    }
    eprintln!("{swaps} swaps, {runs} packets judged during them");
}
