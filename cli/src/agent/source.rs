//! Where the agent's policy comes from: a policy's files, polled
//! (`--policy`), or a fleet on etcd (`--fleet`, see `crate::fleet::agent`).
//! Either way a new policy is swapped in atomically or refused, the old one
//! kept, and both are audit events.

use std::path::PathBuf;

use anyhow::{bail, Result};
use segc_audit::Kind;
use segc_compiler::lower::bpf::Tables;
use segc_compiler::Options;
use serde_json::json;

use super::watch::{Snapshot, Watch};
use super::{Agent, Config};

pub enum PolicySource {
    Files(PathBuf),
    #[cfg(feature = "fleet")]
    Fleet {
        etcd: crate::fleet::Etcd,
        host_id: String,
    },
}

/// The source the command line names.
pub fn source(policy: Option<PathBuf>, fleet: Option<String>, etcd: crate::EtcdArgs, host_id: Option<String>) -> Result<PolicySource> {
    match (policy, fleet) {
        (Some(p), None) => Ok(PolicySource::Files(p)),
        #[cfg(feature = "fleet")]
        (None, Some(name)) => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
            let etcd = crate::fleet::Etcd::from(crate::EtcdArgs { fleet: name, ..etcd });
            if etcd.endpoints.is_empty() {
                bail!("--fleet needs --etcd URL[,URL...] (or SEGC_ETCD)");
            }
            Ok(PolicySource::Fleet { etcd, host_id: host_id.unwrap_or(host) })
        }
        #[cfg(not(feature = "fleet"))]
        (None, Some(_)) => {
            let _ = (etcd, host_id);
            bail!("this segc was built without the `fleet` feature: rebuild with `--features fleet` to take the policy from a fleet")
        }
        _ => bail!("give the agent --policy PATH or --fleet NAME"),
    }
}

/// The running source.
pub enum Mode {
    Files {
        watch: Watch,
        known: Option<Snapshot>,
    },
    #[cfg(feature = "fleet")]
    Fleet(Box<Fleet>),
}

#[cfg(feature = "fleet")]
pub struct Fleet {
    src: crate::fleet::agent::Source,
    fleet: String,
    dir: PathBuf,
    /// The revision and bundle hash enforced now.
    enforced: Option<(u64, String)>,
    /// The first revision, waiting to be applied (and saved).
    pending: Option<(crate::fleet::store::Meta, Vec<u8>)>,
    /// A delivery received while waiting, handled by the next poll.
    early: Option<crate::fleet::agent::Delivery>,
}

impl Mode {
    /// Starts the source: paths resolved, a fleet's thread running (in the
    /// namespace the agent starts in).
    pub fn start(cfg: &Config) -> Result<Mode> {
        match &cfg.source {
            PolicySource::Files(p) => Ok(Mode::Files { watch: Watch::new(p)?, known: None }),
            #[cfg(feature = "fleet")]
            PolicySource::Fleet { etcd, host_id } => {
                let src = crate::fleet::agent::start(etcd.clone(), host_id.clone(), cfg.ifaces.clone(), &super::STOP);
                let dir = crate::fleet::agent::local_dir(&etcd.fleet, host_id);
                Ok(Mode::Fleet(Box::new(Fleet { src, fleet: etcd.fleet.clone(), dir, enforced: None, pending: None, early: None })))
            }
        }
    }

    /// For a policy from files that blocks feeds: its root folder and the
    /// feed cache, which this first compile fills (from the host's namespace,
    /// where the feeds' servers are reachable). `None` for a fleet, or a
    /// policy without feeds (no feed thread then).
    pub fn feeds_to_refresh(&self) -> Option<(PathBuf, super::watch::FeedCache)> {
        match self {
            Mode::Files { watch, .. } => {
                let (c, _) = watch.compile(&Options::default()).ok()?;
                c.model.blocks_feeds().then(|| (watch.root().to_path_buf(), watch.feeds.clone()))
            }
            #[cfg(feature = "fleet")]
            Mode::Fleet(_) => None,
        }
    }

