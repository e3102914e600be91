//! The report's segmentation-test probe section (PCI DSS 11.4.5). The matrix
//! pairs every zone with every cde zone, both ways, with a dozen or more
//! probes a pair: a few hundred pairs make a table someone can work through,
//! a 1000-zone policy makes millions of rows (a 765 MB report, before). Up to
//! [`LISTED_PAIRS`] pairs the section lists every probe; past that it
//! summarises each cde zone from the allowed pairs alone, and `segc probes`
//! gives the probes.

use segc_compiler::ir::{Model, ZoneId};

/// Zone pairs (with a cde zone, either way) up to which every probe is listed.
pub const LISTED_PAIRS: usize = 500;

/// The section's header and rows; a sentence for the introduction when the
/// section is a summary.
pub fn section(m: &Model, intro: &mut Vec<String>) -> (Vec<String>, Vec<Vec<String>>) {
    let h = |v: &[&str]| v.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
    let zones = m.zones.len();
    let cde: Vec<ZoneId> = (0..zones as u32).map(ZoneId).filter(|&z| m.zone(z).is_cde()).collect();
    let pairs = cde.len() * zones.saturating_sub(1) * 2;
    if pairs <= LISTED_PAIRS {
        let rows = segc_compiler::analysis::probes::matrix(m)
            .into_iter()
            .map(|p| vec![format!("must {}", p.expect), p.from_zone, p.to_zone, p.src.to_string(), p.dst.to_string(), p.proto])
            .collect();
        return (h(&["expect", "from", "to", "source", "destination", "service"]), rows);
    }
    // Per cde zone: the zones it may be reached from and may reach (their
    // probes must be allowed on those services and denied on the rest), and
    // the zones with no traffic either way (every probe must be denied).
    let mut into = vec![0usize; zones];
    let mut out_of = vec![0usize; zones];
    let mut either = vec![std::collections::BTreeSet::new(); zones];
    for (from, to, _) in m.allowed_pairs() {
        if from == to {
            continue;
        }
        if m.zone(*to).is_cde() {
            into[to.0 as usize] += 1;
            either[to.0 as usize].insert(*from);
        }
        if m.zone(*from).is_cde() {
            out_of[from.0 as usize] += 1;
            either[from.0 as usize].insert(*to);
        }
    }
    let rows = cde
        .iter()
        .map(|&c| {
            let i = c.0 as usize;
            let isolated = zones - 1 - either[i].len();
            vec![m.zone(c).name.clone(), into[i].to_string(), out_of[i].to_string(), isolated.to_string()]
        })
        .collect();
    intro.push(format!(
        "The segmentation-test matrix pairs each of the {zones} zones with each of the {} cde zones, both ways: {pairs} pairs, too many \
         to list here. The probe section summarises each cde zone; `segc probes PATH` lists every probe and `segc probes --run` sends them.",
        cde.len()
    ));
    (h(&["cde zone", "zones that may reach it", "zones it may reach", "zones with no traffic either way (all probes denied)"]), rows)
}
