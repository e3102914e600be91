//! `segc build`: check, then lower to every chosen target and write the
//! artifacts and `manifest.json` (all or nothing).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use segc_audit::Kind;
use segc_compiler::ir::Date;
use segc_compiler::lower::{self, Failed, Sink, Target};
use segc_compiler::sha256::Hashing;
use segc_compiler::Options;
use segc_fsio::Staged;

use crate::exit;
use crate::journal::record;
use crate::policy::{load_alongside, print_diagnostics, refuse, today_or_now};

pub fn build(path: &Path, out: &Path, targets: &[Target], today: Option<Date>) -> Result<u8> {
    // Every target streams its files into temporary files beside their
    // places, hashed on the way; they replace the old files only once every
    // target has lowered and written (dropped, they are removed). Lowering
    // starts as soon as the model is built, alongside the analyses; what it
    // made is dropped if they find an error.
    let files = Files { out };
    let fresh = Fresh::before(out);
    let (c, lowered) = load_alongside(path, &Options { today: Some(today_or_now(today)) }, |model| {
        let chosen: BTreeSet<Target> = if targets.is_empty() { lower::default_targets(model) } else { targets.iter().copied().collect() };
        let written = lower::lower_into(model, &chosen, &files);
        (chosen, written)
    })?;
    let (chosen, lowered) = match lowered {
        Some(l) if !c.has_errors() => l,
        _ => {
            drop(lowered);
            fresh.remove_empty();
            refuse(&c, "built")?;
            return Ok(exit::FINDINGS);
        }
    };
    let mut written = match lowered {
        Ok(w) => w,
        Err(Failed::Diagnostics(diags)) => {
            fresh.remove_empty();
            print_diagnostics(&c, &diags)?;
            eprintln!("failed: the policy cannot be expressed exactly for every target; nothing was built");
            return Ok(exit::FINDINGS);
        }
        Err(Failed::Io { path, error }) => {
            fresh.remove_empty();
            return Err(error).with_context(|| format!("cannot write `{}`; nothing was built", out.join(path).display()));
        }
    };
    let warnings = lower::warnings(&c.model, &chosen);
    if !warnings.is_empty() {
        print_diagnostics(&c, &warnings)?;
    }
    for f in &c.model.feeds {
        let path = format!("feeds/{}.netset", f.name);
        let snapshot = lower::feed_snapshot(f);
        match files.put(&path, &mut |w| w.write_all(&snapshot)) {
            Ok(w) => written.push(w),
            Err(e) => {
                drop(written);
                fresh.remove_empty();
                return Err(e).with_context(|| format!("cannot write `{}`; nothing was built", out.join(&path).display()));
            }
        }
    }
    written.sort_by(|a, b| a.path.cmp(&b.path));
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
    let artifacts: Vec<(String, String)> = written.iter().map(|w| (w.path.clone(), w.sha256.clone())).collect();
    segc_fsio::commit_all(written.into_iter().map(|w| w.file).collect())
        .with_context(|| format!("cannot write into `{}`", out.display()))?;
    let manifest = serde_json::json!({
        "policy": c.model.policy.name,
        "source_sha256": c.sources().digest(),
        "segc_version": env!("CARGO_PKG_VERSION"),
        "targets": chosen.iter().map(|t| t.name()).collect::<Vec<_>>(),
        "feeds": feeds,
        "artifacts": artifacts.iter().map(|(path, sha)| (path.clone(), serde_json::Value::from(sha.as_str()))).collect::<serde_json::Map<_, _>>(),
    });
    write(&out.join("manifest.json"), format!("{}\n", serde_json::to_string_pretty(&manifest)?).as_bytes())?;
    record(Kind::Build, serde_json::json!({"out": out.display().to_string(), "manifest": manifest}), false)?;
    for (path, _) in &artifacts {
        eprintln!("wrote {}", out.join(path).display());
    }
    eprintln!("wrote {}", out.join("manifest.json").display());
    // The compilation of a large policy takes a while to free, and the
    // process ends here.
    std::mem::forget(c);
    Ok(exit::OK)
}

/// The folders a build would create (the output folder, one per target):
/// when it fails, those it created are removed again, so a failed build
/// into a new folder leaves nothing at all.
struct Fresh(Vec<std::path::PathBuf>);

impl Fresh {
    fn before(out: &Path) -> Fresh {
        let dirs = Target::ALL.iter().map(|t| out.join(t.name())).chain([out.join("feeds"), out.to_path_buf()]);
        Fresh(dirs.filter(|d| !d.exists()).collect())
    }

    /// Removes the folders that did not exist before and are empty now
    /// (every staged file has been dropped, so removed, by then).
    fn remove_empty(&self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The file sink: each file staged beside its place and hashed as written.
struct Files<'a> {
    out: &'a Path,
}

/// A file written and not yet committed.
struct Written {
    path: String,
    sha256: String,
    file: Staged,
}

impl Sink for Files<'_> {
    type Put = Written;

    fn put(&self, path: &str, body: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>) -> std::io::Result<Written> {
        let mut w = Hashing::new(Staged::create(&self.out.join(path), None)?);
        body(&mut w)?;
        let (file, sha256) = w.finish();
        // Towards the disk while other targets still lower.
        file.start_writeback();
        Ok(Written { path: path.to_string(), sha256, file })
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    segc_fsio::write_atomically(path, bytes, None).with_context(|| format!("cannot write `{}`", path.display()))
}
