#![cfg(feature = "fleet")]
//! A fleet's https feed, refreshed by the leading controller on a real etcd:
//! `fleet publish` snapshots the feed (read over HTTPS from a local server
//! with its own CA); when the feed changes, the leader publishes a new
//! revision with it (agents never hit the source); a garbled copy or one that
//! shrinks by more than half publishes nothing and is an audit event.

mod common;
#[path = "common/etcd.rs"]
mod etcd;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn segc(home: &Path, ca: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_segc"));
    c.args(args)
        .env("SEGC_AUDIT_DIR", home.join("audit"))
        .env("SEGC_AUDIT_KEY_FILE", home.join("audit.key"))
        .env("SEGC_STATE_DIR", home.join("state"))
        .env("SEGC_FEED_CA_FILE", ca);
    c
}

fn bulk(n: u32) -> String {
    (0..n).map(|i| format!("{}.{}.{}.0/24\n", 30 + i / 65536, (i / 256) % 256, i % 256)).collect()
}

fn events(home: &Path, ca: &Path, kind: &str) -> Vec<serde_json::Value> {
    let o = segc(home, ca, &["audit", "show", "--format", "json"]).output().expect("audit");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["kind"] == kind)
        .collect()
}

#[test]
fn the_leader_refreshes_https_feeds_and_publishes_them() {
    if !common::require("the_leader_refreshes_https_feeds_and_publishes_them", &["etcd", "python3", "openssl"]) {
        return;
    }
    let home = std::env::temp_dir().join(format!("segc-fleet-feeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(home.join("www")).expect("dir");
    std::fs::create_dir_all(home.join("policy")).expect("dir");
    let tls = etcd::Tls::make(&home.join("tls"));
    let cluster = etcd::Cluster::start(&home.join("etcd"), 1);
    let endpoints = cluster.endpoints();
    let www = home.join("www");
    common::FeedServer::serve(&www, "drop.netset", &bulk(1000));
    let server = common::FeedServer::start(&www, &tls.server_cert, &tls.server_key);
    let port = server.port;
    std::fs::write(
        home.join("policy/main.seg"),
        format!("policy \"fleet-feeds\" {{}}\nzone net {{\n  cidrs = [0.0.0.0/0]\n  scope = untrusted\n}}\nzone web {{\n  cidrs = [10.9.0.0/24]\n  scope = connected\n}}\nfeed drop {{\n  source = \"https://127.0.0.1:{port}/drop.netset\"\n}}\nblock drop\nflow net -> web on tcp/443\n"),
    )
    .expect("policy");
    let o = segc(&home, &tls.ca, &["fleet", "publish", "--etcd", &endpoints, "--fleet", "ff"])
        .arg(home.join("policy"))
        .output()
        .expect("publish");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let revision = || -> u64 {
        let o =
            segc(&home, &tls.ca, &["fleet", "status", "--etcd", &endpoints, "--fleet", "ff", "--format", "json"]).output().expect("status");
        serde_json::from_slice::<serde_json::Value>(&o.stdout).map(|v| v["revision"].as_u64().unwrap_or(0)).unwrap_or(0)
    };
    assert_eq!(revision(), 1);
    let log = std::fs::File::create(home.join("controller.log")).expect("log");
    let _controller = Killed(
        segc(&home, &tls.ca, &["controller", "--fleet", "ff", "--etcd", &endpoints, "--id", "c1", "--feed-refresh-ms", "300"])
            .stderr(log)
            .spawn()
            .expect("controller"),
    );
    // Unchanged: nothing is published.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(revision(), 1, "an unchanged feed publishes nothing");
    // Changed: the leader publishes revision 2 with it.
    common::FeedServer::serve(&www, "drop.netset", &format!("{}192.0.2.0/24\n", bulk(1000)));
    let start = Instant::now();
    while revision() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no new revision: {}",
            std::fs::read_to_string(home.join("controller.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let refreshed = events(&home, &tls.ca, "feed.refresh");
    assert_eq!(refreshed.len(), 1, "{refreshed:?}");
    assert_eq!((refreshed[0]["data"]["prefixes"].as_u64(), refreshed[0]["data"]["revision"].as_u64()), (Some(1001), Some(2)));
    // Garbage, then a copy that lost most of itself: refused, nothing published.
    common::FeedServer::serve(&www, "drop.netset", &format!("{}not-a-prefix\n", bulk(1000)));
    let start = Instant::now();
    while !events(&home, &tls.ca, "feed.refused").iter().any(|e| e["data"]["reason"] == "parse") {
        assert!(start.elapsed() < Duration::from_secs(20), "no parse refusal");
        std::thread::sleep(Duration::from_millis(200));
    }
    common::FeedServer::serve(&www, "drop.netset", &bulk(100));
    let start = Instant::now();
    while !events(&home, &tls.ca, "feed.refused").iter().any(|e| e["data"]["reason"] == "shrink") {
        assert!(start.elapsed() < Duration::from_secs(20), "no shrink refusal");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(revision(), 2, "refused copies publish nothing");
    drop(cluster);
    let _ = std::fs::remove_dir_all(&home);
}
