//! The agent's feed refresher. A thread of its own (started in the host's
//! namespace, with no capabilities) reads each blocked feed again on its
//! `refresh`, a file beside the policy or an https URL, and parses it with
//! the compiler's own parser. The agent's loop then validates what came back
//! and swaps the feed tries alone; a feed that cannot be fetched or parsed,
//! that exceeds `max_prefixes`, or that shrinks by more than half at once is
//! refused and the last good copy stays, with an audit event and a metric.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use segc_audit::Kind;
use segc_compiler::ir::feed::{self, FeedEntry, FeedFormat};
use segc_compiler::ir::Model;
use segc_compiler::source::Loader;
use serde_json::json;

use super::watch::FeedCache;
use super::Agent;

/// A blocked feed, as the policy defines it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub name: String,
    /// A path relative to the policy's root folder, or an https URL.
    pub location: String,
    pub format: FeedFormat,
    pub refresh: Duration,
    pub max: u32,
}

/// The blocked feeds of a policy, sorted by name (the runtime's feed ids).
pub fn specs(model: &Model, refresh: Option<Duration>) -> Vec<Spec> {
    model
        .feeds
        .iter()
        .filter(|f| f.blocked)
        .map(|f| Spec {
            name: f.name.clone(),
            location: f.location.clone(),
            format: f.format,
            refresh: refresh.unwrap_or(Duration::from_secs(f.refresh_secs)),
            max: f.max_prefixes,
        })
        .collect()
}

enum Outcome {
    Read { entries: Vec<FeedEntry>, sha256: String, bytes: Vec<u8> },
    Refused { reason: &'static str, error: String },
}

/// One read of one feed.
struct Fetched {
    spec: Spec,
    outcome: Outcome,
    seconds: f64,
}

/// Reads and parses one feed.
fn read(root: &std::path::Path, spec: &Spec) -> Outcome {
    let limit = crate::feeds::size_limit(spec.max);
    let bytes = if segc_compiler::source::is_url(&spec.location) {
        crate::feeds::fetch_url(&spec.location, limit, crate::feeds::TIMEOUT)
    } else {
        segc_fsio::FsLoader::new(root)
            .map_err(|e| e.to_string())
            .and_then(|l| l.read(&spec.location).map_err(|e| format!("{e:?}")))
            .and_then(|b| if b.len() as u64 > limit { Err(format!("the feed is larger than {limit} bytes")) } else { Ok(b) })
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(error) => return Outcome::Refused { reason: "fetch", error },
    };
    match feed::parse(spec.format, &bytes, spec.max) {
        Ok(entries) => Outcome::Read { entries, sha256: segc_compiler::sha256::hex(&bytes), bytes },
        Err(e @ feed::FeedError::TooMany { .. }) => Outcome::Refused { reason: "max_prefixes", error: e.to_string() },
        Err(e) => Outcome::Refused { reason: "parse", error: e.to_string() },
    }
}

/// What the feed thread is asked.
pub enum Msg {
    /// The blocked feeds now (each set replaces the last; every feed is next
    /// read one `refresh` later).
    Specs(Vec<Spec>),
    /// Fetch a URL for a compile, from the host's namespace.
    Fetch { url: String, reply: Sender<Result<Vec<u8>, String>> },
}

/// Starts the reading thread.
fn start(root: PathBuf, stop: &'static AtomicBool) -> (Sender<Msg>, Receiver<Fetched>) {
    let (spec_tx, spec_rx) = std::sync::mpsc::channel::<Msg>();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Err(e) = super::drop_all_privileges() {
            eprintln!("segc agent: the feed thread cannot drop its capabilities ({e}); feeds are not refreshed");
            return;
        }
        let mut due: Vec<(Spec, Instant)> = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            match spec_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Msg::Specs(specs)) => due = specs.into_iter().map(|s| (Instant::now() + s.refresh, s)).map(|(t, s)| (s, t)).collect(),
                Ok(Msg::Fetch { url, reply }) => {
                    let _ = reply.send(crate::feeds::fetch_url(
                        &url,
                        crate::feeds::size_limit(feed::DEFAULT_MAX_PREFIXES),
                        crate::feeds::TIMEOUT,
                    ));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
            for (spec, at) in &mut due {
                if Instant::now() < *at {
                    continue;
                }
                let started = Instant::now();
                let outcome = read(&root, spec);
                *at = Instant::now() + spec.refresh;
                if tx.send(Fetched { spec: spec.clone(), outcome, seconds: started.elapsed().as_secs_f64() }).is_err() {
                    return;
                }
            }
        }
    });
    (spec_tx, rx)
}

/// The last good copy of a feed.
struct Good {
    entries: Vec<FeedEntry>,
    sha256: String,
}

