//! `segc agent`: keeps a policy deployed on a host. It deploys at start, then
//! polls the policy's files (`watch`): a valid change is swapped in
//! atomically, a broken one is refused (the old policy stays), both recorded
//! in the audit log. A thread of its own aggregates the filter's sampled deny
//! events into the audit log (`samples`); another serves Prometheus metrics on
//! a loopback address (`metrics`). Before any thread starts it drops every
//! capability but CAP_BPF and CAP_NET_ADMIN and sets no_new_privs; then a
//! seccomp allow-list covers every thread (`lockdown`).

mod feeds;
mod lockdown;
pub(crate) mod metrics;
mod samples;
mod source;
mod watch;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use prometheus_client::registry::Registry;
use segc_audit::Kind;
use segc_compiler::lower::bpf::Tables;
use segc_loader::attach;

pub use lockdown::{capabilities, drop_all_privileges, drop_privileges, install_seccomp};
use metrics::{Metrics, Stats, ZoneNames};
pub use source::{source, PolicySource};

pub(crate) static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether SIGTERM or SIGINT arrived (for the controller, which shares them).
pub fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

pub fn install_stop_signals() {
    install_signals();
}

fn install_signals() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
}

pub struct Config {
    /// A policy's files, or a fleet on etcd.
    pub source: PolicySource,
    pub ifaces: Vec<String>,
    pub netns: Option<String>,
    pub choice: attach::XdpChoice,
    pub link: attach::LinkOptions,
    pub metrics: SocketAddr,
    pub interval: Duration,
    pub sample_every: u32,
    /// How long deny samples are aggregated before they are written.
    pub sample_window: Duration,
    /// Stop after this long (tests); run until SIGTERM otherwise.
    pub run_for: Option<Duration>,
    /// After locking down, make a forbidden system call (tests: it must kill).
    pub seccomp_selftest: bool,
    /// Where audit segments rotate.
    pub audit_segment_bytes: u64,
    /// Every blocked feed read again this often, instead of its `refresh`.
    pub feed_refresh: Option<Duration>,
}

/// What the agent holds while it runs.
struct Agent<'c> {
    cfg: &'c Config,
    stats: Arc<Mutex<Stats>>,
    audit: Arc<segc_audit::Log>,
    /// The maps of the last policy this agent installed (for feed swaps).
    maps: Mutex<Option<segc_loader::PolicyMaps>>,
    /// The feed refresher (policies from files).
    feeds: std::cell::RefCell<Option<feeds::Refresher>>,
}

impl Agent<'_> {
    fn record(&self, kind: Kind, data: serde_json::Value) {
        if self.audit.append(kind, data).is_err() {
            if let Ok(mut s) = self.stats.lock() {
                s.audit_errors += 1;
            }
        }
    }

    fn refused(&self, data: serde_json::Value) {
        self.record(Kind::PolicyRefused, data);
        if let Ok(mut s) = self.stats.lock() {
            s.refused += 1;
        }
    }

    /// Installs a policy's tables (attaching where needed) and updates the stats.
    fn deploy(&self, t: &Tables) -> Result<segc_loader::Swap> {
        if let Some((map, used, cap)) = segc_compiler::lower::bpf::usage(t).into_iter().find(|(_, used, cap)| used > cap) {
            bail!("the policy does not fit the eBPF maps: `{map}` needs {used} entries but holds {cap}");
        }
        let r = attach::deploy(t, self.cfg.netns.as_deref(), &self.cfg.ifaces, self.cfg.choice, &self.cfg.link)?;
        if let Ok(mut m) = self.maps.lock() {
            *m = Some(r.maps);
        }
        if let Ok(mut s) = self.stats.lock() {
            s.zones = ZoneNames(t.zones.clone());
            s.epoch = u64::from(r.swap.generation);
            s.swaps += 1;
            s.last_swap_seconds = (r.swap.prepare + r.swap.flip).as_secs_f64();
            s.fill = segc_compiler::lower::bpf::usage(t).to_vec();
        }
        Ok(r.swap)
    }

    /// Swaps the feed tries of the policy this agent installed.
    fn swap_feeds(
        &self,
        f4: &[segc_compiler::lower::bpf::FeedPrefix],
        f6: &[segc_compiler::lower::bpf::FeedPrefix],
    ) -> Result<segc_loader::Swap> {
        let mut maps = self.maps.lock().map_err(|_| anyhow::anyhow!("the maps lock is poisoned"))?;
        let maps = maps.as_mut().context("no policy deployed by this agent")?;
        let swap = attach::swap_feeds(maps, self.cfg.netns.as_deref(), f4, f6)?;
        if let Ok(mut s) = self.stats.lock() {
            s.epoch = u64::from(swap.generation);
            s.last_swap_seconds = (swap.prepare + swap.flip).as_secs_f64();
        }
        Ok(swap)
    }

    fn with_feed_stat(&self, feed: &str, f: impl FnOnce(&mut metrics::FeedStat)) {
        if let Ok(mut s) = self.stats.lock() {
            f(s.feeds.entry(feed.to_string()).or_default());
        }
    }

    /// A policy from files was deployed: its feeds are the good copies now.
    fn reset_feeds(&self, model: &segc_compiler::ir::Model) {
        if let Some(r) = self.feeds.borrow_mut().as_mut() {
            r.reset(self, model);
        }
    }

    /// Attaches again wherever the kernel says the filter is gone (an
    /// interface deleted and created again), and records it.
    fn reattach(&self) {
        match attach::repair(self.cfg.netns.as_deref(), self.cfg.choice) {
            Ok(done) if done.is_empty() => {}
            Ok(done) => {
                for (iface, how) in done {
                    eprintln!("segc agent: `{iface}` had lost its filter; attached again ({how})");
                    self.record(Kind::Reattach, serde_json::json!({"iface": iface, "hooks": how, "netns": self.cfg.netns}));
                    if let Ok(mut s) = self.stats.lock() {
                        s.reattached += 1;
                    }
                }
            }
            Err(e) => self.record(Kind::Reattach, serde_json::json!({"error": e.to_string(), "netns": self.cfg.netns})),
        }
    }
}

