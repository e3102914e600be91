//! The one segc binary.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = segc::Cli::parse();
    ExitCode::from(segc::run(cli))
}
