//! The only crate that talks to the kernel. It loads segc's eBPF programs with
//! aya, writes policy tables into their maps with an atomic generation flip,
//! runs packets through them with `BPF_PROG_TEST_RUN`, and attaches them to
//! interfaces (see [`attach`]).

pub mod attach;
mod batch;
mod entries;
pub mod nft;
pub mod packet;
mod policy;
pub mod traffic;

pub use entries::Entries;
pub use policy::{PolicyMaps, Swap};

use std::net::IpAddr;
use std::time::Duration;

use aya::maps::{Map, MapData};
use aya::programs::{ProgramError, SchedClassifier, TestRun, TestRunOptions, Xdp};
use aya::Ebpf;
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

/// The maps pinned with a deployment, by name.
pub const PINNED_MAPS: &[&str] = &[
    rt::names::ZONES4,
    rt::names::ZONES6,
    rt::names::PORTS,
    rt::names::PAIRS,
    rt::names::RULES,
    rt::names::CONFIG,
    rt::names::VERDICTS,
    rt::names::CONNS,
    rt::names::COUNTERS,
    rt::names::PAIR_COUNTERS,
    rt::names::PAIR_SLOTS,
    rt::names::EVENTS,
];

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
    /// Loads the object and all its programs into the kernel (not attached):
    /// what enforcing needs, XDP or tc.
    pub fn load() -> Result<Filter, Error> {
        Filter::load_with(true)
    }

    /// Loads the object with its XDP programs only (the filter and the
    /// clock), not the four tc programs: what `BPF_PROG_TEST_RUN` needs
    /// (`explain --engine bpf`, the tests, the benches). The verifier's pass
    /// over each tc program is most of a load, and nothing here attaches.
    pub fn load_for_test_runs() -> Result<Filter, Error> {
        Filter::load_with(false)
    }

    fn load_with(tc: bool) -> Result<Filter, Error> {
        raise_memlock();
        let mut ebpf = Ebpf::load(rt::OBJECT)?;
        for name in [rt::names::XDP, rt::names::XDP_CLOCK] {
            let p: &mut Xdp = ebpf.program_mut(name).ok_or(Error::Missing("xdp program"))?.try_into()?;
            p.load()?;
        }
        let tc_programs = [rt::names::TC, rt::names::TC_INGRESS, rt::names::TC_L3_INGRESS, rt::names::TC_L3_EGRESS];
        for name in tc_programs.into_iter().filter(|_| tc) {
            let p: &mut SchedClassifier = ebpf.program_mut(name).ok_or(Error::Missing("tc program"))?.try_into()?;
            p.load()?;
        }
        let hz = kernel_hz(&ebpf)?;
        let mut maps = PolicyMaps::take(&mut ebpf)?;
        // Linux's conntrack timeouts until told otherwise.
        maps.set_link_options(&[], [0; rt::TO_MAX])?;
        maps.set_hz(hz)?;
        Ok(Filter { ebpf, maps })
    }

    pub fn set_options(&mut self, flags: u32, sample_every: u32) -> Result<(), Error> {
        self.maps.set_options(flags, sample_every)
    }

    pub fn install(&mut self, t: &Tables) -> Result<Swap, Error> {
        self.maps.install(t)
    }

    /// Sets the EtherTypes passed besides ARP and the connection timeouts.
    pub fn set_link_options(&mut self, pass_ethertypes: &[u16], timeouts: [u32; rt::TO_MAX]) -> Result<(), Error> {
        self.maps.set_link_options(pass_ethertypes, timeouts)
    }

    /// Runs one frame through an XDP program; see [`run_xdp`].
    /// Traffic per zone pair and verdict in the live epoch (both places the
    /// program counts it).
    pub fn pair_traffic(&mut self) -> Result<Vec<traffic::PairTraffic>, Error> {
        let epoch = self.maps.config()?.gen;
        let hash: aya::maps::PerCpuHashMap<&aya::maps::MapData, rt::PairCounterKey, rt::Counter> =
            aya::maps::PerCpuHashMap::try_from(self.ebpf.map(rt::names::PAIR_COUNTERS).ok_or(Error::Missing("pair counters"))?)?;
        let slots: aya::maps::PerCpuArray<&aya::maps::MapData, rt::PairSlot> =
            aya::maps::PerCpuArray::try_from(self.ebpf.map(rt::names::PAIR_SLOTS).ok_or(Error::Missing("pair slots"))?)?;
        Ok(traffic::sum(&hash, &slots, epoch))
    }

    /// Loads the programs the benchmarks measure the filter against (the
    /// empty program and the perf gate's yardstick). Never loaded to enforce:
    /// a kernel refusing one of them must not stop the filter.
    pub fn load_bench_programs(&mut self) -> Result<(), Error> {
        for name in [rt::names::XDP_EMPTY, rt::names::XDP_YARDSTICK] {
            let p: &mut Xdp = self.ebpf.program_mut(name).ok_or(Error::Missing("xdp program"))?.try_into()?;
            p.load()?;
        }
        Ok(())
    }

    pub fn run_xdp(&self, program: &str, frame: &[u8], repeat: u32) -> Result<(u32, Duration), Error> {
        run_xdp(&self.ebpf, program, frame, repeat)
    }

    /// The filter's verdict for one packet, through the real XDP program.
    pub fn verdict(&self, src: IpAddr, dst: IpAddr, proto: Proto) -> Result<bool, Error> {
        verdict(&self.ebpf, src, dst, proto)
    }
}

