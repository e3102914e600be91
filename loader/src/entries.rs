//! What a deployment holds, entry by entry, comparable between what was
//! compiled and what is live (drift).

use std::path::Path;

use aya::maps::lpm_trie::LpmTrie;
use aya::maps::{Map, MapData};
use segc_compiler::lower::bpf::Tables;
use segc_runtime_bpf as rt;

use crate::batch;
use crate::policy::PolicyMaps;
use crate::Error;

/// The entries of a policy as the runtime stores them, comparable between
/// what was compiled and what is live.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entries {
    /// (family, address bytes, prefix length, zone id + 1)
    pub zones: std::collections::BTreeSet<(u8, [u8; 16], u8, u32)>,
    /// (source zone, destination zone, class, port)
    pub exact: std::collections::BTreeSet<(u32, u32, u8, u16)>,
    /// (source zone, destination zone, class, first port, port bits)
    pub ranges: std::collections::BTreeSet<(u32, u32, u8, u16, u8)>,
}

impl Entries {
    /// What `install` writes for these tables.
    pub fn compiled(t: &Tables) -> Entries {
        let placed = segc_compiler::lower::bpf::placement(&t.rules);
        Entries {
            zones: t.zones4.iter().map(|z| (4, z.addr, z.len, z.zone)).chain(t.zones6.iter().map(|z| (6, z.addr, z.len, z.zone))).collect(),
            exact: placed.exact.iter().copied().collect(),
            ranges: placed.ranges.iter().map(|r| (r.src_zone, r.dst_zone, r.class, r.port, r.port_bits)).collect(),
        }
    }

    /// What the live slot of the maps pinned in `dir` holds, with the epoch.
    pub fn live(dir: &Path) -> Result<(u32, Entries), Error> {
        let mut maps = PolicyMaps::from_pins(dir)?;
        let epoch = maps.config()?.gen;
        let slot = epoch & 1;
        let mut e = Entries::default();
        let z4: LpmTrie<MapData, rt::ZoneKey4, u32> = LpmTrie::try_from(Map::LpmTrie(maps.live_inner(rt::names::ZONES4, slot)?))?;
        for (k, v) in z4.iter().filter_map(Result::ok) {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&k.data().addr);
            e.zones.insert((4, a, (k.prefix_len() - rt::ZONE_FIXED_BITS) as u8, v));
        }
        let z6: LpmTrie<MapData, rt::ZoneKey6, u32> = LpmTrie::try_from(Map::LpmTrie(maps.live_inner(rt::names::ZONES6, slot)?))?;
        for (k, v) in z6.iter().filter_map(Result::ok) {
            e.zones.insert((6, k.data().addr, (k.prefix_len() - rt::ZONE_FIXED_BITS) as u8, v));
        }
        let ports = maps.live_inner(rt::names::PORTS, slot)?;
        let keys: Vec<rt::PortKey> = match batch::keys::<rt::PortKey, u32>(&ports)? {
            Some(k) => k,
            None => {
                let h: aya::maps::HashMap<MapData, rt::PortKey, u32> = aya::maps::HashMap::try_from(Map::HashMap(ports))?;
                h.keys().filter_map(Result::ok).collect()
            }
        };
        for k in keys {
            e.exact.insert((u32::from_be(k.src_zone), u32::from_be(k.dst_zone), k.class, u16::from_be(k.port)));
        }
        let rules: LpmTrie<MapData, rt::RuleKey, u32> = LpmTrie::try_from(Map::LpmTrie(maps.live_inner(rt::names::RULES, slot)?))?;
        for k in rules.keys().filter_map(Result::ok) {
            let d = k.data();
            e.ranges.insert((
                u32::from_be(d.src_zone),
                u32::from_be(d.dst_zone),
                d.class,
                u16::from_be(d.port),
                (k.prefix_len() - rt::RULE_FIXED_BITS) as u8,
            ));
        }
        Ok((epoch, e))
    }
}
