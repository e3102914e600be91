//! `policy.bundle`: the binary form of the tables the loader reads. A
//! versioned header, a SHA-256 of the body, then the tables; every count is
//! checked against the body before anything is allocated.

use super::{FeedPrefix, RuleEntry, Tables, ZoneEntry, MAGIC, VERSION};
use crate::ir::Family;

/// The binary bundle: `MAGIC`, version, body length, SHA-256 of the body, body.
/// The body: three counts, then zone entries (16-byte address, length, 3 pad,
/// zone id), then rule entries (src, dst, class, port bits, port), all
/// little-endian except addresses, which are in network order.
pub fn bundle(t: &Tables) -> Vec<u8> {
    let mut body = Vec::new();
    for n in [t.zones4.len(), t.zones6.len(), t.rules.len()] {
        body.extend_from_slice(&(n as u32).to_le_bytes());
    }
    // Version 2: the feed counts and names come right after.
    for n in [t.feeds4.len(), t.feeds6.len(), t.feeds.len()] {
        body.extend_from_slice(&(n as u32).to_le_bytes());
    }
    for name in &t.feeds {
        body.extend_from_slice(&(name.len() as u32).to_le_bytes());
        body.extend_from_slice(name.as_bytes());
    }
    for z in t.zones4.iter().chain(&t.zones6) {
        body.extend_from_slice(&z.addr);
        body.extend_from_slice(&[z.len, 0, 0, 0]);
        body.extend_from_slice(&z.zone.to_le_bytes());
    }
    for r in &t.rules {
        body.extend_from_slice(&r.src_zone.to_le_bytes());
        body.extend_from_slice(&r.dst_zone.to_le_bytes());
        body.extend_from_slice(&[r.class, r.port_bits]);
        body.extend_from_slice(&r.port.to_le_bytes());
    }
    for f in t.feeds4.iter().chain(&t.feeds6) {
        body.extend_from_slice(&f.addr);
        body.extend_from_slice(&[f.len, 0, 0, 0]);
        body.extend_from_slice(&f.feed.to_le_bytes());
    }
    let mut out = Vec::with_capacity(body.len() + 48);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crate::sha256::digest(&body));
    out.extend_from_slice(&body);
    out
}

/// Why a bundle was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("not a segc policy bundle")]
    Magic,
    #[error("bundle version {0} is not supported (this segc reads version {VERSION})")]
    Version(u32),
    #[error("the bundle is truncated or has trailing bytes")]
    Length,
    #[error("the bundle's checksum does not match its contents")]
    Checksum,
}

/// A cursor over a bundle's body; every read is bounds-checked.
struct Reader<'a> {
    body: &'a [u8],
    off: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], BundleError> {
        let end = self.off.checked_add(n).filter(|&e| e <= self.body.len()).ok_or(BundleError::Length)?;
        let b = &self.body[self.off..end];
        self.off = end;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, BundleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A count of records of `size` bytes that must still fit in the body.
    fn count(&mut self, size: usize) -> Result<usize, BundleError> {
        let n = self.u32()? as usize;
        if n.checked_mul(size).is_none_or(|b| b > self.body.len()) {
            return Err(BundleError::Length);
        }
        Ok(n)
    }

    /// A 24-byte address record: 16 address bytes, length, 3 pad, value.
    fn addr_record(&mut self) -> Result<([u8; 16], u8, u32), BundleError> {
        let b = self.take(24)?;
        let mut addr = [0u8; 16];
        addr.copy_from_slice(&b[..16]);
        Ok((addr, b[16], u32::from_le_bytes([b[20], b[21], b[22], b[23]])))
    }
}

/// Reads a bundle back into tables (zone names and the policy name are not in it).
pub fn parse_bundle(bytes: &[u8]) -> Result<Tables, BundleError> {
    if bytes.len() < 48 || &bytes[..8] != MAGIC {
        return Err(BundleError::Magic);
    }
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let version = u32_at(bytes, 8);
    if version != VERSION && version != 1 {
        return Err(BundleError::Version(version));
    }
    let len = u32_at(bytes, 12) as usize;
    let body = &bytes[48..];
    if body.len() != len {
        return Err(BundleError::Length);
    }
    if crate::sha256::digest(body)[..] != bytes[16..48] {
        return Err(BundleError::Checksum);
    }
    let mut r = Reader { body, off: 0 };
    let (n4, n6, nr) = (r.count(24)?, r.count(24)?, r.count(12)?);
    let (mut nf4, mut nf6, mut names) = (0, 0, Vec::new());
    if version >= 2 {
        (nf4, nf6) = (r.count(24)?, r.count(24)?);
        let nn = r.count(4)?;
        for _ in 0..nn {
            let l = r.u32()? as usize;
            names.push(String::from_utf8(r.take(l)?.to_vec()).map_err(|_| BundleError::Length)?);
        }
    }
    let zone = |r: &mut Reader<'_>, fam: Family| -> Result<ZoneEntry, BundleError> {
        let (addr, len, z) = r.addr_record()?;
        let bits = match fam {
            Family::V4 => u128::from(u32::from_be_bytes([addr[0], addr[1], addr[2], addr[3]])),
            Family::V6 => u128::from_be_bytes(addr),
        };
        if len > fam.max_len() {
            return Err(BundleError::Length);
        }
        Ok(ZoneEntry { prefix: crate::ir::Prefix { family: fam, addr: bits, len }.to_string(), addr, len, zone: z })
    };
    let zones4 = (0..n4).map(|_| zone(&mut r, Family::V4)).collect::<Result<Vec<_>, _>>()?;
    let zones6 = (0..n6).map(|_| zone(&mut r, Family::V6)).collect::<Result<Vec<_>, _>>()?;
    let rules = (0..nr)
        .map(|_| {
            let b = r.take(12)?;
            Ok(RuleEntry {
                src_zone: u32_at(b, 0),
                dst_zone: u32_at(b, 4),
                class: b[8],
                port_bits: b[9],
                port: u16::from_le_bytes([b[10], b[11]]),
            })
        })
        .collect::<Result<Vec<_>, BundleError>>()?;
    let feed = |r: &mut Reader<'_>, max: u8| -> Result<FeedPrefix, BundleError> {
        let (addr, len, f) = r.addr_record()?;
        if len > max || f == 0 || f as usize > names.len() {
            return Err(BundleError::Length);
        }
        Ok(FeedPrefix { addr, len, feed: f })
    };
    let feeds4 = (0..nf4).map(|_| feed(&mut r, 32)).collect::<Result<Vec<_>, _>>()?;
    let feeds6 = (0..nf6).map(|_| feed(&mut r, 128)).collect::<Result<Vec<_>, _>>()?;
    if r.off != body.len() {
        return Err(BundleError::Length);
    }
    Ok(Tables { version, policy: None, zones: Vec::new(), zones4, zones6, rules, feeds: names, feeds4, feeds6 })
}