/// The kernel's HZ (jiffies per second), which the filter needs to turn
/// connection timeouts into jiffies. Measured once per process: the jiffies
/// the clock program reads 100 ms apart, rounded to the nearest HZ a kernel
/// can be configured with (within 15 %).
fn kernel_hz(ebpf: &Ebpf) -> Result<u32, Error> {
    static HZ: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    if let Some(&hz) = HZ.get() {
        return Ok(hz);
    }
    let frame = [0u8; 64];
    let read = |ebpf: &Ebpf| -> Result<(u64, std::time::Instant), Error> {
        run_xdp(ebpf, rt::names::XDP_CLOCK, &frame, 1)?;
        let at = std::time::Instant::now();
        let clock: aya::maps::Array<&MapData, u64> =
            aya::maps::Array::try_from(ebpf.map(rt::names::CLOCK).ok_or(Error::Missing("clock map"))?)?;
        Ok((clock.get(&0, 0)?, at))
    };
    let (j0, t0) = read(ebpf)?;
    std::thread::sleep(Duration::from_millis(100));
    let (j1, t1) = read(ebpf)?;
    let hz = rounded_hz(j1.wrapping_sub(j0), t1 - t0)
        .ok_or_else(|| Error::Other(format!("cannot measure the kernel's HZ: {} jiffies in {:?}", j1.wrapping_sub(j0), t1 - t0)))?;
    Ok(*HZ.get_or_init(|| hz))
}

/// `ticks` jiffies in `elapsed` as a kernel's HZ: the nearest configurable
/// value within 15 %, else the measurement itself.
fn rounded_hz(ticks: u64, elapsed: Duration) -> Option<u32> {
    let secs = elapsed.as_secs_f64();
    if ticks == 0 || secs <= 0.0 {
        return None;
    }
    let raw = ticks as f64 / secs;
    let nearest = [100.0, 250.0, 300.0, 1000.0].into_iter().find(|hz: &f64| (raw - hz).abs() <= hz * 0.15);
    Some(nearest.unwrap_or(raw.round()) as u32)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hz_rounds_to_configurable_values() {
        let ms = Duration::from_millis;
        // 100 ms at HZ 100, 250, 300, 1000, each one tick off either way.
        assert_eq!(rounded_hz(9, ms(100)), Some(100));
        assert_eq!(rounded_hz(11, ms(100)), Some(100));
        assert_eq!(rounded_hz(24, ms(100)), Some(250));
        assert_eq!(rounded_hz(26, ms(100)), Some(250));
        assert_eq!(rounded_hz(29, ms(100)), Some(300));
        assert_eq!(rounded_hz(31, ms(101)), Some(300));
        assert_eq!(rounded_hz(99, ms(100)), Some(1000));
        // A slow sleep is measured, not assumed.
        assert_eq!(rounded_hz(26, ms(104)), Some(250));
        // Something else: the measurement.
        assert_eq!(rounded_hz(60, ms(100)), Some(600));
        assert_eq!(rounded_hz(0, ms(100)), None);
    }
}
