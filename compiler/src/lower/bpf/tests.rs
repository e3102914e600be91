use super::*;
use crate::{compile_str, Options};

#[test]
fn bundle_round_trips_and_detects_tampering() {
    let c = compile_str(
        "zone a {\n cidrs = [10.0.0.0/8, 2001:db8::/32]\n scope = connected\n}\nzone b {\n cidrs = [10.1.0.0/16]\n scope = connected\n}\nflow a -> b on tcp/1000-2000, icmp, any\n",
        &Options::default(),
    );
    let t = tables(&c.model);
    let bytes = bundle(&t);
    let back = parse_bundle(&bytes).expect("parses");
    assert_eq!(back.zones4, t.zones4);
    assert_eq!(back.zones6, t.zones6);
    assert_eq!(back.rules, t.rules);
    let mut bad = bytes.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(parse_bundle(&bad).err(), Some(BundleError::Checksum));
    assert_eq!(parse_bundle(&bytes[..bytes.len() - 1]).err(), Some(BundleError::Length));
    assert_eq!(parse_bundle(b"nonsense").err(), Some(BundleError::Magic));
    let mut v3 = bytes.clone();
    v3[8] = 3;
    assert_eq!(parse_bundle(&v3).err(), Some(BundleError::Version(3)));
}

/// Feed tries travel in the bundle; untrusted zones carry the feed flag
/// only when the policy blocks a feed; a hostile count is refused, not
/// allocated.
#[test]
fn feeds_round_trip_through_the_bundle() {
    let src = "zone web {\n cidrs = [10.0.1.0/24]\n scope = connected\n}\nzone net {\n cidrs = [0.0.0.0/0, ::/0]\n scope = untrusted\n}\nfeed f {\n source = \"f.netset\"\n}\nblock f\nflow net -> web on tcp/443\n";
    let loader = crate::source::MemoryLoader::new().with("main.seg", src).with("f.netset", "192.0.2.0/24\n2001:db8::/32\n");
    let c = crate::compile("main.seg", &loader, &Options::default()).unwrap();
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    let t = tables(&c.model);
    assert_eq!((t.feeds.as_slice(), t.feeds4.len(), t.feeds6.len()), (&["f".to_string()][..], 1, 1));
    assert!(t.zones4.iter().any(|z| z.zone == (1 | ZONE_FEED)) && t.zones4.iter().any(|z| z.zone == 2));
    let bytes = bundle(&t);
    let back = parse_bundle(&bytes).expect("parses");
    assert_eq!((back.feeds, back.feeds4, back.feeds6), (t.feeds.clone(), t.feeds4.clone(), t.feeds6.clone()));
    let ip = |s: &str| -> std::net::IpAddr { s.parse().unwrap() };
    assert!(!eval(&t, ip("192.0.2.9"), ip("10.0.1.5"), crate::ir::Proto::Tcp(443)));
    assert!(eval(&t, ip("198.51.100.9"), ip("10.0.1.5"), crate::ir::Proto::Tcp(443)));
    // A forged feed count larger than the body: refused before allocating.
    let mut body = bytes[48..].to_vec();
    body[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut forged = bytes[..16].to_vec();
    forged.extend_from_slice(&crate::sha256::digest(&body));
    forged.extend_from_slice(&body);
    assert_eq!(parse_bundle(&forged).err(), Some(BundleError::Length));
}

#[test]
fn port_ranges_become_prefix_blocks() {
    let c =
        compile_str("zone a {\n cidrs = [10.0.0.0/8]\n scope = connected\n}\nflow a -> a on tcp/1-6, udp/1024-2047\n", &Options::default());
    let t = tables(&c.model);
    let tcp: Vec<(u16, u8)> = t.rules.iter().filter(|r| r.class == CLASS_TCP).map(|r| (r.port, r.port_bits)).collect();
    assert_eq!(tcp, [(1, 16), (2, 15), (4, 15), (6, 16)]);
    let udp: Vec<(u16, u8)> = t.rules.iter().filter(|r| r.class == CLASS_UDP).map(|r| (r.port, r.port_bits)).collect();
    assert_eq!(udp, [(1024, 6)]);
}

/// A generated policy over the maps' capacity is refused with T001, naming
/// each map and its excess.
#[test]
fn oversized_policies_are_refused() {
    let mut src = String::new();
    for i in 0..280 {
        src.push_str(&format!("zone z{i} {{\n cidrs = [10.{}.{}.0/24]\n scope = connected\n}}\n", i / 256, i % 256));
    }
    for i in 0..280 {
        for j in 0..280 {
            src.push_str(&format!("flow z{i} -> z{j} on tcp/1-65534\n"));
        }
    }
    let c = compile_str(&src, &Options::default());
    assert!(!c.has_errors());
    let t = tables(&c.model);
    let p = placement(&t.rules);
    assert!(p.ranges.len() > RULES_MAX && p.exact.len() > PORTS_MAX);
    let d = check_capacity(&c.model, &t);
    let msgs: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(d.len(), 2, "{msgs:?}");
    assert!(d.iter().all(|d| d.code == Code::T001));
    assert!(msgs[0].contains("`segc_ports`") && msgs[0].contains(&format!("{} too many", p.exact.len() - PORTS_MAX)), "{msgs:?}");
    assert!(msgs[1].contains("`segc_rules`") && msgs[1].contains(&format!("{} too many", p.ranges.len() - RULES_MAX)), "{msgs:?}");
}

#[test]
fn small_blocks_go_exact_and_large_ones_to_the_trie() {
    let c = compile_str(
        "zone a {\n cidrs = [10.0.0.0/8]\n scope = connected\n}\nzone b {\n cidrs = [10.1.0.0/16]\n scope = connected\n}\nflow a -> a on tcp/8-31\nflow a -> b on any\n",
        &Options::default(),
    );
    let p = placement(&tables(&c.model).rules);
    // tcp/8-31 is 8-15 (8 ports, exact) and 16-31 (a block of 16, ranged);
    // `any` is other exactly and the rest as whole blocks.
    assert!(p.exact.contains(&(1, 1, CLASS_TCP, 8)) && p.exact.contains(&(1, 1, CLASS_TCP, 15)));
    assert!(!p.exact.contains(&(1, 1, CLASS_TCP, 16)));
    assert!(p.ranges.iter().any(|r| (r.src_zone, r.dst_zone, r.class, r.port, r.port_bits) == (1, 1, CLASS_TCP, 16, 12)));
    assert!(p.exact.contains(&(1, 2, CLASS_OTHER, 0)));
    assert!(p.ranges.iter().any(|r| r.dst_zone == 2 && r.class == CLASS_TCP && r.port_bits == 0));
    assert!(p.ranged_pairs.contains(&(1, 1, CLASS_TCP)) && p.ranged_pairs.contains(&(1, 2, CLASS_UDP)));
}
