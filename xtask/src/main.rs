//! `cargo xtask <task>`: the project's chores, so they are one command each.
//!
//! - `bench`: every benchmark, release build, figures printed as they come.
//! - `ci`: what `.ci/run` runs after installing packages.
//! - `bpf`: rebuild the committed eBPF object and record its sources' hash.
//! - `bench-aerleon`: `segc build` (all targets) against Aerleon's nftables
//!   generator on the same 1000-zone, 20000-flow policy; needs `pip install aerleon`.
//! - `bench-net`: TCP throughput over a veth pair (iperf3), with and without the
//!   deployed filter, alternating runs; needs root and iperf3.
//! - `bench-flood`: the agent's audit log growth and reload latency under a
//!   flood of 100k denied packets per second; needs root.
//! - `bench-fleet`: publish to enforced on 20 agents in namespaces, on a
//!   three-member etcd cluster on loopback; needs root and etcd-server.
//! - `perf-gate`: the benches' `--gate` modes (release builds): ratios within
//!   one run against `perf/baseline.json`, failing on a regression of more
//!   than 25 %; the eBPF part needs root (skipped, and said, without it).

mod fleet;
mod flood;
#[path = "../../compiler/benches/support/generate.rs"]
mod generate;

use std::process::{Command, ExitCode};

fn cargo(args: &[&str]) -> bool {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("+ cargo {}", args.join(" "));
    Command::new(cargo).args(args).status().is_ok_and(|s| s.success())
}

/// The performance gate: every bench's `--gate` mode must pass.
fn perf_gate() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false);
    // One cargo run for both benches: the compiler crate is built once, with
    // the features both need (two runs built it twice).
    let mut args = vec!["bench", "--locked", "--no-fail-fast", "-p", "segc-compiler", "--bench", "check"];
    if root {
        args.extend(["-p", "segc-loader", "--bench", "xdp"]);
    } else {
        eprintln!("perf-gate: the eBPF figures need root (BPF_PROG_TEST_RUN); skipped");
    }
    args.extend(["--", "--gate"]);
    cargo(&args)
}

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let ok = match task.as_str() {
        "bench" => cargo(&["bench", "--workspace"]),
        "ci" => cargo(&["test", "--workspace", "--locked"]),
        "bpf" => rebuild_bpf(),
        "perf-gate" => perf_gate(),
        "bench-net" => bench_net(),
        "bench-flood" => flood::bench(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")),
        "bench-fleet" => fleet::bench(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")),
        "flood-send" => flood::send(&std::env::args().skip(2).collect::<Vec<_>>()),
        "bench-aerleon" => {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            cargo(&["build", "--release", "-p", "segc"])
                && Command::new("python3")
                    .arg(root.join("xtask/scripts/bench_aerleon.py"))
                    .arg(root.join("target/release/segc"))
                    .status()
                    .is_ok_and(|s| s.success())
        }
        // The benchmarks' generated policy, for timing the binary by hand:
        // `cargo xtask gen-policy 10000 100000 DIR` writes DIR/main.seg.
        "gen-policy" => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            match (args.first().and_then(|z| z.parse().ok()), args.get(1).and_then(|f| f.parse().ok()), args.get(2)) {
                (Some(zones), Some(flows), Some(dir)) => {
                    std::fs::create_dir_all(dir).is_ok()
                        && std::fs::write(std::path::Path::new(dir).join("main.seg"), generate::generate(zones, flows)).is_ok()
                }
                _ => {
                    eprintln!("usage: cargo xtask gen-policy ZONES FLOWS DIR");
                    false
                }
            }
        }
        _ => {
            eprintln!("usage: cargo xtask <bench|ci|bpf|perf-gate|bench-net|bench-flood|bench-fleet|bench-aerleon|gen-policy>");
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
    let out = Command::new("sh").arg("-c").arg("cat c/segc.bpf.c c/segc.h | sha256sum | cut -d' ' -f1").current_dir(&root).output();
    match out {
        Ok(o) if o.status.success() => std::fs::write(root.join("obj/segc.bpf.o.sources.sha256"), &o.stdout).is_ok(),
        _ => false,
    }
}

fn sh(args: &[&str]) -> bool {
    Command::new(args[0]).args(&args[1..]).status().is_ok_and(|s| s.success())
}

/// One iperf3 run from `a` to `b` (10.98.0.2): Gbit/s.
fn iperf(a: &str) -> Option<f64> {
    let out = Command::new("ip").args(["netns", "exec", a, "iperf3", "-c", "10.98.0.2", "-t", "3", "-J"]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let i = text.find("\"sum_received\"")?;
    let j = text[i..].find("\"bits_per_second\":")? + i + 18;
    let end = text[j..].find([',', '\n', '}'])? + j;
    text[j..end].trim().parse::<f64>().ok().map(|b| b / 1e9)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench_net() -> bool {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if !cargo(&["build", "-p", "segc"]) {
        return false;
    }
    let segc = root.join("target/debug/segc");
    let (a, b) = ("segc-bench-a", "segc-bench-b");
    let _ = sh(&["ip", "netns", "del", a]);
    let _ = sh(&["ip", "netns", "del", b]);
    let ok = sh(&["ip", "netns", "add", a])
        && sh(&["ip", "netns", "add", b])
        && sh(&["ip", "link", "add", "va", "netns", a, "type", "veth", "peer", "name", "vb", "netns", b])
        && sh(&["ip", "-n", a, "addr", "add", "10.98.0.1/24", "dev", "va"])
        && sh(&["ip", "-n", b, "addr", "add", "10.98.0.2/24", "dev", "vb"])
        && sh(&["ip", "-n", a, "link", "set", "va", "up"])
        && sh(&["ip", "-n", b, "link", "set", "vb", "up"]);
    if !ok {
        eprintln!("cannot set up the namespaces (root needed)");
        return false;
    }
    let dir = std::env::temp_dir().join("segc-bench-net");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(
        dir.join("main.seg"),
        "zone a {\n  cidrs = [10.98.0.1/32]\n  scope = connected\n}\nzone b {\n  cidrs = [10.98.0.2/32]\n  scope = connected\n}\nflow a -> b on tcp/5201\n",
    );
    let mut server = match Command::new("ip").args(["netns", "exec", b, "iperf3", "-s"]).stdout(std::process::Stdio::null()).spawn() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("iperf3: {e}");
            return false;
        }
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        without.extend(iperf(a));
        let deployed = Command::new(&segc)
            .args(["deploy", "--target", "host", "--netns", b, "--iface", "vb", "--apply"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !deployed {
            eprintln!("deploy failed");
            break;
        }
        with.extend(iperf(a));
        let _ = Command::new(&segc).args(["undeploy", "--target", "host", "--netns", b]).stdout(std::process::Stdio::null()).status();
    }
    let _ = server.kill();
    let _ = sh(&["ip", "netns", "del", a]);
    let _ = sh(&["ip", "netns", "del", b]);
    if without.is_empty() || with.is_empty() {
        eprintln!("no measurements");
        return false;
    }
    let (m0, m1) = (median(without.clone()), median(with.clone()));
    println!("iperf3 over veth, 5 alternating runs of 3 s: without filter {m0:.2} Gbit/s, with filter (auto: TC ingress + TC egress) {m1:.2} Gbit/s, ratio {:.3} ({:.1}% loss)", m1 / m0, (1.0 - m1 / m0) * 100.0);
    println!("  runs without: {without:.2?}");
    println!("  runs with:    {with:.2?}");
    true
}
