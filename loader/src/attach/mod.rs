//! Deploying on a host: segc's programs on ingress and egress of each
//! interface (`hooks`), inside a named network namespace when asked, with
//! maps, programs and links pinned under bpffs so enforcement outlives the
//! process. A redeploy swaps the policy in place and attaches again wherever
//! the kernel says the filter is gone (an interface created again). Undeploy
//! detaches and unpins. Two segc processes never change one deployment at
//! once: each holds the scope's lock (`/run/segc/<scope>.lock`).
//!
//! Layout: `/sys/fs/bpf/segc/<scope>/` where scope is `host` or `netns-NAME`:
//! maps by name, `prog_*`, `link_in_IFACE`, `link_out_IFACE` (XDP and TCX
//! links); beside the lock, `/run/segc/<scope>.attached.json` says how each
//! interface was attached (its index, hooks, clsact filters), which every
//! check compares with the kernel.

pub mod hooks;
pub mod netdev;
mod netlink;

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use segc_compiler::lower::bpf::Tables;
use segc_runtime_bpf as rt;

pub use hooks::{Attached, Hook};
pub use netdev::{ifindex, LinkKind};

use crate::{Error, Filter, PolicyMaps, Swap};

pub const BPFFS: &str = "/sys/fs/bpf";

/// How ingress is filtered. `Auto`: native XDP on NICs with a driver; TC on
/// virtual devices (veth, bridges), where native XDP turns off GRO and generic
/// XDP costs the GSO fast path (measured: `cargo xtask bench-net`). L3 links
/// are always TC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpChoice {
    Auto,
    Native,
    Generic,
    Tc,
}

/// What the filter does besides the policy: the EtherTypes it passes besides
/// ARP, and the connection timeouts (seconds, `rt::TO_*`; 0 keeps Linux's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkOptions {
    pub pass_ethertypes: Vec<u16>,
    pub timeouts: [u32; rt::TO_MAX],
}

pub use crate::traffic::{pair_counters, PairTraffic};

pub fn pin_dir(netns: Option<&str>) -> PathBuf {
    let scope = netns.map_or_else(|| "host".to_string(), |n| format!("netns-{n}"));
    Path::new(BPFFS).join("segc").join(scope)
}

/// Moves this thread into the named network namespace (as `ip -n NAME` does).
pub fn enter_netns(name: &str) -> Result<(), Error> {
    netdev::valid_name("network namespace", name)?;
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

/// An exclusive lock on one deployment scope, held until dropped.
pub struct ScopeLock(fs::File);

impl Drop for ScopeLock {
    fn drop(&mut self) {
        // SAFETY: unlocking a descriptor we own.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Waits for, then takes, the lock of `netns`'s deployment.
pub fn lock(netns: Option<&str>) -> Result<ScopeLock, Error> {
    let dir = Path::new("/run/segc");
    fs::create_dir_all(dir).map_err(|e| Error::Other(format!("cannot create {}: {e}", dir.display())))?;
    let scope = pin_dir(netns).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let path = dir.join(format!("{scope}.lock"));
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Other(format!("cannot open {}: {e}", path.display())))?;
    // SAFETY: flock on a descriptor we own; blocks while another segc holds it.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(Error::Other(format!("cannot lock {}: {}", path.display(), std::io::Error::last_os_error())));
    }
    Ok(ScopeLock(f))
}

/// The kernel features segc uses, probed at run time (never read off a
/// version string); docs/KERNELS.md has the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// TCX (6.6): programs ordered on a hook, first and handing on.
    pub tcx: bool,
    pub ring_buffer: bool,
    pub lru_hash: bool,
    pub array_of_maps: bool,
}

pub fn probe() -> Features {
    use aya::maps::MapType;
    use aya::sys::is_map_supported;
    // Loopback is in every namespace; a kernel without TCX refuses the query.
    let tcx = netdev::ifindex("lo").is_ok_and(|lo| netdev::tcx_programs(lo, netdev::BPF_TCX_INGRESS).is_ok());
    Features {
        tcx,
        ring_buffer: is_map_supported(MapType::RingBuf).unwrap_or(false),
        lru_hash: is_map_supported(MapType::LruHash).unwrap_or(false),
        array_of_maps: is_map_supported(MapType::ArrayOfMaps).unwrap_or(false),
    }
}

impl Features {
    pub fn text(&self) -> String {
        let yes = |b: bool| if b { "yes" } else { "no" };
        format!(
            "TCX {} (else tc clsact), ring buffer {}, LRU hash {}, array of maps {}",
            yes(self.tcx),
            yes(self.ring_buffer),
            yes(self.lru_hash),
            yes(self.array_of_maps)
        )
    }
}

const STATE: &str = "attached.json";

