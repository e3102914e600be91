//! Threat feeds on a real host: the agent compiles a policy whose feed is an
//! https URL served by a local server with its own CA (100k prefixes made
//! here), enforces it in a namespace, refreshes it (a newly listed address is
//! cut, both ways, while the policy's own zone is never cut), and refuses
//! every bad refresh (garbage, a feed that shrinks by more than half, one over
//! `max_prefixes`, a 404), keeping the last good copy, with
//! audit events and metrics.

mod common;
#[path = "common/etcd.rs"]
mod etcd;

use std::io::{Read, Write};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;

fn scrape(port: u16) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines().find(|l| l.starts_with(line_start)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// `n` /24 prefixes far from the test's addresses, one a line.
fn bulk(n: u32) -> String {
    let mut s = String::with_capacity(n as usize * 16);
    for i in 0..n {
        s.push_str(&format!("{}.{}.{}.0/24\n", 30 + i / 65536, (i / 256) % 256, i % 256));
    }
    s
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn agent_refreshes_feeds_over_https_and_refuses_bad_ones() {
    if !require("agent_refreshes_feeds_over_https_and_refuses_bad_ones", &["ip", "python3", "openssl"]) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("segc-feeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let www = dir.join("www");
    std::fs::create_dir_all(&www).expect("dirs");
    std::fs::create_dir_all(dir.join("policy")).expect("dirs");
    // A CA of the test's own and a certificate for 127.0.0.1 signed by it.
    let tls = etcd::Tls::make(&dir.join("tls"));
    // The client (10.99.0.1) is in the untrusted zone `outside`; the server
    // (10.99.0.2) is the policy's own. Both are listed by the feed at some
    // point: only the client is ever cut.
    let base = bulk(100_000);
    FeedServer::serve(&www, "drop.netset", &format!("# test feed\n{base}10.99.0.2/32\n"));
    let server = FeedServer::start(&www, &tls.server_cert, &tls.server_key);
    let port = server.port;
    let url = |name: &str| format!("https://127.0.0.1:{port}/{name}");
    let policy = |feed_url: &str| {
        format!(
            "policy \"feeds\" {{}}\nzone outside {{\n  cidrs = [10.99.0.0/24]\n  scope = untrusted\n}}\nzone server {{\n  cidrs = [10.99.0.2/32]\n  scope = connected\n}}\nfeed drop {{\n  source = \"{feed_url}\"\n  format = netset\n  refresh = 1h\n  max_prefixes = 150000\n}}\nblock drop\nflow outside -> server on tcp/8080\nflow server -> outside on tcp/8081\n"
        )
    };
    std::fs::write(dir.join("policy/main.seg"), policy(&url("drop.netset"))).expect("policy");

    // Without the CA, the feed cannot be fetched: check says so (E103), exits 1.
    let o = Command::new(env!("CARGO_BIN_EXE_segc")).args(["check"]).arg(dir.join("policy")).output().expect("check");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("E103") && err.contains("cannot read feed `drop`"), "{err}");
    // With it, check fetches and reports the overlap with the server's zone (W505).
    let o = Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(["check", "--format", "json"])
        .arg(dir.join("policy"))
        .env("SEGC_FEED_CA_FILE", tls.ca.clone())
        .output()
        .expect("check");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("\"W505\"") && out.contains("server"), "{out}");

    let net = NetnsPair::new("feeds");
    let _srv = net.serve(&net.b, &[8080], &[]);
    let _cli = net.serve(&net.a, &[8081], &[]);
    let mport = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let audit = dir.join("audit");
    let agent = Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(["agent", "--iface", "vb", "--netns", &net.b, "--interval-ms", "100", "--feed-refresh-ms", "400", "--run-for", "180"])
        .args(["--metrics", &format!("127.0.0.1:{mport}"), "--policy"])
        .arg(dir.join("policy"))
        .env("SEGC_AUDIT_DIR", &audit)
        .env("SEGC_AUDIT_KEY_FILE", dir.join("audit.key"))
        .env("SEGC_FEED_CA_FILE", tls.ca.clone())
        .stderr(std::fs::File::create(dir.join("agent.err")).expect("log"))
        .spawn()
        .expect("agent");
    let mut agent = Killed(agent);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", mport)).is_err() {
        let exited = agent.0.try_wait().ok().flatten();
        if exited.is_some() || started.elapsed() > Duration::from_secs(30) {
            panic!("the agent did not start ({exited:?}): {}", std::fs::read_to_string(dir.join("agent.err")).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Least privilege: the feed thread, which reads from the network, holds
    // no capability at all; every other thread only CAP_BPF and CAP_NET_ADMIN;
    // all run under the seccomp filter.
    wait_for("the lockdown", 30, || {
        let st = std::fs::read_to_string(format!("/proc/{}/status", agent.0.id())).unwrap_or_default();
        st.contains("Seccomp:\t2") && st.contains("CapEff:\t0000008000001000")
    });
    let mut bare = 0;
    for t in std::fs::read_dir(format!("/proc/{}/task", agent.0.id())).expect("tasks").flatten() {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let field = |k: &str| status.lines().find(|l| l.starts_with(k)).and_then(|l| l.split_whitespace().nth(1)).unwrap_or("").to_string();
        let eff = field("CapEff:");
        assert!(eff == "0000008000001000" || eff == "0000000000000000", "thread {:?}: CapEff {eff}", t.file_name());
        assert_eq!(field("CapPrm:"), eff);
        assert_eq!(field("Seccomp:"), "2");
        bare += usize::from(eff == "0000000000000000");
    }
    assert!(bare >= 1, "the feed thread holds no capability");
    let m = scrape(mport);
    assert_eq!(metric(&m, "segc_feed_prefixes{feed=\"drop\"}"), 100_001.0, "{m}");
    // The feed lists the server (a connected zone): the zone wins.
    assert!(net.probe(&net.a, "tcp", "10.99.0.2", 8080), "the feed never cuts the policy's own zone");

    // The feed now lists the client too: after a refresh, it is cut both ways.
    let refreshes = |m: &str| metric(m, "segc_feed_refreshes_total{feed=\"drop\"}");
    FeedServer::serve(&www, "drop.netset", &format!("{base}10.99.0.2/32\n10.99.0.1/32\n"));
    wait_for("the refresh", 20, || refreshes(&scrape(mport)) >= 1.0);
    assert!(!net.probe(&net.a, "tcp", "10.99.0.2", 8080), "a newly listed source is cut");
    assert!(!net.probe(&net.b, "tcp", "10.99.0.1", 8081), "and as a destination");
    assert_eq!(metric(&scrape(mport), "segc_feed_prefixes{feed=\"drop\"}"), 100_002.0);

    // Every bad refresh is refused; the client stays cut.
    let refused = |reason: &str| metric(&scrape(mport), &format!("segc_feed_refusals_total{{feed=\"drop\",reason=\"{reason}\"}}"));
    FeedServer::serve(&www, "drop.netset", &format!("{base}10.99.0.1/32\nnot-a-prefix\n"));
    wait_for("the parse refusal", 20, || refused("parse") >= 1.0);
    FeedServer::serve(&www, "drop.netset", "10.99.0.7/32\n");
    wait_for("the shrink refusal", 20, || refused("shrink") >= 1.0);
    FeedServer::serve(&www, "drop.netset", &bulk(160_000));
    wait_for("the max_prefixes refusal", 30, || refused("max_prefixes") >= 1.0);
    std::fs::remove_file(www.join("drop.netset")).expect("remove");
    wait_for("the fetch refusal", 20, || refused("fetch") >= 1.0);
    assert!(!net.probe(&net.a, "tcp", "10.99.0.2", 8080), "the last good copy stays");
    let m = scrape(mport);
    assert_eq!(metric(&m, "segc_feed_prefixes{feed=\"drop\"}"), 100_002.0, "{m}");
    assert_eq!(refreshes(&m), 1.0, "no refused copy was swapped in");
    assert!(metric(&m, "segc_feed_blocked_packets_total") >= 1.0, "{m}");

    // A good copy without the client again: it passes.
    FeedServer::serve(&www, "drop.netset", &format!("{base}10.99.0.2/32\n"));
    wait_for("the second refresh", 20, || refreshes(&scrape(mport)) >= 2.0);
    assert!(net.probe(&net.a, "tcp", "10.99.0.2", 8080));
    assert!(metric(&scrape(mport), "segc_feed_age_seconds{feed=\"drop\"}") < 30.0);

    // SIGTERM, then the audit log: every refresh and refusal is an event.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(500));
    let log = Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(["audit", "show", "--format", "json"])
        .env("SEGC_AUDIT_DIR", &audit)
        .env("SEGC_AUDIT_KEY_FILE", dir.join("audit.key"))
        .output()
        .expect("audit");
    let events: Vec<serde_json::Value> =
        String::from_utf8_lossy(&log.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let of = |kind: &str| events.iter().filter(|e| e["kind"] == kind).cloned().collect::<Vec<_>>();
    let refreshes = of("feed.refresh");
    assert_eq!(refreshes.len(), 2, "{refreshes:?}");
    assert_eq!(refreshes[0]["data"]["prefixes"], 100_002);
    assert_eq!(refreshes[0]["data"]["previous_prefixes"], 100_001);
    let reasons: Vec<String> = of("feed.refused").iter().map(|e| e["data"]["reason"].as_str().unwrap_or("").to_string()).collect();
    for r in ["parse", "shrink", "max_prefixes", "fetch"] {
        assert!(reasons.iter().any(|x| x == r), "{r} in {reasons:?}");
    }
    assert!(of("feed.refused").iter().all(|e| e["data"]["kept_prefixes"] == 100_002), "{:?}", of("feed.refused"));
    drop(agent);
    let _ = Command::new(env!("CARGO_BIN_EXE_segc")).args(["undeploy", "--target", "host", "--netns", &net.b]).output();
    let _ = std::fs::remove_dir_all(&dir);
}
