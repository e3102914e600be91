//! A policy in the kernel: five inner maps (the zone tries, the exact ports,
//! the ranged pairs, the port-range trie), created fresh for every policy and
//! placed in slot `epoch & 1` of five outer array-of-maps. A swap fills fresh
//! maps, puts them in the idle slot, then flips the epoch with one write of
//! the config: a packet reads the epoch once and sees the old policy or the
//! new one, never a mix. Nothing is deleted entry by entry: the maps the new
//! ones replace are freed by the kernel when the last reference goes.

use std::path::Path;
use std::time::{Duration, Instant};

use aya::maps::lpm_trie::Key;
use aya::maps::of_maps::ArrayOfMaps;
use aya::maps::{Array, Map, MapData};
use aya_obj::generated::bpf_map_type;
use segc_compiler::lower::bpf::Tables;
use segc_runtime_bpf as rt;

use crate::batch::{self, Batched};
use crate::Error;

/// How long a swap took, and how big it was.
#[derive(Clone, Copy, Debug)]
pub struct Swap {
    pub generation: u32,
    pub entries: usize,
    /// Creating and filling the new maps, and placing them in the idle slot.
    pub prepare: Duration,
    /// The flip itself: one write of the live epoch.
    pub flip: Duration,
}

/// The outer maps of a deployment and its config. Owned handles, from a
/// fresh load or from pins.
pub struct PolicyMaps {
    pub zones4: Map,
    pub zones6: Map,
    pub ports: Map,
    pub pairs: Map,
    pub rules: Map,
    pub feeds4: Map,
    pub feeds6: Map,
    pub config: Map,
    /// The inner maps this process installed last (policy maps, then feed
    /// tries), kept so a feed refresh can place the same policy maps in the
    /// idle slot without reading them back by id (which takes CAP_SYS_ADMIN).
    live: Option<(u32, Vec<MapData>)>,
}

impl std::fmt::Debug for PolicyMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyMaps").field("live_epoch", &self.live.as_ref().map(|(e, _)| *e)).finish_non_exhaustive()
    }
}

/// The number of outer maps: five for the policy, two for the feeds.
const OUTERS: usize = 7;
/// The first feed map among them.
const FEED_OUTER: usize = 5;

/// The outer maps, by name, with the shape of their inner maps.
struct Inner {
    name: &'static str,
    map_type: bpf_map_type,
    key_size: usize,
    max: u32,
}

const INNER: [Inner; OUTERS] = [
    Inner { name: rt::names::ZONES4, map_type: bpf_map_type::BPF_MAP_TYPE_LPM_TRIE, key_size: 4 + 4, max: rt::ZONES4_MAX },
    Inner { name: rt::names::ZONES6, map_type: bpf_map_type::BPF_MAP_TYPE_LPM_TRIE, key_size: 4 + 16, max: rt::ZONES6_MAX },
    Inner { name: rt::names::PORTS, map_type: bpf_map_type::BPF_MAP_TYPE_HASH, key_size: 12, max: rt::PORTS_MAX },
    Inner { name: rt::names::PAIRS, map_type: bpf_map_type::BPF_MAP_TYPE_HASH, key_size: 12, max: rt::PAIRS_MAX },
    Inner { name: rt::names::RULES, map_type: bpf_map_type::BPF_MAP_TYPE_LPM_TRIE, key_size: 4 + 12, max: rt::RULES_MAX },
    Inner { name: rt::names::FEEDS4, map_type: bpf_map_type::BPF_MAP_TYPE_LPM_TRIE, key_size: 4 + 4, max: rt::FEEDS4_MAX },
    Inner { name: rt::names::FEEDS6, map_type: bpf_map_type::BPF_MAP_TYPE_LPM_TRIE, key_size: 4 + 16, max: rt::FEEDS6_MAX },
];

/// BPF_F_NO_PREALLOC: memory follows the entries, not the capacity.
const NO_PREALLOC: u32 = 1;

