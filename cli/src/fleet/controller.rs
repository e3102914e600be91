//! `segc controller`: several run, one leads through etcd's election API.
//!
//! A controller campaigns with a short lease (`--lease-ttl`, default 2 s)
//! that a task of its own keeps alive. It may act only while that lease is
//! surely alive: each keep-alive answer moves a deadline to the moment the
//! request was sent plus the TTL etcd granted, less a margin; etcd cannot have
//! expired the lease before that moment, so no other controller can have won
//! the election yet (fencing by time, on this side). Everything it writes to
//! etcd is also guarded by its election key's create revision (fencing on
//! etcd's side): a controller that lost the lease writes nothing.
//!
//! The leader, every second: marks agents whose heartbeats stopped (their
//! lease-bound key gone, or the heartbeat older than `--silent-after-s`); on
//! `--interval-s`: reconciles the clouds the current revision binds (drift
//! reported as events and metrics, or applied with `--reconcile apply`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use segc_audit::Kind;
use serde_json::json;

use super::store::{self, Keys};
use super::Etcd;
use crate::CloudArgs;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reconcile {
    Drift,
    Apply,
}

pub struct Config {
    pub etcd: Etcd,
    pub id: String,
    pub cloud: CloudArgs,
    pub reconcile: Option<Reconcile>,
    pub interval: Duration,
    pub silent_after: Duration,
    pub lease_ttl: i64,
    pub metrics: Option<SocketAddr>,
    /// Stop after this long (tests); run until SIGTERM otherwise.
    pub run_for: Option<Duration>,
    /// Every blocked https feed read again this often, instead of its `refresh`.
    pub feed_refresh: Option<Duration>,
}

/// The controller's Prometheus metrics.
#[derive(Default)]
struct Metrics {
    leader: Gauge,
    leader_changes: Counter,
    revision: Gauge,
    agents: Family<Vec<(String, String)>, Gauge>,
    drift: Family<Vec<(String, String)>, Gauge>,
}

impl Metrics {
    fn register(self: &Arc<Self>) -> Registry {
        let mut r = Registry::default();
        r.register("segc_fleet_leader", "1 while this controller leads", self.leader.clone());
        r.register("segc_fleet_leader_changes", "Times this controller became the leader", self.leader_changes.clone());
        r.register("segc_fleet_revision", "The fleet's current revision, as the leader last read it", self.revision.clone());
        r.register("segc_fleet_agents", "Agents by state (live, silent, behind)", self.agents.clone());
        r.register("segc_fleet_drift_findings", "Drift findings of the last reconcile, by target", self.drift.clone());
        r
    }
}

/// When this controller may no longer act, as milliseconds since `epoch`.
pub(super) struct Deadline {
    epoch: Instant,
    until_ms: AtomicU64,
}

impl Deadline {
    pub(super) fn alive(&self) -> bool {
        (self.epoch.elapsed().as_millis() as u64) < self.until_ms.load(Ordering::SeqCst)
    }
}

