//! A fleet: many hosts, one policy, on etcd (SPEC §6). etcd is the one store
//! and the one source of leadership; segc implements no consensus.
//!
//! - `segc fleet publish|rollback|status` ([`publish`], [`rollback`], [`status`]);
//! - `segc agent --fleet` takes its policy from the fleet ([`agent`]);
//! - `segc controller`: one of several leads and reconciles ([`controller`]).
//!
//! The keys are in [`store`]; docs/FLEET.md has the design.

pub mod agent;
pub mod controller;
mod feeds;
mod reconcile;
pub mod store;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use segc_audit::Kind;
use serde_json::json;

use crate::journal::record;
use crate::{exit, Format};
use store::{Keys, Meta, Sources};

/// How to reach etcd, as etcdctl takes it.
#[derive(Clone, Debug, Default)]
pub struct Etcd {
    pub endpoints: Vec<String>,
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub fleet: String,
}

impl From<crate::EtcdArgs> for Etcd {
    fn from(a: crate::EtcdArgs) -> Etcd {
        Etcd { endpoints: a.endpoints, cacert: a.etcd_cacert, cert: a.etcd_cert, key: a.etcd_key, fleet: a.fleet }
    }
}

impl Etcd {
    pub fn keys(&self) -> Keys {
        Keys::new(&self.fleet)
    }

    /// A client: TLS with the CA and client certificate when given (then the
    /// endpoints are `https://`), short timeouts so that a dead member is left
    /// quickly for another.
    pub async fn connect(&self) -> Result<Client> {
        if self.endpoints.is_empty() {
            bail!("no etcd endpoint: give --etcd URL[,URL...] or set SEGC_ETCD");
        }
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            // A member cut off from the others refuses, rather than serving stale data.
            .with_require_leader(true);
        if self.cacert.is_some() || self.cert.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.cacert {
                let pem = std::fs::read(ca).with_context(|| format!("cannot read --etcd-cacert {}", ca.display()))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            match (&self.cert, &self.key) {
                (Some(c), Some(k)) => {
                    let cert = std::fs::read(c).with_context(|| format!("cannot read --etcd-cert {}", c.display()))?;
                    let key = std::fs::read(k).with_context(|| format!("cannot read --etcd-key {}", k.display()))?;
                    tls = tls.identity(Identity::from_pem(cert, key));
                }
                (None, None) => {}
                _ => bail!("--etcd-cert and --etcd-key go together"),
            }
            opts = opts.with_tls(tls);
        }
        // One member at a time, from a rotating start, until one answers:
        // etcd-client's own balancing kept sending requests to a dead member.
        // When the member in use dies, the caller's next operation fails and
        // it connects again (to another).
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = self.endpoints.len();
        let start = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + std::process::id() as usize;
        let mut errors = Vec::new();
        for k in 0..n {
            let ep = &self.endpoints[(start + k) % n];
            let attempt = async {
                let mut c = Client::connect([ep.as_str()], Some(opts.clone())).await?;
                c.status().await?;
                Ok::<Client, etcd_client::Error>(c)
            };
            match tokio::time::timeout(Duration::from_secs(3), attempt).await {
                Ok(Ok(c)) => return Ok(c),
                Ok(Err(e)) => errors.push(format!("{ep}: {e}")),
                Err(_) => errors.push(format!("{ep}: no answer within 3 s")),
            }
        }
        bail!("cannot reach etcd: {}", errors.join("; "))
    }
}

/// Runs `op` on a fresh connection, again (up to 8 times in about 5 s) when
/// etcd is in transition: a member gone, an election under way ("leader
/// changed", "no leader", unavailable). Publishing is idempotent per
/// attempt: a revision is committed by one compare-and-swap.
pub async fn retrying<T, F, Fut>(etcd: &Etcd, mut op: F) -> Result<T>
where
    F: FnMut(Client) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut last = None;
    for attempt in 0..8u64 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(150 * attempt)).await;
        }
        let result = match etcd.connect().await {
            Ok(c) => op(c).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(v) => return Ok(v),
            Err(e) if transient(&e) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("etcd did not answer")))
}

/// Whether `e` is etcd in transition rather than a refusal: the connection
/// itself failing (a member killed mid-request), or gRPC's words for an
/// election, a lost leader or a dropped stream.
fn transient(e: &anyhow::Error) -> bool {
    let lost = e.chain().any(|c| {
        matches!(c.downcast_ref::<etcd_client::Error>(), Some(etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_)))
    });
    let t = format!("{e:#}").to_lowercase();
    lost || [
        "unavailable",
        "leader changed",
        "no leader",
        "cannot reach etcd",
        "timed out",
        "deadline",
        "transport error",
        "connect error",
        "connection reset",
        "broken pipe",
        "h2 protocol error",
        "stream closed",
    ]
    .iter()
    .any(|k| t.contains(k))
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

fn publisher() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    // SAFETY: getuid has no preconditions.
    format!("uid {} on {}", unsafe { libc::getuid() }, host.trim())
}

/// The policy's own files (not the standard library), for the controllers.
pub(crate) fn sources_of(c: &segc_compiler::Compilation) -> Sources {
    let files: std::collections::BTreeMap<String, String> =
        c.sources().files().filter(|(_, f)| !f.std).map(|(_, f)| (f.name.clone(), f.text.clone())).collect();
    let root = c.sources().files().find(|(_, f)| !f.std).map(|(_, f)| f.name.clone()).unwrap_or_default();
    let feeds = c
        .model
        .feeds
        .iter()
        .filter_map(|f| match c.tree.feed_data.get(&f.location) {
            Some(Ok(b)) => Some((f.location.clone(), String::from_utf8_lossy(b).into_owned())),
            _ => None,
        })
        .collect();
    Sources { root, files, feeds }
}

