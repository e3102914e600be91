//! Every target agrees with the reference evaluator: each target's own
//! semantics, evaluated over what it lowered, on random policies and packets.

mod common;

use common::*;
use proptest::prelude::*;
use segc_compiler::ir::eval::Evaluator;
use segc_compiler::lower::{aws, azure, bpf, gcp, k8s, nft, windows};
use segc_compiler::{compile_str, Options};

/// What a target's direct writer writes for `v`.
fn direct<T>(v: &T, write: fn(&T, &mut dyn std::io::Write) -> std::io::Result<()>) -> String {
    let mut out = Vec::new();
    write(v, &mut out).expect("writes into memory");
    String::from_utf8(out).expect("utf-8")
}

/// What serde_json writes for `v`, pretty, with the final newline: the
/// direct writers must write exactly this.
fn serde_pretty<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("serialises") + "\n"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn nft_agrees_with_the_reference(pol in policy_with_feeds(), packets in prop::collection::vec((ip(), ip(), proto()), 1..80)) {
        let c = pol.compile(&pol.text());
        prop_assert!(!c.has_errors());
        let ev = Evaluator::new(&c.model);
        let lowered = nft::lower(&c.model);
        for (s, d, p) in packets {
            prop_assert_eq!(nft::eval(&lowered, s, d, p), ev.verdict(s, d, p).allow, "{} -> {} {}\n{}", s, d, p, pol.text());
        }
    }

    #[test]
    fn bpf_tables_agree_with_the_reference(pol in policy_with_feeds(), packets in prop::collection::vec((ip(), ip(), proto()), 1..80)) {
        let c = pol.compile(&pol.text());
        prop_assert!(!c.has_errors(), "{:?}", c.diagnostics);
        let ev = Evaluator::new(&c.model);
        // Through the bundle, so the binary form is what is proven.
        let t = bpf::parse_bundle(&bpf::bundle(&bpf::tables(&c.model))).expect("bundle parses");
        for (s, d, p) in packets {
            prop_assert_eq!(bpf::eval(&t, s, d, p), ev.verdict(s, d, p).allow, "{} -> {} {}\n{}", s, d, p, pol.text());
        }
    }

    /// Security groups: where lowering succeeds, every packet EC2 would see gets
    /// the reference verdict; where it fails, it is T002 (not expressible).
    #[test]
    fn aws_agrees_with_the_reference(pol in policy(), bound in prop::collection::vec(any::<bool>(), 6), packets in prop::collection::vec((ip(), ip(), proto()), 1..80)) {
        let text = pol.text_with(&|i| if bound[i % 6] { vec![format!("aws.security_group = \"sg{i}\"")] } else { vec![] });
        let c = compile_str(&text, &Options::default());
        prop_assert!(!c.has_errors(), "{:?}", c.diagnostics);
        let ev = Evaluator::new(&c.model);
        match aws::lower(&c.model) {
            Err(d) => prop_assert!(d.iter().all(|d| matches!(d.code.as_str(), "T002" | "T001")), "{:?}", d),
            Ok(out) => {
                prop_assert_eq!(direct(&out, aws::write), serde_pretty(&out));
                // What real EC2 refuses: a second rule with the same protocol,
                // ports and peer; a description too long or with other characters.
                for g in &out.security_groups {
                    for rules in [&g.ingress, &g.egress] {
                        let keys: std::collections::BTreeSet<_> = rules.iter().map(|r| (&r.protocol, r.from_port, r.to_port, &r.peer)).collect();
                        prop_assert_eq!(keys.len(), rules.len(), "duplicate rules in {}", g.name);
                        for r in rules.iter() {
                            prop_assert!(r.description.len() <= aws::DESCRIPTION_MAX && r.description.chars().all(aws::allowed_char), "{:?}", r.description);
                        }
                    }
                }
                let member = |ip: std::net::IpAddr| ev.zone_of(ip).and_then(|(z, _)| c.model.zone(z).bindings.aws_security_group.clone());
                for (s, d, p) in packets {
                    if let Some(got) = aws::eval(&out, &member, s, d, p) {
                        prop_assert_eq!(got, ev.verdict(s, d, p).allow, "{} -> {} {}\n{}", s, d, p, text);
                    }
                }
            }
        }
    }

    /// NetworkPolicy: pods of bound zones get exactly the reference's verdicts.
    #[test]
    fn k8s_agrees_with_the_reference(pol in policy(), bound in prop::collection::vec(0u8..3, 6), packets in prop::collection::vec((ip(), ip(), proto()), 1..80)) {
        // 0: not a pod zone; 1: a whole namespace; 2: a selector in a shared namespace.
        let text = pol.text_with(&|i| match bound[i % 6] {
            1 => vec![format!("k8s.namespace = \"ns{i}\"")],
            2 => vec!["k8s.namespace = \"shared\"".to_string(), format!("k8s.selector = \"app=z{i}\"")],
            _ => vec![],
        });
        let c = compile_str(&text, &Options::default());
        prop_assert!(!c.has_errors(), "{:?}", c.diagnostics);
        let ev = Evaluator::new(&c.model);
        match k8s::lower(&c.model) {
            Err(d) => prop_assert!(d.iter().all(|d| d.code.as_str() == "T002"), "{:?}", d),
            Ok(out) => {
                let member = |ip: std::net::IpAddr| {
                    let z = c.model.zone(ev.zone_of(ip)?.0);
                    let k = z.bindings.k8s.as_ref()?;
                    Some((k.namespace.clone(), k.selector.clone()))
                };
                for (s, d, p) in packets {
                    if let Some(got) = k8s::eval(&out, &member, s, d, p) {
                        prop_assert_eq!(got, ev.verdict(s, d, p).allow, "{} -> {} {}\n{}", s, d, p, text);
                    }
                }
            }
        }
    }

    /// GCP firewall rules: tagged instances get exactly the reference's verdicts.
    #[test]
    fn gcp_agrees_with_the_reference(pol in policy_with_feeds(), bound in prop::collection::vec(any::<bool>(), 6), packets in prop::collection::vec((ip(), ip(), proto()), 1..80)) {
        let text = pol.text_with(&|i| if bound[i % 6] && !pol.untrusted.get(i).copied().unwrap_or(false) { vec![format!("gcp.tag = \"t{i}\"")] } else { vec![] });
        let c = pol.compile(&text);
        prop_assert!(!c.has_errors(), "{:?}", c.diagnostics);
        let ev = Evaluator::new(&c.model);
        match gcp::lower(&c.model) {
            Err(d) => prop_assert!(d.iter().all(|d| d.code.as_str() == "T002"), "{:?}", d),
            Ok(out) => {
                prop_assert_eq!(direct(&out, gcp::write), serde_pretty(&out));
                let tag_of = |ip: std::net::IpAddr| ev.zone_of(ip).and_then(|(z, _)| c.model.zone(z).bindings.gcp_tag.clone());
                for (s, d, p) in packets {
                    if let Some(got) = gcp::eval(&out, &tag_of, s, d, p) {
                        prop_assert_eq!(got, ev.verdict(s, d, p).allow, "{} -> {} {}\n{}", s, d, p, text);
                    }
                }
            }
        }
    }

    /// Azure NSGs: members of bound zones get exactly the reference's verdicts.
    #[test]
    fn azure_agrees_with_the_reference(pol in policy_with_feeds(), bound in prop::collection::vec(any::<bool>(), 6), packets in prop::collection::vec((ip(), ip(), proto()), 1..80)) {
        let text = pol.text_with(&|i| if bound[i % 6] && !pol.untrusted.get(i).copied().unwrap_or(false) { vec![format!("azure.nsg = \"nsg{i}\"")] } else { vec![] });
        let c = pol.compile(&text);
        prop_assert!(!c.has_errors(), "{:?}", c.diagnostics);
        let ev = Evaluator::new(&c.model);
        match azure::lower(&c.model) {
            Err(d) => prop_assert!(d.iter().all(|d| d.code.as_str() == "T002"), "{:?}", d),
            Ok(out) => {
                let nsg_of = |ip: std::net::IpAddr| ev.zone_of(ip).and_then(|(z, _)| c.model.zone(z).bindings.azure_nsg.clone());
                for (s, d, p) in packets {
                    if let Some(got) = azure::eval(&out, &nsg_of, s, d, p) {
                        prop_assert_eq!(got, ev.verdict(s, d, p).allow, "{} -> {} {}\n{}", s, d, p, text);
                    }
                }
            }
        }
    }

    /// Windows Defender Firewall: the scripts, read back as text with
    /// Windows' semantics (no order, Block beats Allow, both hosts' sides),
    /// give every packet touching a Windows-bound zone the reference verdict.
    #[test]
    fn windows_agrees_with_the_reference(pol in policy_with_feeds(), bound in prop::collection::vec(0u8..3, 6), packets in prop::collection::vec((ip(), ip(), proto()), 1..80)) {
        // 0: not Windows; 1: a group of its own; 2: a group shared with other zones.
        let text = pol.text_with(&|i| match bound[i % 6] {
            1 => vec![format!("windows.group = \"g{i}\"")],
            2 => vec!["windows.group = \"shared\"".to_string()],
            _ => vec![],
        });
        let c = pol.compile(&text);
        prop_assert!(!c.has_errors(), "{:?}", c.diagnostics);
        let ev = Evaluator::new(&c.model);
        let scripts = windows::lower(&c.model).map_err(|d| TestCaseError::fail(format!("{d:?}")))?;
        let parsed: std::collections::BTreeMap<String, windows::eval::Parsed> = scripts
            .iter()
            .map(|s| (s.group.clone(), windows::eval::parse(&windows::render(&c.model, s)).expect("the script reads back")))
            .collect();
        let group_of = |ip: std::net::IpAddr| ev.zone_of(ip).and_then(|(z, _)| c.model.zone(z).bindings.windows_group.clone());
        for (s, d, p) in packets {
            if let Some(got) = windows::eval::eval(&parsed, &group_of, s, d, p) {
                prop_assert_eq!(got, ev.verdict(s, d, p).allow, "{} -> {} {}\n{}", s, d, p, text);
            }
        }
    }

    /// Same policy, items in another order: the same bytes.
    #[test]
    fn output_does_not_depend_on_item_order(pol in policy(), seed in any::<u64>()) {
        // Every target bound on the first zones, so all of them produce output.
        let text = pol.text_with(&|i| match i {
            0 => ["aws.security_group", "azure.nsg", "gcp.tag", "k8s.namespace", "windows.group"].iter().map(|k| format!("{k} = \"a\"")).collect(),
            1 => ["aws.security_group", "azure.nsg", "gcp.tag", "k8s.namespace", "windows.group"].iter().map(|k| format!("{k} = \"b\"")).collect(),
            _ => vec![],
        });
        let mut items: Vec<String> = Vec::new();
        for block in text.split_inclusive('\n') {
            // Zones span four lines; rules one.
            if block.starts_with("zone") || block.starts_with("flow") || block.starts_with("deny") {
                items.push(block.to_string());
            } else if let Some(last) = items.last_mut() {
                last.push_str(block);
            }
        }
        let mut x = seed | 1;
        for i in (1..items.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            items.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let shuffled: String = items.concat();
        let (ma, mb) = (compile_str(&text, &Options::default()).model, compile_str(&shuffled, &Options::default()).model);
        prop_assert_eq!(nft::render(&ma), nft::render(&mb));
        prop_assert_eq!(bpf::bundle(&bpf::tables(&ma)), bpf::bundle(&bpf::tables(&mb)));
        let all: std::collections::BTreeSet<_> = segc_compiler::lower::Target::ALL.iter().copied().collect();
        let (la, lb) = (segc_compiler::lower::lower(&ma, &all), segc_compiler::lower::lower(&mb, &all));
        match (la, lb) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!(a.len(), b.len()),
            _ => prop_assert!(false, "one order built and the other did not"),
        }
    }
}

