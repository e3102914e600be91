//! Deploying on a host: attach XDP (or TC) on ingress and TC (TCX) on egress of each
//! interface, inside a named network namespace when asked, and pin programs,
//! maps and links under bpffs so enforcement outlives the process. A redeploy
//! swaps the policy in the pinned maps in place; undeploy unpins, which
//! detaches.
//!
//! Layout: `/sys/fs/bpf/segc/<scope>/` where scope is `host` or `netns-NAME`;
//! maps by name, `prog_xdp`, `prog_tc`, `prog_tc_ingress`, and `link_in_IFACE`
//! (XDP or TC ingress), `link_out_IFACE` (TC egress).

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::TcAttachOptions;
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode};
use segc_compiler::lower::bpf::Tables;
use segc_runtime_bpf as rt;

use crate::{Error, Filter, PolicyMaps, Swap};

pub const BPFFS: &str = "/sys/fs/bpf";

/// How ingress is filtered. `Auto`: native XDP on NICs with a driver; TC on
/// virtual devices (veth, bridges), where native XDP turns off GRO and generic
/// XDP costs the GSO fast path (measured: `cargo xtask bench-net`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpChoice {
    Auto,
    Native,
    Generic,
    Tc,
}

/// The ingress hook chosen for an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ingress {
    Xdp(XdpMode),
    Tc,
}

pub fn pin_dir(netns: Option<&str>) -> PathBuf {
    let scope = netns.map_or_else(|| "host".to_string(), |n| format!("netns-{n}"));
    Path::new(BPFFS).join("segc").join(scope)
}

fn valid_name(what: &str, n: &str) -> Result<(), Error> {
    let ok =
        !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b)) && n != "." && n != "..";
    if ok {
        Ok(())
    } else {
        Err(Error::Other(format!("invalid {what} name `{n}`")))
    }
}

/// Moves this thread into the named network namespace (as `ip -n NAME` does).
pub fn enter_netns(name: &str) -> Result<(), Error> {
    valid_name("network namespace", name)?;
    let path = ["/run/netns", "/var/run/netns"].iter().map(|d| Path::new(d).join(name)).find(|p| p.exists());
    let path = path.ok_or_else(|| Error::Other(format!("network namespace `{name}` does not exist")))?;
    let f = fs::File::open(&path).map_err(|e| Error::Other(format!("cannot open {}: {e}", path.display())))?;
    // SAFETY: setns on a valid namespace fd; it changes only this thread's netns.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        return Err(Error::Other(format!("cannot enter network namespace `{name}`: {}", std::io::Error::last_os_error())));
    }
    Ok(())
}

/// Mounts bpffs at /sys/fs/bpf when it is not there.
pub fn ensure_bpffs() -> Result<(), Error> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if mounts.lines().any(|l| l.split_whitespace().nth(1) == Some(BPFFS) && l.split_whitespace().nth(2) == Some("bpf")) {
        return Ok(());
    }
    fs::create_dir_all(BPFFS).map_err(|e| Error::Other(format!("cannot create {BPFFS}: {e}")))?;
    let (src, target, fstype) = (c"bpf", c"/sys/fs/bpf", c"bpf");
    // SAFETY: mount with constant, NUL-terminated strings and no data.
    let r = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if r != 0 {
        return Err(Error::Other(format!("cannot mount bpffs at {BPFFS}: {}", std::io::Error::last_os_error())));
    }
    Ok(())
}

fn ifindex(iface: &str) -> Result<u32, Error> {
    valid_name("interface", iface)?;
    let c = std::ffi::CString::new(iface).map_err(|_| Error::Other(format!("invalid interface name `{iface}`")))?;
    // SAFETY: if_nametoindex reads a NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(Error::Other(format!("interface `{iface}` does not exist")));
    }
    Ok(i)
}

/// What a deployment looks like now.
#[derive(Clone, Debug, Default)]
pub struct State {
    pub deployed: bool,
    pub ifaces: Vec<String>,
    pub generation: Option<u32>,
}

pub fn state(netns: Option<&str>) -> State {
    let dir = pin_dir(netns);
    let mut ifaces: Vec<String> = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix("link_in_")).map(String::from))
        .collect();
    ifaces.sort();
    let generation = PolicyMaps::from_pins(&dir).ok().and_then(|mut m| m.config().ok()).map(|c| c.gen);
    State { deployed: dir.join(rt::names::CONFIG).exists(), ifaces, generation }
}

fn ingress(choice: XdpChoice, iface: &str, in_netns: bool) -> Ingress {
    match choice {
        XdpChoice::Native => Ingress::Xdp(XdpMode::Driver),
        XdpChoice::Generic => Ingress::Xdp(XdpMode::Skb),
        XdpChoice::Tc => Ingress::Tc,
        // /sys shows the host's devices, not a netns's: there, assume virtual.
        XdpChoice::Auto if !in_netns && Path::new("/sys/class/net").join(iface).join("device").exists() => Ingress::Xdp(XdpMode::Driver),
        XdpChoice::Auto => Ingress::Tc,
    }
}