pub fn run(cfg: Config) -> Result<u8> {
    if !cfg.metrics.ip().is_loopback() {
        bail!("the metrics address must be a loopback address, not {}", cfg.metrics);
    }
    // Everything that needs the file system's current folder, or privileges
    // the agent drops, happens first: paths resolved, the endpoint bound (on
    // the host's loopback, before entering the namespace), the policy
    // compiled and deployed, the audit log and its key opened.
    // A fleet's etcd thread starts here, in the host's namespace.
    let mut mode = source::Mode::start(&cfg)?;
    // Feeds are read from the host's namespace, by a thread without capabilities.
    let refresher = mode.feeds_to_refresh().map(|(root, cache)| feeds::Refresher::start(root, cache, cfg.feed_refresh, &STOP));
    let listener = TcpListener::bind(cfg.metrics).with_context(|| format!("cannot listen on {}", cfg.metrics))?;
    if let Some(ns) = &cfg.netns {
        attach::enter_netns(ns)?;
    }
    let audit = segc_audit::Log::open(&segc_audit::default_dir()).context("the agent needs its audit log")?;
    let audit = Arc::new(audit.with_segment_limit(cfg.audit_segment_bytes));
    let agent = Agent {
        cfg: &cfg,
        stats: Arc::new(Mutex::new(Stats::default())),
        audit,
        maps: Mutex::new(None),
        feeds: std::cell::RefCell::new(refresher),
    };
    let first = mode.first(&agent)?;
    let swap = agent.deploy(&first)?;
    mode.applied(&agent, &first);
    let dir = attach::pin_dir(cfg.netns.as_deref());
    let mut maps = segc_loader::PolicyMaps::from_pins(&dir)?;
    maps.set_options(0, cfg.sample_every)?;
    agent.record(
        Kind::AgentStart,
        serde_json::json!({"policy": first.policy, "ifaces": cfg.ifaces, "netns": cfg.netns, "epoch": swap.generation, "source": mode.describe()}),
    );
    let events = segc_loader::events(&dir)?;

    // Capabilities are per thread: drop them before any thread exists, so
    // every thread spawned after inherits the reduced sets.
    drop_privileges()?;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Metrics { stats: agent.stats.clone(), netns: cfg.netns.clone() }));
    let registry = Arc::new(registry);
    std::thread::spawn(move || metrics::serve(listener, registry));
    let sampler = {
        let (log, stats, window) = (agent.audit.clone(), agent.stats.clone(), cfg.sample_window);
        std::thread::spawn(move || samples::run(events, log, stats, window))
    };
    // The filter covers every thread (TSYNC).
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
        first.policy.as_deref().unwrap_or("policy"),
        cfg.ifaces.join(", "),
        cfg.metrics
    );
    for (k, v) in capabilities() {
        eprintln!("segc agent: {k}: {v}");
    }
    let started = Instant::now();
    while !STOP.load(Ordering::SeqCst) && cfg.run_for.is_none_or(|d| started.elapsed() < d) {
        mode.wait(cfg.interval);
        agent.reattach();
        mode.poll(&agent);
        if let Some(r) = agent.feeds.borrow_mut().as_mut() {
            r.tick(&agent);
        }
    }
    STOP.store(true, Ordering::SeqCst);
    let _ = sampler.join();
    agent.record(Kind::AgentStop, serde_json::json!({}));
    Ok(crate::exit::OK)
}
