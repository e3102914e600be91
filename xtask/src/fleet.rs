//! `cargo xtask bench-fleet`: publish to enforced on 20 agents.
//!
//! A three-member etcd cluster on loopback (Debian's etcd-server), 20 agents
//! each enforcing on a veth pair in a namespace of its own, one fleet. Each
//! round publishes a changed policy (`segc fleet publish`, check and build
//! included) and waits until every agent reports the new revision; an
//! agent's latency is the Unix time it began enforcing (`applied_at` in its
//! record, taken right after its swap) minus the time the publish command
//! was started. Printed: p50, p99 and max over every agent of every round,
//! the slowest agent per round, and the publish command alone. Then the
//! figures docs/FLEET.md's sizing rests on: etcd writes per second per idle
//! agent (heartbeats), and a 100k-flow policy published to the 20 agents
//! (its bundle's bytes and chunks, publish to enforced).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::sh;

const AGENTS: usize = 20;
const ROUNDS: usize = 20;
const FLEET: &str = "bench";

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn ns(i: usize) -> String {
    format!("segc-fleet-{i}")
}

fn unix() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").ok().and_then(|l| l.local_addr().ok()).map_or(0, |a| a.port())
}

fn policy(dir: &Path, port: u16) -> bool {
    std::fs::create_dir_all(dir).is_ok()
        && std::fs::write(
            dir.join("main.seg"),
            format!("policy \"fleet-bench\" {{}}\nzone a {{\n  cidrs = [10.96.0.1/32]\n  scope = connected\n}}\nzone b {{\n  cidrs = [10.96.0.2/32]\n  scope = connected\n}}\nflow a -> b on tcp/{port}\n"),
        )
        .is_ok()
}

/// Three members on loopback; the client endpoints.
fn etcd(dir: &Path, procs: &mut Procs) -> Option<String> {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial = ports.iter().enumerate().map(|(i, p)| format!("m{i}=http://127.0.0.1:{}", p.1)).collect::<Vec<_>>().join(",");
    for (i, (client, peer)) in ports.iter().enumerate() {
        let url = format!("http://127.0.0.1:{client}");
        let peer = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args(["--name", &format!("m{i}"), "--data-dir"])
            .arg(dir.join(format!("m{i}")))
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial, "--initial-cluster-state", "new"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        procs.0.push(child);
    }
    Some(ports.iter().map(|p| format!("http://127.0.0.1:{}", p.0)).collect::<Vec<_>>().join(","))
}

/// An agent as `fleet status` reports it: host, revision, applied_at.
type Row = (String, Option<u64>, Option<f64>);

/// `fleet status --format json`: the fleet's revision and its agents.
fn status(segc: &Path, endpoints: &str) -> Option<(u64, Vec<Row>)> {
    let o = Command::new(segc).args(["fleet", "status", "--format", "json", "--etcd", endpoints, "--fleet", FLEET]).output().ok()?;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    let agents = v["agents"]
        .as_array()?
        .iter()
        .map(|a| (a["host_id"].as_str().unwrap_or("").to_string(), a["revision"].as_u64(), a["applied_at"].as_f64()))
        .collect();
    Some((v["revision"].as_u64()?, agents))
}

fn quiet(args: &[&str]) {
    let _ = Command::new(args[0]).args(&args[1..]).stdout(Stdio::null()).stderr(Stdio::null()).status();
}

