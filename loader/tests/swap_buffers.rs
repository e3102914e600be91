//! What the batched writes leave in the kernel: after each swap the live slot
//! of the port map holds a fresh map with exactly the live policy's entries,
//! and the idle slot the previous policy's map, with more entries than one
//! batch (8192), read back one key at a time through aya, independently of
//! the batch code.

mod common;

use std::collections::BTreeSet;

use aya::maps::{HashMap, Map, MapData};
use segc_compiler::lower::bpf;
use segc_compiler::{compile_str, Options};
use segc_loader::{Entries, Filter};

/// A buffer's exact entries: (source zone, destination zone, class, port).
type Exact = BTreeSet<(u32, u32, u8, u16)>;

/// `flows` single-port flows between 40 zones: one exact entry each.
fn policy(flows: usize, seed: u64) -> String {
    let mut s = String::new();
    for i in 0..40 {
        s.push_str(&format!("zone z{i} {{\n cidrs = [10.0.{i}.0/24]\n scope = connected\n}}\n"));
    }
    let mut x = seed;
    let mut seen = BTreeSet::new();
    while seen.len() < flows {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (a, b, port) = (x % 40, (x >> 8) % 40, 1 + (x >> 16) % 60000);
        if seen.insert((a, b, port)) {
            s.push_str(&format!("flow z{a} -> z{b} on tcp/{port}\n"));
        }
    }
    s
}

/// The entries of the port map in one slot (empty when the slot holds none).
fn port_entries(filter: &mut Filter, slot: u32) -> Exact {
    let Ok(inner) = filter.maps.live_inner(segc_runtime_bpf::names::PORTS, slot) else { return Exact::new() };
    let h: HashMap<MapData, segc_runtime_bpf::PortKey, u32> = HashMap::try_from(Map::HashMap(inner)).expect("port map");
    h.keys().map(|k| k.expect("key")).map(|k| (u32::from_be(k.src_zone), u32::from_be(k.dst_zone), k.class, u16::from_be(k.port))).collect()
}

#[test]
fn each_swap_leaves_exactly_two_policies() {
    if !common::require_root("each_swap_leaves_exactly_two_policies") {
        return;
    }
    let mut filter = Filter::load_for_test_runs().expect("the object loads");
    let mut previous: Option<(u32, Exact)> = None;
    for (round, (flows, seed)) in [(9000, 1u64), (12000, 2), (10000, 3), (20, 4), (9500, 5)].into_iter().enumerate() {
        let c = compile_str(&policy(flows, seed), &Options::default());
        assert!(!c.has_errors(), "round {round}");
        let t = bpf::tables(&c.model);
        let want = Entries::compiled(&t).exact;
        assert_eq!(want.len(), flows, "round {round}: one exact entry per flow");
        let swap = filter.install(&t).expect("install");
        let live = swap.generation & 1;
        assert_eq!(port_entries(&mut filter, live), want, "round {round}: the live slot holds the new policy, all of it");
        match &previous {
            Some((b, prev)) => assert_eq!(
                (*b, port_entries(&mut filter, live ^ 1)),
                (live ^ 1, prev.clone()),
                "round {round}: the idle slot holds the policy before"
            ),
            None => assert!(port_entries(&mut filter, live ^ 1).is_empty(), "round {round}"),
        }
        previous = Some((live, want));
    }
}