pub fn run(cfg: Config) -> Result<u8> {
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = cfg.metrics {
        if !addr.ip().is_loopback() {
            anyhow::bail!("the metrics address must be a loopback address, not {addr}");
        }
        let listener = std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
        let registry = Arc::new(metrics.register());
        std::thread::spawn(move || crate::agent::metrics::serve(listener, registry));
    }
    crate::agent::install_stop_signals();
    let started = Instant::now();
    let done = || crate::agent::stopping() || cfg.run_for.is_some_and(|d| started.elapsed() >= d);
    eprintln!("segc controller {}: fleet {}, etcd {}", cfg.id, cfg.etcd.fleet, cfg.etcd.endpoints.join(","));
    super::runtime()?.block_on(async {
        while !done() {
            match cfg.etcd.connect().await {
                Ok(client) => {
                    if let Err(e) = campaign(&cfg, client, &metrics, &done).await {
                        eprintln!("segc controller {}: {e:#}", cfg.id);
                    }
                }
                Err(e) => eprintln!("segc controller {}: {e:#}", cfg.id),
            }
            metrics.leader.set(0);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    Ok(crate::exit::OK)
}

/// Keeps the lease alive and moves the deadline with every answer.
async fn keep_alive(mut client: Client, lease: i64, ttl: i64, deadline: Arc<Deadline>) {
    let Ok((mut keeper, mut stream)) = client.lease_keep_alive(lease).await else { return };
    let margin = 300u64;
    loop {
        let sent = deadline.epoch.elapsed().as_millis() as u64;
        if keeper.keep_alive().await.is_err() {
            return;
        }
        match tokio::time::timeout(Duration::from_millis(ttl as u64 * 500), stream.message()).await {
            Ok(Ok(Some(r))) if r.ttl() > 0 => {
                let until = sent + (r.ttl() as u64 * 1000).saturating_sub(margin);
                deadline.until_ms.fetch_max(until, Ordering::SeqCst);
            }
            // Expired, refused or no answer: the deadline stays where it was.
            _ => return,
        }
        tokio::time::sleep(Duration::from_millis(ttl as u64 * 1000 / 4)).await;
    }
}

/// One connection: campaign, then lead until the lease is lost.
async fn campaign(cfg: &Config, mut client: Client, metrics: &Metrics, done: &dyn Fn() -> bool) -> Result<()> {
    let keys = cfg.etcd.keys();
    let lease = client.lease_grant(cfg.lease_ttl, None).await.map_err(|e| anyhow!("lease: {e}"))?.id();
    let deadline = Arc::new(Deadline { epoch: Instant::now(), until_ms: AtomicU64::new(0) });
    let keeper = tokio::spawn(keep_alive(client.clone(), lease, cfg.lease_ttl, deadline.clone()));
    let won = tokio::select! {
        r = client.campaign(keys.election(), cfg.id.clone(), lease) => r.map_err(|e| anyhow!("campaign: {e}"))?,
        () = async { while !done() { tokio::time::sleep(Duration::from_millis(200)).await; } } => {
            keeper.abort();
            let _ = client.lease_revoke(lease).await;
            return Ok(());
        }
    };
    let leader = won.leader().cloned().context("campaign: no leader key")?;
    if !deadline.alive() {
        keeper.abort();
        anyhow::bail!("won the election on a lease that may have expired; campaigning again");
    }
    eprintln!("segc controller {}: leading fleet {}", cfg.id, cfg.etcd.fleet);
    metrics.leader.set(1);
    metrics.leader_changes.inc();
    crate::journal::record(Kind::FleetLeader, json!({"fleet": cfg.etcd.fleet, "leader": cfg.id, "lease": lease}), false)?;
    let fence = Compare::create_revision(leader.key().to_vec(), CompareOp::Equal, leader.rev());
    let silent_since = Mutex::new(std::collections::BTreeMap::<String, f64>::new());
    let mut last_reconcile: Option<Instant> = None;
    let mut feeds_due = std::collections::BTreeMap::<String, Instant>::new();
    let result = loop {
        if done() {
            break Ok(());
        }
        if !deadline.alive() {
            break Err(anyhow!("lost the lease: stopped acting"));
        }
        if let Err(e) = mark_silent(cfg, &mut client, &keys, &fence, metrics, &silent_since, &deadline).await {
            break Err(e);
        }
        if let Err(e) = super::feeds::refresh(cfg, &mut client, &keys, &fence, &mut feeds_due, &deadline).await {
            eprintln!("segc controller {}: feeds: {e:#}", cfg.id);
        }
        if cfg.reconcile.is_some() && last_reconcile.is_none_or(|t| t.elapsed() >= cfg.interval) {
            last_reconcile = Some(Instant::now());
            if let Err(e) = reconcile(cfg, &mut client, &keys, metrics, &deadline).await {
                eprintln!("segc controller {}: reconcile: {e:#}", cfg.id);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    metrics.leader.set(0);
    keeper.abort();
    let _ = client.resign(Some(etcd_client::ResignOptions::new().with_leader(leader))).await;
    let _ = client.lease_revoke(lease).await;
    result
}

/// Marks agents whose heartbeats stopped, guarded by the election key.
async fn mark_silent(
    cfg: &Config,
    client: &mut Client,
    keys: &Keys,
    fence: &Compare,
    metrics: &Metrics,
    seen: &Mutex<std::collections::BTreeMap<String, f64>>,
    deadline: &Deadline,
) -> Result<()> {
    let agents = store::agents(client, keys).await?;
    let current = store::current(client, keys).await?.map(|(c, _)| c);
    if let Some(c) = &current {
        metrics.revision.set(c.revision as i64);
    }
    let now = store::now();
    let (mut live, mut silent, mut behind) = (0i64, 0i64, 0i64);
    for (a, alive) in agents {
        let stale = !alive || now - a.heartbeat > cfg.silent_after.as_secs_f64();
        if stale {
            silent += 1;
        } else {
            live += 1;
        }
        if current.as_ref().is_some_and(|c| a.policy_sha256.as_deref() != Some(c.sha256.as_str())) && !stale {
            behind += 1;
        }
        if stale && !a.silent && deadline.alive() {
            let marked = store::AgentRecord { silent: true, ..a.clone() };
            let txn =
                Txn::new().when(vec![fence.clone()]).and_then(vec![TxnOp::put(keys.agent(&a.host_id), serde_json::to_vec(&marked)?, None)]);
            if !client.txn(txn).await.map_err(|e| anyhow!("etcd: {e}"))?.succeeded() {
                anyhow::bail!("no longer the leader (the election key changed): stopped acting");
            }
            if let Ok(mut s) = seen.lock() {
                s.insert(a.host_id.clone(), a.heartbeat);
            }
            crate::journal::record(
                Kind::FleetAgentSilent,
                json!({"fleet": cfg.etcd.fleet, "host_id": a.host_id, "last_heartbeat_age_s": (now - a.heartbeat).round(), "policy_sha256": a.policy_sha256}),
                false,
            )?;
        }
    }
    for (state, n) in [("live", live), ("silent", silent), ("behind", behind)] {
        metrics.agents.get_or_create(&vec![("state".into(), state.into())]).set(n);
    }
    Ok(())
}

/// Reconciles the clouds the current revision binds.
async fn reconcile(cfg: &Config, client: &mut Client, keys: &Keys, metrics: &Metrics, deadline: &Deadline) -> Result<()> {
    let Some((cur, _)) = store::current(client, keys).await? else { return Ok(()) };
    let meta = store::meta(client, keys, cur.revision).await?;
    let sources = store::sources(client, keys, &meta).await?;
    let c = sources.compile().map_err(|e| anyhow!("revision {}: {e}", cur.revision))?;
    let apply = cfg.reconcile == Some(Reconcile::Apply);
    let findings = super::reconcile::clouds(cfg, &c, apply, &|| deadline.alive()).await?;
    for (target, n) in &findings {
        metrics.drift.get_or_create(&vec![("target".into(), target.clone())]).set(*n as i64);
    }
    Ok(())
}
