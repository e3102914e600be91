//! What a fleet keeps in etcd, under `/segc/<fleet>/`:
//!
//! - `current`: the revision every agent must enforce (`{"revision", "sha256",
//!   "policy", "published_at"}`), the commit point of a publish;
//! - `revisions/<revision>/meta`: the revision's description (zone names,
//!   who published it, what it rolls back to) and how many chunks it has;
//! - `revisions/<revision>/bundle/<i>` and `.../sources/<i>`: the eBPF bundle
//!   and the policy's source files, in chunks of at most 512 KiB (etcd refuses
//!   requests over 1.5 MiB), written before `current` names the revision;
//! - `agents/<host>`: what each agent enforces, rewritten with every
//!   heartbeat; `alive/<host>`: the same host, bound to the agent's lease;
//! - `election`: the controllers' election (etcd's election API).

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

pub const CHUNK: usize = 512 * 1024;

/// The keys of one fleet.
#[derive(Clone, Debug)]
pub struct Keys {
    pub prefix: String,
}

impl Keys {
    pub fn new(fleet: &str) -> Keys {
        Keys { prefix: format!("/segc/{fleet}/") }
    }
    pub fn current(&self) -> String {
        format!("{}current", self.prefix)
    }
    pub fn meta(&self, revision: u64) -> String {
        format!("{}revisions/{revision:010}/meta", self.prefix)
    }
    pub fn chunk(&self, revision: u64, blob: &str, i: usize) -> String {
        format!("{}revisions/{revision:010}/{blob}/{i:04}", self.prefix)
    }
    pub fn agents(&self) -> String {
        format!("{}agents/", self.prefix)
    }
    pub fn agent(&self, host: &str) -> String {
        format!("{}agents/{host}", self.prefix)
    }
    pub fn alive(&self) -> String {
        format!("{}alive/", self.prefix)
    }
    pub fn alive_host(&self, host: &str) -> String {
        format!("{}alive/{host}", self.prefix)
    }
    pub fn election(&self) -> String {
        format!("{}election", self.prefix)
    }
}

/// The revision every agent must enforce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Current {
    pub revision: u64,
    pub sha256: String,
    pub policy: Option<String>,
    pub published_at: u64,
}

/// One published revision.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Meta {
    pub revision: u64,
    /// SHA-256 of the bundle.
    pub sha256: String,
    pub policy: Option<String>,
    /// Zone names by id, which the bundle does not carry.
    pub zones: Vec<String>,
    /// The policy's source hash (`segc build`'s `source_sha256`).
    pub source_sha256: String,
    pub published_at: u64,
    pub publisher: String,
    pub bundle_chunks: usize,
    pub sources_chunks: usize,
    /// The bundle's length in bytes.
    #[serde(default)]
    pub bytes: u64,
    /// The revision this one publishes again (`fleet rollback`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<u64>,
}

/// The policy's source files, for the controllers (which compile the cloud
/// targets) and for rollback.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Sources {
    pub root: String,
    pub files: BTreeMap<String, String>,
    /// Each feed's bytes as compiled, by location (path or URL): the
    /// controllers compile exactly what was published, and refresh https feeds.
    #[serde(default)]
    pub feeds: BTreeMap<String, String>,
}

impl segc_compiler::source::Loader for Sources {
    fn read(&self, path: &str) -> Result<Vec<u8>, segc_compiler::source::LoadError> {
        self.files.get(path).map(|t| t.as_bytes().to_vec()).ok_or(segc_compiler::source::LoadError::NotFound)
    }

    fn feed(&self, location: &str) -> Result<Vec<u8>, segc_compiler::source::LoadError> {
        self.feeds.get(location).map(|t| t.as_bytes().to_vec()).ok_or(segc_compiler::source::LoadError::NotFound)
    }
}

impl Sources {
    /// Compiles the sources as published.
    pub fn compile(&self) -> Result<segc_compiler::Compilation, segc_compiler::RootError> {
        segc_compiler::compile(&self.root, self, &segc_compiler::Options::default())
    }
}