/// A fresh, empty inner map shaped as the program's template.
fn fresh(i: &Inner) -> Result<MapData, Error> {
    let obj = aya_obj::Map::new_from_params(i.map_type as u32, i.key_size as u32, 4, i.max, NO_PREALLOC);
    Ok(MapData::create(obj, i.name, None)?)
}

/// A fresh set of inner maps, made at once: the kernel zeroes a hash map's
/// bucket array when it makes it (16 MiB for the exact ports), which two
/// cores do in half the time.
fn fresh_all() -> Result<Vec<MapData>, Error> {
    std::thread::scope(|s| {
        let handles: Vec<_> = INNER.iter().map(|i| s.spawn(move || fresh(i))).collect();
        handles.into_iter().map(|h| joined(h, "a map creation")).collect()
    })
}

/// A map thread's result; its panic as an error.
fn joined<T>(h: std::thread::ScopedJoinHandle<'_, Result<T, Error>>, what: &str) -> Result<T, Error> {
    h.join().map_err(|_| Error::Other(format!("{what} thread panicked")))?
}

impl PolicyMaps {
    pub(crate) fn take(ebpf: &mut aya::Ebpf) -> Result<PolicyMaps, Error> {
        let mut outer = |name: &'static str| -> Result<Map, Error> {
            match ebpf.take_map(name).ok_or(Error::Missing(name))? {
                m @ Map::ArrayOfMaps(_) => Ok(m),
                _ => Err(Error::Missing(name)),
            }
        };
        Ok(PolicyMaps {
            zones4: outer(rt::names::ZONES4)?,
            zones6: outer(rt::names::ZONES6)?,
            ports: outer(rt::names::PORTS)?,
            pairs: outer(rt::names::PAIRS)?,
            rules: outer(rt::names::RULES)?,
            feeds4: outer(rt::names::FEEDS4)?,
            feeds6: outer(rt::names::FEEDS6)?,
            config: ebpf.take_map(rt::names::CONFIG).ok_or(Error::Missing(rt::names::CONFIG))?,
            live: None,
        })
    }

    /// Opens the maps of a deployment pinned in `dir`.
    pub fn from_pins(dir: &Path) -> Result<PolicyMaps, Error> {
        let open = |name: &str| -> Result<Map, Error> { Ok(Map::from_map_data(MapData::from_pin(dir.join(name))?)?) };
        Ok(PolicyMaps {
            zones4: open(rt::names::ZONES4)?,
            zones6: open(rt::names::ZONES6)?,
            ports: open(rt::names::PORTS)?,
            pairs: open(rt::names::PAIRS)?,
            rules: open(rt::names::RULES)?,
            feeds4: open(rt::names::FEEDS4)?,
            feeds6: open(rt::names::FEEDS6)?,
            config: Map::from_map_data(open_config(dir)?)?,
            live: None,
        })
    }

    fn outers(&mut self) -> [(&'static str, &mut Map); OUTERS] {
        [
            (rt::names::ZONES4, &mut self.zones4),
            (rt::names::ZONES6, &mut self.zones6),
            (rt::names::PORTS, &mut self.ports),
            (rt::names::PAIRS, &mut self.pairs),
            (rt::names::RULES, &mut self.rules),
            (rt::names::FEEDS4, &mut self.feeds4),
            (rt::names::FEEDS6, &mut self.feeds6),
        ]
    }

    /// The kernel memory (`memlock` in fdinfo, bytes) of each inner map this
    /// process installed last, by outer map name.
    pub fn live_memory(&self) -> Vec<(&'static str, u64)> {
        use std::os::fd::{AsFd, AsRawFd};
        let Some((_, maps)) = &self.live else { return Vec::new() };
        INNER
            .iter()
            .zip(maps)
            .map(|(i, m)| {
                let fd = m.fd().as_fd().as_raw_fd();
                let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
                let bytes = info.lines().find_map(|l| l.strip_prefix("memlock:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                (i.name, bytes)
            })
            .collect()
    }

    /// The inner map live in slot `slot` of the outer map `name` (reading a
    /// map by id: root, or CAP_SYS_ADMIN).
    pub fn live_inner(&mut self, name: &str, slot: u32) -> Result<MapData, Error> {
        let (_, outer) = self.outers().into_iter().find(|(n, _)| *n == name).ok_or(Error::Missing("outer map"))?;
        let aom: ArrayOfMaps<&mut MapData, MapData> = ArrayOfMaps::try_from(outer)?;
        Ok(aom.get(&slot, 0)?)
    }

    pub fn pin(&mut self, dir: &Path) -> Result<(), Error> {
        for (name, m) in self.outers() {
            m.pin(dir.join(name)).map_err(|e| Error::Other(format!("cannot pin `{name}`: {e}")))?;
        }
        self.config.pin(dir.join(rt::names::CONFIG)).map_err(|e| Error::Other(format!("cannot pin the config: {e}")))?;
        Ok(())
    }

    fn config_map(&mut self) -> Result<Array<&mut MapData, rt::Config>, Error> {
        Ok(Array::try_from(&mut self.config)?)
    }

    pub fn config(&mut self) -> Result<rt::Config, Error> {
        Ok(self.config_map()?.get(&0, 0)?)
    }

    /// Sets the flags and the deny-event sampling, keeping the live epoch.
    pub fn set_options(&mut self, flags: u32, sample_every: u32) -> Result<(), Error> {
        self.update_config(|c| {
            c.flags = flags;
            c.sample_every = sample_every;
        })
    }

    /// Sets the kernel's HZ, which turns connection timeouts into jiffies.
    pub fn set_hz(&mut self, hz: u32) -> Result<(), Error> {
        self.update_config(|c| c.hz = hz)
    }

    /// Sets the EtherTypes passed besides ARP, and the connection timeouts
    /// (seconds, `rt::TO_*`; zeros keep Linux's defaults).
    pub fn set_link_options(&mut self, pass_ethertypes: &[u16], timeouts: [u32; rt::TO_MAX]) -> Result<(), Error> {
        if pass_ethertypes.len() > rt::PASS_ETHERTYPES_MAX {
            return Err(Error::Other(format!("at most {} EtherTypes can be passed", rt::PASS_ETHERTYPES_MAX)));
        }
        self.update_config(|c| {
            c.n_pass = pass_ethertypes.len() as u32;
            c.pass_ethertypes = [0; rt::PASS_ETHERTYPES_MAX];
            for (slot, t) in c.pass_ethertypes.iter_mut().zip(pass_ethertypes) {
                *slot = t.to_be();
            }
            for (i, t) in c.timeouts.iter_mut().enumerate() {
                *t = if timeouts[i] > 0 { timeouts[i] } else { rt::DEFAULT_TIMEOUTS[i] };
            }
        })
    }

    fn update_config(&mut self, f: impl FnOnce(&mut rt::Config)) -> Result<(), Error> {
        let mut cfg = self.config()?;
        if cfg.timeouts == [0; rt::TO_MAX] {
            cfg.timeouts = rt::DEFAULT_TIMEOUTS;
        }
        f(&mut cfg);
        self.config_map()?.set(0, cfg, 0)?;
        Ok(())
    }

    /// Installs a policy: fresh maps filled with it in the idle slot, then the
    /// next epoch (whose low bit names the slot) made live with one write.
    pub fn install(&mut self, t: &Tables) -> Result<Swap, Error> {
        let start = Instant::now();
        let epoch = self.config()?.gen.wrapping_add(1);
        let placed = segc_compiler::lower::bpf::placement(&t.rules);
        let inner = fresh_all()?;
        let z4: Vec<Key<rt::ZoneKey4>> = t
            .zones4
            .iter()
            .map(|e| {
                let mut addr = [0u8; 4];
                addr.copy_from_slice(&e.addr[..4]);
                Key::new(rt::ZONE_FIXED_BITS + u32::from(e.len), rt::ZoneKey4 { addr })
            })
            .collect();
        fill(&inner[0], &z4, &t.zones4.iter().map(|e| e.zone).collect::<Vec<_>>())?;
        let z6: Vec<Key<rt::ZoneKey6>> =
            t.zones6.iter().map(|e| Key::new(rt::ZONE_FIXED_BITS + u32::from(e.len), rt::ZoneKey6 { addr: e.addr })).collect();
        fill(&inner[1], &z6, &t.zones6.iter().map(|e| e.zone).collect::<Vec<_>>())?;
        let ports: Vec<rt::PortKey> = placed
            .exact
            .iter()
            .map(|&(src, dst, class, port)| rt::PortKey { src_zone: src.to_be(), dst_zone: dst.to_be(), class, pad: 0, port: port.to_be() })
            .collect();
        // The exact ports are most of a large policy: two threads fill
        // halves of them at once (the kernel locks per bucket).
        let (first, second) = ports.split_at(ports.len() / 2);
        let ones = vec![1u32; second.len()];
        let (map, ones) = (&inner[2], ones.as_slice());
        std::thread::scope(|s| -> Result<(), Error> {
            let other = s.spawn(move || fill(map, first, &ones[..first.len()]));
            fill(map, second, ones)?;
            joined(other, "a map fill")
        })?;
        let pairs: Vec<rt::PairKey> = placed
            .ranged_pairs
            .iter()
            .map(|&(src, dst, class)| rt::PairKey { src_zone: src.to_be(), dst_zone: dst.to_be(), class, pad: [0; 3] })
            .collect();
        fill(&inner[3], &pairs, &vec![1u32; pairs.len()])?;
        let rules: Vec<Key<rt::RuleKey>> = placed
            .ranges
            .iter()
            .map(|r| {
                let key = rt::RuleKey {
                    src_zone: r.src_zone.to_be(),
                    dst_zone: r.dst_zone.to_be(),
                    class: r.class,
                    pad: 0,
                    port: r.port.to_be(),
                };
                Key::new(rt::RULE_FIXED_BITS + u32::from(r.port_bits), key)
            })
            .collect();
        fill(&inner[4], &rules, &vec![1u32; rules.len()])?;
        let feeds = fill_feeds(&inner[FEED_OUTER..], &t.feeds4, &t.feeds6)?;
        let entries = z4.len() + z6.len() + ports.len() + pairs.len() + rules.len() + feeds;
        self.place_and_flip(inner, epoch, entries, start)
    }

    /// Swaps the feed tries alone: fresh tries filled with `feeds4`/`feeds6`
    /// and the live policy's own maps go into the idle slot, then the epoch
    /// flips as for a policy (cached verdicts and live connections are
    /// judged again). Only for the policy this process installed.
    pub fn swap_feeds(
        &mut self,
        feeds4: &[segc_compiler::lower::bpf::FeedPrefix],
        feeds6: &[segc_compiler::lower::bpf::FeedPrefix],
    ) -> Result<Swap, Error> {
        let start = Instant::now();
        let Some((installed, mut live)) = self.live.take() else {
            return Err(Error::Other("no policy installed by this process: install one before swapping its feeds".into()));
        };
        let current = self.config()?.gen;
        if current != installed {
            // Another segc swapped since: its policy maps are live, not ours.
            return Err(Error::Other(format!(
                "the live policy (epoch {current}) is not the one this process installed (epoch {installed}): deploy the policy again, then its feeds"
            )));
        }
        let epoch = current.wrapping_add(1);
        let prepared = (|| -> Result<(Vec<MapData>, usize), Error> {
            let maps: Vec<MapData> = INNER[FEED_OUTER..].iter().map(fresh).collect::<Result<_, _>>()?;
            let n = fill_feeds(&maps, feeds4, feeds6)?;
            Ok((maps, n))
        })();
        let (fresh_feeds, entries) = match prepared {
            Ok(p) => p,
            Err(e) => {
                self.live = Some((installed, live));
                return Err(e);
            }
        };
        live.truncate(FEED_OUTER);
        live.extend(fresh_feeds);
        self.place_and_flip(live, epoch, entries, start)
    }

    /// Puts `inner[i]` into slot `epoch & 1` of outer map i, then makes the
    /// epoch live with one write; keeps the maps as the live set.
    fn place_and_flip(&mut self, inner: Vec<MapData>, epoch: u32, entries: usize, start: Instant) -> Result<Swap, Error> {
        let slot = epoch & 1;
        // Each outer update waits for an RCU grace period (the kernel makes
        // sure no program still reads the map it replaces): they run at
        // once, so their waits overlap instead of adding up.
        std::thread::scope(|s| -> Result<(), Error> {
            let handles: Vec<_> = self
                .outers()
                .into_iter()
                .zip(&inner)
                .map(|((_, outer), map)| {
                    s.spawn(move || -> Result<(), Error> {
                        let mut aom: ArrayOfMaps<&mut MapData, MapData> = ArrayOfMaps::try_from(outer)?;
                        Ok(aom.set(slot, map, 0)?)
                    })
                })
                .collect();
            for h in handles {
                joined(h, "a map update")?;
            }
            Ok(())
        })?;
        let prepare = start.elapsed();
        let flip_start = Instant::now();
        self.update_config(|c| c.gen = epoch)?;
        let flip = flip_start.elapsed();
        self.live = Some((epoch, inner));
        Ok(Swap { generation: epoch, entries, prepare, flip })
    }
}

/// Fills the two feed tries; returns how many entries they got.
fn fill_feeds(
    maps: &[MapData],
    feeds4: &[segc_compiler::lower::bpf::FeedPrefix],
    feeds6: &[segc_compiler::lower::bpf::FeedPrefix],
) -> Result<usize, Error> {
    let k4: Vec<Key<rt::ZoneKey4>> = feeds4
        .iter()
        .map(|f| {
            let mut addr = [0u8; 4];
            addr.copy_from_slice(&f.addr[..4]);
            Key::new(rt::ZONE_FIXED_BITS + u32::from(f.len), rt::ZoneKey4 { addr })
        })
        .collect();
    fill(&maps[0], &k4, &feeds4.iter().map(|f| f.feed).collect::<Vec<_>>())?;
    let k6: Vec<Key<rt::ZoneKey6>> =
        feeds6.iter().map(|f| Key::new(rt::ZONE_FIXED_BITS + u32::from(f.len), rt::ZoneKey6 { addr: f.addr })).collect();
    fill(&maps[1], &k6, &feeds6.iter().map(|f| f.feed).collect::<Vec<_>>())?;
    Ok(k4.len() + k6.len())
}

/// Writes `keys[i] -> values[i]` into a fresh map, a batch of thousands per
/// system call, or one entry per call where the kernel has no batches.
fn fill<K: aya::Pod>(map: &MapData, keys: &[K], values: &[u32]) -> Result<(), Error> {
    if batch::update(map, keys, values)? == Batched::Unsupported {
        for (k, v) in keys.iter().zip(values) {
            batch::update_one(map, k, v)?;
        }
    }
    Ok(())
}

/// The pinned config, refused when another segc build (another layout) made it.
pub(crate) fn open_config(dir: &Path) -> Result<MapData, Error> {
    let config = MapData::from_pin(dir.join(rt::names::CONFIG))?;
    let size = config.info()?.value_size() as usize;
    if size != std::mem::size_of::<rt::Config>() {
        return Err(Error::Other(format!(
            "the deployment pinned in {} was made by another segc build (its config is {size} bytes, this build's {}): \
             run `segc undeploy --target host` with that build, then deploy again",
            dir.display(),
            std::mem::size_of::<rt::Config>()
        )));
    }
    Ok(config)
}
