//! Builds `c/segc.bpf.c` with clang when clang is installed; without it, the
//! committed object `obj/segc.bpf.o` is used, so a plain `cargo build` needs no
//! clang. `cargo xtask bpf` refreshes the committed object and its source hash,
//! and a test fails when the hash no longer matches the C sources.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("segc.bpf.o");
    println!("cargo:rerun-if-changed=c/segc.bpf.c");
    println!("cargo:rerun-if-changed=c/segc.h");
    println!("cargo:rerun-if-changed=obj/segc.bpf.o");
    println!("cargo:rerun-if-env-changed=SEGC_BPF_USE_COMMITTED");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let use_committed = std::env::var_os("SEGC_BPF_USE_COMMITTED").is_some();
    let built = !use_committed
        && Command::new(&clang)
            .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
            .arg(format!("-I{}", manifest.join("c").display()))
            .arg("-I/usr/include/x86_64-linux-gnu")
            .arg("-c")
            .arg(manifest.join("c/segc.bpf.c"))
            .arg("-o")
            .arg(&out)
            .status()
            .is_ok_and(|s| s.success());
    if !built {
        if !use_committed {
            println!("cargo:warning=clang is not available; using the committed obj/segc.bpf.o");
        }
        std::fs::copy(manifest.join("obj/segc.bpf.o"), &out).expect("the committed object exists");
    }
}
