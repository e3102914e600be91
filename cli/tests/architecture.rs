//! The rules docs/ARCHITECTURE.md states, enforced: file sizes, which crate may
//! do what (the compiler is pure; only the loader talks to the kernel; one
//! clock; one SHA-256; only the renderer knows ariadne), and the module
//! layering of the CLI (commands do not import each other; the agent and the
//! cloud clients never import from the commands).

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

const CRATES: &[&str] = &["compiler", "fsio", "cli", "lsp", "loader", "runtime-bpf", "audit", "xtask"];

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Source lines that are code: comments and doc comments dropped.
fn code(text: &str) -> String {
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

fn rel(p: &Path) -> String {
    p.strip_prefix(repo()).unwrap_or(p).display().to_string()
}

#[test]
fn no_source_file_is_over_450_lines() {
    let mut over = Vec::new();
    for c in CRATES {
        for f in rust_files(&repo().join(c)) {
            let n = read(&f).lines().count();
            if n > 450 {
                over.push(format!("{} ({n} lines)", rel(&f)));
            }
        }
    }
    assert!(over.is_empty(), "split these: {over:?}");
}

/// `needle` appears in the code of no file under `dir` except `allowed`.
fn only_in(dir: &str, needle: &str, allowed: &[&str]) {
    let mut found = Vec::new();
    for f in rust_files(&repo().join(dir)) {
        let r = rel(&f);
        if f.components().any(|c| c.as_os_str() == "tests" || c.as_os_str() == "benches") {
            continue;
        }
        if code(&read(&f)).contains(needle) && !allowed.iter().any(|a| r == *a) {
            found.push(r);
        }
    }
    assert!(found.is_empty(), "`{needle}` must stay in {allowed:?}, found in {found:?}");
}

#[test]
fn the_compiler_is_pure() {
    for needle in [
        "std::fs",
        "std::process",
        "std::net::Tcp",
        "std::net::Udp",
        "println!",
        "eprintln!",
        "print!(",
        "SystemTime",
        "libc::",
        "std::env",
    ] {
        only_in("compiler/src", needle, &[]);
    }
    let manifest = read(&repo().join("compiler/Cargo.toml"));
    for dep in ["aya", "libc", "tokio", "segc-fsio", "segc-loader"] {
        assert!(!manifest.contains(&format!("\n{dep} ")) && !manifest.contains(&format!("\n{dep}.")), "the compiler depends on {dep}");
    }
}

#[test]
fn only_the_loader_talks_to_the_kernel() {
    for c in CRATES.iter().filter(|c| **c != "loader" && **c != "runtime-bpf") {
        let manifest = read(&repo().join(c).join("Cargo.toml"));
        assert!(!manifest.lines().any(|l| l.starts_with("aya")), "{c} depends on aya");
    }
    // Programs and maps, netlink and nftables: the loader. The CLI asks it.
    for c in ["cli/src", "lsp/src", "audit/src", "fsio/src"] {
        only_in(c, "aya::", &[]);
        only_in(c, "libc::SYS_bpf", &["cli/src/agent/lockdown.rs"]);
        only_in(c, "Command::new(\"nft\")", &[]);
        only_in(c, "Command::new(\"tc\")", &[]);
    }
}

#[test]
fn one_clock_one_digest_one_renderer() {
    for c in ["compiler/src", "cli/src", "lsp/src", "audit/src", "loader/src"] {
        only_in(c, "SystemTime::now", &[]);
    }
    only_in("fsio/src", "SystemTime::now", &["fsio/src/clock.rs"]);
    for c in ["cli/src", "lsp/src", "loader/src", "compiler/src"] {
        only_in(c, "Sha256::", &["compiler/src/sha256.rs"]);
    }
    only_in("cli/src", "ariadne", &["cli/src/render.rs"]);
    only_in("cli/src", "fn write_atomically", &[]);
    only_in("lsp/src", "impl Loader for DiskLoader", &[]);
}

#[test]
fn commands_do_not_import_each_other() {
    let cmd = repo().join("cli/src/cmd");
    let modules: Vec<String> =
        rust_files(&cmd).iter().filter_map(|f| f.file_stem().and_then(|s| s.to_str()).map(String::from)).filter(|m| m != "mod").collect();
    for f in rust_files(&cmd) {
        if f.ends_with("mod.rs") {
            continue;
        }
        let text = code(&read(&f));
        for m in &modules {
            for needle in [format!("super::{m}"), format!("crate::cmd::{m}")] {
                assert!(!text.contains(&needle), "{} imports the command module `{m}`", rel(&f));
            }
        }
    }
    // dispatch only: mod.rs declares modules and matches on the command.
    let dispatch = code(&read(&cmd.join("mod.rs")));
    assert!(dispatch.matches("fn ").count() == 1, "cli/src/cmd/mod.rs holds only `dispatch`");
    for dir in ["cli/src/agent", "cli/src/cloud"] {
        only_in(dir, "crate::cmd", &[]);
    }
    for f in ["cli/src/policy.rs", "cli/src/journal.rs", "cli/src/render.rs", "cli/src/feeds.rs", "cli/src/probe_run.rs"] {
        assert!(!code(&read(&repo().join(f))).contains("crate::cmd"), "{f} imports a command");
    }
    for dir in ["cli/src/report", "cli/src/graph", "cli/src/fleet"] {
        only_in(dir, "crate::cmd", &[]);
    }
}

/// The map capacities and protocol classes the compiler lowers against are
/// the ones the eBPF program (through its Rust mirror, itself tested against
/// the C header) was built with.
#[test]
fn bpf_constants_agree_between_compiler_and_runtime() {
    use segc_compiler::lower::bpf as c;
    use segc_runtime_bpf as rt;
    let pairs: [(&str, usize, usize); 10] = [
        ("ZONES4_MAX", c::ZONES4_MAX, rt::ZONES4_MAX as usize),
        ("ZONES6_MAX", c::ZONES6_MAX, rt::ZONES6_MAX as usize),
        ("RULES_MAX", c::RULES_MAX, rt::RULES_MAX as usize),
        ("PORTS_MAX", c::PORTS_MAX, rt::PORTS_MAX as usize),
        ("PAIRS_MAX", c::PAIRS_MAX, rt::PAIRS_MAX as usize),
        ("EXACT_BLOCK_MAX", c::EXACT_BLOCK_MAX as usize, rt::EXACT_BLOCK_MAX as usize),
        ("CLASS_ICMP", usize::from(c::CLASS_ICMP), usize::from(rt::CLASS_ICMP)),
        ("CLASS_TCP", usize::from(c::CLASS_TCP), usize::from(rt::CLASS_TCP)),
        ("CLASS_UDP", usize::from(c::CLASS_UDP), usize::from(rt::CLASS_UDP)),
        ("CLASS_OTHER", usize::from(c::CLASS_OTHER), usize::from(rt::CLASS_OTHER)),
    ];
    for (name, compiler, runtime) in pairs {
        assert_eq!(compiler, runtime, "{name}: the compiler says {compiler}, the runtime {runtime}");
    }
}
