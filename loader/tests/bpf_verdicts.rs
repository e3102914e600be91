//! The real eBPF program, run with BPF_PROG_TEST_RUN, gives the reference
//! evaluator's verdict on random policies and packets, IPv4 and IPv6.

mod common;
#[path = "../../compiler/tests/common/mod.rs"]
mod gen;

use proptest::prelude::*;
use segc_compiler::ir::eval::Evaluator;
use segc_compiler::lower::bpf;
use segc_compiler::{compile_str, Options};
use segc_loader::Filter;

#[test]
fn bpf_agrees_with_the_reference() {
    if !common::require_root("bpf_agrees_with_the_reference") {
        return;
    }
    let mut filter = Filter::load_for_test_runs().expect("the object loads");
    filter.set_options(segc_runtime_bpf::F_NO_CONNTRACK, 0).expect("config");
    let filter = std::cell::RefCell::new(filter);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 150, ..ProptestConfig::default() });
    runner
        .run(&(gen::policy(), prop::collection::vec((gen::ip(), gen::ip(), gen::proto()), 1..60)), |(pol, packets)| {
            let c = compile_str(&pol.text(), &Options::default());
            let ev = Evaluator::new(&c.model);
            // Through the bundle, as `segc deploy` will do.
            let t = bpf::parse_bundle(&bpf::bundle(&bpf::tables(&c.model))).expect("bundle");
            let mut filter = filter.borrow_mut();
            filter.install(&t).expect("install");
            for (s, d, p) in packets {
                let want = ev.verdict(s, d, p).allow;
                let got = if s.is_ipv4() == d.is_ipv4() { filter.verdict(s, d, p).expect("test run") } else { false };
                prop_assert_eq!(got, want, "{} -> {} {}\n{}", s, d, p, pol.text());
            }
            Ok(())
        })
        .expect("bpf verdicts equal reference verdicts");
}

#[test]
fn non_ip_passes_and_fragments_drop() {
    if !common::require_root("non_ip_passes_and_fragments_drop") {
        return;
    }
    let filter = Filter::load_for_test_runs().expect("the object loads");
    // An ARP frame passes even with no policy installed.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    arp.extend_from_slice(&[0u8; 28]);
    assert_eq!(filter.run_xdp(segc_runtime_bpf::names::XDP, &arp, 1).expect("run").0, segc_loader::XDP_PASS);
    // A fragment of an otherwise allowed-looking packet drops.
    let mut frag =
        segc_loader::packet::frame("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), segc_compiler::ir::Proto::Tcp(80)).unwrap();
    frag[14 + 6] = 0x20; // MF
    assert_eq!(filter.run_xdp(segc_runtime_bpf::names::XDP, &frag, 1).expect("run").0, segc_loader::XDP_DROP);
    // A truncated IPv4 header drops.
    let short = &segc_loader::packet::frame("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), segc_compiler::ir::Proto::Udp(53))
        .unwrap()[..30];
    assert_eq!(filter.run_xdp(segc_runtime_bpf::names::XDP, short, 1).expect("run").0, segc_loader::XDP_DROP);
}

/// With connection tracking on, a reply to an allowed connection passes though
/// the policy has no flow back.
#[test]
fn replies_to_allowed_connections_pass() {
    if !common::require_root("replies_to_allowed_connections_pass") {
        return;
    }
    let mut filter = Filter::load_for_test_runs().expect("the object loads");
    let c = compile_str(
        "zone a {\n cidrs = [10.0.1.0/24]\n scope = connected\n}\nzone b {\n cidrs = [10.0.2.0/24]\n scope = connected\n}\nflow a -> b on tcp/443\n",
        &Options::default(),
    );
    filter.install(&bpf::tables(&c.model)).expect("install");
    let (a, b) = ("10.0.1.5".parse().unwrap(), "10.0.2.9".parse().unwrap());
    let syn = segc_loader::packet::frame(a, b, segc_compiler::ir::Proto::Tcp(443)).unwrap();
    // The reply: b:443 -> a:40000, SYN+ACK.
    let mut reply = segc_loader::packet::frame(b, a, segc_compiler::ir::Proto::Tcp(40000)).unwrap();
    reply[34..36].copy_from_slice(&443u16.to_be_bytes());
    reply[47] = 0x12;
    // The same tuple with SYN alone: a new connection from b, never a reply.
    let mut reverse_syn = reply.clone();
    reverse_syn[47] = 0x02;
    let xdp = segc_runtime_bpf::names::XDP;
    assert_eq!(filter.run_xdp(xdp, &reply, 1).unwrap().0, segc_loader::XDP_DROP, "no connection yet");
    assert_eq!(filter.run_xdp(xdp, &syn, 1).unwrap().0, segc_loader::XDP_PASS);
    assert_eq!(filter.run_xdp(xdp, &reply, 1).unwrap().0, segc_loader::XDP_PASS, "the reply passes");
    assert_eq!(filter.run_xdp(xdp, &reverse_syn, 1).unwrap().0, segc_loader::XDP_DROP, "a SYN back is not a reply");
}

/// What each way of loading puts in the kernel: enforcing loads every
/// program it may attach and never the benches' (a kernel refusing a bench
/// program must not stop the filter); test runs load the XDP programs only.
#[test]
fn enforcing_loads_no_bench_program_and_test_runs_no_tc_program() {
    if !common::require_root("enforcing_loads_no_bench_program_and_test_runs_no_tc_program") {
        return;
    }
    use segc_runtime_bpf::names;
    let loaded = |f: &Filter, name: &str| f.ebpf.program(name).unwrap_or_else(|| panic!("{name} in the object")).fd().is_ok();
    let tc = [names::TC, names::TC_INGRESS, names::TC_L3_INGRESS, names::TC_L3_EGRESS];
    let bench = [names::XDP_EMPTY, names::XDP_YARDSTICK];

    let f = Filter::load().expect("the object loads");
    for name in [names::XDP, names::XDP_CLOCK].into_iter().chain(tc) {
        assert!(loaded(&f, name), "enforcing loads {name}");
    }
    for name in bench {
        assert!(!loaded(&f, name), "enforcing never loads {name}");
    }

    let mut f = Filter::load_for_test_runs().expect("the object loads");
    assert!(loaded(&f, names::XDP) && loaded(&f, names::XDP_CLOCK), "test runs load the XDP programs");
    for name in tc.into_iter().chain(bench) {
        assert!(!loaded(&f, name), "test runs do not load {name}");
    }
    f.load_bench_programs().expect("the bench programs load");
    assert!(bench.iter().all(|name| loaded(&f, name)), "the benches load theirs");
}
