//! `segc agent`: keeps a policy deployed on a host. It deploys at start, then
//! polls the policy's files: a valid change is swapped in atomically, a broken
//! one is refused (the old policy stays) — both recorded in the audit log. It
//! drains the filter's sampled deny events into the audit log and serves
//! Prometheus metrics on a loopback address. After attaching, it drops every
//! capability but CAP_BPF and CAP_NET_ADMIN, sets no_new_privs and installs a
//! seccomp allow-list.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use segc_compiler::{Compilation, Options};
use segc_loader::attach;
use segc_runtime_bpf as rt;

/// What the agent has done, for the metrics.
#[derive(Debug, Default)]
struct Stats {
    zones: ZoneNames,
    epoch: u64,
    swaps: u64,
    refused: u64,
    last_swap_seconds: f64,
    audit_errors: u64,
    deny_samples: u64,
    /// Entries of the live policy per map: (map, entries, capacity for one policy).
    fill: Vec<(&'static str, usize, usize)>,
}

#[derive(Debug)]
struct Metrics {
    stats: Arc<Mutex<Stats>>,
    netns: Option<String>,
}

/// Zone names of the live policy, by runtime zone id (index + 1).
#[derive(Debug, Default)]
struct ZoneNames(Vec<String>);

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, labels: &[(&str, &str)], values: &[u64]) -> Result<(), std::fmt::Error> {
    let c0 = ConstCounter::new(0u64);
    let mut me = enc.encode_descriptor(name, help, None, c0.metric_type())?;
    if labels.is_empty() {
        ConstCounter::new(values[0]).encode(me)?;
        return Ok(());
    }
    for (i, (k, v)) in labels.iter().enumerate() {
        let set = vec![((*k).to_string(), (*v).to_string())];
        ConstCounter::new(values[i]).encode(me.encode_family(&set)?)?;
    }
    Ok(())
}

