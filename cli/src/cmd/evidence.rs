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

pub fn report(path: &Path, format: ReportFormat, today: Option<Date>) -> Result<u8> {
    let today = today_or_now(today);
    let c = load(path, &Options { today: Some(today) })?;
    if !c.model_complete() {
        print_human(&c)?;
        eprintln!("failed: the policy has errors; no report");
        return Ok(exit::FINDINGS);
    }
    let bytes = match format {
        ReportFormat::Md => crate::report::markdown(&c, today).into_bytes(),
        ReportFormat::Html => crate::report::html(&c, today).into_bytes(),
        ReportFormat::Pdf => crate::report::pdf(&c, today),
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
