//! `segc build`: check, then lower to every chosen target and write the
//! artifacts and `manifest.json` (all or nothing).

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};
use segc_audit::Kind;
use segc_compiler::ir::Date;
use segc_compiler::lower::{self, Target};

use crate::exit;
use crate::journal::record;
use crate::policy::{load_error_free, print_diagnostics};

pub fn build(path: &Path, out: &Path, targets: &[Target], today: Option<Date>) -> Result<u8> {
    let Some(c) = load_error_free(path, today, "built")? else { return Ok(exit::FINDINGS) };
    let chosen: BTreeSet<Target> = if targets.is_empty() { lower::default_targets(&c.model) } else { targets.iter().copied().collect() };
    let artifacts = match lower::lower(&c.model, &chosen) {
        Ok(a) => a,
        Err(diags) => {
            print_diagnostics(&c, &diags)?;
            eprintln!("failed: the policy cannot be expressed exactly for every target; nothing was built");
            return Ok(exit::FINDINGS);
        }
    };
    let warnings = lower::warnings(&c.model, &chosen);
    if !warnings.is_empty() {
        print_diagnostics(&c, &warnings)?;
    }
    let mut artifacts = artifacts;
    for f in &c.model.feeds {
        artifacts.push(lower::Artifact::new(format!("feeds/{}.netset", f.name), lower::feed_snapshot(f)));
    }
    artifacts.sort_by(|a, b| a.path.cmp(&b.path));
    let feeds: Vec<serde_json::Value> = c
        .model
        .feeds
        .iter()
        .map(|f| {
            serde_json::json!({
                "name": f.name,
                "source": f.location,
                "format": f.format.as_str(),
                "sha256": f.sha256,
                "prefixes": f.entries.len(),
                "blocked": f.blocked,
                "refresh_s": f.refresh_secs,
                "max_prefixes": f.max_prefixes,
            })
        })
        .collect();
    // Each artifact written on a thread of its own (tens of megabytes for a
    // large policy); the manifest, last, names them all.
    std::thread::scope(|s| {
        let handles: Vec<_> = artifacts.iter().map(|a| s.spawn(move || write(&out.join(&a.path), &a.bytes))).collect();
        handles.into_iter().try_for_each(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })?;
    let manifest = serde_json::json!({
        "policy": c.model.policy.name,
        "source_sha256": c.sources().digest(),
        "segc_version": env!("CARGO_PKG_VERSION"),
        "targets": chosen.iter().map(|t| t.name()).collect::<Vec<_>>(),
        "feeds": feeds,
        "artifacts": artifacts.iter().map(|a| (a.path.clone(), serde_json::Value::from(a.sha256.as_str()))).collect::<serde_json::Map<_, _>>(),
    });
    write(&out.join("manifest.json"), format!("{}\n", serde_json::to_string_pretty(&manifest)?).as_bytes())?;
    record(Kind::Build, serde_json::json!({"out": out.display().to_string(), "manifest": manifest}), false)?;
    for a in &artifacts {
        eprintln!("wrote {}", out.join(&a.path).display());
    }
    eprintln!("wrote {}", out.join("manifest.json").display());
    // The compilation of a large policy takes a while to free, and the
    // process ends here.
    std::mem::forget(c);
    Ok(exit::OK)
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    segc_fsio::write_atomically(path, bytes, None).with_context(|| format!("cannot write `{}`", path.display()))
}
