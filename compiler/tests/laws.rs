//! Property tests for the laws the language promises:
//! - the formatter changes layout only: `parse(fmt(x)) == parse(x)`, and it is
//!   idempotent and keeps every comment;
//! - nothing panics, whatever the input;
//! - the reference evaluator agrees with a brute-force model written here from the
//!   SPEC, on random policies and packets, IPv4 and IPv6.

use std::net::IpAddr;

mod common;
use common::*;

use proptest::prelude::*;
use segc_compiler::diag::FileId;
use segc_compiler::ir::eval::Evaluator;
use segc_compiler::ir::Proto;
use segc_compiler::syntax::{fmt, parse};
use segc_compiler::{compile_str, Options};

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn evaluator_agrees_with_brute_force(pol in policy(), packets in prop::collection::vec((ip(), ip(), proto()), 1..60)) {
        let text = pol.text();
        let c = compile_str(&text, &Options::default());
        prop_assert!(!c.has_errors(), "{text}\n{:?}", c.diagnostics);
        let ev = Evaluator::new(&c.model);
        for (s, d, p) in packets {
            let want = pol.verdict(s, d, p);
            let got = ev.verdict(s, d, p).allow;
            prop_assert_eq!(got, want, "{} -> {} {} in\n{}", s, d, p, text);
        }
    }

    /// Feeds as the SPEC says: an address of an untrusted zone in a blocked
    /// feed is denied both ways, before any flow; other zones win.
    #[test]
    fn feeds_agree_with_brute_force(pol in policy_with_feeds(), packets in prop::collection::vec((ip(), ip(), proto()), 1..60)) {
        let text = pol.text();
        let c = pol.compile(&text);
        prop_assert!(!c.has_errors(), "{text}\n{:?}", c.diagnostics);
        let ev = Evaluator::new(&c.model);
        for (s, d, p) in packets {
            let want = pol.verdict(s, d, p);
            let v = ev.verdict(s, d, p);
            prop_assert_eq!(v.allow, want, "{} -> {} {} in\n{}\nfeed {:?}", s, d, p, text, pol.files());
            if let segc_compiler::ir::eval::Decision::Feed { prefix, dst, .. } = v.decision {
                let ip = if dst { d } else { s };
                let (f, a) = segc_compiler::ir::addr::addr_bits(ip);
                prop_assert!(prefix.contains_addr(f, a));
            }
        }
    }
}

// ---------- the formatter ----------

/// A policy's tokens joined by random layout: spaces, newlines and comments.
fn noisy(pol: &Pol, seps: &[u8]) -> String {
    let canon = pol.text();
    let mut out = String::new();
    for (k, tok) in canon.split_whitespace().enumerate() {
        out.push_str(tok);
        out.push_str(match seps[k % seps.len()] % 6 {
            0 => " ",
            1 => "\n",
            2 => "   ",
            3 => " # note\n",
            4 => "\n\n",
            _ => "\t",
        });
    }
    out
}

fn shape(src: &str) -> String {
    let p = parse(FileId(0), src);
    assert!(!p.has_errors(), "{src}\n{:?}", p.diagnostics);
    serde_json::to_string(&p.file).expect("the tree serialises")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn fmt_changes_layout_only(pol in policy(), seps in prop::collection::vec(any::<u8>(), 1..40)) {
        let src = noisy(&pol, &seps);
        let parsed = parse(FileId(0), &src);
        prop_assert!(!parsed.has_errors(), "{src}");
        let once = fmt::format(&src, &parsed);
        prop_assert_eq!(shape(&once), shape(&src));
        let twice = fmt::format(&once, &parse(FileId(0), &once));
        prop_assert_eq!(&twice, &once, "idempotent");
        prop_assert_eq!(once.matches("# note").count(), src.matches("# note").count(), "comments kept");
    }

    #[test]
    fn nothing_panics_on_token_soup(words in prop::collection::vec(prop::sample::select(vec![
        "zone", "flow", "deny", "service", "use", "import", "test", "assert", "unreachable", "denied", "policy",
        "allow", "on", "any", "icmp", "{", "}", "[", "]", ",", "=", "->", ".", "*", "a", "b", "std", "services",
        "zones", "internet", "cidrs", "scope", "cde", "10.0.0.0/8", "10.0.0.1", "::/0", "tcp/1", "udp/2-1",
        "icmp/300", "\"s\"", "\"unterminated", "180d", "2026-02-30", "#c\n", "\n", "true", "42", "§",
    ]), 0..80)) {
        let src = words.join(" ");
        let c = compile_str(&src, &Options::default());
        // Whatever it is, it is reported with codes and in-bounds spans.
        for d in &c.diagnostics {
            prop_assert!((d.span.end as usize) <= c.sources().get(d.span.file).text.len());
        }
        let p = parse(FileId(0), &src);
        if !p.has_errors() {
            let once = fmt::format(&src, &p);
            prop_assert_eq!(shape(&once), shape(&src));
        }
    }

    #[test]
    fn nothing_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let loader = segc_compiler::source::MemoryLoader { files: [("main.seg".to_string(), bytes)].into() };
        let c = segc_compiler::compile("main.seg", &loader, &Options::default());
        prop_assert!(c.is_ok());
    }
}

