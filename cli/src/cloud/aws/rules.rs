//! Security group rules as EC2 compares and stores them, and the order in
//! which one direction of a group changes (see the parent module).

use std::collections::BTreeMap;

use crate::journal::RuleDetail;
use aws_sdk_ec2::types::{IpPermission, IpRange, Ipv6Range, PrefixListId, UserIdGroupPair};
use segc_compiler::lower::aws::RULES_PER_DIRECTION;

/// One rule as EC2 compares rules: protocol, ports, peer (`sg-…`, `pl-…` or a
/// CIDR). Two rules with the same atom are one rule to EC2.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Atom {
    pub protocol: String,
    pub from: i32,
    pub to: i32,
    pub peer: String,
}

impl Atom {
    fn families(&self) -> &'static [usize] {
        if self.peer.starts_with("sg-") || self.peer.starts_with("pl-") {
            &[0, 1]
        } else if self.peer.contains(':') {
            &[1]
        } else {
            &[0]
        }
    }

    fn ports(&self) -> String {
        match (self.protocol.as_str(), self.from, self.to) {
            ("-1", _, _) => "all".into(),
            ("icmp" | "icmpv6", -1, _) => "all".into(),
            ("icmp" | "icmpv6", t, -1) => format!("type {t}"),
            ("icmp" | "icmpv6", t, c) => format!("type {t} code {c}"),
            (_, -1, _) | (_, 0, 65535) => "all".into(),
            (_, a, b) if a == b => a.to_string(),
            (_, a, b) => format!("{a}-{b}"),
        }
    }

    fn overlaps(&self, other: &Atom) -> bool {
        self.protocol == "-1"
            || other.protocol == "-1"
            || (self.protocol == other.protocol && self.from <= other.to && other.from <= self.to)
    }
}

/// How EC2 stores a rule besides its atom: what a revocation must repeat.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    pub description: String,
    /// The account of a referenced group (another account's group).
    pub user_id: Option<String>,
    pub vpc_id: Option<String>,
}

pub(super) type Rules = BTreeMap<Atom, Stored>;

fn protocol_name(p: &str) -> String {
    match p {
        "6" => "tcp",
        "17" => "udp",
        "1" => "icmp",
        "58" => "icmpv6",
        "all" => "-1",
        other => other,
    }
    .to_string()
}

/// Every rule of a direction, one per peer, whatever its shape.
pub(super) fn flatten(perms: &[IpPermission]) -> Rules {
    let mut out = Rules::new();
    for p in perms {
        let protocol = protocol_name(p.ip_protocol().unwrap_or("-1"));
        let (from, to) = if protocol == "-1" { (-1, -1) } else { (p.from_port().unwrap_or(-1), p.to_port().unwrap_or(-1)) };
        let mut push = |peer: &str, stored: Stored| {
            out.insert(Atom { protocol: protocol.clone(), from, to, peer: peer.to_string() }, stored);
        };
        let plain = |d: Option<&str>| Stored { description: d.unwrap_or_default().to_string(), ..Stored::default() };
        for r in p.ip_ranges() {
            push(r.cidr_ip().unwrap_or_default(), plain(r.description()));
        }
        for r in p.ipv6_ranges() {
            push(r.cidr_ipv6().unwrap_or_default(), plain(r.description()));
        }
        for r in p.prefix_list_ids() {
            push(r.prefix_list_id().unwrap_or_default(), plain(r.description()));
        }
        for g in p.user_id_group_pairs() {
            let id = g.group_id().or(g.group_name()).unwrap_or_default();
            push(
                id,
                Stored {
                    description: g.description().unwrap_or_default().to_string(),
                    user_id: g.user_id().map(str::to_string),
                    vpc_id: g.vpc_id().map(str::to_string),
                },
            );
        }
    }
    out
}

