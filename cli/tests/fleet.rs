#![cfg(feature = "fleet")]
//! The fleet on a real three-member etcd cluster (Debian's etcd-server) on
//! loopback, with agents enforcing in network namespaces (real TCP) and
//! controllers electing a leader: publish to enforced, refusal of a broken
//! revision, rollback, etcd outages, agent restarts, leader failover, a
//! paused leader that must stop acting, TLS with client certificates.

mod common;
#[path = "common/etcd.rs"]
mod etcd;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::NetnsPair;
use etcd::Cluster;
use serde_json::Value;

fn ready(test: &str) -> bool {
    common::require(test, &["etcd", "etcdctl", "python3", "ip", "openssl"])
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("segc-fleet-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp");
    d
}

/// segc with an audit log (and its key) of its own under `home`.
fn segc(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_segc"));
    c.args(args)
        .env("SEGC_AUDIT_DIR", home.join("audit"))
        .env("SEGC_AUDIT_KEY_FILE", home.join("audit.key"))
        .env("SEGC_STATE_DIR", home.join("state"));
    c
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn policy(dir: &Path, port: u16) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(
        dir.join("main.seg"),
        format!("policy \"fleet-test\" {{}}\nzone client {{\n  cidrs = [10.99.0.1/32]\n  scope = connected\n}}\nzone server {{\n  cidrs = [10.99.0.2/32]\n  scope = connected\n}}\nflow client -> server on tcp/{port}\n"),
    )
    .expect("policy");
    dir.to_path_buf()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
    fn signal(&self, sig: &str) {
        common::sh(&["kill", sig, &self.0.id().to_string()]);
    }
}

