//! Helpers for tests that need root, network namespaces and real tools. Such a
//! test calls [`require`] first: without root or a tool it prints why it is
//! skipped and returns; `.ci/run` runs as root with the tools installed.
#![allow(dead_code, reason = "each test binary uses part of it")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

fn have(tool: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {tool}")]).stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Whether the test can run here; prints the reason when it cannot. In CI
/// (`CI=true`) a missing requirement is a failure, not a skip.
pub fn require(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    let why = if !is_root() {
        Some("it needs root (network namespaces)".to_string())
    } else if !missing.is_empty() {
        Some(format!("it needs {}", missing.join(", ")))
    } else {
        None
    };
    match why {
        None => true,
        Some(why) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{test} cannot run in CI: {why}");
            eprintln!("SKIPPED {test}: {why}");
            false
        }
    }
}

pub fn sh(args: &[&str]) {
    let st = Command::new(args[0]).args(&args[1..]).status().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(st.success(), "{args:?} failed");
}

/// Two network namespaces joined by a veth pair:
/// `a` has 10.99.0.1/24 and fd99::1/64, `b` has 10.99.0.2/24 and fd99::2/64.
pub struct NetnsPair {
    pub a: String,
    pub b: String,
}

impl NetnsPair {
    pub fn new(tag: &str) -> Self {
        let pid = std::process::id();
        let (a, b) = (format!("segc-{tag}-a-{pid}"), format!("segc-{tag}-b-{pid}"));
        let pair = NetnsPair { a, b };
        for ns in [&pair.a, &pair.b] {
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        sh(&["ip", "link", "add", "va", "netns", &pair.a, "type", "veth", "peer", "name", "vb", "netns", &pair.b]);
        for (ns, dev, v4, v6) in [(&pair.a, "va", "10.99.0.1/24", "fd99::1/64"), (&pair.b, "vb", "10.99.0.2/24", "fd99::2/64")] {
            sh(&["ip", "-n", ns, "addr", "add", v4, "dev", dev]);
            sh(&["ip", "-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        pair
    }

    pub fn exec(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(args);
        c
    }

    /// Starts the echo server of `tests/helpers/probe.py` in `ns`.
    pub fn serve(&self, ns: &str, tcp: &[u16], udp: &[u16]) -> Server {
        let list = |p: &[u16]| p.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
        let script = repo().join("tests/helpers/probe.py");
        let mut child = self
            .exec(ns, &["python3", script.to_str().expect("utf-8 path"), "serve", &list(tcp), &list(udp)])
            .stdout(Stdio::piped())
            .spawn()
            .expect("server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("ready line");
        assert_eq!(line.trim(), "ready");
        Server(child)
    }

    /// Sends `n` UDP datagrams from one socket in `ns` to `host:port`.
    pub fn burst(&self, ns: &str, host: &str, port: u16, n: u32) {
        let script = repo().join("tests/helpers/probe.py");
        let st = self
            .exec(ns, &["python3", script.to_str().expect("utf-8 path"), "burst", host, &port.to_string(), &n.to_string()])
            .status()
            .expect("burst runs");
        assert!(st.success());
    }

    /// Whether a TCP or UDP exchange from `ns` to `host:port` succeeds.
    pub fn probe(&self, ns: &str, proto: &str, host: &str, port: u16) -> bool {
        let script = repo().join("tests/helpers/probe.py");
        self.exec(ns, &["python3", script.to_str().expect("utf-8 path"), "connect", proto, host, &port.to_string()])
            .status()
            .expect("probe runs")
            .success()
    }
}

/// Deletes a test's network namespace and what segc pinned for it: a test
/// that ends without `undeploy` leaves the deployment's programs, maps and
/// links in bpffs, holding kernel memory after the namespace is gone.
pub fn del_netns(ns: &str) {
    let _ = Command::new("ip").args(["netns", "del", ns]).status();
    let _ = std::fs::remove_dir_all(format!("/sys/fs/bpf/segc/netns-{ns}"));
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            del_netns(ns);
        }
    }
}

pub struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A probe: from namespace `a` or `b`, protocol, destination host, port.
pub type Probe = (&'static str, &'static str, &'static str, u16);

/// The probes the namespace tests send, IPv4 and IPv6: from `a` to the server
/// ports on `b` (tcp 8080, 8085, 8091; udp 5353, 5354) and from `b` back to
/// tcp 9000 and 9001 on `a`.
pub fn standard_probes() -> Vec<Probe> {
    let mut probes = Vec::new();
    for (a_host, b_host) in [("10.99.0.1", "10.99.0.2"), ("fd99::1", "fd99::2")] {
        for port in [8080, 8085, 8091] {
            probes.push(("a", "tcp", b_host, port));
        }
        for port in [5353, 5354] {
            probes.push(("a", "udp", b_host, port));
        }
        for port in [9000, 9001] {
            probes.push(("b", "tcp", a_host, port));
        }
    }
    probes
}

/// What the reference evaluator says of each probe, through `segc explain
/// --packets` on the policy in `dir`.
pub fn expected(dir: &Path, probes: &[Probe]) -> Vec<bool> {
    let packets: String = probes
        .iter()
        .map(|&(from, proto, host, port)| {
            let src = match (from, host.contains(':')) {
                ("a", false) => "10.99.0.1",
                ("a", true) => "fd99::1",
                (_, false) => "10.99.0.2",
                (_, true) => "fd99::2",
            };
            format!("{src} {host} {proto}/{port}\n")
        })
        .collect();
    std::fs::write(dir.join("packets"), packets).expect("packets");
    let out = Command::new(env!("CARGO_BIN_EXE_segc"))
        .arg("explain")
        .arg(dir)
        .arg("--packets")
        .arg(dir.join("packets"))
        .output()
        .expect("explain");
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.starts_with("allow ")).collect()
}

/// The test feed server (tests/helpers/https_feed.py): HTTPS on loopback
/// with the given certificate, serving `dir`; stopped when dropped.
pub struct FeedServer {
    child: Child,
    pub port: u16,
}

impl FeedServer {
    pub fn start(dir: &Path, cert: &Path, key: &Path) -> FeedServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let mut child = Command::new("python3")
            .arg(repo().join("tests/helpers/https_feed.py"))
            .arg(dir)
            .arg(port.to_string())
            .arg(cert)
            .arg(key)
            .stdout(Stdio::piped())
            .spawn()
            .expect("feed server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("ready line");
        assert_eq!(line.trim(), "ready");
        FeedServer { child, port }
    }

    /// Serves `body` as `name` from now on (written atomically).
    pub fn serve(dir: &Path, name: &str, body: &str) {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, body).expect("write");
        std::fs::rename(&tmp, dir.join(name)).expect("rename");
    }
}

impl Drop for FeedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
