//! The only crate that talks to the kernel. It loads segc's eBPF programs with
//! aya, writes policy tables into their maps with an atomic generation flip,
//! runs packets through them with `BPF_PROG_TEST_RUN`, and attaches them to
//! interfaces (see [`attach`]).

pub mod attach;
mod batch;
pub mod nft;
pub mod packet;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, Map, MapData};
use aya::programs::{ProgramError, SchedClassifier, TestRun, TestRunOptions, Xdp};
use aya::Ebpf;
use batch::Batched;
use segc_compiler::ir::Proto;
use segc_compiler::lower::bpf::Tables;
use segc_runtime_bpf as rt;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot load the eBPF object: {0} (segc needs root, or CAP_BPF and CAP_NET_ADMIN)")]
    Load(#[from] aya::EbpfError),
    #[error("eBPF program: {0}")]
    Program(#[from] ProgramError),
    #[error("eBPF map: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("the object has no `{0}`")]
    Missing(&'static str),
    #[error("eBPF disabled by {0}")]
    Disabled(&'static str),
    #[error("nftables: {0}")]
    Nft(String),
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Whether eBPF cannot be used on this host at all (rather than a problem
    /// with this deployment), so that nftables should take over.
    pub fn means_unavailable(&self) -> bool {
        matches!(self, Error::Load(_) | Error::Disabled(_))
    }
}

/// How long a swap took, and how big it was.
#[derive(Clone, Copy, Debug)]
pub struct Swap {
    pub generation: u32,
    pub entries: usize,
    /// Clearing the idle generation and writing the new tables.
    pub prepare: Duration,
    /// The flip itself: one write of the live generation.
    pub flip: Duration,
}

/// The maps a policy lives in: the zone tries, the rule trie and the config
/// holding the live generation. Owned handles, from a fresh load or from pins.
pub struct PolicyMaps {
    pub zones4: Map,
    pub zones6: Map,
    pub ports: Map,
    pub pairs: Map,
    pub rules: Map,
    pub config: Map,
}

/// The maps pinned with a deployment, by name.
pub const PINNED_MAPS: &[&str] = &[
    rt::names::ZONES4,
    rt::names::ZONES6,
    rt::names::PORTS,
    rt::names::PAIRS,
    rt::names::RULES,
    rt::names::CONFIG,
    rt::names::ZONE_CACHE,
    rt::names::CONNS,
    rt::names::COUNTERS,
    rt::names::EVENTS,
];

impl PolicyMaps {
    fn take(ebpf: &mut Ebpf) -> Result<PolicyMaps, Error> {
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(Error::Missing(name));
        Ok(PolicyMaps {
            zones4: take(rt::names::ZONES4)?,
            zones6: take(rt::names::ZONES6)?,
            ports: take(rt::names::PORTS)?,
            pairs: take(rt::names::PAIRS)?,
            rules: take(rt::names::RULES)?,
            config: take(rt::names::CONFIG)?,
        })
    }

    /// Opens the maps of a deployment pinned in `dir`.
    pub fn from_pins(dir: &std::path::Path) -> Result<PolicyMaps, Error> {
        let open = |name: &str| -> Result<Map, Error> { Ok(Map::from_map_data(MapData::from_pin(dir.join(name))?)?) };
        Ok(PolicyMaps {
            zones4: open(rt::names::ZONES4)?,
            zones6: open(rt::names::ZONES6)?,
            ports: open(rt::names::PORTS)?,
            pairs: open(rt::names::PAIRS)?,
            rules: open(rt::names::RULES)?,
            config: open(rt::names::CONFIG)?,
        })
    }

    pub fn pin(&self, dir: &std::path::Path) -> Result<(), Error> {
        for (name, m) in [
            (rt::names::ZONES4, &self.zones4),
            (rt::names::ZONES6, &self.zones6),
            (rt::names::PORTS, &self.ports),
            (rt::names::PAIRS, &self.pairs),
            (rt::names::RULES, &self.rules),
            (rt::names::CONFIG, &self.config),
        ] {
            m.pin(dir.join(name)).map_err(|e| Error::Other(format!("cannot pin `{name}`: {e}")))?;
        }
        Ok(())
    }

    fn config_map(&mut self) -> Result<Array<&mut MapData, rt::Config>, Error> {
        Ok(Array::try_from(&mut self.config)?)
    }

    pub fn config(&mut self) -> Result<rt::Config, Error> {
        Ok(self.config_map()?.get(&0, 0)?)
    }

    /// Sets the flags and the deny-event sampling, keeping the live generation.
    pub fn set_options(&mut self, flags: u32, sample_every: u32) -> Result<(), Error> {
        let mut cfg = self.config()?;
        cfg.flags = flags;
        cfg.sample_every = sample_every;
        self.config_map()?.set(0, cfg, 0)?;
        Ok(())
    }

    /// Installs a policy: writes it into the idle buffer, then makes it live
    /// with one 4-byte write of the next epoch (whose low bit names the buffer).
    /// A packet reads the epoch once, so it sees the old policy or the new one,
    /// never a mix; the zone cache is keyed by epoch, so it never serves an old
    /// policy's zones.
    pub fn install(&mut self, t: &Tables) -> Result<Swap, Error> {
        let start = Instant::now();
        let epoch = self.config()?.gen.wrapping_add(1);
        let gen_be = (epoch & 1).to_be();
        let placed = segc_compiler::lower::bpf::placement(&t.rules);
        let z4: Vec<_> = t
            .zones4
            .iter()
            .map(|e| {
                let mut addr = [0u8; 4];
                addr.copy_from_slice(&e.addr[..4]);
                Key::new(rt::ZONE_FIXED_BITS + u32::from(e.len), rt::ZoneKey4 { gen: gen_be, addr })
            })
            .collect();
        fill_trie(&mut self.zones4, |k: &rt::ZoneKey4| k.gen, gen_be, &z4, &t.zones4.iter().map(|e| e.zone).collect::<Vec<_>>())?;
        let z6: Vec<_> =
            t.zones6.iter().map(|e| Key::new(rt::ZONE_FIXED_BITS + u32::from(e.len), rt::ZoneKey6 { gen: gen_be, addr: e.addr })).collect();
        fill_trie(&mut self.zones6, |k: &rt::ZoneKey6| k.gen, gen_be, &z6, &t.zones6.iter().map(|e| e.zone).collect::<Vec<_>>())?;
        let ports: Vec<_> = placed
            .exact
            .iter()
            .map(|&(src, dst, class, port)| rt::PortKey {
                gen: gen_be,
                src_zone: src.to_be(),
                dst_zone: dst.to_be(),
                class,
                pad: 0,
                port: port.to_be(),
            })
            .collect();
        fill_hash(&mut self.ports, |k: &rt::PortKey| k.gen, gen_be, &ports)?;
        let pairs: Vec<_> = placed
            .ranged_pairs
            .iter()
            .map(|&(src, dst, class)| rt::PairKey { gen: gen_be, src_zone: src.to_be(), dst_zone: dst.to_be(), class, pad: [0; 3] })
            .collect();
        fill_hash(&mut self.pairs, |k: &rt::PairKey| k.gen, gen_be, &pairs)?;
        let rules: Vec<_> = placed
            .ranges
            .iter()
            .map(|r| {
                let key = rt::RuleKey {
                    gen: gen_be,
                    src_zone: r.src_zone.to_be(),
                    dst_zone: r.dst_zone.to_be(),
                    class: r.class,
                    pad: 0,
                    port: r.port.to_be(),
                };
                Key::new(rt::RULE_FIXED_BITS + u32::from(r.port_bits), key)
            })
            .collect();
        fill_trie(&mut self.rules, |k: &rt::RuleKey| k.gen, gen_be, &rules, &vec![1; rules.len()])?;
        let entries = z4.len() + z6.len() + ports.len() + pairs.len() + rules.len();
        let prepare = start.elapsed();
        let flip_start = Instant::now();
        let mut cfg = self.config()?;
        cfg.gen = epoch;
        self.config_map()?.set(0, cfg, 0)?;
        let flip = flip_start.elapsed();
        Ok(Swap { generation: epoch, entries, prepare, flip })
    }
}

/// The map behind a hash map or LPM trie handle.
fn map_data(map: &Map) -> Result<&MapData, Error> {
    match map {
        Map::HashMap(d) | Map::LpmTrie(d) => Ok(d),
        _ => Err(Error::Other("expected a hash map or an LPM trie".into())),
    }
}

/// Rewrites one buffer (`gen_be`) of an LPM trie: its old entries out, `keys`
/// (with `values`) in. Batched where the kernel supports it for tries.
fn fill_trie<K: aya::Pod>(map: &mut Map, gen_of: fn(&K) -> u32, gen_be: u32, keys: &[Key<K>], values: &[u32]) -> Result<(), Error> {
    let stale: Vec<Key<K>> = {
        let trie: LpmTrie<&mut MapData, K, u32> = LpmTrie::try_from(&mut *map)?;
        trie.keys().filter_map(Result::ok).filter(|k| gen_of(&k.data()) == gen_be).collect()
    };
    if batch::delete(map_data(map)?, &stale)? == Batched::Unsupported {
        let mut trie: LpmTrie<&mut MapData, K, u32> = LpmTrie::try_from(&mut *map)?;
        for k in &stale {
            trie.remove(k)?;
        }
    }
    if batch::update(map_data(map)?, keys, values)? == Batched::Unsupported {
        let mut trie: LpmTrie<&mut MapData, K, u32> = LpmTrie::try_from(&mut *map)?;
        for (k, v) in keys.iter().zip(values) {
            trie.insert(k, *v, 0)?;
        }
    }
    Ok(())
}

/// Rewrites one buffer (`gen_be`) of a hash map: its old entries out, `keys`
/// (each with value 1) in, a batch of thousands per system call.
fn fill_hash<K: aya::Pod>(map: &mut Map, gen_of: fn(&K) -> u32, gen_be: u32, keys: &[K]) -> Result<(), Error> {
    let all: Vec<K> = match batch::keys::<K, u32>(map_data(map)?)? {
        Some(keys) => keys,
        None => {
            let hash: HashMap<&mut MapData, K, u32> = HashMap::try_from(&mut *map)?;
            hash.keys().filter_map(Result::ok).collect()
        }
    };
    let stale: Vec<K> = all.into_iter().filter(|k| gen_of(k) == gen_be).collect();
    if batch::delete(map_data(map)?, &stale)? == Batched::Unsupported {
        let mut hash: HashMap<&mut MapData, K, u32> = HashMap::try_from(&mut *map)?;
        for k in &stale {
            hash.remove(k)?;
        }
    }
    let ones = vec![1u32; keys.len()];
    if batch::update(map_data(map)?, keys, &ones)? == Batched::Unsupported {
        let mut hash: HashMap<&mut MapData, K, u32> = HashMap::try_from(&mut *map)?;
        for k in keys {
            hash.insert(k, 1, 0)?;
        }
    }
    Ok(())
}

/// The loaded programs and their maps.
pub struct Filter {
    pub ebpf: Ebpf,
    pub maps: PolicyMaps,
}

/// Raises RLIMIT_MEMLOCK for kernels that still charge BPF memory to it.
fn raise_memlock() {
    let lim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
}

impl Filter {
    /// Loads the object and its programs into the kernel (not attached).
    pub fn load() -> Result<Filter, Error> {
        raise_memlock();
        let mut ebpf = Ebpf::load(rt::OBJECT)?;
        for name in [rt::names::XDP, rt::names::XDP_EMPTY] {
            let p: &mut Xdp = ebpf.program_mut(name).ok_or(Error::Missing("xdp program"))?.try_into()?;
            p.load()?;
        }
        for name in [rt::names::TC, rt::names::TC_INGRESS] {
            let tc: &mut SchedClassifier = ebpf.program_mut(name).ok_or(Error::Missing("tc program"))?.try_into()?;
            tc.load()?;
        }
        let maps = PolicyMaps::take(&mut ebpf)?;
        Ok(Filter { ebpf, maps })
    }

    pub fn set_options(&mut self, flags: u32, sample_every: u32) -> Result<(), Error> {
        self.maps.set_options(flags, sample_every)
    }

    pub fn install(&mut self, t: &Tables) -> Result<Swap, Error> {
        self.maps.install(t)
    }

    /// Runs one frame through an XDP program; see [`run_xdp`].
    pub fn run_xdp(&self, program: &str, frame: &[u8], repeat: u32) -> Result<(u32, Duration), Error> {
        run_xdp(&self.ebpf, program, frame, repeat)
    }

    /// The filter's verdict for one packet, through the real XDP program.
    pub fn verdict(&self, src: IpAddr, dst: IpAddr, proto: Proto) -> Result<bool, Error> {
        verdict(&self.ebpf, src, dst, proto)
    }
}

/// Runs one frame through an XDP program with `BPF_PROG_TEST_RUN`; returns the
/// program's return code and the kernel's time per run.
pub fn run_xdp(ebpf: &Ebpf, program: &str, frame: &[u8], repeat: u32) -> Result<(u32, Duration), Error> {
    let p: &Xdp = ebpf.program(program).ok_or(Error::Missing("xdp program"))?.try_into()?;
    let mut out = vec![0u8; frame.len() + 256];
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    opts.data_out = Some(&mut out);
    opts.repeat = repeat.max(1);
    let r = p.test_run(opts)?;
    Ok((r.return_value, r.duration))
}

/// The verdict of the loaded XDP program for one packet.
pub fn verdict(ebpf: &Ebpf, src: IpAddr, dst: IpAddr, proto: Proto) -> Result<bool, Error> {
    let frame = packet::frame(src, dst, proto).ok_or_else(|| Error::Other("mixed address families".into()))?;
    let (ret, _) = run_xdp(ebpf, rt::names::XDP, &frame, 1)?;
    match ret {
        XDP_PASS => Ok(true),
        XDP_DROP => Ok(false),
        other => Err(Error::Other(format!("unexpected XDP return code {other}"))),
    }
}

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// The filter's sampled deny events (its ring buffer, from the pins).
pub struct Events(aya::maps::RingBuf<MapData>);

pub fn events(dir: &std::path::Path) -> Result<Events, Error> {
    let map = Map::from_map_data(MapData::from_pin(dir.join(rt::names::EVENTS))?)?;
    Ok(Events(aya::maps::RingBuf::try_from(map)?))
}

/// The events waiting in the ring buffer, at most `max` (under a flood the
/// kernel may refill it as fast as it is read), as JSON.
pub fn drain(ev: &mut Events, max: usize) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    while out.len() < max {
        let Some(item) = ev.0.next() else { break };
        if item.len() < std::mem::size_of::<rt::Event>() {
            continue;
        }
        // SAFETY: the buffer holds at least one `Event`, a plain-old-data struct.
        let e: rt::Event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<rt::Event>()) };
        let addr = |b: [u8; 16]| -> String {
            if e.family == 4 {
                std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string()
            } else {
                std::net::Ipv6Addr::from(b).to_string()
            }
        };
        out.push(serde_json::json!({
            "src": addr(e.saddr), "dst": addr(e.daddr), "proto": e.proto,
            "sport": u16::from_be(e.sport), "dport": u16::from_be(e.dport),
            "direction": if e.direction == 0 { "ingress" } else { "egress" },
            "src_zone": e.src_zone, "dst_zone": e.dst_zone, "kernel_ns": e.ts_ns,
        }));
    }
    out
}

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

    /// What the pinned maps in `dir` hold for the live buffer.
    pub fn live(dir: &std::path::Path) -> Result<(u32, Entries), Error> {
        let mut maps = PolicyMaps::from_pins(dir)?;
        let epoch = maps.config()?.gen;
        let gen_be = (epoch & 1).to_be();
        let mut e = Entries::default();
        let z4: LpmTrie<&mut MapData, rt::ZoneKey4, u32> = LpmTrie::try_from(&mut maps.zones4)?;
        for item in z4.iter().filter_map(Result::ok) {
            let (k, v) = item;
            if k.data().gen == gen_be {
                let mut a = [0u8; 16];
                a[..4].copy_from_slice(&k.data().addr);
                e.zones.insert((4, a, (k.prefix_len() - rt::ZONE_FIXED_BITS) as u8, v));
            }
        }
        let z6: LpmTrie<&mut MapData, rt::ZoneKey6, u32> = LpmTrie::try_from(&mut maps.zones6)?;
        for (k, v) in z6.iter().filter_map(Result::ok) {
            if k.data().gen == gen_be {
                e.zones.insert((6, k.data().addr, (k.prefix_len() - rt::ZONE_FIXED_BITS) as u8, v));
            }
        }
        let ports: HashMap<&mut MapData, rt::PortKey, u32> = HashMap::try_from(&mut maps.ports)?;
        for k in ports.keys().filter_map(Result::ok) {
            if k.gen == gen_be {
                e.exact.insert((u32::from_be(k.src_zone), u32::from_be(k.dst_zone), k.class, u16::from_be(k.port)));
            }
        }
        let rules: LpmTrie<&mut MapData, rt::RuleKey, u32> = LpmTrie::try_from(&mut maps.rules)?;
        for k in rules.keys().filter_map(Result::ok) {
            let d = k.data();
            if d.gen == gen_be {
                e.ranges.insert((
                    u32::from_be(d.src_zone),
                    u32::from_be(d.dst_zone),
                    d.class,
                    u16::from_be(d.port),
                    (k.prefix_len() - rt::RULE_FIXED_BITS) as u8,
                ));
            }
        }
        Ok((epoch, e))
    }
}
