#![cfg(all(feature = "fleet", feature = "azure"))]
//! The fleet's leader reconciles the clouds its policy binds: a real etcd
//! member on loopback, the ARM NSG emulator from ../shared. With
//! `--reconcile apply` the leader deploys the published policy and puts back
//! a rule deleted by hand; with `--reconcile drift` it reports the change
//! (audit event, metric) and leaves the NSG alone. The leader's metrics say
//! it leads.

#[path = "common/azure.rs"]
mod azure;
mod common;
#[path = "common/etcd.rs"]
mod etcd;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use azure::{arm, rules, Emulator};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn segc(home: &Path, e: &Emulator, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_segc"));
    c.args(args)
        .env("AZURE_RESOURCE_MANAGER_ENDPOINT", &e.url)
        .env("AZURE_SUBSCRIPTION_ID", "sub1")
        .env("AZURE_ACCESS_TOKEN", "test-token")
        .env("SEGC_AUDIT_DIR", home.join("audit"))
        .env("SEGC_AUDIT_KEY_FILE", home.join("audit.key"));
    c
}

fn controller(home: &Path, e: &Emulator, endpoints: &str, mode: &str, metrics: u16) -> Proc {
    let log = std::fs::File::create(home.join(format!("controller-{mode}.log"))).expect("log");
    let args = [
        "controller",
        "--fleet",
        "cloud",
        "--etcd",
        endpoints,
        "--id",
        mode,
        "--reconcile",
        mode,
        "--interval-s",
        "1",
        "--azure-resource-group",
        "rg1",
        "--azure-location",
        "eastus",
        "--metrics",
    ];
    let child = segc(home, e, &args).arg(format!("127.0.0.1:{metrics}")).stdout(Stdio::null()).stderr(log).spawn().expect("controller");
    Proc(child)
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port()
}

#[test]
fn the_leader_applies_the_published_policy_or_reports_drift() {
    if !azure::ready("the_leader_applies_the_published_policy_or_reports_drift", &["python3", "etcd", "etcdctl"]) {
        return;
    }
    let home = std::env::temp_dir().join(format!("segc-fleet-cloud-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    let cluster = etcd::Cluster::start(&home.join("etcd"), 1);
    let endpoints = cluster.endpoints();
    let e = azure::start();
    let p = azure::policy(&home.join("p"), 5432);
    let o = segc(&home, &e, &["fleet", "publish", "--etcd", &endpoints, "--fleet", "cloud"]).arg(&p).output().expect("publish");
    assert!(o.status.success(), "{}", azure::text(&o));

    // apply: the leader deploys the published policy.
    let port = free_port();
    let applier = controller(&home, &e, &endpoints, "apply", port);
    let segc_rule = |nsg: &str| rules(&e, nsg).into_iter().find(|(n, _, a)| n.starts_with("segc-in-web-db") && a == "Allow");
    wait_for("the leader applied the policy to db-nsg", Duration::from_secs(20), || segc_rule("db-nsg").is_some());
    let m = metrics(port);
    assert!(m.contains("segc_fleet_leader 1"), "{m}");
    assert!(m.contains("segc_fleet_revision 1"), "{m}");

    // A rule deleted by hand is put back on the next interval.
    let (name, _, _) = segc_rule("db-nsg").expect("rule");
    arm(&e, &["delete-rule", "db-nsg", &name]);
    assert!(segc_rule("db-nsg").is_none());
    wait_for("the leader put the deleted rule back", Duration::from_secs(10), || segc_rule("db-nsg").is_some());
    drop(applier);

    // drift: the same deletion is reported (audit, metric), not repaired.
    let port = free_port();
    arm(&e, &["delete-rule", "db-nsg", &name]);
    let _reporter = controller(&home, &e, &endpoints, "drift", port);
    wait_for("the drift metric names azure", Duration::from_secs(20), || {
        metrics(port).lines().any(|l| l.starts_with("segc_fleet_drift_findings{") && l.contains("azure") && !l.ends_with(" 0"))
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(segc_rule("db-nsg").is_none(), "drift mode changed the NSG");
    let o = segc(&home, &e, &["audit", "show", "--kind", "drift", "--format", "json"]).output().expect("audit");
    let events = String::from_utf8_lossy(&o.stdout);
    assert!(
        events
            .lines()
            .any(|l| l.contains("\"controller\":\"drift\"") && l.contains("\"target\":\"azure\"") && !l.contains("\"differences\":0")),
        "{events}"
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&home);
}