/// `segc fleet publish PATH`: refused on any error, nothing published.
pub fn publish(path: &Path, keep: u64, etcd: &Etcd) -> Result<u8> {
    let Some(c) = crate::policy::load_error_free(path, None, "published")? else { return Ok(exit::FINDINGS) };
    let t = segc_compiler::lower::bpf::tables(&c.model);
    let over = segc_compiler::lower::bpf::check_capacity(&c.model, &t);
    if let Some(d) = over.first() {
        bail!("the policy does not fit the eBPF maps: {}; nothing was published", d.message);
    }
    let bundle = segc_compiler::lower::bpf::bundle(&t);
    let meta = Meta {
        revision: 0,
        sha256: segc_compiler::sha256::hex(&bundle),
        policy: c.model.policy.name.clone(),
        zones: t.zones.clone(),
        source_sha256: c.sources().digest(),
        published_at: store::now() as u64,
        publisher: publisher(),
        bundle_chunks: 0,
        sources_chunks: 0,
        bytes: 0,
        rollback_of: None,
    };
    crate::journal::ensure_writable()?;
    let sources = sources_of(&c);
    let cur = runtime()?.block_on(retrying(etcd, |mut client| {
        let (meta, bundle, sources, keys) = (meta.clone(), &bundle, &sources, etcd.keys());
        async move { store::publish(&mut client, &keys, meta, bundle, sources, keep).await }
    }))?;
    record(
        Kind::FleetPublish,
        json!({"fleet": etcd.fleet, "revision": cur.revision, "sha256": cur.sha256, "policy": cur.policy, "source_sha256": c.sources().digest(), "bytes": bundle.len()}),
        true,
    )?;
    println!(
        "published `{}` to fleet {} as revision {} (sha256 {})",
        cur.policy.as_deref().unwrap_or("policy"),
        etcd.fleet,
        cur.revision,
        cur.sha256
    );
    Ok(exit::OK)
}

/// `segc fleet rollback REVISION`: that revision's bundle and sources,
/// checked against its hash, published again as the next revision.
pub fn rollback(revision: u64, keep: u64, etcd: &Etcd) -> Result<u8> {
    crate::journal::ensure_writable()?;
    let keys = etcd.keys();
    let cur = runtime()?.block_on(retrying(etcd, |mut client| {
        let keys = keys.clone();
        async move {
            let old = store::meta(&mut client, &keys, revision).await?;
            let bundle = store::bundle(&mut client, &keys, &old).await?;
            let sources = store::sources(&mut client, &keys, &old).await?;
            let meta = Meta { published_at: store::now() as u64, publisher: publisher(), rollback_of: Some(revision), ..old };
            store::publish(&mut client, &keys, meta, &bundle, &sources, keep).await
        }
    }))?;
    record(
        Kind::FleetRollback,
        json!({"fleet": etcd.fleet, "revision": cur.revision, "rollback_of": revision, "sha256": cur.sha256}),
        true,
    )?;
    println!("published revision {revision} of fleet {} again as revision {} (sha256 {})", etcd.fleet, cur.revision, cur.sha256);
    Ok(exit::OK)
}

/// `segc fleet status`: the leader, the current revision, every agent.
pub fn status(etcd: &Etcd, format: Format) -> Result<u8> {
    let keys = etcd.keys();
    let (leader, current, agents) = runtime()?.block_on(retrying(etcd, |mut client| {
        let keys = keys.clone();
        async move {
            let leader = store::leader(&mut client, &keys).await?;
            let current = store::current(&mut client, &keys).await?.map(|(c, _)| c);
            let agents = store::agents(&mut client, &keys).await?;
            anyhow::Ok((leader, current, agents))
        }
    }))?;
    let now = store::now();
    let rows: Vec<serde_json::Value> = agents
        .iter()
        .map(|(a, alive)| {
            json!({
                "host_id": a.host_id,
                "policy_sha256": a.policy_sha256,
                "revision": a.revision,
                "heartbeat_age_s": ((now - a.heartbeat).max(0.0) * 10.0).round() / 10.0,
                "applied_at": a.applied_at,
                "ifaces": a.ifaces,
                "state": if *alive && !a.silent { "live" } else { "silent" },
                "refused": a.refused,
            })
        })
        .collect();
    let mut o = std::io::stdout().lock();
    match format {
        Format::Human => {
            writeln!(o, "fleet {}: leader {}", etcd.fleet, leader.as_deref().unwrap_or("(none)"))?;
            match &current {
                Some(c) => writeln!(o, "revision {} of `{}`, sha256 {}", c.revision, c.policy.as_deref().unwrap_or("policy"), c.sha256)?,
                None => writeln!(o, "nothing published")?,
            }
            for r in &rows {
                let same = r["policy_sha256"].as_str() == current.as_ref().map(|c| c.sha256.as_str());
                writeln!(
                    o,
                    "  {:<20} {:<6} revision {:<4} {} heartbeat {}s ago, {}",
                    r["host_id"].as_str().unwrap_or(""),
                    r["state"].as_str().unwrap_or(""),
                    r["revision"].as_u64().map_or("-".into(), |v| v.to_string()),
                    if same { "current " } else { "BEHIND  " },
                    r["heartbeat_age_s"],
                    r["ifaces"].as_array().map(|a| a.iter().filter_map(|i| i.as_str()).collect::<Vec<_>>().join(",")).unwrap_or_default()
                )?;
            }
        }
        _ => {
            let doc = json!({
                "fleet": etcd.fleet,
                "leader": leader,
                "revision": current.as_ref().map(|c| c.revision),
                "policy_sha256": current.as_ref().map(|c| c.sha256.clone()),
                "agents": rows,
            });
            writeln!(o, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
    }
    Ok(exit::OK)
}
