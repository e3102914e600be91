//! Addresses and prefixes, IPv4 and IPv6, as integers with a length.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn max_len(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

/// A network prefix. The address is stored in the low bits of a `u128` for both
/// families, with host bits zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    pub family: Family,
    pub addr: u128,
    pub len: u8,
}

/// Why a prefix literal is not valid (E205).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrefixError {
    Malformed,
    LengthTooLong { max: u8 },
    HostBitsSet { network: Prefix },
}

impl fmt::Display for PrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrefixError::Malformed => write!(f, "not an IPv4 or IPv6 address"),
            PrefixError::LengthTooLong { max } => write!(f, "prefix length is longer than {max}"),
            PrefixError::HostBitsSet { network } => write!(f, "host bits are set (the network is `{network}`)"),
        }
    }
}

pub fn addr_bits(ip: IpAddr) -> (Family, u128) {
    match ip {
        IpAddr::V4(a) => (Family::V4, u128::from(u32::from(a))),
        IpAddr::V6(a) => (Family::V6, u128::from(a)),
    }
}

fn mask(family: Family, len: u8) -> u128 {
    if len == 0 {
        return 0;
    }
    let bits = u32::from(family.max_len());
    let host = bits - u32::from(len.min(family.max_len()));
    host_mask_all(family) & !((1u128 << host) - 1)
}

impl Prefix {
    /// Parses `10.0.9.0/24`, `10.0.9.7` (a /32), `2001:db8::/32`, `fe80::1` (a /128).
    pub fn parse(text: &str) -> Result<Prefix, PrefixError> {
        let (ip_text, len_text) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let ip: IpAddr = ip_text.parse().map_err(|_| PrefixError::Malformed)?;
        let (family, addr) = addr_bits(ip);
        let max = family.max_len();
        let len = match len_text {
            None => max,
            Some(l) => {
                if l.is_empty() || l.len() > 3 || !l.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(PrefixError::Malformed);
                }
                let n: u16 = l.parse().map_err(|_| PrefixError::Malformed)?;
                if n > u16::from(max) {
                    return Err(PrefixError::LengthTooLong { max });
                }
                n as u8
            }
        };
        let network = Prefix { family, addr: addr & mask(family, len), len };
        if network.addr != addr {
            return Err(PrefixError::HostBitsSet { network });
        }
        Ok(network)
    }

    pub fn host(ip: IpAddr) -> Prefix {
        let (family, addr) = addr_bits(ip);
        Prefix { family, addr, len: family.max_len() }
    }

    pub fn contains_addr(&self, family: Family, addr: u128) -> bool {
        self.family == family && addr & mask(family, self.len) == self.addr
    }

    /// Whether every address of `other` is in `self`.
    pub fn covers(&self, other: &Prefix) -> bool {
        self.family == other.family && self.len <= other.len && self.contains_addr(other.family, other.addr)
    }

    pub fn overlaps(&self, other: &Prefix) -> bool {
        self.covers(other) || other.covers(self)
    }

    /// The first address of the prefix.
    pub fn first(&self) -> IpAddr {
        self.ip(self.addr)
    }

    /// The last address of the prefix.
    pub fn last(&self) -> IpAddr {
        self.ip(self.addr | (!mask(self.family, self.len) & host_mask_all(self.family)))
    }

    pub fn ip(&self, addr: u128) -> IpAddr {
        match self.family {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(addr as u32)),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(addr)),
        }
    }

    /// The mask of the prefix's network bits, for callers that bucket by length.
    pub fn mask_of(family: Family, len: u8) -> u128 {
        mask(family, len)
    }
}

fn host_mask_all(family: Family) -> u128 {
    match family {
        Family::V4 => u128::from(u32::MAX),
        Family::V6 => u128::MAX,
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.family == Family::V6 {
            return write!(f, "{}/{}", self.first(), self.len);
        }
        // An IPv4 prefix in one write: a build formats hundreds of thousands.
        let mut buf = [0u8; 18];
        let mut n = 0;
        for (i, octet) in (self.addr as u32).to_be_bytes().into_iter().enumerate() {
            if i > 0 {
                buf[n] = b'.';
                n += 1;
            }
            push_decimal(&mut buf, &mut n, octet);
        }
        buf[n] = b'/';
        n += 1;
        push_decimal(&mut buf, &mut n, self.len);
        f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
    }
}

/// `v` in decimal at `buf[*n..]`.
fn push_decimal(buf: &mut [u8], n: &mut usize, v: u8) {
    for (digit, shown) in [(v / 100, v >= 100), (v / 10 % 10, v >= 10), (v % 10, true)] {
        if shown {
            buf[*n] = b'0' + digit;
            *n += 1;
        }
    }
}

impl Serialize for Prefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates() {
        assert_eq!(Prefix::parse("10.0.9.0/24").unwrap().to_string(), "10.0.9.0/24");
        assert_eq!(Prefix::parse("10.0.9.7").unwrap().len, 32);
        assert_eq!(Prefix::parse("::/0").unwrap().to_string(), "::/0");
        assert_eq!(Prefix::parse("0.0.0.0/0").unwrap().len, 0);
        assert_eq!(Prefix::parse("2001:db8::/32").unwrap().to_string(), "2001:db8::/32");
        assert_eq!(Prefix::parse("fe80::1").unwrap().len, 128);
        assert!(matches!(Prefix::parse("10.0.9.1/24"), Err(PrefixError::HostBitsSet { .. })));
        assert!(matches!(Prefix::parse("10.0.9.0/33"), Err(PrefixError::LengthTooLong { max: 32 })));
        assert!(matches!(Prefix::parse("2001:db8::/129"), Err(PrefixError::LengthTooLong { max: 128 })));
        assert_eq!(Prefix::parse("10.0.9/24"), Err(PrefixError::Malformed));
        assert_eq!(Prefix::parse("300.0.0.0/8"), Err(PrefixError::Malformed));
        assert_eq!(Prefix::parse("10.0.0.0/"), Err(PrefixError::Malformed));
    }

    proptest::proptest! {
        /// The IPv4 fast path writes what `Ipv4Addr`'s own formatting does.
        #[test]
        fn an_ipv4_prefix_prints_as_std_prints_it(a: u32, len in 0u8..=32) {
            let p = Prefix { family: Family::V4, addr: u128::from(a) & mask(Family::V4, len), len };
            proptest::prop_assert_eq!(p.to_string(), format!("{}/{len}", Ipv4Addr::from(a & (mask(Family::V4, len) as u32))));
            proptest::prop_assert_eq!(Prefix::parse(&p.to_string()), Ok(p));
        }
    }

    #[test]
    fn containment() {
        let p = Prefix::parse("10.0.0.0/8").unwrap();
        let q = Prefix::parse("10.1.0.0/16").unwrap();
        assert!(p.covers(&q) && !q.covers(&p) && p.overlaps(&q));
        assert_eq!(p.last().to_string(), "10.255.255.255");
        let all6 = Prefix::parse("::/0").unwrap();
        assert_eq!(all6.last().to_string(), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        assert!(!all6.covers(&p));
    }
}
