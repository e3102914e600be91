//! `cargo xtask bench-flood`: the agent under a flood of denied packets.
//!
//! Two namespaces joined by a veth pair; the agent enforces on `vb` (TC
//! ingress) with every denied packet sampled (`--sample-every 1`, the worst
//! case) while a sender in the other namespace sends UDP to a denied port at
//! a fixed rate. Measured: the rate the sender reached, the audit log's
//! growth per second of flood, and the agent's reload latency (a policy file
//! written to its `swap` event in the log), idle and under the flood.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{median, sh};

const A: &str = "segc-flood-a";
const B: &str = "segc-flood-b";

/// `flood-send ADDR PORT PPS SECS`: UDP datagrams at `PPS` for `SECS`; prints
/// how many were sent.
pub fn send(args: &[String]) -> bool {
    let (Some(addr), Some(port), Some(pps), Some(secs)) = (args.first(), args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: xtask flood-send ADDR PORT PPS SECS");
        return false;
    };
    let (Ok(port), Ok(pps), Ok(secs)) = (port.parse::<u16>(), pps.parse::<u64>(), secs.parse::<u64>()) else {
        eprintln!("flood-send: PORT, PPS and SECS are numbers");
        return false;
    };
    let Ok(sock) = std::net::UdpSocket::bind("0.0.0.0:0") else { return false };
    let to = format!("{addr}:{port}");
    let start = Instant::now();
    let mut sent: u64 = 0;
    let payload = [0u8; 18];
    while start.elapsed() < Duration::from_secs(secs) {
        // Paced per millisecond: the packets due by now, then wait.
        let due = (start.elapsed().as_secs_f64() * pps as f64) as u64;
        while sent < due {
            let _ = sock.send_to(&payload, &to);
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    println!("{sent}");
    true
}

struct Log(PathBuf);

impl Log {
    fn lines(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(self.0.join("segments")).into_iter().flatten().flatten().map(|e| e.path()).collect();
        files.sort();
        files.iter().filter_map(|f| std::fs::read_to_string(f).ok()).flat_map(|t| t.lines().map(String::from).collect::<Vec<_>>()).collect()
    }

    fn count(&self, kind: &str) -> usize {
        let needle = format!("\"kind\":\"{kind}\"");
        self.lines().iter().filter(|l| l.contains(&needle)).count()
    }

    /// The denied packets the deny.sample events account for.
    fn sampled(&self) -> u64 {
        self.lines()
            .iter()
            .filter(|l| l.contains("\"kind\":\"deny.sample\""))
            .flat_map(|l| l.match_indices("\"sampled\":").map(move |(i, _)| &l[i + 10..]).collect::<Vec<_>>())
            .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse::<u64>().ok()))
            .sum()
    }

    fn bytes(&self) -> u64 {
        std::fs::read_dir(self.0.join("segments")).into_iter().flatten().flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
    }
}

fn policy(dir: &Path, port: u16) {
    let _ = std::fs::write(
        dir.join("main.seg"),
        format!("zone a {{\n  cidrs = [10.97.0.1/32]\n  scope = connected\n}}\nzone b {{\n  cidrs = [10.97.0.2/32]\n  scope = connected\n}}\nflow a -> b on tcp/{port}\n"),
    );
}

