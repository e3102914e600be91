//! The `segc` command line: argument parsing (clap), file IO, rendering and exit
//! codes around the pure compiler.
//!
//! Layout (docs/ARCHITECTURE.md states the rules a test enforces):
//! - `args`: the command line, as types; `cmd/`: one module per command
//!   family, dispatched from `cmd/mod.rs` only;
//! - `policy`: the one way a command loads and compiles a policy;
//!   `journal`: the one way a command records an audit event;
//! - `render`, `report`, `graph`: output formats; `cloud/`: the AWS and Azure
//!   clients; `agent/`: the host daemon.

pub mod agent;
mod args;
pub mod cloud;
pub mod cmd;
pub mod feeds;
#[cfg(feature = "fleet")]
pub mod fleet;
pub mod graph;
pub mod journal;
pub mod policy;
pub mod probe_run;
pub mod render;
pub mod report;

pub use args::*;

/// Exit codes, as the SPEC fixes them.
pub mod exit {
    /// Clean.
    pub const OK: u8 = 0;
    /// The policy has errors (or warnings under `--deny-warnings`), a test failed,
    /// or drift was found.
    pub const FINDINGS: u8 = 1;
    /// Usage, IO or environment error.
    pub const USAGE: u8 = 2;
}

/// Runs the CLI and returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    match cmd::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::USAGE
        }
    }
}