/// Every cloud and cluster target on one small policy, verdict by verdict: the
/// property tests above cover random policies, this one shows them working.
#[test]
fn cloud_targets_on_a_fixed_policy() {
    let src = r#"use std.zones.internet
zone web {
  cidrs = [10.0.1.0/24]
  scope = connected
  aws.security_group = "web"
  azure.nsg = "web"
  gcp.tag = "web"
  k8s.namespace = "web"
  windows.group = "web"
}
zone db {
  cidrs = [10.0.2.0/24]
  scope = connected
  aws.security_group = "db"
  azure.nsg = "db"
  gcp.tag = "db"
  k8s.namespace = "db"
  windows.group = "db"
}
flow internet -> web on tcp/443
flow web -> db on tcp/5432
flow web -> internet on tcp/443, udp/53
deny web -> internet on udp/53
"#;
    let c = compile_str(src, &Options::default());
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    let ev = Evaluator::new(&c.model);
    let ip = |s: &str| -> std::net::IpAddr { s.parse().unwrap() };
    use segc_compiler::ir::Proto::*;
    let cases = [
        ("198.51.100.1", "10.0.1.5", Tcp(443), true),
        ("198.51.100.1", "10.0.1.5", Tcp(22), false),
        ("198.51.100.1", "10.0.2.5", Tcp(5432), false),
        ("10.0.1.5", "10.0.2.5", Tcp(5432), true),
        ("10.0.1.5", "10.0.2.5", Tcp(22), false),
        ("10.0.2.5", "10.0.1.5", Tcp(5432), false),
        ("10.0.1.5", "198.51.100.1", Tcp(443), true),
        ("10.0.1.5", "198.51.100.1", Udp(53), false),
        ("10.0.2.5", "198.51.100.1", Tcp(443), false),
    ];
    let zone = |a: std::net::IpAddr, key: &str| ev.zone_of(a).and_then(|(z, _)| c.model.zone(z).bindings.by_key(key));
    let sg = aws::lower(&c.model).expect("aws");
    let nsg = azure::lower(&c.model).expect("azure");
    let fw = gcp::lower(&c.model).expect("gcp");
    let np = k8s::lower(&c.model).expect("k8s");
    let win: std::collections::BTreeMap<String, windows::eval::Parsed> = windows::lower(&c.model)
        .expect("windows")
        .iter()
        .map(|s| (s.group.clone(), windows::eval::parse(&windows::render(&c.model, s)).expect("reads back")))
        .collect();
    for (s, d, p, want) in cases {
        let (s, d) = (ip(s), ip(d));
        assert_eq!(ev.verdict(s, d, p).allow, want, "reference {s} -> {d} {p}");
        assert_eq!(aws::eval(&sg, &|a| zone(a, "aws.security_group"), s, d, p), Some(want), "aws {s} -> {d} {p}");
        assert_eq!(azure::eval(&nsg, &|a| zone(a, "azure.nsg"), s, d, p), Some(want), "azure {s} -> {d} {p}");
        assert_eq!(gcp::eval(&fw, &|a| zone(a, "gcp.tag"), s, d, p), Some(want), "gcp {s} -> {d} {p}");
        let pod = |a: std::net::IpAddr| zone(a, "k8s.namespace").map(|ns| (ns, std::collections::BTreeMap::new()));
        assert_eq!(k8s::eval(&np, &pod, s, d, p), Some(want), "k8s {s} -> {d} {p}");
        assert_eq!(windows::eval::eval(&win, &|a| zone(a, "windows.group"), s, d, p), Some(want), "windows {s} -> {d} {p}");
    }
}

