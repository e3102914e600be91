//! The segmentation-test matrix (PCI DSS 11.4.5): concrete probes a tester (or
//! a scanner) sends to show that the cardholder-data environment is reachable
//! only as the policy says. For every zone paired with every cde zone, in both
//! directions: one must-allow probe per allowed service range, and must-deny
//! probes on well-known ports the policy does not allow. Addresses come from
//! each zone's atoms, so they really belong to the zone.

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

/// One address of the zone per family, from its first atom of that family.
fn addresses(ev: &Evaluator<'_>) -> BTreeMap<(ZoneId, Family), IpAddr> {
    let mut m = BTreeMap::new();
    for a in atoms(ev) {
        // Avoid a network's first address (often not a host) when there is room.
        let addr = if a.last > a.first.saturating_add(1) { a.first + 1 } else { a.first };
        m.entry((a.zone, a.family)).or_insert_with(|| Prefix { family: a.family, addr: 0, len: 0 }.ip(addr));
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

/// The matrix, sorted: every probe's expectation agrees with the evaluator.
pub fn matrix(model: &Model) -> Vec<Probe> {
    let ev = Evaluator::new(model);
    let addrs = addresses(&ev);
    let mut out = Vec::new();
    let cde: Vec<ZoneId> = (0..model.zones.len() as u32).map(ZoneId).filter(|&z| model.zone(z).is_cde()).collect();
    for &c in &cde {
        for z in (0..model.zones.len() as u32).map(ZoneId) {
            let pairs = if z == c { vec![(z, c)] } else { vec![(z, c), (c, z)] };
            for (from, to) in pairs {
                for fam in [Family::V4, Family::V6] {
                    let (Some(&src), Some(&dst)) = (addrs.get(&(from, fam)), addrs.get(&(to, fam))) else { continue };
                    let allowed = ev.allowed(from, to);
                    let mut protos: Vec<(Proto, bool)> = samples(&allowed).into_iter().map(|p| (p, true)).collect();
                    protos.extend(COMMON.iter().filter(|p| !allowed.contains(**p)).map(|&p| (p, false)));
                    for (p, allow) in protos {
                        debug_assert_eq!(ev.verdict(src, dst, p).allow, allow);
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
    out.sort();
    out.dedup();
    out
}