/// Writes a changed policy and waits for the agent's `swap` event: seconds.
fn reload(log: &Log, dir: &Path, port: u16) -> Option<f64> {
    let before = log.count("swap");
    let start = Instant::now();
    policy(dir, port);
    while start.elapsed() < Duration::from_secs(30) {
        if log.count("swap") > before {
            return Some(start.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

pub fn bench(root: &Path) -> bool {
    if !crate::cargo(&["build", "--release", "-p", "segc", "--no-default-features"])
        || !crate::cargo(&["build", "--release", "-p", "xtask"])
    {
        return false;
    }
    let segc = root.join("target/release/segc");
    let xtask = root.join("target/release/xtask");
    let _ = sh(&["ip", "netns", "del", A]);
    let _ = sh(&["ip", "netns", "del", B]);
    let ok = sh(&["ip", "netns", "add", A])
        && sh(&["ip", "netns", "add", B])
        && sh(&["ip", "link", "add", "fa", "netns", A, "type", "veth", "peer", "name", "fb", "netns", B])
        && sh(&["ip", "-n", A, "addr", "add", "10.97.0.1/24", "dev", "fa"])
        && sh(&["ip", "-n", B, "addr", "add", "10.97.0.2/24", "dev", "fb"])
        && sh(&["ip", "-n", A, "link", "set", "fa", "up"])
        && sh(&["ip", "-n", B, "link", "set", "fb", "up"]);
    if !ok {
        eprintln!("cannot set up the namespaces (root needed)");
        return false;
    }
    let tmp = std::env::temp_dir().join("segc-bench-flood");
    let _ = std::fs::remove_dir_all(&tmp);
    let (dir, audit) = (tmp.join("policy"), tmp.join("audit"));
    let _ = std::fs::create_dir_all(&dir);
    policy(&dir, 5201);
    let log = Log(audit.clone());
    let port = std::net::TcpListener::bind("127.0.0.1:0").ok().and_then(|l| l.local_addr().ok()).map_or(9465, |a| a.port());
    let agent: Option<Child> = Command::new(&segc)
        .args(["agent", "--policy"])
        .arg(&dir)
        .args(["--iface", "fb", "--netns", B, "--interval-ms", "100", "--sample-every", "1", "--sample-window-s", "5"])
        .args(["--metrics", &format!("127.0.0.1:{port}")])
        .env("SEGC_AUDIT_DIR", &audit)
        .env("SEGC_AUDIT_KEY_FILE", tmp.join("audit.key"))
        .stdout(Stdio::null())
        .spawn()
        .ok();
    let result = agent.map(|mut agent| {
        let r = measure(&log, &dir, &xtask);
        let _ = agent.kill();
        let _ = agent.wait();
        r
    });
    let _ = Command::new(&segc).args(["undeploy", "--target", "host", "--netns", B]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    let _ = sh(&["ip", "netns", "del", A]);
    let _ = sh(&["ip", "netns", "del", B]);
    matches!(result, Some(true))
}

fn measure(log: &Log, dir: &Path, xtask: &Path) -> bool {
    // Attached: the agent recorded its start.
    let start = Instant::now();
    while log.count("agent.start") == 0 {
        if start.elapsed() > Duration::from_secs(30) {
            eprintln!("the agent did not deploy within 30 s");
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let idle: Vec<f64> = (0..5).filter_map(|i| reload(log, dir, 5300 + i)).collect();
    let (pps, secs) = (100_000u64, 12u64);
    let bytes0 = log.bytes();
    let samples0 = log.count("deny.sample");
    let sampled0 = log.sampled();
    let sender = Command::new("ip")
        .args(["netns", "exec", A])
        .arg(xtask)
        .args(["flood-send", "10.97.0.2", "9", &pps.to_string(), &secs.to_string()])
        .stdout(Stdio::piped())
        .spawn();
    let Ok(sender) = sender else {
        eprintln!("cannot start the sender");
        return false;
    };
    let flood_start = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let flooded: Vec<f64> = (0..5).filter_map(|i| reload(log, dir, 5400 + i)).collect();
    let out = sender.wait_with_output().map(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<u64>().unwrap_or(0)).unwrap_or(0);
    let flood_secs = flood_start.elapsed().as_secs_f64();
    // The window that was open when the flood ended is written 5 s later.
    std::thread::sleep(Duration::from_secs(6));
    let grown = log.bytes().saturating_sub(bytes0);
    let events = log.count("deny.sample") - samples0;
    let sampled = log.sampled() - sampled0;
    if idle.is_empty() || flooded.is_empty() {
        eprintln!("no reload was seen (idle {idle:?}, under flood {flooded:?})");
        return false;
    }
    println!(
        "agent under a flood of denied UDP (every packet sampled): {} packets in {flood_secs:.1} s ({:.0} pps asked {pps}); audit log grew {grown} bytes ({:.0} bytes per flood second) in {events} deny.sample events accounting for {sampled} packets",
        out,
        out as f64 / secs as f64,
        grown as f64 / secs as f64
    );
    println!(
        "reload latency (policy written -> swap event, --interval-ms 100): idle median {:.0} ms {:?}, under the flood median {:.0} ms {:?}, ratio {:.2}",
        median(idle.clone()) * 1e3,
        idle.iter().map(|s| (s * 1e3).round()).collect::<Vec<_>>(),
        median(flooded.clone()) * 1e3,
        flooded.iter().map(|s| (s * 1e3).round()).collect::<Vec<_>>(),
        median(flooded) / median(idle)
    );
    true
}
