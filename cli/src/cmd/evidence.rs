//! The evidence commands: `segc probes` (the PCI 11.4.5 test matrix),
//! `segc report` (the compliance report) and `segc graph` (the zone graph).

use std::io::{self, Write};
use std::path::Path;

use anyhow::Result;
use segc_compiler::graph::ZoneGraph;
use segc_compiler::ir::eval::Evaluator;
use segc_compiler::ir::Date;
use segc_compiler::Options;

use crate::policy::{load, load_complete, print_human, today_or_now};
use crate::{exit, Format, GraphFormat, ReportFormat};

pub fn probes(path: &Path, format: Format) -> Result<u8> {
    if format == Format::Sarif {
        eprintln!("error: probes are a test plan, not findings: there is no SARIF form of them (use --format json)");
        return Ok(exit::USAGE);
    }
    let Some(c) = load_complete(path)? else { return Ok(exit::FINDINGS) };
    let probes = segc_compiler::analysis::probes::matrix(&c.model);
    let mut out = io::stdout().lock();
    match format {
        Format::Human => {
            if probes.is_empty() {
                writeln!(out, "no cde zone: nothing to probe")?;
            }
            for p in &probes {
                writeln!(out, "must-{:<5} {} {} {}  ({} -> {})", p.expect, p.src, p.dst, p.proto, p.from_zone, p.to_zone)?;
            }
        }
        _ => writeln!(out, "{}", serde_json::to_string_pretty(&probes)?)?,
    }
    Ok(exit::OK)
}

/// `segc probes --run --from ZONE`: the zone's probes from this host.
pub fn probe_run(path: &Path, zone: &str, netns: Option<&str>, format: Format, timeout_ms: u64, rate: u32) -> Result<u8> {
    if format == Format::Sarif {
        eprintln!("error: a probe run is evidence, not findings: there is no SARIF form of it (use --format json)");
        return Ok(exit::USAGE);
    }
    let Some(c) = load_complete(path)? else { return Ok(exit::FINDINGS) };
    if !c.model.zones.iter().any(|z| z.name == zone) {
        let names: Vec<&str> = c.model.zones.iter().map(|z| z.name.as_str()).collect();
        eprintln!("error: no zone `{zone}` in this policy (zones: {})", names.join(", "));
        return Ok(exit::USAGE);
    }
    let probes: Vec<_> = segc_compiler::analysis::probes::matrix(&c.model).into_iter().filter(|p| p.from_zone == zone).collect();
    if let Some(ns) = netns {
        // This thread only; the audit log is written from here all the same.
        segc_loader::attach::enter_netns(ns).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let results = crate::probe_run::run(&probes, std::time::Duration::from_millis(timeout_ms), rate);
    let mismatches = results.iter().filter(|r| r.as_expected == Some(false)).count();
    let skipped = results.iter().filter(|r| r.as_expected.is_none()).count();
    let summary = serde_json::json!({
        "policy": c.model.policy.name,
        "source_sha256": c.sources().digest(),
        "from": zone,
        "netns": netns,
        "probes": results.len(),
        "as_expected": results.len() - mismatches - skipped,
        "mismatches": mismatches,
        "skipped": skipped,
        "results": results,
    });
    crate::journal::record(segc_audit::Kind::ProbeRun, summary.clone(), true)?;
    let mut out = io::stdout().lock();
    match format {
        Format::Human => {
            for r in &results {
                let verdict = match r.as_expected {
                    Some(true) => "ok",
                    Some(false) => "MISMATCH",
                    None => "skipped",
                };
                let p = &r.probe;
                write!(
                    out,
                    "{verdict:<8} must-{:<5} {} -> {} {} ({} -> {}): {:?}",
                    p.expect, p.src, p.dst, p.proto, p.from_zone, p.to_zone, r.observed
                )?;
                match &r.note {
                    Some(n) => writeln!(out, " ({n})")?,
                    None => writeln!(out)?,
                }
            }
            writeln!(
                out,
                "{} probes from `{zone}`: {} as expected, {mismatches} mismatches, {skipped} skipped",
                results.len(),
                results.len() - mismatches - skipped
            )?;
        }
        _ => writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?,
    }
    Ok(if mismatches > 0 { exit::FINDINGS } else { exit::OK })
}

/// How old each feed's copy is on the report's date: a file's by the day it
/// was last modified (`3 days (copy of 2026-12-04)`), so the same files and
/// date make the same report, whenever it is run; a URL was read by this
/// command.
fn feed_ages(path: &Path, c: &segc_compiler::Compilation, today: Date) -> std::collections::BTreeMap<String, String> {
    let dir = segc_fsio::policy_path(path).map(|p| p.dir).unwrap_or_default();
    c.model
        .feeds
        .iter()
        .map(|f| {
            let age = if segc_compiler::source::is_url(&f.location) {
                "read now".to_string()
            } else {
                std::fs::metadata(dir.join(&f.location))
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or_else(|| "unknown".into(), |t| copy_age(Date::from_days((t.as_secs() / 86_400) as i64), today))
            };
            (f.name.clone(), age)
        })
        .collect()
}

fn copy_age(copied: Date, today: Date) -> String {
    match today.0 - copied.0 {
        days if days < 0 => format!("copy of {copied}"),
        0 => format!("today (copy of {copied})"),
        1 => format!("1 day (copy of {copied})"),
        days => format!("{days} days (copy of {copied})"),
    }
}

pub fn report(path: &Path, format: ReportFormat, today: Option<Date>, template: Option<crate::Template>) -> Result<u8> {
    let today = today_or_now(today);
    let c = load(path, &Options { today: Some(today) })?;
    if !c.model_complete() {
        print_human(&c)?;
        eprintln!("failed: the policy has errors; no report");
        return Ok(exit::FINDINGS);
    }
    let inputs = crate::report::Inputs { runs: crate::report::probe_runs(&c), template, feed_ages: feed_ages(path, &c, today) };
    let bytes = match format {
        ReportFormat::Md => crate::report::markdown(&c, today, &inputs).into_bytes(),
        ReportFormat::Html => crate::report::html(&c, today, &inputs).into_bytes(),
        ReportFormat::Pdf => crate::report::pdf(&c, today, &inputs),
    };
    io::stdout().lock().write_all(&bytes)?;
    Ok(exit::OK)
}

pub fn graph(path: &Path, format: GraphFormat) -> Result<u8> {
    let Some(c) = load_complete(path)? else { return Ok(exit::FINDINGS) };
    let ev = Evaluator::new(&c.model);
    let g = ZoneGraph::new(&ev);
    let text = match format {
        GraphFormat::Dot => crate::graph::dot(&c.model, &g),
        GraphFormat::Svg => crate::graph::svg(&c.model, &g),
    };
    io::stdout().lock().write_all(text.as_bytes())?;
    Ok(exit::OK)
}
