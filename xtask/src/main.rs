//! `cargo xtask <task>`: the project's chores, so they are one command each.
//!
//! - `bench`: every benchmark, release build, figures printed as they come.
//! - `ci`: what `.ci/run` runs after installing packages.
//! - `bpf`: rebuild the committed eBPF object and record its sources' hash.

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
        "bpf" => rebuild_bpf(),
        _ => {
            eprintln!("usage: cargo xtask <bench|ci|bpf>");
            return ExitCode::from(2);
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Builds `runtime-bpf/c/segc.bpf.c` into `runtime-bpf/obj/segc.bpf.o` and writes
/// the SHA-256 of the C sources next to it.
fn rebuild_bpf() -> bool {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime-bpf");
    let ok = Command::new("clang")
        .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror", "-I/usr/include/x86_64-linux-gnu"])
        .arg(format!("-I{}", root.join("c").display()))
        .arg("-c")
        .arg(root.join("c/segc.bpf.c"))
        .arg("-o")
        .arg(root.join("obj/segc.bpf.o"))
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("clang failed (is it installed? apt-get install clang libbpf-dev)");
        return false;
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg("cat c/segc.bpf.c c/segc.h | sha256sum | cut -d' ' -f1")
        .current_dir(&root)
        .output();
    match out {
        Ok(o) if o.status.success() => std::fs::write(root.join("obj/segc.bpf.o.sources.sha256"), &o.stdout).is_ok(),
        _ => false,
    }
}