fn read_state(dir: &Path) -> BTreeMap<String, Attached> {
    fs::read(state_path(dir)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

fn write_state(dir: &Path, st: &BTreeMap<String, Attached>) -> Result<(), Error> {
    let bytes = serde_json::to_vec_pretty(st).map_err(|e| Error::Other(e.to_string()))?;
    // bpffs holds only BPF objects: the state lives beside the lock.
    let path = state_path(dir);
    fs::write(&path, bytes).map_err(|e| Error::Other(format!("cannot write {}: {e}", path.display())))
}

/// `/run/segc/<scope>.json`: bpffs holds only BPF objects.
fn state_path(dir: &Path) -> PathBuf {
    let scope = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Path::new("/run/segc").join(format!("{scope}.{STATE}"))
}

/// One interface of a deployment, as the kernel has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfaceStatus {
    pub iface: String,
    pub attached: Attached,
    /// Why the filter is not in place, when it is not.
    pub problem: Option<String>,
}

/// What a deployment looks like now, from the kernel.
#[derive(Clone, Debug, Default)]
pub struct State {
    pub deployed: bool,
    pub ifaces: Vec<IfaceStatus>,
    pub generation: Option<u32>,
}

pub fn state(netns: Option<&str>) -> State {
    let dir = pin_dir(netns);
    let deployed = dir.join(rt::names::CONFIG).exists();
    let generation = PolicyMaps::from_pins(&dir).ok().and_then(|mut m| m.config().ok()).map(|c| c.gen);
    let progs = hooks::Progs::open(&dir).ok();
    let ifaces = read_state(&dir)
        .into_iter()
        .map(|(iface, attached)| {
            let problem = match &progs {
                Some(p) => hooks::check(p, &dir, &iface, &attached),
                None => Some("segc's programs are not pinned".to_string()),
            };
            IfaceStatus { iface, attached, problem }
        })
        .collect();
    State { deployed, ifaces, generation }
}

/// What `deploy` did.
#[derive(Debug)]
pub struct Report {
    pub swap: Swap,
    /// The deployment's maps, holding the policy just installed, for a feed
    /// swap later ([`swap_feeds`]).
    pub maps: PolicyMaps,
    pub fresh: bool,
    /// (interface, how) for interfaces newly attached, or attached again.
    pub attached: Vec<(String, String)>,
    pub features: Features,
}

fn describe(a: &Attached) -> String {
    format!("{} on ingress, {} on egress, {} link", a.ingress.text(), a.egress.text(), if a.l3 { "L3" } else { "Ethernet" })
}

/// Checks every interface before anything changes: it exists, and segc can
/// parse its link type.
fn preflight(ifaces: &[String]) -> Result<(), Error> {
    for i in ifaces {
        netdev::link_kind(i)?;
    }
    Ok(())
}

/// Attaches to each of `ifaces` that is not attached as the kernel sees it
/// (detaching what is left of an old attachment first).
fn attach_missing(
    dir: &Path,
    netns: Option<&str>,
    ifaces: &[String],
    choice: XdpChoice,
    f: Features,
) -> Result<Vec<(String, String)>, Error> {
    let mut st = read_state(dir);
    let mut progs = hooks::Progs::open(dir)?;
    let mut done = Vec::new();
    for i in ifaces {
        if let Some(a) = st.get(i) {
            if !matches!(hooks::status(&progs, dir, i, a), hooks::Status::Missing(_)) {
                continue;
            }
            hooks::detach(dir, i, a);
            st.remove(i);
        }
        let kind = netdev::link_kind(i)?;
        let want = hooks::ingress_hook(choice, i, netns.is_some(), kind, f.tcx);
        let a = hooks::attach(&mut progs, dir, i, want, f.tcx)?;
        done.push((i.clone(), describe(&a)));
        st.insert(i.clone(), a);
        write_state(dir, &st)?;
    }
    Ok(done)
}

/// Deploys `t` on `ifaces` (in `netns` when given). Where segc is already
/// deployed, swaps the policy in place and attaches wherever the filter is
/// not (new interfaces, interfaces created again). The caller must already be
/// in the right network namespace.
pub fn deploy(t: &Tables, netns: Option<&str>, ifaces: &[String], choice: XdpChoice, opts: &LinkOptions) -> Result<Report, Error> {
    preflight(ifaces)?;
    ensure_bpffs()?;
    let _lock = lock(netns)?;
    let features = probe();
    let dir = pin_dir(netns);
    if dir.join(rt::names::CONFIG).exists() {
        let mut maps = PolicyMaps::from_pins(&dir)?;
        maps.set_link_options(&opts.pass_ethertypes, opts.timeouts)?;
        let swap = maps.install(t)?;
        let attached = attach_missing(&dir, netns, ifaces, choice, features)?;
        return Ok(Report { swap, maps, fresh: false, attached, features });
    }
    fs::create_dir_all(&dir).map_err(|e| Error::Other(format!("cannot create {}: {e}", dir.display())))?;
    let _ = fs::remove_file(state_path(&dir));
    let result = (|| -> Result<Report, Error> {
        let mut f = Filter::load()?;
        f.maps.set_link_options(&opts.pass_ethertypes, opts.timeouts)?;
        let swap = f.install(t)?;
        f.maps.pin(&dir)?;
        for name in
            [rt::names::VERDICTS, rt::names::CONNS, rt::names::COUNTERS, rt::names::PAIR_COUNTERS, rt::names::PAIR_SLOTS, rt::names::EVENTS]
        {
            f.ebpf
                .map(name)
                .ok_or(Error::Missing("map"))?
                .pin(dir.join(name))
                .map_err(|e| Error::Other(format!("cannot pin `{name}`: {e}")))?;
        }
        for (prog, pin) in hooks::PROG_PINS {
            let p = f.ebpf.program_mut(prog).ok_or(Error::Missing("program"))?;
            p.pin(dir.join(pin)).map_err(|e| Error::Other(format!("cannot pin {prog}: {e}")))?;
        }
        let attached = attach_missing(&dir, netns, ifaces, choice, features)?;
        Ok(Report { swap, maps: f.maps, fresh: true, attached, features })
    })();
    if result.is_err() {
        // Nothing half-applied: detach what was attached, unpin the rest.
        for (i, a) in read_state(&dir) {
            hooks::detach(&dir, &i, &a);
        }
        let _ = fs::remove_file(state_path(&dir));
        let _ = fs::remove_dir_all(&dir);
    }
    result
}

/// Swaps the feed tries of the policy `maps` installed, under the scope's
/// install lock (the agent's feed refresh).
pub fn swap_feeds(
    maps: &mut PolicyMaps,
    netns: Option<&str>,
    feeds4: &[segc_compiler::lower::bpf::FeedPrefix],
    feeds6: &[segc_compiler::lower::bpf::FeedPrefix],
) -> Result<Swap, Error> {
    let _lock = lock(netns)?;
    maps.swap_feeds(feeds4, feeds6)
}

/// Attaches again wherever a deployed interface has lost its filter (deleted
/// and created again); returns what it attached. For the agent.
pub fn repair(netns: Option<&str>, choice: XdpChoice) -> Result<Vec<(String, String)>, Error> {
    let dir = pin_dir(netns);
    let Ok(progs) = hooks::Progs::open(&dir) else { return Ok(Vec::new()) };
    // Only where the kernel says the filter is gone; a failed question changes nothing.
    let broken: Vec<String> = read_state(&dir)
        .into_iter()
        .filter(|(i, a)| matches!(hooks::status(&progs, &dir, i, a), hooks::Status::Missing(_)))
        .map(|(i, _)| i)
        .collect();
    let present: Vec<String> = broken.into_iter().filter(|i| netdev::ifindex(i).is_ok()).collect();
    if present.is_empty() {
        return Ok(Vec::new());
    }
    let _lock = lock(netns)?;
    attach_missing(&dir, netns, &present, choice, probe())
}

/// Detaches and unpins. With `ifaces`, only those; the rest stays deployed
/// unless nothing remains. Returns the interfaces detached.
pub fn undeploy(netns: Option<&str>, ifaces: &[String]) -> Result<Vec<String>, Error> {
    let dir = pin_dir(netns);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let _lock = lock(netns)?;
    let mut st = read_state(&dir);
    let targets: Vec<String> = if ifaces.is_empty() { st.keys().cloned().collect() } else { ifaces.to_vec() };
    let mut done = Vec::new();
    for i in &targets {
        if let Some(a) = st.remove(i) {
            hooks::detach(&dir, i, &a);
            done.push(i.clone());
        }
    }
    if st.is_empty() {
        let _ = fs::remove_file(state_path(&dir));
        fs::remove_dir_all(&dir).map_err(|e| Error::Other(format!("cannot remove {}: {e}", dir.display())))?;
    } else {
        write_state(&dir, &st)?;
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

/// Used by `deploy --plan`: what would happen, without touching anything.
pub fn plan(t: &Tables, netns: Option<&str>, ifaces: &[String], choice: XdpChoice) -> Result<Vec<String>, Error> {
    preflight(ifaces)?;
    let st = state(netns);
    let dir = pin_dir(netns);
    let features = probe();
    let mut lines = vec![format!("kernel features: {}", features.text())];
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
        match st.ifaces.iter().find(|s| &s.iface == i) {
            Some(s) if s.problem.is_none() => lines.push(format!("keep `{i}` attached ({})", describe(&s.attached))),
            other => {
                let kind = netdev::link_kind(i)?;
                let hook = hooks::ingress_hook(choice, i, netns.is_some(), kind, features.tcx);
                let egress = if features.tcx { Hook::Tcx } else { Hook::TcClsact };
                let again = other.and_then(|s| s.problem.clone()).map_or(String::new(), |p| format!(" again ({p})"));
                lines.push(format!(
                    "attach {} on ingress and {} on egress of `{i}` ({} link){again}",
                    hook.text(),
                    egress.text(),
                    if kind == LinkKind::L3 { "L3" } else { "Ethernet" }
                ));
            }
        }
    }
    Ok(lines)
}
