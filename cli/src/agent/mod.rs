//! `segc agent`: keeps a policy deployed on a host. It deploys at start, then
//! polls the policy's files: a valid change is swapped in atomically, a broken
//! one is refused (the old policy stays) — both recorded in the audit log. It
//! drains the filter's sampled deny events into the audit log and serves
//! Prometheus metrics on a loopback address. After attaching, it drops every
//! capability but CAP_BPF and CAP_NET_ADMIN, sets no_new_privs and installs a
//! seccomp allow-list.

mod lockdown;
mod metrics;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use prometheus_client::registry::Registry;
use segc_audit::Kind;
use segc_compiler::{Compilation, Options};
use segc_loader::attach;

pub use lockdown::{capabilities, drop_privileges, install_seccomp};
use metrics::{Metrics, Stats, ZoneNames};

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
    let pp = segc_fsio::policy_path(&cfg.policy).map_err(anyhow::Error::msg)?;
    let compile = || crate::policy::load(&cfg.policy, &Options { today: Some(segc_fsio::clock::today()) });
    let first = compile()?;
    if first.has_errors() {
        crate::render::human(first.sources(), &first.diagnostics, false, &mut std::io::stderr().lock())?;
        bail!("the policy has errors; the agent does not start on a broken policy");
    }
    let stats = Arc::new(Mutex::new(Stats::default()));
    let audit = segc_audit::Log::open(&segc_audit::default_dir()).context("the agent needs its audit log")?;
    let record = |kind: Kind, data: serde_json::Value| {
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
        Kind::AgentStart,
        serde_json::json!({"policy": first.model.policy.name, "ifaces": cfg.ifaces, "netns": cfg.netns, "epoch": swap.generation}),
    );

    let mut registry = Registry::default();
    registry.register_collector(Box::new(Metrics { stats: stats.clone(), netns: cfg.netns.clone() }));
    let registry = Arc::new(registry);
    std::thread::spawn(move || metrics::serve(listener, registry));

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
            record(Kind::DenySample, e);
            if let Ok(mut s) = stats.lock() {
                s.deny_samples += 1;
            }
        }
        let now = {
            let probe = compile();
            match probe {
                Ok(c) => c,
                Err(e) => {
                    record(Kind::PolicyRefused, serde_json::json!({"error": e.to_string()}));
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
            record(Kind::PolicyRefused, serde_json::json!({"errors": errors}));
            if let Ok(mut s) = stats.lock() {
                s.refused += 1;
            }
            continue;
        }
        match deploy(&now) {
            Ok(swap) => record(
                Kind::Swap,
                serde_json::json!({"policy": now.model.policy.name, "epoch": swap.generation, "entries": swap.entries, "seconds": (swap.prepare + swap.flip).as_secs_f64()}),
            ),
            Err(e) => {
                record(Kind::PolicyRefused, serde_json::json!({"error": e.to_string()}));
                if let Ok(mut s) = stats.lock() {
                    s.refused += 1;
                }
            }
        }
    }
    record(Kind::AgentStop, serde_json::json!({}));
    Ok(crate::exit::OK)
}
