//! The nftables target in a real kernel: two namespaces joined by a veth pair,
//! the compiled ruleset loaded with `nft -f` on one side, and real TCP and UDP
//! exchanges (replies included), IPv4 and IPv6, pass or fail exactly as the
//! reference evaluator says. Removing the table restores connectivity.

mod common;

use std::process::Command;

use common::*;

const POLICY: &str = r#"policy "nft-netns" {}
zone client {
  cidrs = [10.99.0.1/32, fd99::1/128]
  scope = connected
}
zone server {
  cidrs = [10.99.0.2/32, fd99::2/128]
  scope = connected
}
flow client -> server on tcp/8080-8090, udp/5353
deny client -> server on tcp/8085
flow server -> client on tcp/9000
"#;

#[test]
fn nft_ruleset_enforces_the_policy_on_real_traffic() {
    if !require("nft_ruleset_enforces_the_policy_on_real_traffic", &["ip", "nft", "python3"]) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("segc-nft-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("main.seg"), POLICY).expect("policy");
    let st = Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(["build", "--target", "nft", "-o"])
        .arg(dir.join("out"))
        .arg(&dir)
        .status()
        .expect("segc build");
    assert!(st.success());

    let net = NetnsPair::new("nft");
    let _srv_b = net.serve(&net.b, &[8080, 8085, 8091], &[5353, 5354]);
    let _srv_a = net.serve(&net.a, &[9000, 9001], &[]);
    let probes = standard_probes();
    // Without a ruleset, everything passes: the probes themselves work.
    for &(from, proto, host, port) in &probes {
        let ns = if from == "a" { &net.a } else { &net.b };
        assert!(net.probe(ns, proto, host, port), "baseline {from} -> {host} {proto}/{port}");
    }

    let ruleset = dir.join("out/nft/ruleset.nft");
    let st = net.exec(&net.b, &["nft", "-f", ruleset.to_str().expect("utf-8")]).status().expect("nft");
    assert!(st.success(), "nft -f loads the ruleset");

    // What the reference evaluator says, through `segc explain --packets`.
    let verdicts = expected(&dir, &probes);
    assert_eq!(verdicts.len(), probes.len());
    assert!(verdicts.iter().any(|v| *v) && verdicts.iter().any(|v| !*v), "the probes cover both verdicts");

    for (&(from, proto, host, port), &want) in probes.iter().zip(&verdicts) {
        let ns = if from == "a" { &net.a } else { &net.b };
        assert_eq!(net.probe(ns, proto, host, port), want, "{from} -> {host} {proto}/{port}");
    }

    let st = net.exec(&net.b, &["nft", "delete", "table", "inet", "segc"]).status().expect("nft");
    assert!(st.success());
    for &(from, proto, host, port) in &probes {
        let ns = if from == "a" { &net.a } else { &net.b };
        assert!(net.probe(ns, proto, host, port), "after removal {from} -> {host} {proto}/{port}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
