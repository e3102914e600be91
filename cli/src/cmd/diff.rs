//! `segc diff`: what a change newly allows and newly denies (change control,
//! PCI 1.2.2); `--fail-on` turns newly allowed traffic into exit 1 for CI.

use std::io::{self, Write};
use std::path::Path;

use anyhow::Result;

use crate::policy::load_complete;
use crate::{exit, FailOn, Format};

pub fn diff(old: &Path, new: &Path, format: Format, fail_on: Option<FailOn>) -> Result<u8> {
    let (Some(a), Some(b)) = (load_complete(old)?, load_complete(new)?) else { return Ok(exit::FINDINGS) };
    let d = segc_compiler::analysis::diff::diff(&a.model, &b.model);
    let mut out = io::stdout().lock();
    match format {
        Format::Json | Format::Sarif => {
            writeln!(out, "{}", serde_json::to_string_pretty(&d)?)?;
        }
        Format::Human => {
            if d.is_empty() {
                writeln!(out, "no change: the two policies allow exactly the same traffic")?;
            }
            for (title, list) in [("newly allowed", &d.newly_allowed), ("newly denied", &d.newly_denied)] {
                if list.is_empty() {
                    continue;
                }
                writeln!(out, "{title}:")?;
                for ch in list {
                    writeln!(
                        out,
                        "  {}{} -> {}: {}  (e.g. {})",
                        if ch.cde { "[cde] " } else { "" },
                        ch.from.label(),
                        ch.to.label(),
                        ch.services,
                        ch.sample
                    )?;
                }
            }
            if !d.moved.is_empty() {
                writeln!(out, "addresses that changed zone:")?;
                for m in &d.moved {
                    let except = if m.except.is_empty() { String::new() } else { format!(" except {}", m.except.join(", ")) };
                    writeln!(
                        out,
                        "  {}{except}: {} => {}",
                        m.prefix,
                        m.old.as_deref().unwrap_or("(none)"),
                        m.new.as_deref().unwrap_or("(none)")
                    )?;
                }
            }
        }
    }
    let failing = match fail_on {
        None => 0,
        Some(FailOn::Any) => d.newly_allowed.len(),
        Some(FailOn::Cde) => d.newly_allowed.iter().filter(|ch| ch.cde).count(),
    };
    if failing > 0 {
        let what = if fail_on == Some(FailOn::Cde) { "touching a cde zone" } else { "in all" };
        eprintln!("failed: the change newly allows traffic {what} ({failing} zone pair{})", if failing == 1 { "" } else { "s" });
        return Ok(exit::FINDINGS);
    }
    Ok(exit::OK)
}
