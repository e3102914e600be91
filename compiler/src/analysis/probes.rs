//! The segmentation-test matrix (PCI DSS 11.4.5): concrete probes a tester (or
//! a scanner) sends to show that the cardholder-data environment is reachable
//! only as the policy says. For every zone paired with every cde zone, in both
//! directions: one must-allow probe per allowed service range, and must-deny
//! probes on well-known ports the policy does not allow. Addresses come from
//! the zone's `probe_hosts`, else a host address of its own prefixes that
//! is neither the first of its range nor a reserved one.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::ir::eval::Evaluator;
use crate::ir::{Family, Model, Prefix, Proto, ServiceSet, ZoneId};
use crate::lower::atoms::atoms;

#[derive(Clone, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Probe {
    pub expect: &'static str,
    pub from_zone: String,
    pub to_zone: String,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: String,
}

/// Ports scanners and attackers try first.
const COMMON: &[Proto] = &[
    Proto::Tcp(22),
    Proto::Tcp(23),
    Proto::Tcp(80),
    Proto::Tcp(443),
    Proto::Tcp(445),
    Proto::Tcp(1433),
    Proto::Tcp(3306),
    Proto::Tcp(3389),
    Proto::Tcp(5432),
    Proto::Tcp(6379),
    Proto::Udp(53),
    Proto::Udp(161),
    Proto::Icmp(8),
];

/// Ranges a tester cannot send from or to: this network, loopback,
/// link-local, multicast and reserved (IPv4); the IETF-reserved ::/8 (with
/// `::`, `::1` and mapped IPv4), discard-only, link-local and multicast (IPv6).
fn reserved(family: Family) -> &'static [(u128, u128)] {
    const V4: &[(u128, u128)] =
        &[(0x0000_0000, 0x00ff_ffff), (0x7f00_0000, 0x7fff_ffff), (0xa9fe_0000, 0xa9fe_ffff), (0xe000_0000, 0xffff_ffff)];
    const V6: &[(u128, u128)] = &[
        (0, (1 << 120) - 1),
        (0x0100 << 112, (0x0100 << 112) | ((1 << 64) - 1)),
        (0xfe80 << 112, (0xfebf << 112) | ((1 << 112) - 1)),
        (0xff00 << 112, u128::MAX),
    ];
    match family {
        Family::V4 => V4,
        Family::V6 => V6,
    }
}

/// A host address in `first..=last`: not the range's first when there is
/// room (often a network's own address), never a reserved one.
fn host_in(family: Family, first: u128, last: u128) -> Option<u128> {
    let mut a = if last > first { first + 1 } else { first };
    while let Some(&(_, end)) = reserved(family).iter().find(|(lo, hi)| (*lo..=*hi).contains(&a)) {
        // Past the range, and past the first address after it (a network's own).
        a = end.checked_add(2)?;
    }
    (a <= last).then_some(a)
}

/// The addresses probes use for each zone and family: its `probe_hosts`
/// where given, else one host address from its atoms.
fn addresses(model: &Model, ev: &Evaluator<'_>) -> BTreeMap<(ZoneId, Family), Vec<IpAddr>> {
    let mut m: BTreeMap<(ZoneId, Family), Vec<IpAddr>> = BTreeMap::new();
    for (i, z) in model.zones.iter().enumerate() {
        for h in &z.probe_hosts {
            m.entry((ZoneId(i as u32), h.prefix.family)).or_default().push(h.prefix.first());
        }
    }
    for a in atoms(ev) {
        let key = (a.zone, a.family);
        if m.contains_key(&key) {
            continue;
        }
        if let Some(addr) = host_in(a.family, a.first, a.last) {
            m.insert(key, vec![Prefix { family: a.family, addr: 0, len: 0 }.ip(addr)]);
        }
    }
    m
}

fn samples(set: &ServiceSet) -> Vec<Proto> {
    let mut v = Vec::new();
    for &(lo, _) in set.tcp.ranges() {
        v.push(Proto::Tcp(lo));
    }
    for &(lo, _) in set.udp.ranges() {
        v.push(Proto::Udp(lo));
    }
    for &(lo, _) in set.icmp.ranges() {
        v.push(Proto::Icmp(lo as u8));
    }
    if set.other {
        v.push(Proto::Other(47));
    }
    v
}

/// Every service some zone may use into `to`.
fn used_into(ev: &Evaluator<'_>, zones: usize, to: ZoneId) -> Vec<Proto> {
    let mut v: Vec<Proto> = (0..zones as u32).map(ZoneId).filter(|&z| z != to).flat_map(|z| samples(&ev.allowed(z, to))).collect();
    v.sort();
    v.dedup();
    v
}

/// The probe a scanner sends to see whether a host answers: an ICMP echo
/// request, type 8, or 128 in ICMPv6.
pub fn echo_request(family: Family) -> Proto {
    Proto::Icmp(if family == Family::V4 { 8 } else { 128 })
}

