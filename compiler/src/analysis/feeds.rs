//! Feeds against zones: W505 for each blocked feed that overlaps a zone whose
//! scope is not `untrusted` (the zone wins there: a feed never cuts your own
//! networks, so those addresses stay as the flows say).

use crate::diag::{Code, Diagnostic};
use crate::ir::feed::{Feed, FeedEntry};
use crate::ir::{Family, Model, Prefix, Scope};
use crate::source::SourceMap;

/// The entries of a feed merged into disjoint sorted ranges, one family.
pub fn ranges(entries: &[FeedEntry], family: Family) -> Vec<(u128, u128)> {
    let mut r: Vec<(u128, u128)> = entries.iter().filter(|e| e.prefix.family == family).map(|e| bounds(&e.prefix)).collect();
    r.sort_unstable();
    merge(r)
}

/// Sorted ranges with touching or overlapping neighbours joined.
pub fn merge(sorted: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(sorted.len());
    for (a, b) in sorted {
        match out.last_mut() {
            Some((_, last)) if a <= last.saturating_add(1) => *last = (*last).max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// A prefix as an inclusive range of its family's addresses.
pub fn bounds(p: &Prefix) -> (u128, u128) {
    (p.addr, crate::ir::addr::addr_bits(p.last()).1)
}

/// Whether `(a, b)` overlaps any of the sorted disjoint `ranges`.
pub fn overlaps(ranges: &[(u128, u128)], a: u128, b: u128) -> bool {
    let i = ranges.partition_point(|&(_, last)| last < a);
    ranges.get(i).is_some_and(|&(first, _)| first <= b)
}

pub fn run(model: &Model, sources: &SourceMap, diags: &mut Vec<Diagnostic>) {
    for feed in model.feeds.iter().filter(|f| f.blocked) {
        let merged = [ranges(&feed.entries, Family::V4), ranges(&feed.entries, Family::V6)];
        for zone in model.zones.iter().filter(|z| z.scope != Scope::Untrusted) {
            let hit = zone.prefixes.iter().find(|p| {
                let (a, b) = bounds(&p.prefix);
                overlaps(&merged[p.prefix.family as usize], a, b)
            });
            let Some(zp) = hit else { continue };
            diags.push(overlap(feed, zone, zp, sources));
        }
    }
}

fn overlap(feed: &Feed, zone: &crate::ir::Zone, zp: &crate::ir::ZonePrefix, sources: &SourceMap) -> Diagnostic {
    let example = feed.entries.iter().find(|e| e.prefix.overlaps(&zp.prefix));
    let at = example.map(|e| format!(" ({} at {}:{})", e.prefix, feed.location, e.line)).unwrap_or_default();
    let mut d = Diagnostic::new(
        Code::W505,
        zp.span,
        format!(
            "blocked feed `{}` overlaps zone `{}` (scope {}) at {}{at}: the zone wins, its addresses are not blocked",
            feed.name,
            zone.name,
            zone.scope.as_str(),
            zp.prefix
        ),
    )
    .with_label(zp.span, format!("in feed `{}`", feed.name));
    if let Some(b) = feed.block_span.filter(|b| !sources.get(b.file).std) {
        d = d.with_label(b, "blocked here");
    }
    d.with_help("a feed never cuts your own networks; if these addresses are hostile, give them a zone of scope `untrusted`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_overlap() {
        let m = merge(vec![(0, 9), (5, 20), (21, 30), (40, 50)]);
        assert_eq!(m, [(0, 30), (40, 50)]);
        assert!(overlaps(&m, 30, 35) && overlaps(&m, 35, 40) && !overlaps(&m, 31, 39) && !overlaps(&m, 51, 99));
    }
}
