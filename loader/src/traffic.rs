//! Traffic per zone pair and verdict, for the live epoch: each pair is
//! counted in its slot of a per-CPU array (an inlined lookup in the
//! program) or, where another pair holds that slot, in an LRU per-CPU hash;
//! readers add both, over every CPU.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use aya::maps::{Map, MapData, PerCpuArray, PerCpuHashMap};
use segc_runtime_bpf as rt;

use crate::attach::pin_dir;
use crate::Error;

/// The traffic one zone pair saw with one verdict, summed over CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PairTraffic {
    /// Zone id + 1 (0: an address in no zone).
    pub src_zone: u32,
    pub dst_zone: u32,
    /// 0 allow, 1 deny.
    pub verdict: u32,
    pub packets: u64,
    pub bytes: u64,
}

/// Sums both maps for `epoch`, sorted by pair and verdict.
pub fn sum<H: Borrow<MapData>, S: Borrow<MapData>>(
    hash: &PerCpuHashMap<H, rt::PairCounterKey, rt::Counter>,
    slots: &PerCpuArray<S, rt::PairSlot>,
    epoch: u32,
) -> Vec<PairTraffic> {
    let mut sum: BTreeMap<(u32, u32, u32), (u64, u64)> = BTreeMap::new();
    for (k, v) in hash.iter().filter_map(Result::ok).filter(|(k, _)| k.epoch == epoch) {
        let e = sum.entry((k.src_zone, k.dst_zone, k.verdict)).or_default();
        for c in v.iter() {
            e.0 += c.packets;
            e.1 += c.bytes;
        }
    }
    for i in 0..rt::PAIR_SLOTS {
        let Ok(per_cpu) = slots.get(&i, 0) else { continue };
        for s in per_cpu.iter().filter(|s| s.epoch == epoch && s.packets > 0) {
            let e = sum.entry((s.src_zone, s.dst_zone, s.verdict)).or_default();
            e.0 += s.packets;
            e.1 += s.bytes;
        }
    }
    sum.into_iter()
        .map(|((src_zone, dst_zone, verdict), (packets, bytes))| PairTraffic { src_zone, dst_zone, verdict, packets, bytes })
        .collect()
}

/// Traffic per zone pair and verdict in `epoch`, from the pinned deployment.
pub fn pair_counters(netns: Option<&str>, epoch: u32) -> Result<Vec<PairTraffic>, Error> {
    let dir = pin_dir(netns);
    let hash: PerCpuHashMap<MapData, rt::PairCounterKey, rt::Counter> =
        PerCpuHashMap::try_from(Map::from_map_data(MapData::from_pin(dir.join(rt::names::PAIR_COUNTERS))?)?)?;
    let slots: PerCpuArray<MapData, rt::PairSlot> =
        PerCpuArray::try_from(Map::from_map_data(MapData::from_pin(dir.join(rt::names::PAIR_SLOTS))?)?)?;
    Ok(sum(&hash, &slots, epoch))
}
