//! The eBPF filter in a real kernel: deployed with `segc deploy --netns` on one
//! end of a veth pair, real TCP and UDP exchanges (replies included), IPv4 and
//! IPv6, pass or fail exactly as the reference evaluator says; a redeploy swaps
//! the policy in place; undeploy restores connectivity.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const POLICY_A: &str = r#"policy "bpf-netns-a" {}
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

/// The swap target: different ports open.
const POLICY_B: &str = r#"policy "bpf-netns-b" {}
zone client {
  cidrs = [10.99.0.1/32, fd99::1/128]
  scope = connected
}
zone server {
  cidrs = [10.99.0.2/32, fd99::2/128]
  scope = connected
}
flow client -> server on tcp/8085, udp/5354
flow server -> client on tcp/9001
"#;

fn segc(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_segc")).args(args).arg(dir).output().expect("segc runs")
}

#[test]
fn bpf_filter_enforces_swaps_and_undeploys_on_real_traffic() {
    if !require("bpf_filter_enforces_swaps_and_undeploys_on_real_traffic", &["ip", "python3"]) {
        return;
    }
    let root = std::env::temp_dir().join(format!("segc-bpf-{}", std::process::id()));
    let (da, db) = (root.join("a"), root.join("b"));
    for (d, p) in [(&da, POLICY_A), (&db, POLICY_B)] {
        std::fs::create_dir_all(d).expect("dir");
        std::fs::write(d.join("main.seg"), p).expect("policy");
    }
    let net = NetnsPair::new("bpf");
    let _srv_b = net.serve(&net.b, &[8080, 8085, 8091], &[5353, 5354]);
    let _srv_a = net.serve(&net.a, &[9000, 9001], &[]);
    let probes = standard_probes();
    let check = |label: &str, want: &[bool]| {
        for (&(from, proto, host, port), &w) in probes.iter().zip(want) {
            let ns = if from == "a" { &net.a } else { &net.b };
            assert_eq!(net.probe(ns, proto, host, port), w, "{label}: {from} -> {host} {proto}/{port}");
        }
    };
    check("before deploy", &vec![true; probes.len()]);

    // Generic XDP on ingress here; the auto choice (TC on a veth) is tested below.
    let o = segc(&["deploy", "--target", "host", "--netns", &net.b, "--iface", "vb", "--xdp-mode", "generic", "--apply"], &da);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("XDP (generic) on ingress"), "{}", String::from_utf8_lossy(&o.stdout));
    let want_a = expected(&da, &probes);
    assert!(want_a.iter().any(|w| *w) && want_a.iter().any(|w| !*w));
    check("policy a", &want_a);

    // Drift: none against the deployed policy; the other policy's differences
    // are listed, with exit 1.
    let o = segc(&["drift", "--target", "host", "--netns", &net.b], &da);
    assert_eq!(o.status.code(), Some(0), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("no drift"));
    let o = segc(&["drift", "--target", "host", "--netns", &net.b], &db);
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("missing  rule client -> server tcp/8085") && text.contains("extra    rule client -> server tcp/8080"), "{text}");

    // Swap in place: the same pins, another policy.
    let o = segc(&["deploy", "--target", "host", "--netns", &net.b, "--iface", "vb", "--apply"], &db);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("swapped"), "{}", String::from_utf8_lossy(&o.stdout));
    let want_b = expected(&db, &probes);
    assert_ne!(want_a, want_b);
    check("policy b", &want_b);

    let o = Command::new(env!("CARGO_BIN_EXE_segc")).args(["undeploy", "--target", "host", "--netns", &net.b]).output().expect("undeploy");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check("after undeploy", &vec![true; probes.len()]);
    let _ = std::fs::remove_dir_all(&root);
}

/// Where eBPF is unavailable, deploy falls back to nftables, says so loudly, and
/// the traffic still follows the policy; undeploy removes the table.
#[test]
fn deploy_falls_back_to_nftables_without_ebpf() {
    if !require("deploy_falls_back_to_nftables_without_ebpf", &["ip", "nft", "python3"]) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("segc-fallback-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("main.seg"), POLICY_A).expect("policy");
    let net = NetnsPair::new("fb");
    let _srv_b = net.serve(&net.b, &[8080, 8085], &[]);
    let o = Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(["deploy", "--target", "host", "--netns", &net.b, "--iface", "vb", "--apply"])
        .arg(&dir)
        .env("SEGC_DISABLE_BPF", "1")
        .output()
        .expect("deploy");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("WARNING: falling back to nftables"));
    assert!(net.probe(&net.a, "tcp", "10.99.0.2", 8080));
    assert!(!net.probe(&net.a, "tcp", "10.99.0.2", 8085));
    let o = Command::new(env!("CARGO_BIN_EXE_segc")).args(["undeploy", "--target", "host", "--netns", &net.b]).output().expect("undeploy");
    assert!(String::from_utf8_lossy(&o.stdout).contains("removed the nftables fallback"), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(net.probe(&net.a, "tcp", "10.99.0.2", 8085));
    let _ = std::fs::remove_dir_all(&dir);
}

/// On a veth, the automatic choice filters ingress with TC (generic XDP would
/// cost the GSO fast path), and it enforces the same policy.
#[test]
fn auto_mode_uses_tc_ingress_on_veth() {
    if !require("auto_mode_uses_tc_ingress_on_veth", &["ip", "python3"]) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("segc-auto-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("main.seg"), POLICY_A).expect("policy");
    let net = NetnsPair::new("auto");
    let _srv_b = net.serve(&net.b, &[8080, 8085], &[]);
    let _srv_a = net.serve(&net.a, &[9000, 9001], &[]);
    let o = segc(&["deploy", "--target", "host", "--netns", &net.b, "--iface", "vb", "--apply"], &dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("TCX (first) on ingress") || out.contains("tc clsact (cls_bpf, priority 1) on ingress"), "{out}");
    assert!(net.probe(&net.a, "tcp", "fd99::2", 8080));
    assert!(!net.probe(&net.a, "tcp", "10.99.0.2", 8085));
    assert!(net.probe(&net.b, "tcp", "10.99.0.1", 9000));
    assert!(!net.probe(&net.b, "tcp", "fd99::1", 9001));
    let o = Command::new(env!("CARGO_BIN_EXE_segc")).args(["undeploy", "--target", "host", "--netns", &net.b]).output().expect("undeploy");
    assert!(o.status.success());
    assert!(net.probe(&net.a, "tcp", "10.99.0.2", 8085));
    let _ = std::fs::remove_dir_all(&dir);
}
