//! `segc agent` on a real namespace: it deploys, serves metrics that count the
//! traffic, refuses a broken policy file (the old policy stays enforced),
//! swaps in a good one, drains deny samples into the audit log, and runs with
//! only CAP_BPF and CAP_NET_ADMIN.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const A: &str = "policy \"agent-a\" {}\nzone client {\n  cidrs = [10.99.0.1/32]\n  scope = connected\n}\nzone server {\n  cidrs = [10.99.0.2/32]\n  scope = connected\n}\nflow client -> server on tcp/8080, udp/5353\n";
const B: &str = "policy \"agent-b\" {}\nzone client {\n  cidrs = [10.99.0.1/32]\n  scope = connected\n}\nzone server {\n  cidrs = [10.99.0.2/32]\n  scope = connected\n}\nflow client -> server on tcp/8085\n";

fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    out
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines().find(|l| l.starts_with(line_start)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn agent_enforces_reloads_refuses_and_reports() {
    if !require("agent_enforces_reloads_refuses_and_reports", &["ip", "python3"]) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("segc-agent-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policy")).expect("dir");
    std::fs::write(dir.join("policy/main.seg"), A).expect("policy");
    let audit = dir.join("audit");
    let net = NetnsPair::new("agent");
    let _srv = net.serve(&net.b, &[8080, 8085], &[5353]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    // A relative --policy, resolved before the lockdown (getcwd afterwards was
    // a SIGSYS crash loop).
    let mut agent = Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(["agent", "--iface", "vb", "--netns", &net.b, "--interval-ms", "200", "--sample-every", "1", "--run-for", "120"])
        .args(["--sample-window-s", "1", "--audit-segment-bytes", "1500", "--metrics", &format!("127.0.0.1:{port}"), "--policy", "policy"])
        .current_dir(&dir)
        .env("SEGC_AUDIT_DIR", &audit)
        .env("SEGC_AUDIT_KEY_FILE", dir.join("audit.key"))
        .stderr(Stdio::null())
        .spawn()
        .expect("agent starts");
    wait_for("the metrics endpoint", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());

    // Least privilege, read from the running process.
    wait_for("the capability drop", || {
        let st = std::fs::read_to_string(format!("/proc/{}/status", agent.id())).unwrap_or_default();
        st.contains("NoNewPrivs:\t1")
    });
    // Every thread, not just the main one: capabilities are per thread.
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{}/task", agent.id())).expect("tasks").flatten().collect();
    assert!(tasks.len() >= 3, "main, metrics and sampler threads: {}", tasks.len());
    for t in tasks {
        let status = std::fs::read_to_string(t.path().join("status")).expect("status");
        let field = |k: &str| status.lines().find(|l| l.starts_with(k)).map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string());
        for k in ["CapEff:", "CapPrm:", "CapBnd:"] {
            assert_eq!(
                field(k).as_deref(),
                Some("0000008000001000"),
                "thread {:?}: {k} holds only CAP_BPF and CAP_NET_ADMIN",
                t.file_name()
            );
        }
        assert_eq!(field("CapInh:").as_deref(), Some("0000000000000000"));
        assert_eq!(field("Seccomp:").as_deref(), Some("2"), "thread {:?} runs under the filter", t.file_name());
        assert_eq!(field("NoNewPrivs:").as_deref(), Some("1"));
    }

    // The exposition is valid for Prometheus.
    if std::process::Command::new("promtool").arg("--version").output().is_ok() {
        let body = scrape(port);
        let text = body.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        let mut p = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool");
        p.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
        let o = p.wait_with_output().expect("promtool");
        assert!(o.status.success(), "promtool check metrics: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    }

    // Policy A: 8080 passes, 8085 does not; the counters see it.
    let before = scrape(port);
    assert!(net.probe(&net.a, "tcp", "10.99.0.2", 8080));
    assert!(!net.probe(&net.a, "tcp", "10.99.0.2", 8085));
    let after = scrape(port);
    assert!(metric(&after, "segc_packets_total{verdict=\"allow\"}") > metric(&before, "segc_packets_total{verdict=\"allow\"}"), "{after}");
    assert!(metric(&after, "segc_packets_total{verdict=\"deny\"}") > metric(&before, "segc_packets_total{verdict=\"deny\"}"), "{after}");
    assert!(metric(&after, "segc_packets_total{verdict=\"established\"}") > 0, "replies counted: {after}");

    // Per zone pair, the counters match the traffic exactly: 25 datagrams to a
    // denied port are 25 denies; 25 to an allowed port are one new flow (the
    // rest pass as established), and no deny: the sender stays open for the
    // echoes, else its kernel answers them with ICMP port-unreachable errors
    // (six, the kernel's burst), which the policy rightly denies.
    let pair = |text: &str, verdict: &str| {
        metric(text, &format!("segc_zone_pair_packets_total{{src_zone=\"client\",dst_zone=\"server\",verdict=\"{verdict}\"}}"))
    };
    let t0 = scrape(port);
    net.burst(&net.a, "10.99.0.2", 5354, 25);
    wait_for("the denied burst", || pair(&scrape(port), "deny") >= pair(&t0, "deny") + 25);
    std::thread::sleep(Duration::from_millis(300));
    let t1 = scrape(port);
    assert_eq!(pair(&t1, "deny"), pair(&t0, "deny") + 25, "{t1}");
    net.burst(&net.a, "10.99.0.2", 5353, 25);
    std::thread::sleep(Duration::from_millis(500));
    let t2 = scrape(port);
    assert_eq!(pair(&t2, "allow"), pair(&t1, "allow") + 1, "{t2}");
    assert_eq!(pair(&t2, "deny"), pair(&t1, "deny"), "{t2}");

    // A broken policy file is refused; A stays enforced.
    std::fs::write(dir.join("policy/main.seg"), "zone {{{ garbage").expect("garbage");
    wait_for("the refusal", || metric(&scrape(port), "segc_policy_refused_total") >= 1);
    assert!(net.probe(&net.a, "tcp", "10.99.0.2", 8080));

    // Half of a save is refused; once the save completes, the whole file is
    // compiled and swapped in (the refused bytes are what was compared).
    let half = &B[..B.len() / 2];
    std::fs::write(dir.join("policy/main.seg"), half).expect("half of policy b");
    wait_for("the half save's refusal", || metric(&scrape(port), "segc_policy_refused_total") >= 2);
    std::fs::write(dir.join("policy/main.seg"), B).expect("policy b");
    wait_for("the swap", || metric(&scrape(port), "segc_policy_swaps_total") >= 2);
    assert!(net.probe(&net.a, "tcp", "10.99.0.2", 8085));
    assert!(!net.probe(&net.a, "tcp", "10.99.0.2", 8080));
    wait_for("deny samples", || metric(&scrape(port), "segc_deny_samples_total") >= 1);

    // SIGTERM: the agent stops, the filter stays.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let st = agent.wait().expect("agent exits");
    assert!(st.success(), "{st}");
    assert!(!net.probe(&net.a, "tcp", "10.99.0.2", 8080), "still enforced after the agent exits");

    let log = Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(["audit", "show", "--format", "json"])
        .env("SEGC_AUDIT_DIR", &audit)
        .env("SEGC_AUDIT_KEY_FILE", dir.join("audit.key"))
        .output()
        .expect("audit");
    let kinds: Vec<String> = String::from_utf8_lossy(&log.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|e| e["kind"].as_str().unwrap_or("").to_string())
        .collect();
    for k in ["agent.start", "policy.refused", "swap", "deny.sample", "agent.stop"] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
    // The log rotated under the seccomp filter (small segments), and still verifies.
    let segments = std::fs::read_dir(audit.join("segments")).expect("segments").count();
    assert!(segments >= 3, "rotation happened under the filter: {segments} segments");
    // Deny samples are aggregated per zone pair: one event carries the count.
    let samples: Vec<serde_json::Value> = String::from_utf8_lossy(&log.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["kind"] == "deny.sample")
        .collect();
    let sampled: u64 = samples.iter().map(|e| e["data"]["sampled"].as_u64().unwrap_or(0)).sum();
    assert!(sampled >= 25 && samples.len() < sampled as usize, "{} events for {sampled} samples", samples.len());
    assert!(samples.iter().all(|e| e["data"]["src_zone"].is_string() || e["data"]["other_pairs"].is_u64()), "{samples:?}");
    let v = Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(["audit", "verify"])
        .env("SEGC_AUDIT_DIR", &audit)
        .env("SEGC_AUDIT_KEY_FILE", dir.join("audit.key"))
        .output()
        .expect("verify");
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    let _ = Command::new(env!("CARGO_BIN_EXE_segc")).args(["undeploy", "--target", "host", "--netns", &net.b]).output();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A system call outside the allow-list kills the agent (SIGSYS), after it has
/// attached and dropped its privileges.
#[test]
fn a_forbidden_syscall_kills_the_agent() {
    if !require("a_forbidden_syscall_kills_the_agent", &["ip"]) {
        return;
    }
    use std::os::unix::process::ExitStatusExt;
    let dir = std::env::temp_dir().join(format!("segc-agent-sys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("main.seg"), A).expect("policy");
    let net = NetnsPair::new("sys");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let st = Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(["agent", "--iface", "vb", "--netns", &net.b, "--seccomp-selftest", "--metrics", &format!("127.0.0.1:{port}"), "--policy"])
        .arg(&dir)
        .env("SEGC_AUDIT_DIR", dir.join("audit"))
        .stderr(Stdio::null())
        .status()
        .expect("agent runs");
    assert_eq!(st.signal(), Some(libc::SIGSYS), "{st}");
    let _ = Command::new(env!("CARGO_BIN_EXE_segc")).args(["undeploy", "--target", "host", "--netns", &net.b]).output();
    let _ = std::fs::remove_dir_all(&dir);
}