/// What an agent reports with every heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub host_id: String,
    /// The revision and bundle hash it enforces (none before its first).
    pub revision: Option<u64>,
    pub policy_sha256: Option<String>,
    pub ifaces: Vec<String>,
    /// Unix time of the heartbeat, in seconds.
    pub heartbeat: f64,
    /// Unix time the enforced revision began to be enforced here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<f64>,
    /// The last revision it refused, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
    /// Set by the leading controller when the heartbeats stopped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub silent: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    pub revision: u64,
    pub sha256: String,
    pub error: String,
}

pub fn now() -> f64 {
    segc_fsio::clock::unix_seconds()
}

fn etcd(e: etcd_client::Error) -> anyhow::Error {
    anyhow!("etcd: {e}")
}

/// The current revision, with the etcd revision of its key (for the
/// compare-and-swap of the next publish); `None` before the first.
pub async fn current(client: &mut Client, keys: &Keys) -> Result<Option<(Current, i64)>> {
    let r = client.get(keys.current(), None).await.map_err(etcd)?;
    match r.kvs().first() {
        None => Ok(None),
        Some(kv) => {
            let c: Current = serde_json::from_slice(kv.value()).context("the fleet's `current` key is not segc's")?;
            Ok(Some((c, kv.mod_revision())))
        }
    }
}

pub async fn meta(client: &mut Client, keys: &Keys, revision: u64) -> Result<Meta> {
    let r = client.get(keys.meta(revision), None).await.map_err(etcd)?;
    let kv = r
        .kvs()
        .first()
        .ok_or_else(|| anyhow!("revision {revision} does not exist (or was pruned: publish keeps the last `--keep` revisions)"))?;
    serde_json::from_slice(kv.value()).with_context(|| format!("revision {revision}: its meta is not segc's"))
}

/// A chunked blob of a revision, joined.
pub async fn blob(client: &mut Client, keys: &Keys, revision: u64, name: &str, chunks: usize) -> Result<Vec<u8>> {
    let prefix = format!("{}revisions/{revision:010}/{name}/", keys.prefix);
    let r = client.get(prefix.clone(), Some(GetOptions::new().with_prefix())).await.map_err(etcd)?;
    if r.kvs().len() != chunks {
        bail!("revision {revision}: {name} has {} chunks, its meta says {chunks}", r.kvs().len());
    }
    let mut parts: Vec<(&[u8], &[u8])> = r.kvs().iter().map(|kv| (kv.key(), kv.value())).collect();
    parts.sort();
    Ok(parts.into_iter().flat_map(|(_, v)| v.iter().copied()).collect())
}

/// A revision's bundle, checked against the hash its meta names.
pub async fn bundle(client: &mut Client, keys: &Keys, m: &Meta) -> Result<Vec<u8>> {
    let b = blob(client, keys, m.revision, "bundle", m.bundle_chunks).await?;
    let got = segc_compiler::sha256::hex(&b);
    if got != m.sha256 {
        bail!("revision {}: the bundle's SHA-256 is {got}, the revision says {}", m.revision, m.sha256);
    }
    Ok(b)
}

pub async fn sources(client: &mut Client, keys: &Keys, m: &Meta) -> Result<Sources> {
    let b = blob(client, keys, m.revision, "sources", m.sources_chunks).await?;
    serde_json::from_slice(&b).with_context(|| format!("revision {}: its sources are not segc's", m.revision))
}

/// Stores a new revision: the chunks, the meta, then `current` in one
/// transaction that fails when another publish got there first (then the
/// next number is tried, a few times).
pub async fn publish(client: &mut Client, keys: &Keys, meta: Meta, bundle: &[u8], sources: &Sources, keep: u64) -> Result<Current> {
    publish_fenced(client, keys, meta, bundle, sources, keep, None).await
}

