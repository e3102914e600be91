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

/// The blocked addresses of one family, as sorted disjoint ranges.
pub fn blocked_ranges(ev: &Evaluator<'_>, family: Family) -> Vec<(u128, u128)> {
    let model = ev.model;
    let mut feed: Vec<(u128, u128)> = model
        .feeds
        .iter()
        .filter(|f| f.blocked)
        .flat_map(|f| f.entries.iter())
        .filter(|e| e.prefix.family == family)
        .map(|e| bounds(&e.prefix))
        .collect();
    if feed.is_empty() {
        return Vec::new();
    }
    feed.sort_unstable();
    let feed = merge(feed);
    let untrusted: Vec<(u128, u128)> = merge(
        atoms(ev)
            .into_iter()
            .filter(|a| a.family == family && model.zone(a.zone).scope == Scope::Untrusted)
            .map(|a| (a.first, a.last))
            .collect(),
    );
    intersect(&feed, &untrusted)
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

/// The blocked addresses as the fewest prefixes, IPv4 then IPv6.
pub fn blocked_prefixes(ev: &Evaluator<'_>) -> Vec<Prefix> {
    [Family::V4, Family::V6]
        .into_iter()
        .flat_map(|f| blocked_ranges(ev, f).into_iter().flat_map(move |(a, b)| range_to_prefixes(f, a, b)))
        .collect()
}

/// Whether an address is in the sorted disjoint ranges of its family.
pub fn contains(ranges: &[(u128, u128)], addr: u128) -> bool {
    let i = ranges.partition_point(|&(_, last)| last < addr);
    ranges.get(i).is_some_and(|&(first, _)| first <= addr)
}

/// Whether a blocked feed cuts addresses of this zone itself (an untrusted
/// zone bound to a target): targets whose rules name only peers cannot say
/// that.
pub fn cuts_itself(ev: &Evaluator<'_>, zone: crate::ir::ZoneId) -> bool {
    let z = ev.model.zone(zone);
    z.scope == Scope::Untrusted
        && [Family::V4, Family::V6].into_iter().any(|f| {
            let blocked = blocked_ranges(ev, f);
            atoms(ev)
                .iter()
                .filter(|a| a.zone == zone && a.family == f)
                .any(|a| crate::analysis::feeds::overlaps(&blocked, a.first, a.last))
        })
}

/// T002 for [`cuts_itself`].
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
