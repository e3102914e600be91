//! Every target agrees with the reference evaluator: each target's own
//! semantics, evaluated over what it lowered, on random policies and packets.

mod common;

use common::*;
use proptest::prelude::*;
use segc_compiler::eval::Evaluator;
use segc_compiler::lower::{bpf, nft};
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
