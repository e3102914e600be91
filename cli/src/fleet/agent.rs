//! The agent's side of a fleet: a thread of its own that watches the fleet's
//! `current` key, fetches a new revision, checks its hash and hands it to the
//! agent's loop, and reports what the agent enforces with a heartbeat.
//!
//! The thread is spawned before the agent enters its network namespace, so it
//! talks to etcd from the host's (a thread's namespace is its own); it drops
//! every capability before it does anything. When etcd is unreachable it
//! retries, and the agent keeps enforcing what it has: the pinned filter,
//! and a local copy of the last revision it applied for restarts.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};

use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use anyhow::{Context, Result};
use etcd_client::Client;
use segc_compiler::lower::bpf::Tables;

use super::store::{self, AgentRecord, Keys, Meta, Refusal};
use super::Etcd;

/// A revision whose bundle matched its hash, ready to swap in.
pub struct Revision {
    pub meta: Meta,
    pub tables: Tables,
    pub bundle: Vec<u8>,
}

/// What the thread hands to the agent's loop.
pub enum Delivery {
    Revision(Box<Revision>),
    /// A revision that cannot be used (missing chunks, wrong hash, bad bundle).
    Broken {
        revision: u64,
        sha256: String,
        error: String,
    },
}

/// What the agent's loop tells the thread.
pub enum Outcome {
    /// `at`: Unix time, in seconds, the revision began to be enforced.
    Applied {
        revision: u64,
        sha256: String,
        at: f64,
    },
    Refused {
        revision: u64,
        sha256: String,
        error: String,
    },
}

/// The agent's end of the fleet thread.
pub struct Source {
    pub deliveries: Receiver<Delivery>,
    pub outcomes: UnboundedSender<Outcome>,
}

