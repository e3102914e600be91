//! What the blocked feeds cut, for targets that list addresses (nftables
//! sets, NSG and firewall rules, Windows rules): the feeds' prefixes inside
//! the policy's untrusted zones, as disjoint ranges and as the fewest
//! prefixes. The eBPF runtime needs none of this: it looks the feed up only
//! for addresses whose zone is untrusted, so its feed tries are the feeds
//! as published and can be swapped alone.

use super::atoms::{atoms, range_to_prefixes};
use crate::analysis::feeds::{bounds, merge};
use crate::ir::eval::Evaluator;
use crate::ir::{Family, Model, Prefix, Scope};

/// What the blocked feeds cut, computed once per lowering.
pub struct Blocked {
    /// IPv4 and IPv6, each sorted disjoint ranges.
    pub v4: Vec<(u128, u128)>,
    pub v6: Vec<(u128, u128)>,
    /// The model's atoms (empty when nothing is blocked).
    atoms: Vec<super::atoms::Atom>,
}

impl Blocked {
    pub fn of(ev: &Evaluator<'_>) -> Blocked {
        let model = ev.model;
        let feed = |family: Family| -> Vec<(u128, u128)> {
            let mut r: Vec<(u128, u128)> = model
                .feeds
                .iter()
                .filter(|f| f.blocked)
                .flat_map(|f| f.entries.iter())
                .filter(|e| e.prefix.family == family)
                .map(|e| bounds(&e.prefix))
                .collect();
            r.sort_unstable();
            merge(r)
        };
        let (f4, f6) = (feed(Family::V4), feed(Family::V6));
        if f4.is_empty() && f6.is_empty() {
            return Blocked { v4: Vec::new(), v6: Vec::new(), atoms: Vec::new() };
        }
        let atoms = atoms(ev);
        let untrusted = |family: Family| -> Vec<(u128, u128)> {
            merge(
                atoms
                    .iter()
                    .filter(|a| a.family == family && model.zone(a.zone).scope == Scope::Untrusted)
                    .map(|a| (a.first, a.last))
                    .collect(),
            )
        };
        Blocked { v4: intersect(&f4, &untrusted(Family::V4)), v6: intersect(&f6, &untrusted(Family::V6)), atoms }
    }

    pub fn ranges(&self, family: Family) -> &[(u128, u128)] {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// The blocked addresses as the fewest prefixes, IPv4 then IPv6.
    pub fn prefixes(&self) -> Vec<Prefix> {
        [Family::V4, Family::V6]
            .into_iter()
            .flat_map(|f| self.ranges(f).iter().flat_map(move |&(a, b)| range_to_prefixes(f, a, b)))
            .collect()
    }

    /// Whether a blocked feed cuts addresses of this zone itself (an
    /// untrusted zone bound to a target): targets whose rules name only
    /// peers cannot say that.
    pub fn cuts(&self, zone: crate::ir::ZoneId) -> bool {
        self.atoms.iter().filter(|a| a.zone == zone).any(|a| crate::analysis::feeds::overlaps(self.ranges(a.family), a.first, a.last))
    }
}

/// The intersection of two sorted disjoint range lists.
pub fn intersect(a: &[(u128, u128)], b: &[(u128, u128)]) -> Vec<(u128, u128)> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        let lo = a[i].0.max(b[j].0);
        let hi = a[i].1.min(b[j].1);
        if lo <= hi {
            out.push((lo, hi));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Whether an address is in the sorted disjoint ranges of its family.
pub fn contains(ranges: &[(u128, u128)], addr: u128) -> bool {
    let i = ranges.partition_point(|&(_, last)| last < addr);
    ranges.get(i).is_some_and(|&(first, _)| first <= addr)
}

/// T002 for [`Blocked::cuts`].
pub fn self_cut(model: &Model, target: &str, zone: crate::ir::ZoneId) -> crate::diag::Diagnostic {
    let z = model.zone(zone);
    crate::diag::Diagnostic::new(
        crate::diag::Code::T002,
        z.span,
        format!("{target} cannot block feed addresses inside zone `{}`: its rules name peers, not the zone's own members", z.name),
    )
    .with_label(z.span, "an untrusted zone a blocked feed overlaps")
    .with_help("enforce the feed for this zone on its hosts (bpf, nft), or do not bind it to this target")
}

/// The names of the blocked feeds, for descriptions and comments.
pub fn blocked_names(model: &Model) -> Vec<&str> {
    model.feeds.iter().filter(|f| f.blocked).map(|f| f.name.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intersections_of_ranges() {
        assert_eq!(intersect(&[(0, 10), (20, 30)], &[(5, 25)]), [(5, 10), (20, 25)]);
        assert_eq!(intersect(&[(0, 10)], &[(11, 20)]), []);
        assert!(contains(&[(5, 10), (20, 25)], 20) && !contains(&[(5, 10), (20, 25)], 11));
    }
}