fn ingress_text(i: Ingress) -> &'static str {
    match i {
        Ingress::Xdp(XdpMode::Driver) => "XDP (native)",
        Ingress::Xdp(_) => "XDP (generic)",
        Ingress::Tc => "TC",
    }
}

/// What `deploy` did.
#[derive(Debug)]
pub struct Report {
    pub swap: Swap,
    pub fresh: bool,
    /// (interface, XDP mode used) for interfaces newly attached.
    pub attached: Vec<(String, String)>,
}

/// The pinned programs, reopened.
struct Progs {
    xdp: Xdp,
    tc: SchedClassifier,
    tc_in: SchedClassifier,
}

impl Progs {
    fn open(dir: &Path) -> Result<Progs, Error> {
        Ok(Progs {
            xdp: Xdp::from_pin(dir.join("prog_xdp"), aya_obj::programs::XdpAttachType::Interface)?,
            tc: SchedClassifier::from_pin(dir.join("prog_tc"))?,
            tc_in: SchedClassifier::from_pin(dir.join("prog_tc_ingress"))?,
        })
    }
}

fn pin_link(link: FdLink, path: PathBuf) -> Result<(), Error> {
    link.pin(&path).map(|_| ()).map_err(|e| Error::Other(format!("cannot pin {}: {e}", path.display())))
}

fn attach_iface(p: &mut Progs, dir: &Path, iface: &str, want: Ingress) -> Result<String, Error> {
    let tcx = || TcAttachOptions::TcxOrder(LinkOrder::default());
    let used = match want {
        Ingress::Tc => {
            let id = p.tc_in.attach_with_options(iface, TcAttachType::Ingress, tcx())?;
            let link: FdLink = p.tc_in.take_link(id)?.try_into().map_err(|e| Error::Other(format!("tc link: {e}")))?;
            pin_link(link, dir.join(format!("link_in_{iface}")))?;
            Ingress::Tc
        }
        Ingress::Xdp(mode) => {
            let (id, used) = match p.xdp.attach(iface, mode) {
                Ok(id) => (id, mode),
                Err(e) if mode == XdpMode::Driver => {
                    // Native XDP is not supported by this driver: fall back, loudly.
                    eprintln!("warning: native XDP failed on `{iface}` ({e}); using generic XDP");
                    (p.xdp.attach(iface, XdpMode::Skb)?, XdpMode::Skb)
                }
                Err(e) => return Err(e.into()),
            };
            let link: FdLink = p.xdp.take_link(id)?.try_into().map_err(|e| Error::Other(format!("xdp link: {e}")))?;
            pin_link(link, dir.join(format!("link_in_{iface}")))?;
            Ingress::Xdp(used)
        }
    };
    let id = p.tc.attach_with_options(iface, TcAttachType::Egress, tcx())?;
    let link: FdLink = p.tc.take_link(id)?.try_into().map_err(|e| Error::Other(format!("tc link: {e}")))?;
    pin_link(link, dir.join(format!("link_out_{iface}")))?;
    Ok(ingress_text(used).to_string())
}

/// Deploys `t` on `ifaces` (in `netns` when given). On a host where segc is
/// already deployed, swaps the policy in place and attaches any new interface.
/// The caller must already be in the right network namespace.
pub fn deploy(t: &Tables, netns: Option<&str>, ifaces: &[String], choice: XdpChoice) -> Result<Report, Error> {
    for i in ifaces {
        ifindex(i)?;
    }
    ensure_bpffs()?;
    let dir = pin_dir(netns);
    if dir.join(rt::names::CONFIG).exists() {
        let mut maps = PolicyMaps::from_pins(&dir)?;
        let swap = maps.install(t)?;
        let mut attached = Vec::new();
        let new: Vec<&String> = ifaces.iter().filter(|i| !dir.join(format!("link_in_{i}")).exists()).collect();
        if !new.is_empty() {
            let mut progs = Progs::open(&dir)?;
            for i in new {
                let mode = attach_iface(&mut progs, &dir, i, ingress(choice, i, netns.is_some()))?;
                attached.push((i.clone(), mode));
            }
        }
        return Ok(Report { swap, fresh: false, attached });
    }
    fs::create_dir_all(&dir).map_err(|e| Error::Other(format!("cannot create {}: {e}", dir.display())))?;
    let result = (|| -> Result<Report, Error> {
        let mut f = Filter::load()?;
        let swap = f.install(t)?;
        f.maps.pin(&dir)?;
        for name in [rt::names::ZONE_CACHE, rt::names::CONNS, rt::names::COUNTERS, rt::names::PAIR_COUNTERS, rt::names::EVENTS] {
            f.ebpf
                .map(name)
                .ok_or(Error::Missing("map"))?
                .pin(dir.join(name))
                .map_err(|e| Error::Other(format!("cannot pin `{name}`: {e}")))?;
        }
        let mut attached = Vec::new();
        {
            let prog = f.ebpf.program_mut(rt::names::XDP).ok_or(Error::Missing("xdp program"))?;
            prog.pin(dir.join("prog_xdp")).map_err(|e| Error::Other(format!("cannot pin the xdp program: {e}")))?;
            let prog = f.ebpf.program_mut(rt::names::TC).ok_or(Error::Missing("tc program"))?;
            prog.pin(dir.join("prog_tc")).map_err(|e| Error::Other(format!("cannot pin the tc program: {e}")))?;
            let prog = f.ebpf.program_mut(rt::names::TC_INGRESS).ok_or(Error::Missing("tc program"))?;
            prog.pin(dir.join("prog_tc_ingress")).map_err(|e| Error::Other(format!("cannot pin the tc program: {e}")))?;
        }
        // The programs reopened from their pins are the same kernel objects.
        let mut progs = Progs::open(&dir)?;
        for i in ifaces {
            let mode = ingress(choice, i, netns.is_some());
            attached.push((i.clone(), attach_iface(&mut progs, &dir, i, mode)?));
        }
        Ok(Report { swap, fresh: true, attached })
    })();
    if result.is_err() {
        // Nothing half-applied: unpinning detaches whatever was attached.
        let _ = fs::remove_dir_all(&dir);
    }
    result
}