/// Starts the fleet thread; the agent's loop tells it what it enforces.
pub fn start(etcd: Etcd, host_id: String, ifaces: Vec<String>, stop: &'static std::sync::atomic::AtomicBool) -> Source {
    let (dtx, drx) = std::sync::mpsc::channel();
    let (otx, orx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        if let Err(e) = crate::agent::drop_all_privileges() {
            eprintln!("segc agent: the fleet thread cannot drop its capabilities ({e}); it does not start");
            return;
        }
        let Ok(rt) = super::runtime() else { return };
        let mut state = State {
            etcd,
            keys: Keys::new(""),
            host_id,
            ifaces,
            enforced: None,
            applied_at: None,
            refused: None,
            deliveries: dtx,
            outcomes: orx,
        };
        state.keys = state.etcd.keys();
        rt.block_on(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match state.etcd.connect().await {
                    Ok(client) => {
                        if let Err(e) = state.session(client, stop).await {
                            eprintln!("segc agent: fleet: {e:#}; retrying");
                        }
                    }
                    Err(e) => eprintln!("segc agent: fleet: {e:#}; retrying"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    });
    Source { deliveries: drx, outcomes: otx }
}

struct State {
    etcd: Etcd,
    keys: Keys,
    host_id: String,
    ifaces: Vec<String>,
    enforced: Option<(u64, String)>,
    applied_at: Option<f64>,
    refused: Option<Refusal>,
    deliveries: Sender<Delivery>,
    outcomes: UnboundedReceiver<Outcome>,
}

/// Heartbeats, and the lease that keeps `alive/<host>`: gone 5 s after the
/// agent stops beating.
const HEARTBEAT: Duration = Duration::from_secs(1);
const LEASE_TTL: i64 = 5;

impl State {
    /// One connection's life: returns on any etcd error (the caller reconnects).
    async fn session(&mut self, mut client: Client, stop: &std::sync::atomic::AtomicBool) -> Result<()> {
        let lease = client.lease_grant(LEASE_TTL, None).await.context("lease")?.id();
        let (mut keeper, mut keep_stream) = client.lease_keep_alive(lease).await.context("lease keep-alive")?;
        let mut watch = client.watch(self.keys.current(), None).await.context("watch")?;
        self.check(&mut client).await?;
        self.beat(&mut client, lease).await?;
        let mut tick = tokio::time::interval(HEARTBEAT);
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::select! {
                m = watch.message() => {
                    m.context("watch")?.context("the watch ended")?;
                    self.check(&mut client).await?;
                }
                // What the agent applied or refused is reported at once.
                Some(o) = self.outcomes.recv() => {
                    self.take(o);
                    self.beat(&mut client, lease).await?;
                }
                _ = tick.tick() => {
                    self.collect();
                    keeper.keep_alive().await.context("lease keep-alive")?;
                    keep_stream.message().await.context("lease keep-alive")?;
                    self.beat(&mut client, lease).await?;
                }
            }
        }
        let _ = client.lease_revoke(lease).await;
        Ok(())
    }

    /// What the agent's loop reported since the last heartbeat.
    fn collect(&mut self) {
        while let Ok(o) = self.outcomes.try_recv() {
            self.take(o);
        }
    }

    fn take(&mut self, o: Outcome) {
        match o {
            Outcome::Applied { revision, sha256, at } => {
                let key = Some((revision, sha256));
                if self.enforced != key {
                    self.enforced = key;
                    self.applied_at = Some(at);
                }
            }
            Outcome::Refused { revision, sha256, error } => self.refused = Some(Refusal { revision, sha256, error }),
        }
    }

    async fn beat(&mut self, client: &mut Client, lease: i64) -> Result<()> {
        self.collect();
        let record = AgentRecord {
            host_id: self.host_id.clone(),
            revision: self.enforced.as_ref().map(|e| e.0),
            policy_sha256: self.enforced.as_ref().map(|e| e.1.clone()),
            ifaces: self.ifaces.clone(),
            heartbeat: store::now(),
            applied_at: self.applied_at,
            refused: self.refused.clone(),
            silent: false,
        };
        store::heartbeat(client, &self.keys, &record, lease).await
    }

    /// Fetches the current revision when it is neither enforced nor already
    /// refused, and hands it over (or its failure).
    async fn check(&mut self, client: &mut Client) -> Result<()> {
        self.collect();
        let Some((cur, _)) = store::current(client, &self.keys).await? else { return Ok(()) };
        let key = (cur.revision, cur.sha256.clone());
        if self.enforced.as_ref() == Some(&key)
            || self.refused.as_ref().is_some_and(|r| r.revision == cur.revision && r.sha256 == cur.sha256)
        {
            return Ok(());
        }
        let delivery = match self.fetch(client, &cur).await {
            Ok(d) => d,
            Err(e) => Delivery::Broken { revision: cur.revision, sha256: cur.sha256.clone(), error: format!("{e:#}") },
        };
        if let Delivery::Broken { revision, sha256, error } = &delivery {
            self.refused = Some(Refusal { revision: *revision, sha256: sha256.clone(), error: error.clone() });
        }
        let _ = self.deliveries.send(delivery);
        Ok(())
    }

    async fn fetch(&self, client: &mut Client, cur: &store::Current) -> Result<Delivery> {
        let meta = store::meta(client, &self.keys, cur.revision).await?;
        if meta.sha256 != cur.sha256 {
            anyhow::bail!("revision {}: `current` names sha256 {}, the revision {}", cur.revision, cur.sha256, meta.sha256);
        }
        let bundle = store::bundle(client, &self.keys, &meta).await?;
        let mut tables = segc_compiler::lower::bpf::parse_bundle(&bundle).map_err(|e| anyhow::anyhow!("revision {}: {e}", cur.revision))?;
        tables.zones = meta.zones.clone();
        tables.policy = meta.policy.clone();
        Ok(Delivery::Revision(Box::new(Revision { meta, tables, bundle })))
    }
}

/// Where an agent keeps the last revision it applied, for restarts without
/// etcd: `$SEGC_STATE_DIR` (default /var/lib/segc)`/fleet/<fleet>/<host>/`.
pub fn local_dir(fleet: &str, host: &str) -> PathBuf {
    let base = std::env::var_os("SEGC_STATE_DIR").map_or_else(|| PathBuf::from("/var/lib/segc"), PathBuf::from);
    base.join("fleet").join(fleet).join(host)
}

/// Saves an applied revision (bundle, then meta, each written atomically).
pub fn save_local(dir: &std::path::Path, meta: &Meta, bundle: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    segc_fsio::write_atomically(&dir.join("current.bundle"), bundle, None)?;
    segc_fsio::write_atomically(&dir.join("current.json"), &serde_json::to_vec_pretty(meta)?, None)?;
    Ok(())
}

/// The last revision applied here, if its bundle still matches its hash.
pub fn load_local(dir: &std::path::Path) -> Option<(Meta, Tables)> {
    let meta: Meta = serde_json::from_slice(&std::fs::read(dir.join("current.json")).ok()?).ok()?;
    let bundle = std::fs::read(dir.join("current.bundle")).ok()?;
    if segc_compiler::sha256::hex(&bundle) != meta.sha256 {
        eprintln!("segc agent: the local copy in {} does not match its hash; ignored", dir.display());
        return None;
    }
    let mut t = segc_compiler::lower::bpf::parse_bundle(&bundle).ok()?;
    t.zones = meta.zones.clone();
    t.policy = meta.policy.clone();
    Some((meta, t))
}
