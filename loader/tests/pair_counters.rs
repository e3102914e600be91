//! Per-zone-pair traffic is exact: each pair counts in its slot of the
//! per-CPU array, and a pair whose slot another pair holds counts in the
//! hash instead; readers add both (two colliding pairs here, by the program's
//! own slot hash).

mod common;

use segc_compiler::ir::Proto;
use segc_compiler::lower::bpf;
use segc_compiler::{compile_str, Options};
use segc_loader::{packet, Filter, XDP_DROP, XDP_PASS};
use segc_runtime_bpf as rt;

/// The program's slot for a pair (as in `count_pair`).
fn slot(sz: u32, dz: u32, verdict: u32) -> u32 {
    (sz.wrapping_mul(2_654_435_761) ^ dz.wrapping_mul(2_246_822_519) ^ verdict.wrapping_mul(3_266_489_917)) & (rt::PAIR_SLOTS - 1)
}

#[test]
fn colliding_pairs_are_both_counted_exactly() {
    if !common::require_root("pair counters") {
        return;
    }
    let n = 64u32;
    let mut src = String::new();
    for i in 0..n {
        src.push_str(&format!("zone z{i} {{\n cidrs = [10.0.{i}.0/24]\n scope = connected\n}}\n"));
    }
    src.push_str("group all = [");
    src.push_str(&(0..n).map(|i| format!("z{i}")).collect::<Vec<_>>().join(", "));
    src.push_str("]\nflow all -> all on tcp/443\n");
    let c = compile_str(&src, &Options::default());
    assert!(!c.has_errors(), "{:?}", c.diagnostics.first());
    let id = |i: u32| c.model.zone_id(&format!("z{i}")).expect("zone").0 + 1;
    // Two allowed pairs that share a slot.
    let mut seen = std::collections::BTreeMap::new();
    let mut pair = None;
    'find: for a in 0..n {
        for b in 0..n {
            if let Some(&(c0, d0)) = seen.get(&slot(id(a), id(b), 0)) {
                pair = Some(((c0, d0), (a, b)));
                break 'find;
            }
            seen.insert(slot(id(a), id(b), 0), (a, b));
        }
    }
    let ((a, b), (c2, d2)) = pair.expect("4096 pairs in 8192 slots collide somewhere");
    let mut f = Filter::load_for_test_runs().expect("the object loads");
    f.install(&bpf::tables(&c.model)).expect("install");
    f.set_options(rt::F_NO_CONNTRACK, 0).expect("config");
    let addr = |i: u32| -> std::net::IpAddr { format!("10.0.{i}.7").parse().expect("ip") };
    let first = packet::frame(addr(a), addr(b), Proto::Tcp(443)).expect("frame");
    let second = packet::frame(addr(c2), addr(d2), Proto::Tcp(443)).expect("frame");
    let denied = packet::frame(addr(a), addr(b), Proto::Tcp(444)).expect("frame");
    assert_eq!(f.run_xdp(rt::names::XDP, &first, 1000).expect("run").0, XDP_PASS);
    assert_eq!(f.run_xdp(rt::names::XDP, &second, 700).expect("run").0, XDP_PASS);
    assert_eq!(f.run_xdp(rt::names::XDP, &denied, 300).expect("run").0, XDP_DROP);
    let t = f.pair_traffic().expect("traffic");
    let count = |s: u32, d: u32, v: u32| t.iter().find(|p| (p.src_zone, p.dst_zone, p.verdict) == (id(s), id(d), v)).map(|p| p.packets);
    assert_eq!(count(a, b, 0), Some(1000), "{t:?}");
    assert_eq!(count(c2, d2, 0), Some(700), "the pair whose slot was taken: {t:?}");
    assert_eq!(count(a, b, 1), Some(300), "{t:?}");
    assert_eq!(t.iter().map(|p| p.packets).sum::<u64>(), 2000, "nothing else: {t:?}");
}