// ---------- diff and hygiene against the evaluator ----------

/// Every address the generator's prefixes can tell apart, and some outside.
fn universe() -> Vec<IpAddr> {
    let mut v = Vec::new();
    for b in 0..5u8 {
        for c in 0..5u8 {
            for d in 0..4u8 {
                v.push(IpAddr::from([10, b, c, d]));
            }
        }
    }
    v.push(IpAddr::from([11, 0, 0, 1]));
    for b in 0..4u16 {
        for c in 0..4u16 {
            for d in 0..4u16 {
                v.push(IpAddr::from([0x2001, 0xdb8, b, c, 0, 0, 0, d]));
            }
        }
    }
    v
}

fn protos() -> Vec<Proto> {
    let mut v: Vec<Proto> = (18..36).map(Proto::Tcp).chain((18..36).map(Proto::Udp)).collect();
    v.extend((0..5).map(Proto::Icmp));
    v.push(Proto::Other(47));
    v
}

fn side(m: &segc_compiler::ir::Model, ev: &Evaluator<'_>, ip: IpAddr) -> Option<String> {
    ev.zone_of(ip).map(|(z, _)| m.zone(z).name.clone())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn diff_with_itself_is_empty(pol in policy()) {
        let c = compile_str(&pol.text(), &Options::default());
        let d = segc_compiler::analysis::diff::diff(&c.model, &c.model);
        prop_assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn diff_agrees_with_the_evaluator(a in policy(), b in policy(), packets in prop::collection::vec((ip(), ip(), proto()), 1..80)) {
        let (ca, cb) = (compile_str(&a.text(), &Options::default()), compile_str(&b.text(), &Options::default()));
        let d = segc_compiler::analysis::diff::diff(&ca.model, &cb.model);
        let (ea, eb) = (Evaluator::new(&ca.model), Evaluator::new(&cb.model));
        // A packet has one address family; mixed pairs are denied on both sides.
        for (s, t, p) in packets.into_iter().filter(|(s, t, _)| s.is_ipv4() == t.is_ipv4()) {
            let (before, after) = (ea.verdict(s, t, p).allow, eb.verdict(s, t, p).allow);
            let from = segc_compiler::analysis::diff::Side { old: side(&ca.model, &ea, s), new: side(&cb.model, &eb, s) };
            let to = segc_compiler::analysis::diff::Side { old: side(&ca.model, &ea, t), new: side(&cb.model, &eb, t) };
            let listed = |list: &[segc_compiler::analysis::diff::Change]| list.iter().any(|c| c.from == from && c.to == to && c.set.contains(p));
            prop_assert_eq!(listed(&d.newly_allowed), after && !before, "{} -> {} {}\nold:\n{}\nnew:\n{}", s, t, p, a.text(), b.text());
            prop_assert_eq!(listed(&d.newly_denied), before && !after, "{} -> {} {}\nold:\n{}\nnew:\n{}", s, t, p, a.text(), b.text());
        }
    }

    /// Together, the flows flagged W501 or W502 change no verdict: removing all of
    /// them keeps every packet's verdict. And what is left is minimal: removing
    /// any one remaining flow changes some verdict between its zones. Checked by
    /// evaluating every packet between the zones over the generator's addresses.
    #[test]
    fn hygiene_agrees_with_brute_force(pol in policy()) {
        let text = pol.text();
        let c = compile_str(&text, &Options::default());
        let first_rule_line = 4 * pol.zones.len() + 1;
        let flagged: std::collections::HashSet<usize> = c
            .diagnostics
            .iter()
            .filter(|d| matches!(d.code.as_str(), "W501" | "W502"))
            .map(|d| c.sources().line_col(d.span).0 - first_rule_line)
            .collect();
        let ev = Evaluator::new(&c.model);
        let all = universe();
        let packets_between = |from: usize, to: usize| -> Vec<(IpAddr, IpAddr, Proto)> {
            let name = |k: usize| Some(format!("z{k}"));
            let srcs: Vec<IpAddr> = all.iter().copied().filter(|&a| side(&c.model, &ev, a) == name(from)).collect();
            let dsts: Vec<IpAddr> = all.iter().copied().filter(|&a| side(&c.model, &ev, a) == name(to)).collect();
            let mut v = Vec::new();
            for &s in &srcs {
                for &t in dsts.iter().filter(|t| t.is_ipv4() == s.is_ipv4()) {
                    v.extend(protos().into_iter().map(|p| (s, t, p)));
                }
            }
            v
        };
        let mut pruned = pol.clone();
        pruned.rules = pol.rules.iter().enumerate().filter(|(i, _)| !flagged.contains(i)).map(|(_, r)| r.clone()).collect();
        let cp = compile_str(&pruned.text(), &Options::default());
        let ep = Evaluator::new(&cp.model);
        for r in pol.rules.iter().filter(|r| !r.deny) {
            for (s, t, p) in packets_between(r.from, r.to) {
                prop_assert_eq!(ev.verdict(s, t, p).allow, ep.verdict(s, t, p).allow, "pruning flagged flows changed {} -> {} {}:\n{}", s, t, p, text);
            }
        }
        for (i, r) in pruned.rules.iter().enumerate() {
            if r.deny {
                continue;
            }
            let packets = packets_between(r.from, r.to);
            if packets.is_empty() {
                continue;
            }
            let mut without = pruned.clone();
            without.rules.remove(i);
            let cw = compile_str(&without.text(), &Options::default());
            let ew = Evaluator::new(&cw.model);
            let changed = packets.iter().any(|&(s, t, p)| ep.verdict(s, t, p).allow != ew.verdict(s, t, p).allow);
            prop_assert!(changed, "unflagged flow {:?} changes nothing:\n{}", r, text);
        }
    }
}

/// A chain of 20 000 services (`service s1 = s0`, ...) once overflowed the
/// stack of `check`, the LSP and the agent; resolution is iterative now. The
/// compile runs on a thread with a small stack to prove it.
#[test]
fn a_long_service_chain_does_not_exhaust_the_stack() {
    let mut src = String::from("service s0 = tcp/443\n");
    for i in 1..20_000 {
        src.push_str(&format!("service s{i} = s{}\n", i - 1));
    }
    src.push_str("zone a {\n  cidrs = [10.0.0.0/24]\n  scope = connected\n}\nflow a -> a on s19999\n");
    let cycle = format!("{src}service c1 = c2\nservice c2 = c1\nflow a -> a on c1\n");
    let run = move || {
        let c = segc_compiler::compile_str(&src, &segc_compiler::Options::default());
        assert!(!c.has_errors(), "{:?}", c.diagnostics.iter().take(3).collect::<Vec<_>>());
        assert_eq!(c.model.flows[0].set.to_string(), "tcp/443");
        let c = segc_compiler::compile_str(&cycle, &segc_compiler::Options::default());
        assert!(c.diagnostics.iter().any(|d| d.code == segc_compiler::diag::Code::E207));
    };
    std::thread::Builder::new().stack_size(256 * 1024).spawn(run).expect("thread").join().expect("no stack overflow");
}