impl Collector for Metrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.stats.lock().map_err(|_| std::fmt::Error)?;
        // The filter's own per-CPU counters, summed, read on each scrape.
        let c = attach::counters(self.netns.as_deref()).unwrap_or_default();
        let get = |i: u32| c.get(i as usize).copied().unwrap_or((0, 0));
        let classes = [
            ("verdict", "allow"),
            ("verdict", "deny"),
            ("verdict", "established"),
            ("verdict", "not_ip"),
            ("verdict", "malformed"),
            ("verdict", "neighbour_discovery"),
        ];
        let idx = [rt::CNT_ALLOW, rt::CNT_DENY, rt::CNT_ESTABLISHED, rt::CNT_NOT_IP, rt::CNT_MALFORMED, rt::CNT_ND];
        let packets: Vec<u64> = idx.iter().map(|&i| get(i).0).collect();
        let bytes: Vec<u64> = idx.iter().map(|&i| get(i).1).collect();
        counter(&mut enc, "segc_packets", "Packets judged by the filter, by verdict", &classes, &packets)?;
        counter(&mut enc, "segc_bytes", "Bytes judged by the filter, by verdict", &classes, &bytes)?;
        // Per zone pair, for the live epoch.
        let pairs = attach::pair_counters(self.netns.as_deref(), s.epoch as u32).unwrap_or_default();
        let name = |id: u32| id.checked_sub(1).and_then(|i| s.zones.0.get(i as usize)).cloned().unwrap_or_else(|| "(none)".into());
        for (metric, help, pick) in [
            ("segc_zone_pair_packets", "Packets judged by the policy, by zone pair and verdict", 0usize),
            ("segc_zone_pair_bytes", "Bytes judged by the policy, by zone pair and verdict", 1usize),
        ] {
            let c0 = ConstCounter::new(0u64);
            let mut me = enc.encode_descriptor(metric, help, None, c0.metric_type())?;
            for p in &pairs {
                let labels = vec![
                    ("src_zone".to_string(), name(p.src_zone)),
                    ("dst_zone".to_string(), name(p.dst_zone)),
                    ("verdict".to_string(), if p.verdict == 0 { "allow" } else { "deny" }.to_string()),
                ];
                ConstCounter::new(if pick == 0 { p.packets } else { p.bytes }).encode(me.encode_family(&labels)?)?;
            }
        }
        counter(&mut enc, "segc_policy_swaps", "Policies swapped in by the agent", &[], &[s.swaps])?;
        counter(&mut enc, "segc_policy_refused", "Policy changes refused because they had errors", &[], &[s.refused])?;
        counter(&mut enc, "segc_audit_write_errors", "Audit events that could not be written", &[], &[s.audit_errors])?;
        counter(&mut enc, "segc_deny_samples", "Sampled deny events drained into the audit log", &[], &[s.deny_samples])?;
        let g = ConstGauge::new(s.epoch as i64);
        g.encode(enc.encode_descriptor("segc_policy_epoch", "The live policy epoch", None, g.metric_type())?)?;
        let g = ConstGauge::new(s.last_swap_seconds);
        g.encode(enc.encode_descriptor("segc_swap_duration_seconds", "How long the last swap took", None, g.metric_type())?)?;
        let g0 = ConstGauge::new(0.0f64);
        let mut me = enc.encode_descriptor(
            "segc_map_fill_ratio",
            "Entries of the live policy over what one policy may use of each map (half: a swap holds two)",
            None,
            g0.metric_type(),
        )?;
        for &(map, used, cap) in &s.fill {
            let labels = vec![("map".to_string(), map.to_string())];
            ConstGauge::new(used as f64 / cap.max(1) as f64).encode(me.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signals() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
}

/// Keeps CAP_BPF and CAP_NET_ADMIN, drops every other capability (effective,
/// permitted, inheritable and the bounding set) and sets no_new_privs.
pub fn drop_privileges() -> Result<()> {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_BPF: u32 = 39;
    // SAFETY: prctl calls with constant arguments.
    unsafe {
        for cap in 0..64u64 {
            if cap != u64::from(CAP_NET_ADMIN) && cap != u64::from(CAP_BPF) {
                libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
            }
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            bail!("cannot set no_new_privs: {}", std::io::Error::last_os_error());
        }
    }
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let keep_lo = 1u32 << CAP_NET_ADMIN;
    let keep_hi = 1u32 << (CAP_BPF - 32);
    let header = Header { version: 0x2008_0522, pid: 0 };
    let data =
        [Data { effective: keep_lo, permitted: keep_lo, inheritable: 0 }, Data { effective: keep_hi, permitted: keep_hi, inheritable: 0 }];
    // SAFETY: capset with a v3 header and two data words, as the kernel expects.
    let r = unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) };
    if r != 0 {
        bail!("cannot drop capabilities: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The system calls the agent makes once it runs (measured with strace over
/// deploy, reload, refusal, deny sampling, scrapes and SIGTERM, plus what the
/// runtime needs for threads, signals, panics and the audit log's rotation).
const ALLOWED_SYSCALLS: &[libc::c_long] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_readv,
    libc::SYS_openat,
    libc::SYS_close,
    libc::SYS_lseek,
    libc::SYS_statx,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_readlink,
    libc::SYS_readlinkat,
    libc::SYS_getdents64,
    libc::SYS_fcntl,
    libc::SYS_ioctl,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_flock,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    libc::SYS_mkdir,
    libc::SYS_mkdirat,
    libc::SYS_ftruncate,
    libc::SYS_access,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_bpf,
    libc::SYS_socket,
    libc::SYS_accept4,
    libc::SYS_accept,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_recvmsg,
    libc::SYS_sendmsg,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
    libc::SYS_getsockname,
    libc::SYS_shutdown,
    libc::SYS_poll,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_clock_gettime,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getrandom,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_tgkill,
    libc::SYS_rseq,
    libc::SYS_set_robust_list,
    libc::SYS_prctl,
    libc::SYS_capget,
    libc::SYS_capset,
    libc::SYS_uname,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_restart_syscall,
    libc::SYS_prlimit64,
];

/// Installs the seccomp allow-list on every thread: any other system call
/// kills the process (SIGSYS).
pub fn install_seccomp() -> Result<()> {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
    let rules = ALLOWED_SYSCALLS.iter().map(|&n| (n, vec![])).collect();
    let arch = if cfg!(target_arch = "aarch64") { TargetArch::aarch64 } else { TargetArch::x86_64 };
    let filter = SeccompFilter::new(rules, SeccompAction::KillProcess, SeccompAction::Allow, arch).context("seccomp filter")?;
    let prog: BpfProgram = filter.try_into().context("seccomp filter")?;
    seccompiler::apply_filter_all_threads(&prog).context("cannot install the seccomp filter")?;
    Ok(())
}

/// The capability sets of this process, from /proc (hex masks).
pub fn capabilities() -> Vec<(String, String)> {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("Cap") || l.starts_with("NoNewPrivs"))
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.to_string(), v.trim().to_string())))
        .collect()
}

