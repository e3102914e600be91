//! Root and tool checks shared by the kernel tests.
#![allow(dead_code, reason = "each test binary uses part of it")]

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// Whether a kernel test can run; prints why not. Under `CI=true` it must run.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{test} must run in CI, as root");
    eprintln!("SKIPPED {test}: it needs root (CAP_BPF) to load eBPF programs");
    false
}
