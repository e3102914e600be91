//! Every target agrees with the reference evaluator: each target's own
//! semantics, evaluated over what it lowered, on random policies and packets.

mod common;

use common::*;
use proptest::prelude::*;
use segc_compiler::eval::Evaluator;
use segc_compiler::lower::{aws, bpf, gcp, k8s, nft};
use segc_compiler::{compile_str, Options};

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn nft_agrees_with_the_reference(pol in policy(), packets in prop::collection::vec((ip(), ip(), proto()), 1..80)) {
        let c = compile_str(&pol.text(), &Options::default());
        prop_assert!(!c.has_errors());
        let ev = Evaluator::new(&c.model);
        let lowered = nft::lower(&c.model);
        for (s, d, p) in packets {
            prop_assert_eq!(nft::eval(&lowered, s, d, p), ev.verdict(s, d, p).allow, "{} -> {} {}\n{}", s, d, p, pol.text());
        }
    }

    #[test]
    fn bpf_tables_agree_with_the_reference(pol in policy(), packets in prop::collection::vec((ip(), ip(), proto()), 1..80)) {
        let c = compile_str(&pol.text(), &Options::default());
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
                let member = |ip: std::net::IpAddr| ev.zone_of(ip).and_then(|(z, _)| c.model.zone(z).bindings.get("aws.security_group").cloned());
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
                    let ns = z.bindings.get("k8s.namespace")?.clone();
                    Some((ns, z.bindings.get("k8s.selector").and_then(|s| k8s::labels(s)).unwrap_or_default()))
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
    fn gcp_agrees_with_the_reference(pol in policy(), bound in prop::collection::vec(any::<bool>(), 6), packets in prop::collection::vec((ip(), ip(), proto()), 1..80)) {
        let text = pol.text_with(&|i| if bound[i % 6] { vec![format!("gcp.tag = \"t{i}\"")] } else { vec![] });
        let c = compile_str(&text, &Options::default());
        prop_assert!(!c.has_errors(), "{:?}", c.diagnostics);
        let ev = Evaluator::new(&c.model);
        match gcp::lower(&c.model) {
            Err(d) => prop_assert!(d.iter().all(|d| d.code.as_str() == "T002"), "{:?}", d),
            Ok(out) => {
                let tag_of = |ip: std::net::IpAddr| ev.zone_of(ip).and_then(|(z, _)| c.model.zone(z).bindings.get("gcp.tag").cloned());
                for (s, d, p) in packets {
                    if let Some(got) = gcp::eval(&out, &tag_of, s, d, p) {
                        prop_assert_eq!(got, ev.verdict(s, d, p).allow, "{} -> {} {}\n{}", s, d, p, text);
                    }
                }
            }
        }
    }

    /// Same policy, items in another order: the same bytes.
    #[test]
    fn output_does_not_depend_on_item_order(pol in policy(), seed in any::<u64>()) {
        let text = pol.text();
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
    }
}