    pub fn describe(&self) -> serde_json::Value {
        match self {
            Mode::Files { watch, .. } => json!({"files": watch.root().display().to_string()}),
            #[cfg(feature = "fleet")]
            Mode::Fleet(f) => {
                json!({"fleet": f.fleet, "revision": f.enforced.as_ref().map(|e| e.0), "sha256": f.enforced.as_ref().map(|e| e.1.clone())})
            }
        }
    }

    /// The policy to start with. Files: compiled, and the agent does not
    /// start on a broken one. Fleet: the local copy of the last revision
    /// applied here; without one, the first good revision etcd delivers.
    pub fn first(&mut self, agent: &Agent<'_>) -> Result<Tables> {
        match self {
            Mode::Files { watch, known } => {
                let (c, snapshot) = watch.compile(&Options { today: Some(segc_fsio::clock::today()) })?;
                if c.has_errors() {
                    crate::render::human(c.sources(), &c.diagnostics, false, &mut std::io::stderr().lock())?;
                    bail!("the policy has errors; the agent does not start on a broken policy");
                }
                *known = Some(snapshot);
                agent.reset_feeds(&c.model);
                Ok(segc_compiler::lower::bpf::tables(&c.model))
            }
            #[cfg(feature = "fleet")]
            Mode::Fleet(f) => f.first(agent),
        }
    }

    /// After the first deploy.
    pub fn applied(&mut self, agent: &Agent<'_>, _t: &Tables) {
        #[cfg(feature = "fleet")]
        if let Mode::Fleet(f) = self {
            f.applied(agent);
        }
        let _ = agent;
    }

    /// Waits for the next poll: `interval` for files; for a fleet, until a
    /// revision arrives or `interval` passes, so a publish is applied at once.
    pub fn wait(&mut self, interval: std::time::Duration) {
        match self {
            Mode::Files { .. } => std::thread::sleep(interval),
            #[cfg(feature = "fleet")]
            Mode::Fleet(f) => {
                if f.early.is_none() {
                    f.early = f.src.deliveries.recv_timeout(interval).ok();
                }
            }
        }
    }

    /// One poll of the loop: a changed policy swapped in, or refused.
    pub fn poll(&mut self, agent: &Agent<'_>) {
        match self {
            Mode::Files { watch, known } => reload(agent, watch, known),
            #[cfg(feature = "fleet")]
            Mode::Fleet(f) => f.poll(agent),
        }
    }
}

/// When a file of the policy changed, compile exactly what is now there and
/// swap it in, or refuse it (the old policy stays).
fn reload(agent: &Agent<'_>, watch: &Watch, known: &mut Option<Snapshot>) {
    if known.as_ref().is_some_and(|k| !watch.changed(k)) {
        return;
    }
    let (now, snapshot) = match watch.compile(&Options { today: Some(segc_fsio::clock::today()) }) {
        Ok(r) => r,
        Err(e) => {
            agent.refused(json!({"error": e.to_string()}));
            return;
        }
    };
    *known = Some(snapshot);
    if now.has_errors() {
        let errors: Vec<String> =
            now.diagnostics.iter().filter(|d| d.is_error()).take(10).map(|d| format!("{}: {}", d.code, d.message)).collect();
        eprintln!("segc agent: the new policy has errors; keeping the old one");
        agent.refused(json!({"errors": errors}));
        return;
    }
    match agent.deploy(&segc_compiler::lower::bpf::tables(&now.model)) {
        Ok(swap) => {
            agent.reset_feeds(&now.model);
            agent.record(
                Kind::Swap,
                json!({"policy": now.model.policy.name, "epoch": swap.generation, "entries": swap.entries, "seconds": (swap.prepare + swap.flip).as_secs_f64()}),
            )
        }
        Err(e) => agent.refused(json!({"error": e.to_string()})),
    }
}

