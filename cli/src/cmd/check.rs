//! `segc check`: parse, resolve, check, analyse, run asserts and tests.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::Path;

use anyhow::Result;
use segc_compiler::diag::Severity;
use segc_compiler::ir::eval::Evaluator;
use segc_compiler::ir::{Action, Date, ZoneId};
use segc_compiler::{Compilation, Options};

use crate::policy::{load, print_human, summary, today_or_now};
use crate::{exit, render, Format};

pub fn check(path: &Path, format: Format, today: Option<Date>, deny_warnings: bool) -> Result<u8> {
    let c = load(path, &Options { today: Some(today_or_now(today)) })?;
    match format {
        Format::Human => {
            print_human(&c)?;
            if c.model_complete() {
                // The first few paths; a large policy can have hundreds of
                // thousands, which no one reads on a terminal.
                let (shown, total) = exposures(&c, Some(HUMAN_EXPOSURES));
                let mut err = io::stderr().lock();
                for e in &shown {
                    writeln!(err, "note: untrusted `{}` reaches cde `{}`: {}", e.from, e.to, e.path)?;
                }
                if total > shown.len() {
                    writeln!(err, "note: and {} more untrusted-to-cde paths (`--format json` lists them all)", total - shown.len())?;
                }
            }
            let name = c.model.policy.name.as_deref().unwrap_or("policy");
            if c.diagnostics.is_empty() {
                eprintln!("ok: `{name}` checks clean");
            } else {
                eprintln!("{}: `{name}`: {}", if c.has_errors() { "failed" } else { "ok" }, summary(&c));
            }
        }
        Format::Json => {
            let mut doc = render::json(c.sources(), &c.diagnostics, c.model.policy.name.as_deref());
            if c.model_complete() {
                doc["exposure"] = serde_json::to_value(exposures(&c, None).0)?;
            }
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Sarif => {
            let doc = render::sarif(c.sources(), &c.diagnostics);
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
    }
    let fail = c.has_errors() || (deny_warnings && c.count(Severity::Warning) > 0);
    // A large policy's compilation takes a while to free, and the process ends here.
    std::mem::forget(c);
    Ok(if fail { exit::FINDINGS } else { exit::OK })
}

/// A path from an untrusted zone into a cde zone, for reports.
#[derive(serde::Serialize)]
struct ExposureView {
    from: String,
    to: String,
    /// `internet -> dmz (tcp/443, main.seg:25) -> ...`
    path: String,
    hops: Vec<HopView>,
}

#[derive(Clone, serde::Serialize)]
struct HopView {
    from: String,
    to: String,
    services: String,
    flows: Vec<String>,
}

/// How many untrusted-to-cde paths the human format prints.
const HUMAN_EXPOSURES: usize = 20;

/// The shortest path from every untrusted zone into every cde zone it
/// reaches (the first `limit` of them, when given), and how many there are.
fn exposures(c: &Compilation, limit: Option<usize>) -> (Vec<ExposureView>, usize) {
    let ev = Evaluator::new(&c.model);
    let g = segc_compiler::graph::ZoneGraph::new(&ev);
    let m = &c.model;
    // Paths from one zone share their first hops: each hop's view is made once.
    let mut views: HashMap<(ZoneId, ZoneId), HopView> = HashMap::new();
    let all = g.exposures(m);
    let total = all.len();
    let shown = all
        .into_iter()
        .take(limit.unwrap_or(usize::MAX))
        .map(|e| {
            let hops: Vec<HopView> = e
                .hops
                .iter()
                .map(|(a, b, set)| {
                    views
                        .entry((*a, *b))
                        .or_insert_with(|| HopView {
                            from: m.zone(*a).name.clone(),
                            to: m.zone(*b).name.clone(),
                            services: set.to_string(),
                            flows: ev
                                .pair(*a, *b)
                                .map(|p| p.flows.as_slice())
                                .unwrap_or(&[])
                                .iter()
                                .map(|&id| m.rule(Action::Allow, id))
                                .filter(|r| !r.set.intersect(set).is_empty())
                                .map(|r| c.sources().location(r.span))
                                .collect(),
                        })
                        .clone()
                })
                .collect();
            let mut path = m.zone(e.from).name.clone();
            for h in &hops {
                path.push_str(&format!(" -> {} ({}, {})", h.to, h.services, h.flows.join(", ")));
            }
            ExposureView { from: m.zone(e.from).name.clone(), to: m.zone(e.to).name.clone(), path, hops }
        })
        .collect();
    (shown, total)
}
