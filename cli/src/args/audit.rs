//! `segc audit …`.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use segc_compiler::ir::Date;

use super::{date_arg, Format};

#[derive(Subcommand, Debug)]
pub enum AuditAction {
    /// Check the chain, every event's MAC and the head; exit 1 naming the first bad event.
    Verify {
        /// Also prove the log still holds everything up to the newest checkpoint in FILE
        /// (a file `audit checkpoint` wrote, or a SIEM export).
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
    },
    /// Print the current checkpoint (sequence, hash, MAC) as one JSON line, to keep outside the log.
    Checkpoint,
    /// Convert a log of the first format (key in its folder, no per-event MACs), once.
    Migrate,
    /// List events.
    Show {
        /// Only events of this kind (`build`, `deploy.apply`, ...).
        #[arg(long)]
        kind: Option<String>,
        /// Only events on or after this date (YYYY-MM-DD, UTC).
        #[arg(long, value_name = "DATE", value_parser = date_arg)]
        since: Option<Date>,
        /// Only events before this date (YYYY-MM-DD, UTC).
        #[arg(long, value_name = "DATE", value_parser = date_arg)]
        until: Option<Date>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Export events for a SIEM, to stdout or to a syslog server over TCP.
    Export {
        #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
        format: ExportFormat,
        /// Send to this syslog server (HOST:PORT, TCP, octet-counted frames).
        #[arg(long, value_name = "HOST:PORT")]
        syslog: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Rfc5424,
    Cef,
    Json,
}
