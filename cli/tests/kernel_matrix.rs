//! The kernel-level checks on Debian 12's own kernel (6.1, no TCX), booted
//! with virtme-ng under qemu (TCG: nested KVM hangs here) over this machine's
//! root file system: `tests/kernel/inside.sh` deploys through tc clsact in
//! network namespaces (real TCP, echo, a swap that stops a live connection,
//! an interface created again, drift, undeploy, a TUN link), compares the
//! bpf engine with the reference, and runs the filter's attack suite.
//!
//! It needs root, `vng` (PyPI virtme-ng), `qemu-system-x86_64`,
//! busybox-static and a `/boot/vmlinuz-6.1*` (Debian's linux-image-amd64);
//! `.ci/run` installs them. Without them it is skipped, visibly, except under
//! `CI=true`, where it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn kernel() -> Option<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir("/boot")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-6.1.")))
        .collect();
    v.sort();
    v.pop()
}

/// The newest build of the loader's attack-suite test binary.
fn filter_attacks() -> Option<PathBuf> {
    let deps = Path::new(env!("CARGO_BIN_EXE_segc")).parent()?.join("deps");
    let mut v: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(deps)
        .ok()?
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("filter_attacks-") && !n.contains('.')
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    v.sort();
    v.pop().map(|(_, p)| p)
}

#[test]
fn debian_12_kernel_enforces_through_tc_clsact() {
    if !common::require("debian_12_kernel_enforces_through_tc_clsact", &["vng", "qemu-system-x86_64", "python3", "ip", "busybox"]) {
        return;
    }
    let Some(image) = kernel() else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI needs Debian 12's kernel in /boot (linux-image-amd64)");
        eprintln!("SKIPPED debian_12_kernel_enforces_through_tc_clsact: no /boot/vmlinuz-6.1*");
        return;
    };
    let work = std::env::temp_dir().join(format!("segc-kernel-matrix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    let repo = common::repo().canonicalize().expect("repo");
    let mut cmd = Command::new("timeout");
    cmd.args(["1200", "vng", "--run"])
        .arg(&image)
        .args(["--disable-kvm", "--memory", "3G", "--cpus", "2", "--rwdir"])
        .arg(&work)
        .args(["--", "bash"])
        .arg(repo.join("tests/kernel/inside.sh"))
        .arg(env!("CARGO_BIN_EXE_segc"))
        .arg(&repo)
        .arg(work.join("w"));
    let attacks = filter_attacks();
    if let Some(a) = &attacks {
        cmd.arg(a);
    }
    let out = cmd.output().expect("vng runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let report: Vec<&str> =
        text.lines().filter(|l| l.starts_with("ok: ") || l.starts_with("FAIL: ") || l.starts_with("kernel: ")).collect();
    eprintln!("{}", report.join("\n"));
    assert!(text.contains("kernel: 6.1."), "the VM ran Debian 12's kernel:\n{text}");
    assert!(text.contains("MATRIX-OK"), "every check passed on 6.1:\n{text}");
    assert!(text.contains("tc clsact"), "without TCX, the filter goes on tc clsact");
    if attacks.is_some() {
        assert!(text.contains("ok: the filter's attack suite"), "the attack suite ran on 6.1:\n{text}");
    }
    let _ = std::fs::remove_dir_all(&work);
}
