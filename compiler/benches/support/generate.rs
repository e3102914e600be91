//! The generated policies the benchmarks use (`check` here, and
//! `cargo xtask bench-fleet` includes this file for its 100k-flow bundle).

/// A deterministic policy: `zones` zones with a v4 /24 and a v6 /64 each (every
/// tenth zone cde, every fiftieth untrusted), `flows` flows on pseudo-random
/// pairs and ports, one deny per twenty flows.
pub fn generate(zones: usize, flows: usize) -> String {
    let mut s = String::with_capacity(flows * 120);
    s.push_str("policy \"bench\" {\n  review_interval = 180d\n}\n");
    for i in 0..zones {
        let scope = if i % 10 == 0 {
            "cde"
        } else if i % 50 == 1 {
            "untrusted"
        } else {
            "connected"
        };
        s.push_str(&format!("zone z{i} {{\n  cidrs = [10.{}.{}.0/24, 2001:db8:{:x}::/64]\n  scope = {scope}\n}}\n", i / 256, i % 256, i));
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for f in 0..flows {
        let (a, b) = ((next() % zones as u64) as usize, (next() % zones as u64) as usize);
        // Keep the PCI checks quiet on purpose-built lines: untrusted never into cde.
        let (a, b) = if a % 50 == 1 && b % 10 == 0 { (b, (b + 2) % zones) } else { (a, b) };
        let port = 1000 + next() % 20_000;
        let svc = if next() % 4 == 0 { format!("tcp/{port}-{}", port + next() % 100) } else { format!("tcp/{port}") };
        let cde = a % 10 == 0 || b % 10 == 0;
        if cde {
            s.push_str(&format!("flow z{a} -> z{b} on {svc} {{\n  justification = \"generated {f}\"\n  reviewed = 2026-10-01\n}}\n"));
        } else {
            s.push_str(&format!("flow z{a} -> z{b} on {svc}\n"));
        }
        if f % 20 == 0 {
            s.push_str(&format!("deny z{a} -> z{b} on tcp/{}\n", port + 1));
        }
    }
    s
}