pub(super) fn permission(a: &Atom, s: &Stored) -> IpPermission {
    let mut b = IpPermission::builder().ip_protocol(&a.protocol);
    if a.protocol != "-1" {
        b = b.from_port(a.from).to_port(a.to);
    }
    let d = (!s.description.is_empty()).then(|| s.description.clone());
    b = if a.peer.starts_with("sg-") {
        b.user_id_group_pairs(
            UserIdGroupPair::builder()
                .group_id(&a.peer)
                .set_user_id(s.user_id.clone())
                .set_vpc_id(s.vpc_id.clone())
                .set_description(d)
                .build(),
        )
    } else if a.peer.starts_with("pl-") {
        b.prefix_list_ids(PrefixListId::builder().prefix_list_id(&a.peer).set_description(d).build())
    } else if a.peer.contains(':') {
        b.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(&a.peer).set_description(d).build())
    } else {
        b.ip_ranges(IpRange::builder().cidr_ip(&a.peer).set_description(d).build())
    };
    b.build()
}

/// One change of the plan.
#[derive(Clone, Debug)]
pub enum Change {
    Create {
        group: String,
        zone: String,
    },
    Authorize {
        group: String,
        zone: Option<String>,
        egress: bool,
        rule: Atom,
        stored: Stored,
    },
    Revoke {
        group: String,
        zone: Option<String>,
        egress: bool,
        rule: Atom,
        stored: Stored,
    },
    /// An orphan, once empty.
    Delete {
        group: String,
        zone: Option<String>,
    },
}

/// A rule as a reviewer reads it.
pub(super) fn detail(group: &str, zone: Option<&str>, egress: bool, a: &Atom, s: &Stored) -> RuleDetail {
    let mut peer = a.peer.clone();
    if let Some(u) = &s.user_id {
        peer = format!("{peer} (account {u}{})", s.vpc_id.as_ref().map(|v| format!(", {v}")).unwrap_or_default());
    }
    RuleDetail {
        resource: group.to_string(),
        zone: zone.map(str::to_string),
        direction: if egress { "outbound" } else { "inbound" }.into(),
        access: "allow".into(),
        protocol: if a.protocol == "-1" { "all".into() } else { a.protocol.clone() },
        ports: a.ports(),
        peers: vec![peer],
        name: (!s.description.is_empty()).then(|| s.description.clone()),
        ..RuleDetail::default()
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Create { group, zone } => write!(f, "create group {group} (zone {zone})"),
            Change::Authorize { group, zone, egress, rule, stored } => {
                write!(f, "authorize {}", detail(group, zone.as_deref(), *egress, rule, stored))
            }
            Change::Revoke { group, zone, egress, rule, stored } => {
                write!(
                    f,
                    "revoke {}",
                    detail(group, zone.as_deref(), *egress, rule, &Stored { description: String::new(), ..stored.clone() })
                )
            }
            Change::Delete { group, zone } => {
                write!(f, "delete group {group}")?;
                if let Some(z) = zone {
                    write!(f, " (zone {z} left the policy)")?;
                }
                Ok(())
            }
        }
    }
}

/// Rules per address family (IPv4, IPv6): a CIDR in its family, a group or
/// prefix-list reference in both, as EC2 counts them against the quota.
fn count<'a>(rules: impl Iterator<Item = &'a Atom>) -> [usize; 2] {
    let mut n = [0, 0];
    for a in rules {
        for &f in a.families() {
            n[f] += 1;
        }
    }
    n
}