/// T003: a build for targets that can only allow says that the feed block
/// does not hold there; targets that can deny say nothing.
#[test]
fn feed_blocks_warn_where_a_target_cannot_block() {
    let src = "use std.zones.internet\nzone web {\n  cidrs = [10.0.1.0/24]\n  scope = connected\n  aws.security_group = \"web\"\n  k8s.namespace = \"web\"\n}\nfeed bad {\n  source = \"bad.netset\"\n}\nblock bad\nflow internet -> web on tcp/443\n";
    let loader = segc_compiler::source::MemoryLoader::new().with("main.seg", src).with("bad.netset", "198.51.100.0/24\n");
    let c = segc_compiler::compile("main.seg", &loader, &Options::default()).expect("in memory");
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    let all: std::collections::BTreeSet<_> = segc_compiler::lower::Target::ALL.iter().copied().collect();
    let w = segc_compiler::lower::warnings(&c.model, &all);
    let msgs: Vec<&str> = w.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(w.len(), 2, "{msgs:?}");
    assert!(w.iter().all(|d| d.code.as_str() == "T003" && !d.is_error()));
    assert!(
        msgs[0].starts_with("AWS security groups cannot block feeds (bad)") && msgs[1].starts_with("Kubernetes NetworkPolicy"),
        "{msgs:?}"
    );
    let only_nft: std::collections::BTreeSet<_> = [segc_compiler::lower::Target::Nft].into_iter().collect();
    assert!(segc_compiler::lower::warnings(&c.model, &only_nft).is_empty());
    let unblocked =
        compile_str(&src.replace("block bad\n", "").replace("feed bad {\n  source = \"bad.netset\"\n}\n", ""), &Options::default());
    assert!(segc_compiler::lower::warnings(&unblocked.model, &all).is_empty());
}