fn agent(home: &Path, endpoints: &str, fleet: &str, host: &str, ns: &str) -> Proc {
    let log = std::fs::File::create(home.join(format!("{host}.log"))).expect("log");
    let child = segc(home, &["agent", "--fleet", fleet, "--etcd", endpoints, "--iface", "vb", "--netns", ns, "--host-id", host])
        .args(["--metrics", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("agent");
    Proc(child)
}

fn controller(home: &Path, endpoints: &str, fleet: &str, id: &str) -> Proc {
    let log = std::fs::File::create(home.join(format!("{id}.log"))).expect("log");
    let child = segc(home, &["controller", "--fleet", fleet, "--etcd", endpoints, "--id", id, "--lease-ttl", "2"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("controller");
    Proc(child)
}

fn status(home: &Path, endpoints: &str, fleet: &str) -> Value {
    let o = segc(home, &["fleet", "status", "--etcd", endpoints, "--fleet", fleet, "--format", "json"]).output().expect("status");
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).expect("status json")
}

/// `segc fleet status` inside a polling loop: a failure (etcd mid-election
/// while members restart) is printed and reads as no status yet; the loop's
/// own deadline decides.
fn polled_status(home: &Path, endpoints: &str, fleet: &str) -> Value {
    let o = segc(home, &["fleet", "status", "--etcd", endpoints, "--fleet", fleet, "--format", "json"]).output().expect("status");
    if !o.status.success() {
        eprintln!("fleet status failed while polling: {}", text(&o));
        return Value::Null;
    }
    serde_json::from_slice(&o.stdout).expect("status json")
}

/// Polls until `f` holds: the time it took.
fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// Every agent reports the fleet's current hash.
fn all_current(s: &Value, n: usize) -> bool {
    let cur = &s["policy_sha256"];
    let agents = s["agents"].as_array().cloned().unwrap_or_default();
    !cur.is_null() && agents.len() == n && agents.iter().all(|a| &a["policy_sha256"] == cur)
}

fn publish(home: &Path, endpoints: &str, fleet: &str, p: &Path) -> Output {
    segc(home, &["fleet", "publish", "--etcd", endpoints, "--fleet", fleet]).arg(p).output().expect("publish")
}

#[test]
fn publish_enforce_refuse_rollback_and_survive_outages() {
    if !ready("publish_enforce_refuse_rollback_and_survive_outages") {
        return;
    }
    let home = tmp("main");
    let mut cluster = Cluster::start(&home.join("etcd"), 3);
    let e = cluster.endpoints();
    let fleet = "shop";
    let pairs: Vec<NetnsPair> = (0..3).map(|i| NetnsPair::new(&format!("fl{i}"))).collect();
    let _servers: Vec<common::Server> = pairs.iter().map(|p| p.serve(&p.b, &[8080, 9090], &[])).collect();
    let tcp = |port: u16| -> Vec<bool> { pairs.iter().map(|p| p.probe(&p.a, "tcp", "10.99.0.2", port)).collect() };

    // A policy with errors is never published.
    let broken = home.join("broken");
    std::fs::create_dir_all(&broken).expect("dir");
    std::fs::write(broken.join("main.seg"), "zone a {\n  cidrs = [10.0.0.0/8]\n}\n").expect("policy");
    let o = publish(&home, &e, fleet, &broken);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(status(&home, &e, fleet)["revision"].is_null());

    let (v1, v2) = (policy(&home.join("v1"), 8080), policy(&home.join("v2"), 9090));
    let o = publish(&home, &e, fleet, &v1);
    assert!(o.status.success(), "{}", text(&o));
    let mut agents: Vec<Proc> = pairs.iter().enumerate().map(|(i, p)| agent(&home, &e, fleet, &format!("host{i}"), &p.b)).collect();
    wait_for("three agents enforce revision 1", Duration::from_secs(30), || all_current(&polled_status(&home, &e, fleet), 3));
    assert_eq!(tcp(8080), [true; 3]);
    assert_eq!(tcp(9090), [false; 3]);

    // Publish to enforced on every agent within 2 s.
    let o = publish(&home, &e, fleet, &v2);
    assert!(o.status.success(), "{}", text(&o));
    let took = wait_for("revision 2 everywhere", Duration::from_secs(2), || all_current(&polled_status(&home, &e, fleet), 3));
    eprintln!("publish to enforced on 3 agents: {took:?}");
    assert_eq!((tcp(9090), tcp(8080)), ([true; 3].to_vec(), [false; 3].to_vec()));

    // A revision whose bundle does not match its hash: refused and reported
    // by every agent, the old policy kept.
    let meta = cluster.etcdctl(&["get", "--print-value-only", &format!("/segc/{fleet}/revisions/0000000001/meta")]);
    let mut m: Value = serde_json::from_slice(&meta.stdout).expect("meta");
    m["revision"] = Value::from(3);
    let put = |k: &str, v: &str| assert!(cluster.etcdctl(&["put", k, v]).status.success());
    put(&format!("/segc/{fleet}/revisions/0000000003/meta"), &m.to_string());
    put(&format!("/segc/{fleet}/revisions/0000000003/bundle/0000"), "not a bundle");
    put(&format!("/segc/{fleet}/revisions/0000000003/sources/0000"), "{}");
    let cur = serde_json::json!({"revision": 3, "sha256": m["sha256"], "policy": "fleet-test", "published_at": 0});
    put(&format!("/segc/{fleet}/current"), &cur.to_string());
    wait_for("every agent refused revision 3", Duration::from_secs(10), || {
        let s = polled_status(&home, &e, fleet);
        s["agents"].as_array().is_some_and(|a| a.len() == 3 && a.iter().all(|x| x["refused"]["revision"] == 3 && x["revision"] == 2))
    });
    assert_eq!(tcp(9090), [true; 3], "the old policy is kept");

    // Rollback: revision 1 published again as revision 4.
    let o = segc(&home, &["fleet", "rollback", "--etcd", &e, "--fleet", fleet, "1"]).output().expect("rollback");
    assert!(o.status.success() && text(&o).contains("as revision 4"), "{}", text(&o));
    wait_for("revision 4 everywhere", Duration::from_secs(5), || {
        all_current(&polled_status(&home, &e, fleet), 3) && polled_status(&home, &e, fleet)["revision"] == 4
    });
    assert_eq!((tcp(8080), tcp(9090)), ([true; 3].to_vec(), [false; 3].to_vec()));

    // etcd gone entirely: agents keep enforcing; one restarts meanwhile and
    // starts from its local copy.
    cluster.kill_all();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(tcp(8080), [true; 3], "enforcing without etcd");
    agents[0].kill9();
    agents[0] = agent(&home, &e, fleet, "host0", &pairs[0].b);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!((tcp(8080), tcp(9090)), ([true; 3].to_vec(), [false; 3].to_vec()), "a restarted agent enforces its local copy");
    // etcd back: a new revision reaches everyone, the restarted agent too.
    cluster.start_all();
    let o = publish(&home, &e, fleet, &v2);
    assert!(o.status.success(), "{}", text(&o));
    wait_for("revision 5 everywhere after the outage", Duration::from_secs(15), || all_current(&polled_status(&home, &e, fleet), 3));
    assert_eq!(tcp(9090), [true; 3]);

    // One member down at a time: publishing and enforcing go on.
    for i in 0..3 {
        cluster.kill_member(i);
        let (open, shut) = if i % 2 == 0 { (8080, 9090) } else { (9090, 8080) };
        let p = policy(&home.join(format!("m{i}")), open);
        let o = publish(&home, &e, fleet, &p);
        assert!(o.status.success(), "member {i} down: {}", text(&o));
        let want = 6 + i as u64;
        wait_for("the revision everywhere with a member down", Duration::from_secs(10), || {
            let s = polled_status(&home, &e, fleet);
            s["revision"] == want && all_current(&s, 3)
        });
        assert_eq!((tcp(open), tcp(shut)), ([true; 3].to_vec(), [false; 3].to_vec()), "member {i} down");
        cluster.start_member(i);
        cluster.wait_healthy(Duration::from_secs(30));
    }

    // Every publish and rollback, and every agent's applies, are audit events.
    let log = segc(&home, &["audit", "show", "--format", "json"]).output().expect("audit");
    let log = String::from_utf8_lossy(&log.stdout);
    for k in ["fleet.publish", "fleet.rollback", "swap", "policy.refused"] {
        assert!(log.contains(&format!("\"kind\":\"{k}\"")), "no {k} event");
    }
    drop(agents);
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn a_dead_leader_is_replaced_within_5s_and_a_paused_one_stops_acting() {
    if !ready("a_dead_leader_is_replaced_within_5s_and_a_paused_one_stops_acting") {
        return;
    }
    let home = tmp("leader");
    let cluster = Cluster::start(&home.join("etcd"), 3);
    let e = cluster.endpoints();
    let fleet = "ops";
    let leader = || polled_status(&home, &e, fleet)["leader"].as_str().map(str::to_string);
    let mut ctl: Vec<(String, Proc)> = (0..3).map(|i| (format!("c{i}"), controller(&home, &e, fleet, &format!("c{i}")))).collect();
    wait_for("a leader", Duration::from_secs(15), || leader().is_some());

    // kill -9 the leader, 20 times: a new leader within 5 s every time.
    let mut times = Vec::new();
    for round in 0..20 {
        let old = leader().expect("leader");
        let i = ctl.iter().position(|(id, _)| *id == old).expect("a controller of ours");
        ctl[i].1.kill9();
        let took = wait_for("a new leader", Duration::from_secs(5), || leader().is_some_and(|l| l != old));
        times.push(took.as_secs_f64());
        let id = format!("c{}", 3 + round);
        ctl[i] = (id.clone(), controller(&home, &e, fleet, &id));
    }
    times.sort_by(f64::total_cmp);
    eprintln!("failover over 20 kills: min {:.2} s, median {:.2} s, max {:.2} s", times[0], times[10], times[19]);
    assert!(times[19] < 5.0);

    // A leader paused past its lease (a partition, a long GC): another leads,
    // and when it wakes it stops acting instead of acting beside it.
    let old = leader().expect("leader");
    let i = ctl.iter().position(|(id, _)| *id == old).expect("ours");
    ctl[i].1.signal("-STOP");
    wait_for("a leader while the old one is paused", Duration::from_secs(8), || leader().is_some_and(|l| l != old));
    let new = leader().expect("leader");
    ctl[i].1.signal("-CONT");
    let log = home.join(format!("{old}.log"));
    wait_for("the paused leader notices", Duration::from_secs(8), || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("stopped acting")
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(leader().as_deref(), Some(new.as_str()), "the new leader keeps leading");
    // Leader changes are audit events.
    let events = segc(&home, &["audit", "show", "--kind", "fleet.leader", "--format", "json"]).output().expect("audit");
    assert!(String::from_utf8_lossy(&events.stdout).lines().count() >= 21);
    drop(ctl);
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn tls_with_client_certificates() {
    if !ready("tls_with_client_certificates") {
        return;
    }
    let home = tmp("tls");
    let tls = etcd::Tls::make(&home.join("pki"));
    let cluster = Cluster::start_tls(&home.join("etcd"), &tls);
    let e = cluster.endpoints();
    let p = policy(&home.join("p"), 8080);
    let certs = |c: &mut Command| {
        c.arg("--etcd-cacert").arg(&tls.ca).arg("--etcd-cert").arg(&tls.client_cert).arg("--etcd-key").arg(&tls.client_key);
    };
    let mut c = segc(&home, &["fleet", "publish", "--etcd", &e, "--fleet", "secure"]);
    certs(&mut c);
    let o = c.arg(&p).output().expect("publish");
    assert!(o.status.success(), "{}", text(&o));
    let mut c = segc(&home, &["fleet", "status", "--etcd", &e, "--fleet", "secure", "--format", "json"]);
    certs(&mut c);
    let o = c.output().expect("status");
    let s: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|err| panic!("{err}: {}", text(&o)));
    assert_eq!(s["revision"], 1);
    // Without a client certificate the member refuses.
    let o = segc(&home, &["fleet", "status", "--etcd", &e, "--fleet", "secure", "--etcd-cacert"]).arg(&tls.ca).output().expect("status");
    assert!(!o.status.success(), "{}", text(&o));
    // No secret in the audit log.
    let log = segc(&home, &["audit", "show", "--format", "json"]).output().expect("audit");
    let key = std::fs::read_to_string(&tls.client_key).expect("key");
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!String::from_utf8_lossy(&log.stdout).contains(&body[..40]));
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn old_revisions_are_pruned_and_named_when_asked_for() {
    if !ready("old_revisions_are_pruned_and_named_when_asked_for") {
        return;
    }
    let home = tmp("prune");
    let cluster = Cluster::start(&home.join("etcd"), 1);
    let e = cluster.endpoints();
    for i in 0..4u16 {
        let p = policy(&home.join(format!("p{i}")), 8000 + i);
        let o = segc(&home, &["fleet", "publish", "--keep", "2", "--etcd", &e, "--fleet", "p"]).arg(&p).output().expect("publish");
        assert!(o.status.success(), "{}", text(&o));
    }
    let keys = cluster.etcdctl(&["get", "--prefix", "--keys-only", "/segc/p/revisions/"]);
    let keys = String::from_utf8_lossy(&keys.stdout);
    let revisions: std::collections::BTreeSet<&str> =
        keys.lines().filter_map(|k| k.strip_prefix("/segc/p/revisions/")).filter_map(|k| k.split('/').next()).collect();
    assert_eq!(revisions.into_iter().collect::<Vec<_>>(), ["0000000003", "0000000004"], "{keys}");
    // A pruned revision: a clear refusal, nothing published.
    let o = segc(&home, &["fleet", "rollback", "--etcd", &e, "--fleet", "p", "1"]).output().expect("rollback");
    assert!(!o.status.success() && text(&o).contains("revision 1 does not exist"), "{}", text(&o));
    assert_eq!(status(&home, &e, "p")["revision"], 4);
    // A kept one rolls back, and the window moves on.
    let o = segc(&home, &["fleet", "rollback", "--keep", "2", "--etcd", &e, "--fleet", "p", "3"]).output().expect("rollback");
    assert!(o.status.success() && text(&o).contains("as revision 5"), "{}", text(&o));
    let meta = cluster.etcdctl(&["get", "--print-value-only", "/segc/p/revisions/0000000003/meta"]);
    assert!(meta.stdout.is_empty(), "revision 3 pruned after revision 5");
    let _ = std::fs::remove_dir_all(&home);
}