/// OpenMetrics text, as prometheus-client writes it, in the Prometheus text
/// format 0.0.4 that every scraper and `promtool check metrics` read: counter
/// families are named with their `_total` suffix, and `# EOF` goes.
fn to_prometheus_text(open_metrics: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        open_metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(rewritten.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

fn serve_metrics(listener: TcpListener, registry: Arc<Registry>) {
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut req = [0u8; 1024];
        let n = s.read(&mut req).unwrap_or(0);
        let path_ok = String::from_utf8_lossy(&req[..n]).starts_with("GET /metrics");
        let mut body = String::new();
        let (status, ctype) = if path_ok && prometheus_client::encoding::text::encode(&mut body, &registry).is_ok() {
            body = to_prometheus_text(&body);
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8")
        } else {
            body = "not found\n".into();
            ("404 Not Found", "text/plain")
        };
        let _ =
            write!(s, "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    }
}

/// Every source file's path and bytes, to notice changes.
fn fingerprint(dir: &Path, c: &Compilation) -> Vec<(PathBuf, Vec<u8>)> {
    c.tree
        .user_files
        .iter()
        .map(|&f| {
            let p = dir.join(&c.sources().get(f).name);
            let bytes = std::fs::read(&p).unwrap_or_default();
            (p, bytes)
        })
        .collect()
}

pub struct Config {
    pub policy: PathBuf,
    pub ifaces: Vec<String>,
    pub netns: Option<String>,
    pub choice: attach::XdpChoice,
    pub metrics: SocketAddr,
    pub interval: Duration,
    pub sample_every: u32,
    /// Stop after this long (tests); run until SIGTERM otherwise.
    pub run_for: Option<Duration>,
    /// After locking down, make a forbidden system call (tests: it must kill).
    pub seccomp_selftest: bool,
}

pub fn run(cfg: Config) -> Result<u8> {
    if !cfg.metrics.ip().is_loopback() {
        bail!("the metrics address must be a loopback address, not {}", cfg.metrics);
    }
    // Bound before entering the namespace: the endpoint stays on the host's loopback.
    let listener = TcpListener::bind(cfg.metrics).with_context(|| format!("cannot listen on {}", cfg.metrics))?;
    if let Some(ns) = &cfg.netns {
        attach::enter_netns(ns)?;
    }
    let pp = crate::fsload::policy_path(&cfg.policy).map_err(anyhow::Error::msg)?;
    let compile = || crate::commands::load(&cfg.policy, &Options { today: Some(crate::commands::today_utc()) });
    let first = compile()?;
    if first.has_errors() {
        crate::render::human(first.sources(), &first.diagnostics, false, &mut std::io::stderr().lock())?;
        bail!("the policy has errors; the agent does not start on a broken policy");
    }
    let stats = Arc::new(Mutex::new(Stats::default()));
    let audit = segc_audit::Log::open(&segc_audit::default_dir()).context("the agent needs its audit log")?;
    let record = |kind: &str, data: serde_json::Value| {
        if audit.append(kind, data).is_err() {
            if let Ok(mut s) = stats.lock() {
                s.audit_errors += 1;
            }
        }
    };
    let deploy = |c: &Compilation| -> Result<segc_loader::Swap> {
        let t = segc_compiler::lower::bpf::tables(&c.model);
        let over = segc_compiler::lower::bpf::check_capacity(&c.model, &t);
        if !over.is_empty() {
            bail!("the policy does not fit the eBPF maps: {}", over[0].message);
        }
        let r = attach::deploy(&t, cfg.netns.as_deref(), &cfg.ifaces, cfg.choice)?;
        if let Ok(mut s) = stats.lock() {
            s.zones = ZoneNames(c.model.zones.iter().map(|z| z.name.clone()).collect());
            s.epoch = u64::from(r.swap.generation);
            s.swaps += 1;
            s.last_swap_seconds = (r.swap.prepare + r.swap.flip).as_secs_f64();
            let placed = segc_compiler::lower::bpf::placement(&t.rules);
            use segc_compiler::lower::bpf as b;
            s.fill = vec![
                ("segc_zones4", t.zones4.len(), b::ZONES4_MAX / 2),
                ("segc_zones6", t.zones6.len(), b::ZONES6_MAX / 2),
                ("segc_ports", placed.exact.len(), b::PORTS_MAX / 2),
                ("segc_rules", placed.ranges.len(), b::RULES_MAX / 2),
                ("segc_pairs", placed.ranged_pairs.len(), b::PAIRS_MAX / 2),
            ];
        }
        Ok(r.swap)
    };
    let swap = deploy(&first)?;
    let dir = attach::pin_dir(cfg.netns.as_deref());
    let mut maps = segc_loader::PolicyMaps::from_pins(&dir)?;
    maps.set_options(0, cfg.sample_every)?;
    record(
        "agent.start",
        serde_json::json!({"policy": first.model.policy.name, "ifaces": cfg.ifaces, "netns": cfg.netns, "epoch": swap.generation}),
    );

    let mut registry = Registry::default();
    registry.register_collector(Box::new(Metrics { stats: stats.clone(), netns: cfg.netns.clone() }));
    let registry = Arc::new(registry);
    std::thread::spawn(move || serve_metrics(listener, registry));

    let mut events = segc_loader::events(&dir)?;
    drop_privileges()?;
    install_seccomp()?;
    if cfg.seccomp_selftest {
        eprintln!("segc agent: seccomp self-test: calling mount(2), which must kill this process");
        // SAFETY: a mount with null arguments; the filter kills before the kernel looks at them.
        unsafe { libc::syscall(libc::SYS_mount, 0, 0, 0, 0, 0) };
        bail!("the seccomp filter did not stop a forbidden system call");
    }
    install_signals();
    eprintln!(
        "segc agent: enforcing `{}` on {}; metrics on http://{}/metrics",
        first.model.policy.name.as_deref().unwrap_or("policy"),
        cfg.ifaces.join(", "),
        cfg.metrics
    );
    for (k, v) in capabilities() {
        eprintln!("segc agent: {k}: {v}");
    }
    let mut known = fingerprint(&pp.dir, &first);
    let started = Instant::now();
    while !STOP.load(Ordering::SeqCst) && cfg.run_for.is_none_or(|d| started.elapsed() < d) {
        std::thread::sleep(cfg.interval);
        for e in segc_loader::drain(&mut events) {
            record("deny.sample", e);
            if let Ok(mut s) = stats.lock() {
                s.deny_samples += 1;
            }
        }
        let now = {
            let probe = compile();
            match probe {
                Ok(c) => c,
                Err(e) => {
                    record("policy.refused", serde_json::json!({"error": e.to_string()}));
                    continue;
                }
            }
        };
        let print = fingerprint(&pp.dir, &now);
        if print == known {
            continue;
        }
        known = print;
        if now.has_errors() {
            let errors: Vec<String> =
                now.diagnostics.iter().filter(|d| d.is_error()).take(10).map(|d| format!("{}: {}", d.code, d.message)).collect();
            eprintln!("segc agent: the new policy has errors; keeping the old one");
            record("policy.refused", serde_json::json!({"errors": errors}));
            if let Ok(mut s) = stats.lock() {
                s.refused += 1;
            }
            continue;
        }
        match deploy(&now) {
            Ok(swap) => record(
                "swap",
                serde_json::json!({"policy": now.model.policy.name, "epoch": swap.generation, "entries": swap.entries, "seconds": (swap.prepare + swap.flip).as_secs_f64()}),
            ),
            Err(e) => {
                record("policy.refused", serde_json::json!({"error": e.to_string()}));
                if let Ok(mut s) = stats.lock() {
                    s.refused += 1;
                }
            }
        }
    }
    record("agent.stop", serde_json::json!({}));
    Ok(crate::exit::OK)
}

#[cfg(test)]
mod tests {
    #[test]
    fn openmetrics_becomes_prometheus_text() {
        let om = "# HELP a_packets Packets\n# TYPE a_packets counter\na_packets_total{v=\"x\"} 3\n# HELP g A gauge\n# TYPE g gauge\ng 1\n# EOF\n";
        let text = super::to_prometheus_text(om);
        assert_eq!(text, "# HELP a_packets_total Packets\n# TYPE a_packets_total counter\na_packets_total{v=\"x\"} 3\n# HELP g A gauge\n# TYPE g gauge\ng 1\n");
    }
}