/// `publish`, and only while `fence` holds (a controller's election key).
pub async fn publish_fenced(
    client: &mut Client,
    keys: &Keys,
    mut meta: Meta,
    bundle: &[u8],
    sources: &Sources,
    keep: u64,
    fence: Option<&Compare>,
) -> Result<Current> {
    let sources = serde_json::to_vec(sources)?;
    meta.bundle_chunks = bundle.len().div_ceil(CHUNK).max(1);
    meta.bytes = bundle.len() as u64;
    meta.sources_chunks = sources.len().div_ceil(CHUNK).max(1);
    for _ in 0..5 {
        let found = current(client, keys).await?;
        let revision = found.as_ref().map_or(1, |(c, _)| c.revision + 1);
        meta.revision = revision;
        for (name, data) in [("bundle", bundle), ("sources", &sources[..])] {
            // A half-written earlier attempt at this number goes first.
            let prefix = format!("{}revisions/{revision:010}/{name}/", keys.prefix);
            client.delete(prefix, Some(etcd_client::DeleteOptions::new().with_prefix())).await.map_err(etcd)?;
            let chunks: Vec<&[u8]> = if data.is_empty() { vec![&[][..]] } else { data.chunks(CHUNK).collect() };
            for (i, c) in chunks.iter().enumerate() {
                client.put(keys.chunk(revision, name, i), c.to_vec(), None).await.map_err(etcd)?;
            }
        }
        client.put(keys.meta(revision), serde_json::to_vec(&meta)?, None).await.map_err(etcd)?;
        let cur = Current { revision, sha256: meta.sha256.clone(), policy: meta.policy.clone(), published_at: meta.published_at };
        let guard = match &found {
            None => Compare::version(keys.current(), CompareOp::Equal, 0),
            Some((_, rev)) => Compare::mod_revision(keys.current(), CompareOp::Equal, *rev),
        };
        let mut when = vec![guard];
        when.extend(fence.cloned());
        let txn = Txn::new().when(when).and_then(vec![TxnOp::put(keys.current(), serde_json::to_vec(&cur)?, None)]);
        if client.txn(txn).await.map_err(etcd)?.succeeded() {
            prune(client, keys, revision, keep).await?;
            return Ok(cur);
        }
    }
    bail!("another publish kept winning the race for the next revision; try again")
}

/// Deletes the revisions older than the newest `keep` (`fleet publish
/// --keep`); etcd's own history is the operator's to compact (docs/FLEET.md).
async fn prune(client: &mut Client, keys: &Keys, newest: u64, keep: u64) -> Result<()> {
    if newest <= keep {
        return Ok(());
    }
    let from = format!("{}revisions/", keys.prefix);
    let to = format!("{}revisions/{:010}", keys.prefix, newest - keep + 1);
    client.delete(from, Some(etcd_client::DeleteOptions::new().with_range(to))).await.map_err(etcd)?;
    Ok(())
}

/// Every agent record, with whether its lease-bound key is still there.
pub async fn agents(client: &mut Client, keys: &Keys) -> Result<Vec<(AgentRecord, bool)>> {
    let r = client.get(keys.agents(), Some(GetOptions::new().with_prefix())).await.map_err(etcd)?;
    let alive = client.get(keys.alive(), Some(GetOptions::new().with_prefix().with_keys_only())).await.map_err(etcd)?;
    let alive: Vec<String> =
        alive.kvs().iter().filter_map(|kv| kv.key_str().ok().map(|k| k.trim_start_matches(&keys.alive()).to_string())).collect();
    let mut out: Vec<(AgentRecord, bool)> = r
        .kvs()
        .iter()
        .filter_map(|kv| serde_json::from_slice::<AgentRecord>(kv.value()).ok())
        .map(|a| {
            let live = alive.contains(&a.host_id);
            (a, live)
        })
        .collect();
    out.sort_by(|a, b| a.0.host_id.cmp(&b.0.host_id));
    Ok(out)
}

/// Writes an agent's record, and its lease-bound presence.
pub async fn heartbeat(client: &mut Client, keys: &Keys, record: &AgentRecord, lease: i64) -> Result<()> {
    let txn = Txn::new().and_then(vec![
        TxnOp::put(keys.agent(&record.host_id), serde_json::to_vec(record)?, None),
        TxnOp::put(keys.alive_host(&record.host_id), b"1".to_vec(), Some(PutOptions::new().with_lease(lease))),
    ]);
    client.txn(txn).await.map_err(etcd)?;
    Ok(())
}

/// The leading controller's id, if any leads.
pub async fn leader(client: &mut Client, keys: &Keys) -> Result<Option<String>> {
    match client.leader(keys.election()).await {
        Ok(r) => Ok(r.kv().and_then(|kv| kv.value_str().ok()).map(str::to_string)),
        Err(etcd_client::Error::GRpcStatus(s)) if s.message().contains("no leader") => Ok(None),
        Err(e) => Err(etcd(e)),
    }
}