/// The changes of one direction of one group: (before every revocation of
/// the plan, after). Authorise first when old and new fit the quota
/// together; otherwise revoke old-only rules just as far as the next
/// authorisation needs, those that overlap no new rule first.
pub(super) fn order(group: &str, zone: Option<&str>, egress: bool, want: &Rules, have: &Rules) -> (Vec<Change>, Vec<Change>) {
    let adds: Vec<(&Atom, &Stored)> = want.iter().filter(|(a, _)| !have.contains_key(*a)).collect();
    let mut removes: Vec<(&Atom, &Stored)> = have.iter().filter(|(a, _)| !want.contains_key(*a)).collect();
    let authorize = |(a, s): (&Atom, &Stored)| Change::Authorize {
        group: group.into(),
        zone: zone.map(str::to_string),
        egress,
        rule: a.clone(),
        stored: s.clone(),
    };
    let revoke = |(a, s): (&Atom, &Stored)| Change::Revoke {
        group: group.into(),
        zone: zone.map(str::to_string),
        egress,
        rule: a.clone(),
        stored: s.clone(),
    };
    let mut live = count(have.keys());
    let added = count(adds.iter().map(|(a, _)| *a));
    if (0..2).all(|f| live[f] + added[f] <= RULES_PER_DIRECTION) {
        return (adds.into_iter().map(authorize).collect(), removes.into_iter().map(revoke).collect());
    }
    // Pure narrowing first: rules no new rule overlaps.
    removes.sort_by_key(|(a, _)| adds.iter().any(|(n, _)| n.overlaps(a)));
    let mut removes = removes.into_iter();
    let mut before = Vec::new();
    for add in adds {
        while add.0.families().iter().any(|&f| live[f] + 1 > RULES_PER_DIRECTION) {
            let Some(r) = removes.next() else { break };
            for &f in r.0.families() {
                live[f] -= 1;
            }
            before.push(revoke(r));
        }
        for &f in add.0.families() {
            live[f] += 1;
        }
        before.push(authorize(add));
    }
    (before, removes.map(revoke).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atom(port: i32, peer: &str) -> Atom {
        Atom { protocol: "tcp".into(), from: port, to: port, peer: peer.into() }
    }

    fn rules(ports: std::ops::Range<i32>, peer: &str) -> Rules {
        ports.map(|p| (atom(p, peer), Stored::default())).collect()
    }

    /// Replays a plan's rule changes on `have` and checks every state on the
    /// way: within old ∪ new, within the quota.
    fn replay(have: &Rules, want: &Rules, changes: &[Change]) -> Rules {
        let mut state = have.clone();
        for c in changes {
            match c {
                Change::Authorize { rule, stored, .. } => {
                    assert!(state.insert(rule.clone(), stored.clone()).is_none(), "duplicate {rule:?}")
                }
                Change::Revoke { rule, .. } => assert!(state.remove(rule).is_some(), "revoked twice {rule:?}"),
                _ => {}
            }
            assert!(state.keys().all(|a| have.contains_key(a) || want.contains_key(a)), "more open than old and new");
            let n = count(state.keys());
            assert!(n[0] <= RULES_PER_DIRECTION && n[1] <= RULES_PER_DIRECTION, "over the quota: {n:?}");
        }
        state
    }

    #[test]
    fn authorise_first_when_old_and_new_fit() {
        let (have, want) = (rules(1..11, "10.0.0.0/8"), rules(5..15, "10.0.0.0/8"));
        let (before, after) = order("g", None, false, &want, &have);
        assert!(before.iter().all(|c| matches!(c, Change::Authorize { .. })) && before.len() == 4);
        assert!(after.iter().all(|c| matches!(c, Change::Revoke { .. })) && after.len() == 4);
        let all: Vec<Change> = before.into_iter().chain(after).collect();
        assert_eq!(replay(&have, &want, &all), want);
    }

    #[test]
    fn two_fifty_rule_policies_on_one_group_never_wedge() {
        let (have, want) = (rules(1000..1050, "10.0.0.0/8"), rules(2000..2050, "10.0.0.0/8"));
        let (before, after) = order("g", None, false, &want, &have);
        let all: Vec<Change> = before.iter().cloned().chain(after).collect();
        assert_eq!(replay(&have, &want, &all), want);
        // Only as many revocations before authorisations as the quota needs:
        // ten new rules fit beside the fifty old ones; each of the other forty
        // waits for one old rule to go.
        assert!(before[..10].iter().all(|c| matches!(c, Change::Authorize { .. })));
        assert_eq!(before.iter().filter(|c| matches!(c, Change::Revoke { .. })).count(), 40);
    }

    #[test]
    fn group_references_count_in_both_families() {
        let mut have = rules(1..40, "::/0");
        have.extend(rules(1..20, "sg-1"));
        let want = rules(100..160, "sg-2");
        let (before, after) = order("g", None, true, &want, &have);
        let all: Vec<Change> = before.into_iter().chain(after).collect();
        assert_eq!(replay(&have, &want, &all), want);
    }
}
