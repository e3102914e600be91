//! `segc test`: the `test` blocks, one line per case, and flow coverage.

use std::io::{self, Write};
use std::path::Path;

use anyhow::Result;
use segc_compiler::analysis::verify;
use segc_compiler::ir::eval::Evaluator;
use segc_compiler::ir::Action;
use segc_compiler::Options;

use crate::exit;
use crate::policy::{load, print_diagnostics};

pub fn test(path: &Path, coverage: bool, min_coverage: Option<f64>) -> Result<u8> {
    let c = load(path, &Options::default())?;
    // Tests need a complete model; findings of the analyses do not stop them.
    if !c.model_complete() {
        let blocking: Vec<_> = c.diagnostics.iter().filter(|d| d.is_error() && d.code.is_front_end()).cloned().collect();
        print_diagnostics(&c, &blocking)?;
        eprintln!("failed: the policy has errors; no tests were run");
        return Ok(exit::FINDINGS);
    }
    let ev = Evaluator::new(&c.model);
    let results = verify::run_tests(&ev);
    let mut out = io::stdout().lock();
    let mut exercised = vec![false; c.model.flows.len()];
    for r in &results {
        let status = if r.passed { "ok  " } else { "FAIL" };
        write!(out, "{status} {}: {}", r.test, r.case)?;
        if !r.passed {
            write!(out, " (got {}", r.got.as_str())?;
            let by: Vec<String> = r
                .deciding
                .iter()
                .map(|&(a, id)| format!("{} {}", verify::action_word(a), c.sources().location(c.model.rule(a, id).span)))
                .collect();
            if by.is_empty() {
                write!(out, ", by default")?;
            } else {
                write!(out, ", by {}", by.join(", "))?;
            }
            write!(out, ")")?;
        }
        writeln!(out)?;
        for &(a, id) in &r.deciding {
            if a == Action::Allow {
                exercised[id.0 as usize] = true;
            }
        }
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    writeln!(out, "{} passed, {} failed", results.len() - failed, failed)?;
    let mut code = if failed > 0 { exit::FINDINGS } else { exit::OK };
    if coverage {
        let total = c.model.flows.len();
        let hit = exercised.iter().filter(|&&e| e).count();
        let pct = if total == 0 { 100.0 } else { 100.0 * hit as f64 / total as f64 };
        writeln!(out, "coverage: {hit} of {total} flows exercised ({pct:.1}%)")?;
        for (i, f) in c.model.flows.iter().enumerate() {
            if !exercised[i] {
                writeln!(
                    out,
                    "  not exercised: flow {} on {} ({})",
                    c.model.pair_text(f.from, f.to),
                    f.services_text(),
                    c.sources().location(f.span)
                )?;
            }
        }
        if let Some(min) = min_coverage {
            if pct + 1e-9 < min {
                writeln!(out, "coverage {pct:.1}% is below the minimum {min}%")?;
                code = exit::FINDINGS;
            }
        }
    }
    Ok(code)
}
