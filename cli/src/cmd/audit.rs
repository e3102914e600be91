//! `segc audit verify|checkpoint|migrate|show|export`.

use std::io::{self, Write};
use std::path::Path;

use anyhow::{Context, Result};
use segc_audit::{Checkpoint, Log, Problem};

use crate::{exit, AuditAction, ExportFormat, Format};

fn report_problem(dir: &Path, p: &Problem) -> u8 {
    let loc = if p.line > 0 { format!("{} line {}", p.file, p.line) } else { p.file.clone() };
    eprintln!("error: audit log {}: event {} ({loc}): {:?}: {}", dir.display(), p.seq, p.kind, p.message);
    exit::FINDINGS
}

pub fn audit(action: AuditAction) -> Result<u8> {
    let dir = segc_audit::default_dir();
    let open = || -> Result<Log> {
        match Log::open_existing(&dir) {
            Ok(l) => Ok(l),
            Err(e @ segc_audit::Error::Corrupt(_)) => Err(anyhow::anyhow!("{e}")),
            Err(e) => Err(e.into()),
        }
    };
    match action {
        AuditAction::Verify { checkpoint } => {
            let log = match open() {
                Ok(l) => l,
                Err(e) if !dir.join("segments").is_dir() => {
                    eprintln!("error: {e:#}");
                    return Ok(exit::FINDINGS);
                }
                Err(e) => return Err(e),
            };
            let result = match &checkpoint {
                None => log.verify(),
                Some(file) => {
                    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read `{}`", file.display()))?;
                    let cp = Checkpoint::newest_in(&text).with_context(|| format!("`{}` holds no checkpoint line", file.display()))?;
                    log.verify_checkpoint(&cp)
                }
            };
            match result {
                Ok(n) if log.is_legacy() => {
                    println!("ok: {n} events in {}, chain and head intact (first format)", dir.display());
                    eprintln!("warning: this log keeps its key in its own folder and its events carry no MAC: whoever can write the folder could have rewritten it; run `segc audit migrate` once");
                    Ok(exit::OK)
                }
                Ok(n) => {
                    let upto = checkpoint.as_ref().map_or(String::new(), |_| ", and it holds everything up to the checkpoint".to_string());
                    println!("ok: {n} events in {}, chain, MACs and head intact{upto}", dir.display());
                    Ok(exit::OK)
                }
                Err(p) => Ok(report_problem(&dir, &p)),
            }
        }
        AuditAction::Checkpoint => {
            let cp = open()?.checkpoint()?;
            println!("{}", cp.to_line());
            Ok(exit::OK)
        }
        AuditAction::Migrate => {
            let mut log = open()?;
            let n = log.migrate()?;
            println!("migrated {n} events in {}: each now carries a MAC; the key is {}", dir.display(), log.key_source());
            Ok(exit::OK)
        }
        AuditAction::Show { kind, since, until, format } => {
            let log = open()?;
            let day = |d: Option<segc_compiler::ir::Date>| d.map(|d| d.0 as u64 * 86_400);
            let (from, to) = (day(since), day(until));
            let mut out = io::stdout().lock();
            for e in log.events()? {
                if kind.as_deref().is_some_and(|k| k != e.kind) || from.is_some_and(|f| e.ts < f) || to.is_some_and(|t| e.ts >= t) {
                    continue;
                }
                match format {
                    Format::Human => writeln!(out, "{:>6} {} {:<12} {} {}", e.seq, segc_audit::rfc3339(e.ts), e.kind, e.actor, e.data)?,
                    _ => writeln!(out, "{}", serde_json::to_string(&e)?)?,
                }
            }
            Ok(exit::OK)
        }
        AuditAction::Export { format, syslog } => export(&open()?, format, syslog.as_deref()),
    }
}

/// Every event, then a checkpoint, to stdout or to a syslog server over TCP.
fn export(log: &Log, format: ExportFormat, syslog: Option<&str>) -> Result<u8> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "-".into());
    let mut lines: Vec<String> = log
        .events()?
        .iter()
        .map(|e| match format {
            ExportFormat::Rfc5424 => segc_audit::rfc5424(e, &host),
            ExportFormat::Cef => segc_audit::cef(e),
            ExportFormat::Json => serde_json::to_string(e).unwrap_or_default(),
        })
        .collect();
    // The checkpoint goes out with the events: kept by the SIEM, it later
    // proves the log still holds everything up to it.
    if let Ok(cp) = log.checkpoint() {
        lines.push(match format {
            ExportFormat::Rfc5424 => segc_audit::rfc5424_checkpoint(&cp, &host),
            ExportFormat::Cef => segc_audit::cef_checkpoint(&cp),
            ExportFormat::Json => cp.to_line(),
        });
    }
    match syslog {
        None => {
            let mut out = io::stdout().lock();
            for l in &lines {
                writeln!(out, "{l}")?;
            }
        }
        Some(addr) => {
            let mut s = std::net::TcpStream::connect(addr).with_context(|| format!("cannot connect to syslog at {addr}"))?;
            for l in &lines {
                // RFC 6587 octet counting.
                write!(s, "{} {l}", l.len())?;
            }
            s.flush()?;
            eprintln!("sent {} events and a checkpoint to {addr}", lines.len().saturating_sub(1));
        }
    }
    Ok(exit::OK)
}
