//! `cargo xtask <task>`: the project's chores, so they are one command each.
//!
//! - `bench`: every benchmark, release build, figures printed as they come.
//! - `ci`: what `.ci/run` runs after installing packages.

use std::process::{Command, ExitCode};

fn cargo(args: &[&str]) -> bool {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("+ cargo {}", args.join(" "));
    Command::new(cargo).args(args).status().is_ok_and(|s| s.success())
}

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let ok = match task.as_str() {
        "bench" => cargo(&["bench", "--workspace"]),
        "ci" => cargo(&["test", "--workspace", "--locked"]),
        _ => {
            eprintln!("usage: cargo xtask <bench|ci>");
            return ExitCode::from(2);
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