/// etcd's store revision (one per write) and database size, from etcdctl.
fn etcd_status(endpoints: &str) -> Option<(u64, u64)> {
    let first = endpoints.split(',').next()?;
    let o = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([&format!("--endpoints={first}"), "endpoint", "status", "-w", "json"])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    let s = &v[0]["Status"];
    let found = s["header"]["revision"].as_u64().zip(s["dbSize"].as_u64());
    if found.is_none() {
        eprintln!("etcdctl endpoint status: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    }
    found
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub fn bench(root: &Path) -> bool {
    if !crate::cargo(&["build", "--release", "-p", "segc", "--no-default-features", "--features", "fleet"]) {
        return false;
    }
    let segc = root.join("target/release/segc");
    let tmp = std::env::temp_dir().join("segc-bench-fleet");
    let _ = std::fs::remove_dir_all(&tmp);
    let mut procs = Procs(Vec::new());
    for i in 0..AGENTS {
        quiet(&["ip", "netns", "del", &ns(i)]);
        let n = ns(i);
        let ok = sh(&["ip", "netns", "add", &n])
            && sh(&["ip", "-n", &n, "link", "add", "va", "type", "veth", "peer", "name", "vb"])
            && sh(&["ip", "-n", &n, "link", "set", "va", "up"])
            && sh(&["ip", "-n", &n, "link", "set", "vb", "up"]);
        if !ok {
            eprintln!("cannot set up namespace {n} (root needed)");
            return false;
        }
    }
    let result = run(&segc, &tmp, &mut procs);
    drop(procs);
    for i in 0..AGENTS {
        let _ = Command::new(&segc)
            .args(["undeploy", "--target", "host", "--netns", &ns(i)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        quiet(&["ip", "netns", "del", &ns(i)]);
        let _ = std::fs::remove_dir_all(format!("/sys/fs/bpf/segc/netns-{}", ns(i)));
    }
    result
}

fn run(segc: &Path, tmp: &Path, procs: &mut Procs) -> bool {
    let Some(endpoints) = etcd(&tmp.join("etcd"), procs) else {
        eprintln!("cannot start etcd (apt-get install etcd-server)");
        return false;
    };
    let publish = |dir: &PathBuf| {
        Command::new(segc)
            .args(["fleet", "publish", "--etcd", &endpoints, "--fleet", FLEET])
            .arg(dir)
            .env("SEGC_AUDIT_DIR", tmp.join("audit-publisher"))
            .env("SEGC_AUDIT_KEY_FILE", tmp.join("publisher.key"))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let dir = tmp.join("policy");
    let start = Instant::now();
    while !(policy(&dir, 1000) && publish(&dir)) {
        if start.elapsed() > Duration::from_secs(30) {
            eprintln!("etcd did not take the first revision within 30 s");
            return false;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    for i in 0..AGENTS {
        let host = format!("h{i:02}");
        let child = Command::new(segc)
            .args(["agent", "--fleet", FLEET, "--etcd", &endpoints, "--iface", "vb", "--netns", &ns(i), "--host-id", &host])
            .args(["--metrics", &format!("127.0.0.1:{}", free_port())])
            .env("SEGC_AUDIT_DIR", tmp.join(format!("audit-{host}")))
            .env("SEGC_AUDIT_KEY_FILE", tmp.join(format!("{host}.key")))
            .env("SEGC_STATE_DIR", tmp.join(format!("state-{host}")))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(tmp.join(format!("{host}.log"))).map_or(Stdio::null(), Stdio::from))
            .spawn();
        match child {
            Ok(c) => procs.0.push(c),
            Err(e) => {
                eprintln!("cannot start agent {host}: {e}");
                return false;
            }
        }
    }
    if !wait_all(segc, &endpoints, 1, Duration::from_secs(60)) {
        eprintln!("the agents did not all enforce revision 1 within 60 s (logs in {})", tmp.display());
        return false;
    }
    let (mut all, mut slowest, mut publish_s) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let revision = 2 + round as u64;
        if !policy(&dir, 2000 + round as u16) {
            return false;
        }
        let t0 = unix();
        if !publish(&dir) {
            eprintln!("publish {revision} failed");
            return false;
        }
        publish_s.push(unix() - t0);
        if !wait_all(segc, &endpoints, revision, Duration::from_secs(30)) {
            eprintln!("revision {revision} did not reach every agent within 30 s");
            return false;
        }
        let Some((_, agents)) = status(segc, &endpoints) else { return false };
        let lat: Vec<f64> = agents.iter().filter_map(|a| a.2).map(|at| at - t0).collect();
        if lat.len() != AGENTS {
            eprintln!("round {round}: {} agents reported when they applied", lat.len());
            return false;
        }
        slowest.push(lat.iter().copied().fold(0.0, f64::max));
        all.extend(lat);
        std::thread::sleep(Duration::from_millis(300));
    }
    let heartbeats = etcd_status(&endpoints).and_then(|(r0, _)| {
        std::thread::sleep(Duration::from_secs(10));
        etcd_status(&endpoints).map(|(r1, db)| ((r1 - r0) as f64 / 10.0, db))
    });
    let big = big_policy(segc, &endpoints, &tmp.join("big"), &publish);
    all.sort_by(f64::total_cmp);
    slowest.sort_by(f64::total_cmp);
    publish_s.sort_by(f64::total_cmp);
    println!(
        "publish to enforced, {AGENTS} agents x {ROUNDS} revisions ({} samples): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; slowest agent per revision: p50 {:.0} ms, max {:.0} ms; `fleet publish` alone (check, build, store): p50 {:.0} ms",
        all.len(),
        percentile(&all, 0.5) * 1e3,
        percentile(&all, 0.99) * 1e3,
        all[all.len() - 1] * 1e3,
        percentile(&slowest, 0.5) * 1e3,
        slowest[slowest.len() - 1] * 1e3,
        percentile(&publish_s, 0.5) * 1e3,
    );
    if let Some((writes, db)) = heartbeats {
        println!(
            "idle fleet: {writes:.1} etcd writes/s for {AGENTS} agents ({:.2} per agent per second); etcd database {:.1} MiB after {} revisions",
            writes / AGENTS as f64,
            db as f64 / 1048576.0,
            ROUNDS + 1
        );
    }
    match big {
        Some((bytes, chunks, publish, enforced)) => println!(
            "100k flows (1000 zones): bundle {:.1} MiB in {chunks} chunks; `fleet publish` {publish:.1} s; publish to enforced on all {AGENTS} agents {enforced:.1} s",
            bytes as f64 / 1048576.0
        ),
        None => {
            eprintln!("the 100k-flow revision did not reach every agent");
            return false;
        }
    }
    true
}

/// Publishes a generated 100k-flow policy: (bundle bytes, chunks, publish
/// seconds, publish to enforced everywhere in seconds).
fn big_policy(segc: &Path, endpoints: &str, dir: &Path, publish: &dyn Fn(&PathBuf) -> bool) -> Option<(u64, u64, f64, f64)> {
    std::fs::create_dir_all(dir).ok()?;
    std::fs::write(dir.join("main.seg"), crate::generate::generate(1000, 100_000)).ok()?;
    let revision = 2 + ROUNDS as u64;
    let t0 = Instant::now();
    if !publish(&dir.to_path_buf()) {
        return None;
    }
    let published = t0.elapsed().as_secs_f64();
    if !wait_all(segc, endpoints, revision, Duration::from_secs(120)) {
        return None;
    }
    let enforced = t0.elapsed().as_secs_f64();
    let o = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([&format!("--endpoints={endpoints}"), "get", "--print-value-only", &format!("/segc/{FLEET}/revisions/{revision:010}/meta")])
        .output()
        .ok()?;
    let meta: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    Some((meta["bytes"].as_u64().unwrap_or(0), meta["bundle_chunks"].as_u64()?, published, enforced))
}

fn wait_all(segc: &Path, endpoints: &str, revision: u64, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Some((cur, agents)) = status(segc, endpoints) {
            if cur == revision && agents.len() == AGENTS && agents.iter().all(|a| a.1 == Some(revision)) {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
