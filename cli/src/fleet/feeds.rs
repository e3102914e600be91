//! The leading controller refreshes a fleet's https feeds: it reads each one
//! again on its `refresh`, checks the new copy as an agent would (parse,
//! `max_prefixes`, no shrink by more than half), compiles the published
//! sources with it, and publishes the result as a new revision, fenced by its
//! election key. Agents apply it like any revision: they never hit a feed's
//! source themselves. Feeds read from files beside the policy change when the
//! policy is published again (the controller has no copy of those files).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use etcd_client::{Client, Compare};
use segc_audit::Kind;
use segc_compiler::ir::feed;
use serde_json::json;

use super::controller::{Config, Deadline};
use super::store::{self, Keys};

/// Reads the feeds that are due; publishes at most one new revision a call.
pub async fn refresh(
    cfg: &Config,
    client: &mut Client,
    keys: &Keys,
    fence: &Compare,
    due: &mut BTreeMap<String, Instant>,
    deadline: &Deadline,
) -> Result<()> {
    let Some((cur, _)) = store::current(client, keys).await? else { return Ok(()) };
    let meta = store::meta(client, keys, cur.revision).await?;
    let sources = store::sources(client, keys, &meta).await?;
    if sources.feeds.keys().all(|l| !segc_compiler::source::is_url(l)) {
        return Ok(());
    }
    let old = sources.compile().map_err(|e| anyhow!("revision {}: {e}", cur.revision))?;
    for f in old.model.feeds.iter().filter(|f| f.blocked && segc_compiler::source::is_url(&f.location)) {
        let every = cfg.feed_refresh.unwrap_or(Duration::from_secs(f.refresh_secs));
        let next = due.entry(f.name.clone()).or_insert_with(|| Instant::now() + every);
        if Instant::now() < *next {
            continue;
        }
        *next = Instant::now() + every;
        let (url, limit) = (f.location.clone(), crate::feeds::size_limit(f.max_prefixes));
        let fetched = tokio::task::spawn_blocking(move || crate::feeds::fetch_url(&url, limit, crate::feeds::TIMEOUT)).await?;
        let refused = |reason: &str, error: &str| {
            eprintln!("segc controller {}: feed `{}` refused ({reason}): {error}; revision {} stays", cfg.id, f.name, cur.revision);
            crate::journal::record(
                Kind::FeedRefused,
                json!({"fleet": cfg.etcd.fleet, "feed": f.name, "source": f.location, "reason": reason, "error": error, "revision": cur.revision, "kept_prefixes": f.entries.len(), "kept_sha256": f.sha256}),
                false,
            )
        };
        let bytes = match fetched {
            Ok(b) => b,
            Err(e) => {
                refused("fetch", &e)?;
                continue;
            }
        };
        if segc_compiler::sha256::hex(&bytes) == f.sha256 {
            continue;
        }
        let entries = match feed::parse(f.format, &bytes, f.max_prefixes) {
            Ok(e) => e,
            Err(e @ feed::FeedError::TooMany { .. }) => {
                refused("max_prefixes", &e.to_string())?;
                continue;
            }
            Err(e) => {
                refused("parse", &e.to_string())?;
                continue;
            }
        };
        if entries.len() * 2 < f.entries.len() {
            refused("shrink", &format!("{} prefixes, down from {}: more than half at once", entries.len(), f.entries.len()))?;
            continue;
        }
        let mut next_sources = sources.clone();
        next_sources.feeds.insert(f.location.clone(), String::from_utf8_lossy(&bytes).into_owned());
        let c = next_sources.compile().map_err(|e| anyhow!("{e}"))?;
        if c.has_errors() {
            let first = c.diagnostics.iter().find(|d| d.is_error()).map(|d| format!("{}: {}", d.code, d.message)).unwrap_or_default();
            refused("policy", &first)?;
            continue;
        }
        let t = segc_compiler::lower::bpf::tables(&c.model);
        if let Some(d) = segc_compiler::lower::bpf::check_capacity(&c.model, &t).first() {
            refused("capacity", &d.message)?;
            continue;
        }
        if !deadline.alive() {
            return Err(anyhow!("lost the lease: stopped acting"));
        }
        let bundle = segc_compiler::lower::bpf::bundle(&t);
        let next_meta = store::Meta {
            revision: 0,
            sha256: segc_compiler::sha256::hex(&bundle),
            zones: t.zones.clone(),
            published_at: store::now() as u64,
            publisher: format!("controller {} (feed {} refreshed)", cfg.id, f.name),
            rollback_of: None,
            ..meta.clone()
        };
        let published = store::publish_fenced(client, keys, next_meta, &bundle, &next_sources, 100, Some(fence)).await?;
        eprintln!("segc controller {}: feed `{}` changed: published revision {}", cfg.id, f.name, published.revision);
        crate::journal::record(
            Kind::FeedRefresh,
            json!({"fleet": cfg.etcd.fleet, "feed": f.name, "source": f.location, "prefixes": entries.len(), "previous_prefixes": f.entries.len(), "sha256": segc_compiler::sha256::hex(&bytes), "previous_sha256": f.sha256, "revision": published.revision, "bundle_sha256": published.sha256}),
            false,
        )?;
        return Ok(());
    }
    Ok(())
}