pub struct Refresher {
    specs: Vec<Spec>,
    good: BTreeMap<String, Good>,
    tx: Sender<Msg>,
    rx: Receiver<Fetched>,
    cache: FeedCache,
    refresh: Option<Duration>,
}

impl Refresher {
    /// Starts the reading thread; call before the agent enters a namespace.
    pub fn start(root: PathBuf, cache: FeedCache, refresh: Option<Duration>, stop: &'static AtomicBool) -> Refresher {
        let (tx, rx) = start(root, stop);
        if let Ok(mut f) = cache.fetcher.lock() {
            *f = Some(tx.clone());
        }
        Refresher { specs: Vec::new(), good: BTreeMap::new(), tx, rx, cache, refresh }
    }

    /// A policy was deployed: its feeds, as compiled, are the good copies.
    pub fn reset(&mut self, agent: &Agent<'_>, model: &Model) {
        self.specs = specs(model, self.refresh);
        self.good = model
            .feeds
            .iter()
            .filter(|f| f.blocked)
            .map(|f| (f.name.clone(), Good { entries: f.entries.clone(), sha256: f.sha256.clone() }))
            .collect();
        let _ = self.tx.send(Msg::Specs(self.specs.clone()));
        if let Ok(mut s) = agent.stats.lock() {
            let now = segc_fsio::clock::unix_seconds();
            s.feeds = self.good.iter().map(|(n, g)| (n.clone(), super::metrics::FeedStat::new(g.entries.len(), now))).collect();
        }
    }

    /// Applies what the reading thread brought back.
    pub fn tick(&mut self, agent: &Agent<'_>) {
        while let Ok(f) = self.rx.try_recv() {
            if !self.specs.contains(&f.spec) {
                continue; // read for a policy since replaced
            }
            match f.outcome {
                Outcome::Refused { reason, error } => self.refuse(agent, &f.spec, reason, &error),
                Outcome::Read { entries, sha256, bytes } => self.apply(agent, &f.spec, entries, sha256, bytes, f.seconds),
            }
        }
    }

    fn apply(&mut self, agent: &Agent<'_>, spec: &Spec, entries: Vec<FeedEntry>, sha256: String, bytes: Vec<u8>, read_s: f64) {
        let now = segc_fsio::clock::unix_seconds();
        let Some(old) = self.good.get(&spec.name) else { return };
        if old.sha256 == sha256 {
            agent.with_feed_stat(&spec.name, |s| s.at = now);
            return;
        }
        if entries.len() * 2 < old.entries.len() {
            let error = format!(
                "{} prefixes, down from {}: a feed that loses more than half at once is kept as it was",
                entries.len(),
                old.entries.len()
            );
            self.refuse(agent, spec, "shrink", &error);
            return;
        }
        let started = Instant::now();
        let previous = self.good.insert(spec.name.clone(), Good { entries, sha256: sha256.clone() });
        let (_, f4, f6) = segc_compiler::lower::bpf::feed_tries(
            self.specs.iter().filter_map(|s| self.good.get(&s.name).map(|g| (s.name.as_str(), g.entries.as_slice()))),
        );
        match agent.swap_feeds(&f4, &f6) {
            Ok(swap) => {
                let prefixes = self.good[&spec.name].entries.len();
                if let Ok(mut c) = self.cache.bytes.lock() {
                    c.insert(spec.location.clone(), bytes);
                }
                agent.with_feed_stat(&spec.name, |s| {
                    s.prefixes = prefixes;
                    s.at = now;
                    s.refreshes += 1;
                });
                agent.record(
                    Kind::FeedRefresh,
                    json!({
                        "feed": spec.name, "source": spec.location, "prefixes": prefixes,
                        "previous_prefixes": previous.as_ref().map(|p| p.entries.len()), "sha256": sha256,
                        "previous_sha256": previous.as_ref().map(|p| p.sha256.clone()), "epoch": swap.generation,
                        "read_seconds": read_s, "swap_seconds": started.elapsed().as_secs_f64(),
                    }),
                );
            }
            Err(e) => {
                if let Some(p) = previous {
                    self.good.insert(spec.name.clone(), p);
                }
                self.refuse(agent, spec, "swap", &format!("{e:#}"));
            }
        }
    }

    fn refuse(&self, agent: &Agent<'_>, spec: &Spec, reason: &'static str, error: &str) {
        eprintln!("segc agent: feed `{}` refused ({reason}): {error}; keeping the last good copy", spec.name);
        let kept = self.good.get(&spec.name);
        agent.with_feed_stat(&spec.name, |s| *s.refusals.entry(reason).or_default() += 1);
        agent.record(
            Kind::FeedRefused,
            json!({
                "feed": spec.name, "source": spec.location, "reason": reason, "error": error,
                "kept_prefixes": kept.map(|g| g.entries.len()), "kept_sha256": kept.map(|g| g.sha256.clone()),
            }),
        );
    }
}