/// The matrix, sorted: every probe's expectation agrees with the evaluator.
/// For every zone and every cde zone, both ways (never a zone with itself):
/// must-allow probes, one per allowed service range; must-deny probes on the
/// ports scanners try first and, into the cde zone, on every port some other
/// zone may use there.
pub fn matrix(model: &Model) -> Vec<Probe> {
    let ev = Evaluator::new(model);
    let addrs = addresses(model, &ev);
    let n = model.zones.len();
    let mut out = Vec::new();
    let cde: Vec<ZoneId> = (0..n as u32).map(ZoneId).filter(|&z| model.zone(z).is_cde()).collect();
    for &c in &cde {
        let into_cde = used_into(&ev, n, c);
        for z in (0..n as u32).map(ZoneId).filter(|&z| z != c) {
            for (from, to) in [(z, c), (c, z)] {
                let allowed = ev.allowed(from, to);
                let protos: Vec<(Proto, bool)> = samples(&allowed).into_iter().map(|p| (p, true)).collect();
                for fam in [Family::V4, Family::V6] {
                    // The scanner's ICMP probe is an echo request: type 8, or 128 in ICMPv6.
                    let echo = |p: &Proto| if *p == Proto::Icmp(8) { echo_request(fam) } else { *p };
                    let denied = COMMON.iter().map(echo).chain(if to == c { into_cde.clone() } else { vec![] });
                    // An allowed ICMP range is probed with the echo request where it holds one.
                    let ping = echo_request(fam);
                    let mut protos: Vec<(Proto, bool)> = protos
                        .iter()
                        .map(|&(p, a)| if matches!(p, Proto::Icmp(_)) && allowed.contains(ping) { (ping, a) } else { (p, a) })
                        .collect();
                    protos.extend(denied.filter(|p| !allowed.contains(*p)).map(|p| (p, false)));
                    let (Some(srcs), Some(dsts)) = (addrs.get(&(from, fam)), addrs.get(&(to, fam))) else { continue };
                    let src = srcs[0];
                    for &dst in dsts {
                        for &(p, allow) in &protos {
                            // A deny, a more specific zone or a partial range can
                            // decide otherwise for these two addresses: the
                            // matrix only lists what the evaluator confirms.
                            if ev.verdict(src, dst, p).allow != allow {
                                continue;
                            }
                            out.push(Probe {
                                expect: if allow { "allow" } else { "deny" },
                                from_zone: model.zone(from).name.clone(),
                                to_zone: model.zone(to).name.clone(),
                                src,
                                dst,
                                proto: p.to_string(),
                            });
                        }
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Code;
    use crate::{compile_str, Options};

    const POLICY: &str = "use std.zones.internet
zone vault {
  cidrs = [10.0.9.0/24, 2001:db8:9::/64]
  scope = cde
  probe_hosts = [10.0.9.20, 2001:db8:9::20]
}
zone app {
  cidrs = [10.0.1.0/24, 2001:db8:1::/64]
  scope = connected
}
zone office {
  cidrs = [10.0.2.0/24]
  scope = connected
}
flow app -> vault on tcp/8443 {
  justification = \"payments\"
  reviewed = 2026-10-01
}
flow vault -> vault on tcp/9000 {
  justification = \"replication\"
  reviewed = 2026-10-01
}
flow internet -> app on tcp/443
";

    fn probes(src: &str) -> Vec<Probe> {
        let c = compile_str(src, &Options { today: crate::ir::Date::parse("2026-11-29") });
        assert!(!c.has_errors(), "{:?}", c.diagnostics);
        matrix(&c.model)
    }

    #[test]
    fn no_zone_probes_itself_and_no_address_is_reserved() {
        let m = probes(POLICY);
        assert!(!m.is_empty());
        assert!(m.iter().all(|p| p.from_zone != p.to_zone), "{m:?}");
        for p in &m {
            for a in [p.src, p.dst] {
                let (family, bits) = match a {
                    IpAddr::V4(v) => (Family::V4, u128::from(u32::from(v))),
                    IpAddr::V6(v) => (Family::V6, u128::from(v)),
                };
                assert!(!reserved(family).iter().any(|(lo, hi)| (*lo..=*hi).contains(&bits)), "{a} in {p:?}");
            }
        }
        // The internet's probes come from a public address, not 0.0.0.1.
        assert!(m.iter().any(|p| p.from_zone == "internet" && p.src.to_string() == "1.0.0.1"), "{m:?}");
    }

    #[test]
    fn probe_hosts_are_the_targets_and_sources() {
        let m = probes(POLICY);
        for p in &m {
            if p.to_zone == "vault" {
                assert!(["10.0.9.20", "2001:db8:9::20"].contains(&p.dst.to_string().as_str()), "{p:?}");
            }
            if p.from_zone == "vault" {
                assert!(["10.0.9.20", "2001:db8:9::20"].contains(&p.src.to_string().as_str()), "{p:?}");
            }
        }
        // Without probe_hosts: a host, not the prefix's first address.
        assert!(m.iter().any(|p| p.from_zone == "app" && p.src.to_string() == "10.0.1.1"));
    }

    #[test]
    fn must_deny_covers_the_cde_ports_other_zones_use() {
        let m = probes(POLICY);
        let has = |from: &str, expect: &str, proto: &str| {
            m.iter().any(|p| p.from_zone == from && p.to_zone == "vault" && p.expect == expect && p.proto == proto)
        };
        assert!(has("app", "allow", "tcp/8443"));
        // tcp/8443 is no scanner's favourite: it is probed because app may use it.
        assert!(has("office", "deny", "tcp/8443"), "{m:?}");
        assert!(has("internet", "deny", "tcp/8443"));
        assert!(!has("app", "deny", "tcp/8443"));
    }

    #[test]
    fn probe_hosts_outside_the_zone_or_prefixes_are_refused() {
        let src = POLICY.replace("probe_hosts = [10.0.9.20, 2001:db8:9::20]", "probe_hosts = [10.0.1.7, 10.0.9.0/28]");
        let c = compile_str(&src, &Options { today: crate::ir::Date::parse("2026-11-29") });
        let msgs: Vec<String> = c.diagnostics.iter().filter(|d| d.code == Code::E202).map(|d| d.message.clone()).collect();
        assert!(msgs.iter().any(|m| m.contains("`10.0.1.7`") && m.contains("in zone `app`")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("`10.0.9.0/28` is a prefix")), "{msgs:?}");
    }
}