/// GCP: a project's rule quota is the feed rules' concern at build time (a
/// policy without feeds is left to the apply, which orders writes around the
/// quota); with feeds over it, T001 says how many rules the feeds take.
#[test]
fn gcp_quota_is_checked_where_feeds_add_rules() {
    let mut src = String::from("zone net {\n  cidrs = [0.0.0.0/0]\n  scope = untrusted\n}\n");
    for i in 0..40 {
        src.push_str(&format!("zone z{i} {{\n  cidrs = [10.0.{i}.0/24]\n  scope = connected\n  gcp.tag = \"t{i}\"\n}}\n"));
    }
    for i in 0..40 {
        for j in 0..8 {
            src.push_str(&format!("flow z{i} -> z{} on tcp/{}\n", (i + j + 1) % 40, 1000 + j));
        }
    }
    let plain = compile_str(&src, &Options::default());
    assert!(!plain.has_errors(), "{:?}", plain.diagnostics.first());
    let out = gcp::lower(&plain.model).expect("no feeds: no build-time quota");
    assert!(out.firewall_rules.len() > gcp::MAX_RULES, "{} rules", out.firewall_rules.len());
    let feed: String = (0..2000).map(|i| format!("{}.{}.{}.0/24\n", 30 + i / 65536, (i / 256) % 256, i % 256)).collect();
    let with = format!("{src}feed bad {{\n  source = \"bad.netset\"\n}}\nblock bad\n");
    let loader = segc_compiler::source::MemoryLoader::new().with("main.seg", &with).with("bad.netset", &feed);
    let c = segc_compiler::compile("main.seg", &loader, &Options::default()).expect("in memory");
    assert!(!c.has_errors(), "{:?}", c.diagnostics.first());
    let d = gcp::lower(&c.model).expect_err("over the quota with the feed rules");
    assert!(
        d.iter().any(|d| d.code.as_str() == "T001" && d.message.contains("of them for blocked feeds")),
        "{:?}",
        d.iter().map(|d| &d.message).collect::<Vec<_>>()
    );
}
