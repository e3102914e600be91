//! Longest-prefix membership flattened into disjoint address ranges: for each
//! family, the sorted ranges in which every address belongs to one zone. Targets
//! whose sets cannot nest (nftables interval maps, cloud CIDR lists) use these.

use std::collections::BTreeSet;

use crate::ir::eval::Evaluator;
use crate::ir::{Family, Prefix, ZoneId};

/// An inclusive address range of one family, all of it in `zone`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Atom {
    pub family: Family,
    pub first: u128,
    pub last: u128,
    pub zone: ZoneId,
}

impl Atom {
    /// The range as the fewest prefixes that cover it exactly.
    pub fn prefixes(&self) -> Vec<Prefix> {
        range_to_prefixes(self.family, self.first, self.last)
    }
}

fn max_addr(f: Family) -> u128 {
    match f {
        Family::V4 => u128::from(u32::MAX),
        Family::V6 => u128::MAX,
    }
}

/// The fewest prefixes covering exactly `first..=last`.
pub fn range_to_prefixes(family: Family, first: u128, last: u128) -> Vec<Prefix> {
    let bits = u32::from(family.max_len());
    let mut out = Vec::new();
    let mut cur = first;
    loop {
        // The largest aligned block starting at `cur` that does not pass `last`.
        let mut size_bits = if cur == 0 { bits } else { cur.trailing_zeros().min(bits) };
        loop {
            let span = if size_bits >= 128 { u128::MAX } else { (1u128 << size_bits) - 1 };
            if cur.checked_add(span).is_some_and(|end| end <= last) {
                break;
            }
            size_bits -= 1;
        }
        out.push(Prefix { family, addr: cur, len: (bits - size_bits) as u8 });
        let span = if size_bits >= 128 { u128::MAX } else { (1u128 << size_bits) - 1 };
        match cur.checked_add(span) {
            Some(end) if end < last => cur = end + 1,
            _ => break,
        }
    }
    out
}

/// The atoms of a model, v4 then v6, each family sorted by address.
pub fn atoms(ev: &Evaluator<'_>) -> Vec<Atom> {
    let mut out: Vec<Atom> = Vec::new();
    for family in [Family::V4, Family::V6] {
        let mut bounds: BTreeSet<u128> = BTreeSet::new();
        for z in &ev.model.zones {
            for p in z.prefixes.iter().map(|p| p.prefix).filter(|p| p.family == family) {
                bounds.insert(p.addr);
                let last = crate::ir::addr::addr_bits(p.last()).1;
                if last < max_addr(family) {
                    bounds.insert(last + 1);
                }
            }
        }
        let bounds: Vec<u128> = bounds.into_iter().collect();
        for (i, &start) in bounds.iter().enumerate() {
            let end = bounds.get(i + 1).map_or(max_addr(family), |&n| n - 1);
            let ip = Prefix { family, addr: 0, len: 0 }.ip(start);
            let Some((zone, _)) = ev.zone_of(ip) else { continue };
            match out.last_mut() {
                Some(a) if a.family == family && a.zone == zone && a.last.checked_add(1) == Some(start) => a.last = end,
                _ => out.push(Atom { family, first: start, last: end, zone }),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{compile_str, Options};

    #[test]
    fn ranges_become_minimal_prefixes() {
        let p = |s: &str| Prefix::parse(s).unwrap();
        let v4 = |s: &str| u128::from(u32::from(s.parse::<std::net::Ipv4Addr>().unwrap()));
        let got: Vec<String> = range_to_prefixes(Family::V4, v4("10.0.0.0"), v4("10.0.0.255")).iter().map(|p| p.to_string()).collect();
        assert_eq!(got, ["10.0.0.0/24"]);
        let got: Vec<String> = range_to_prefixes(Family::V4, v4("10.0.0.1"), v4("10.0.0.6")).iter().map(|p| p.to_string()).collect();
        assert_eq!(got, ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]);
        assert_eq!(range_to_prefixes(Family::V4, 0, u128::from(u32::MAX)), vec![p("0.0.0.0/0")]);
        assert_eq!(range_to_prefixes(Family::V6, 0, u128::MAX), vec![p("::/0")]);
    }

    #[test]
    fn nested_zones_split_their_parent() {
        let c = compile_str(
            "zone a {\n cidrs = [10.0.0.0/8]\n scope = connected\n}\nzone b {\n cidrs = [10.1.0.0/16]\n scope = connected\n}\nflow a -> b on tcp/1\n",
            &Options::default(),
        );
        let ev = Evaluator::new(&c.model);
        let atoms = atoms(&ev);
        let shown: Vec<String> = atoms
            .iter()
            .map(|a| {
                let ps: Vec<String> = a.prefixes().iter().map(|p| p.to_string()).collect();
                format!("{}={}", c.model.zone(a.zone).name, ps.join("+"))
            })
            .collect();
        assert_eq!(
            shown,
            ["a=10.0.0.0/16", "b=10.1.0.0/16", "a=10.2.0.0/15+10.4.0.0/14+10.8.0.0/13+10.16.0.0/12+10.32.0.0/11+10.64.0.0/10+10.128.0.0/9"]
        );
    }
}