#[cfg(feature = "fleet")]
impl Fleet {
    fn first(&mut self, agent: &Agent<'_>) -> Result<Tables> {
        if let Some((meta, t)) = crate::fleet::agent::load_local(&self.dir) {
            eprintln!("segc agent: starting with revision {} of fleet {} (local copy)", meta.revision, self.fleet);
            self.enforced = Some((meta.revision, meta.sha256.clone()));
            return Ok(t);
        }
        eprintln!("segc agent: waiting for the first revision of fleet {}", self.fleet);
        loop {
            if super::STOP.load(std::sync::atomic::Ordering::SeqCst) {
                bail!("stopped before any revision arrived");
            }
            match self.src.deliveries.recv_timeout(std::time::Duration::from_millis(200)) {
                Ok(crate::fleet::agent::Delivery::Revision(r)) => {
                    let crate::fleet::agent::Revision { meta, tables, bundle } = *r;
                    self.enforced = Some((meta.revision, meta.sha256.clone()));
                    self.pending = Some((meta, bundle));
                    return Ok(tables);
                }
                Ok(crate::fleet::agent::Delivery::Broken { revision, sha256, error }) => self.refuse(agent, revision, &sha256, &error),
                Err(_) => {}
            }
        }
    }

    fn applied(&mut self, agent: &Agent<'_>) {
        if let Some((meta, bundle)) = self.pending.take() {
            self.saved(agent, &meta, &bundle);
        }
        if let Some((revision, sha256)) = self.enforced.clone() {
            let _ = self.src.outcomes.send(crate::fleet::agent::Outcome::Applied { revision, sha256, at: crate::fleet::store::now() });
        }
    }

    fn saved(&self, agent: &Agent<'_>, meta: &crate::fleet::store::Meta, bundle: &[u8]) {
        if let Err(e) = crate::fleet::agent::save_local(&self.dir, meta, bundle) {
            eprintln!("segc agent: cannot keep a local copy of revision {}: {e:#}", meta.revision);
            agent.record(Kind::PolicyRefused, json!({"fleet": self.fleet, "revision": meta.revision, "local_copy": e.to_string()}));
        }
    }

    fn refuse(&self, agent: &Agent<'_>, revision: u64, sha256: &str, error: &str) {
        eprintln!("segc agent: revision {revision} of fleet {} refused: {error}", self.fleet);
        agent.refused(json!({"fleet": self.fleet, "revision": revision, "sha256": sha256, "error": error}));
        let _ = self.src.outcomes.send(crate::fleet::agent::Outcome::Refused {
            revision,
            sha256: sha256.to_string(),
            error: error.to_string(),
        });
    }

    fn poll(&mut self, agent: &Agent<'_>) {
        while let Some(d) = self.early.take().or_else(|| self.src.deliveries.try_recv().ok()) {
            match d {
                crate::fleet::agent::Delivery::Broken { revision, sha256, error } => self.refuse(agent, revision, &sha256, &error),
                crate::fleet::agent::Delivery::Revision(r) => {
                    let crate::fleet::agent::Revision { meta, tables, bundle } = *r;
                    let key = (meta.revision, meta.sha256.clone());
                    if self.enforced.as_ref() == Some(&key) {
                        let _ = self.src.outcomes.send(crate::fleet::agent::Outcome::Applied {
                            revision: key.0,
                            sha256: key.1,
                            at: crate::fleet::store::now(),
                        });
                        continue;
                    }
                    match agent.deploy(&tables) {
                        Ok(swap) => {
                            self.saved(agent, &meta, &bundle);
                            agent.record(
                                Kind::Swap,
                                json!({"policy": meta.policy, "fleet": self.fleet, "revision": meta.revision, "sha256": meta.sha256, "epoch": swap.generation, "entries": swap.entries, "seconds": (swap.prepare + swap.flip).as_secs_f64()}),
                            );
                            self.enforced = Some(key.clone());
                            let _ = self.src.outcomes.send(crate::fleet::agent::Outcome::Applied {
                                revision: key.0,
                                sha256: key.1,
                                at: crate::fleet::store::now(),
                            });
                        }
                        Err(e) => self.refuse(agent, meta.revision, &meta.sha256, &format!("{e:#}")),
                    }
                }
            }
        }
    }
}
