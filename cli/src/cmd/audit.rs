//! `segc audit verify|show|export`.

use std::io::{self, Write};

use anyhow::{Context, Result};

use crate::{exit, AuditAction, ExportFormat, Format};

pub fn audit(action: AuditAction) -> Result<u8> {
    let dir = segc_audit::default_dir();
    let log = segc_audit::Log::open(&dir)?;
    match action {
        AuditAction::Verify => match log.verify() {
            Ok(n) => {
                println!("ok: {n} events in {}, chain and head intact", dir.display());
                Ok(exit::OK)
            }
            Err(p) => {
                let loc = if p.line > 0 { format!("{} line {}", p.file, p.line) } else { p.file.clone() };
                eprintln!("error: audit log {}: event {} ({loc}): {:?}: {}", dir.display(), p.seq, p.kind, p.message);
                Ok(exit::FINDINGS)
            }
        },
        AuditAction::Show { kind, since, until, format } => {
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
        AuditAction::Export { format, syslog } => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "-".into());
            let lines: Vec<String> = log
                .events()?
                .iter()
                .map(|e| match format {
                    ExportFormat::Rfc5424 => segc_audit::rfc5424(e, &host),
                    ExportFormat::Cef => segc_audit::cef(e),
                    ExportFormat::Json => serde_json::to_string(e).unwrap_or_default(),
                })
                .collect();
            match syslog {
                None => {
                    let mut out = io::stdout().lock();
                    for l in &lines {
                        writeln!(out, "{l}")?;
                    }
                }
                Some(addr) => {
                    let mut s = std::net::TcpStream::connect(&addr).with_context(|| format!("cannot connect to syslog at {addr}"))?;
                    for l in &lines {
                        // RFC 6587 octet counting.
                        write!(s, "{} {l}", l.len())?;
                    }
                    s.flush()?;
                    eprintln!("sent {} events to {addr}", lines.len());
                }
            }
            Ok(exit::OK)
        }
    }
}