/// Detaches and unpins. With `ifaces`, only those; the rest stays deployed
/// unless nothing remains. Returns the interfaces detached.
pub fn undeploy(netns: Option<&str>, ifaces: &[String]) -> Result<Vec<String>, Error> {
    let dir = pin_dir(netns);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let st = state(netns);
    let targets: Vec<String> = if ifaces.is_empty() { st.ifaces.clone() } else { ifaces.to_vec() };
    let mut done = Vec::new();
    for i in &targets {
        let mut any = false;
        for kind in ["in", "out"] {
            let p = dir.join(format!("link_{kind}_{i}"));
            if p.exists() {
                // Taking the pinned link and dropping it detaches it.
                if let Ok(link) = PinnedLink::from_pin(&p) {
                    let _ = link.unpin();
                } else {
                    let _ = fs::remove_file(&p);
                }
                any = true;
            }
        }
        if any {
            done.push(i.clone());
        }
    }
    let remaining = state(netns).ifaces;
    if remaining.is_empty() {
        fs::remove_dir_all(&dir).map_err(|e| Error::Other(format!("cannot remove {}: {e}", dir.display())))?;
    }
    Ok(done)
}

/// Reads the pinned counters, summed over CPUs: (packets, bytes) per index.
pub fn counters(netns: Option<&str>) -> Result<Vec<(u64, u64)>, Error> {
    let dir = pin_dir(netns);
    let map = aya::maps::Map::from_map_data(aya::maps::MapData::from_pin(dir.join(rt::names::COUNTERS))?)?;
    let arr: aya::maps::PerCpuArray<aya::maps::MapData, rt::Counter> = aya::maps::PerCpuArray::try_from(map)?;
    let mut out = Vec::new();
    for i in 0..rt::CNT_MAX {
        let v = arr.get(&i, 0)?;
        out.push(v.iter().fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes)));
    }
    Ok(out)
}

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

/// Traffic per zone pair and verdict in `epoch`, sorted.
pub fn pair_counters(netns: Option<&str>, epoch: u32) -> Result<Vec<PairTraffic>, Error> {
    let dir = pin_dir(netns);
    let map = aya::maps::Map::from_map_data(aya::maps::MapData::from_pin(dir.join(rt::names::PAIR_COUNTERS))?)?;
    let h: aya::maps::PerCpuHashMap<aya::maps::MapData, rt::PairCounterKey, rt::Counter> = aya::maps::PerCpuHashMap::try_from(map)?;
    let mut out: Vec<PairTraffic> = h
        .iter()
        .filter_map(Result::ok)
        .filter(|(k, _)| k.epoch == epoch)
        .map(|(k, v)| {
            let (packets, bytes) = v.iter().fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes));
            PairTraffic { src_zone: k.src_zone, dst_zone: k.dst_zone, verdict: k.verdict, packets, bytes }
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Used by `deploy --plan`: what would happen, without touching anything.
pub fn plan(t: &Tables, netns: Option<&str>, ifaces: &[String], choice: XdpChoice) -> Result<Vec<String>, Error> {
    let st = state(netns);
    let dir = pin_dir(netns);
    let mut lines = Vec::new();
    for i in ifaces {
        ifindex(i)?;
    }
    let entries = t.zones4.len() + t.zones6.len() + t.rules.len();
    if st.deployed {
        lines.push(format!(
            "swap the policy in place at {} (epoch {} -> {}), {entries} table entries",
            dir.display(),
            st.generation.unwrap_or(0),
            st.generation.unwrap_or(0).wrapping_add(1)
        ));
    } else {
        lines.push(format!("load the filter and pin it at {}, {entries} table entries", dir.display()));
    }
    for i in ifaces {
        if st.ifaces.contains(i) {
            lines.push(format!("keep `{i}` attached"));
        } else {
            let hook = ingress_text(ingress(choice, i, netns.is_some()));
            lines.push(format!("attach {hook} on ingress and TC on egress of `{i}`"));
        }
    }
    Ok(lines)
}

pub use crate::Swap as SwapReport;
