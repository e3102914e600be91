//! Frames as an attacker would build them: Ethernet with any EtherType and
//! VLAN stack, IPv4 with options and fragment bits, IPv6 with extension
//! header chains, TCP with any flags, UDP, ICMP with a quoted packet.
#![allow(dead_code, reason = "each test binary uses part of it")]

use std::net::IpAddr;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;

/// The transport part of a packet.
#[derive(Clone, Debug)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP or ICMPv6: type, code, and the rest of the header (identifier and
    /// sequence for echoes), then a body (the quoted packet of an error).
    Icmp {
        ty: u8,
        code: u8,
        rest: [u8; 4],
        body: Vec<u8>,
    },
    Other {
        proto: u8,
    },
}

impl L4 {
    fn proto(&self, v6: bool) -> u8 {
        match self {
            L4::Tcp { .. } => 6,
            L4::Udp { .. } => 17,
            L4::Icmp { .. } => {
                if v6 {
                    58
                } else {
                    1
                }
            }
            L4::Other { proto } => *proto,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            L4::Tcp { sport, dport, flags } => {
                let mut h = vec![0u8; 20];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                h[12] = 5 << 4;
                h[13] = *flags;
                h[14..16].copy_from_slice(&64240u16.to_be_bytes());
                h
            }
            L4::Udp { sport, dport } => {
                let mut h = vec![0u8; 8];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                h[4..6].copy_from_slice(&8u16.to_be_bytes());
                h
            }
            L4::Icmp { ty, code, rest, body } => {
                let mut h = vec![*ty, *code, 0, 0];
                h.extend_from_slice(rest);
                h.extend_from_slice(body);
                h
            }
            L4::Other { .. } => vec![0u8; 8],
        }
    }
}

/// An echo request or reply with an identifier.
pub fn echo(v6: bool, reply: bool, id: u16) -> L4 {
    let ty = match (v6, reply) {
        (false, false) => 8,
        (false, true) => 0,
        (true, false) => 128,
        (true, true) => 129,
    };
    let mut rest = [0u8; 4];
    rest[0..2].copy_from_slice(&id.to_be_bytes());
    rest[3] = 1;
    L4::Icmp { ty, code: 0, rest, body: vec![0u8; 8] }
}

/// How the IP header is built.
#[derive(Clone, Debug, Default)]
pub struct Ip {
    /// IPv4 options (padded to a multiple of 4).
    pub options: Vec<u8>,
    /// IPv4: the flags and fragment offset field (0x2000 MF, low 13 bits offset).
    pub frag: u16,
    /// IPv6: extension headers before the transport, by next-header number
    /// (0 hop-by-hop, 43 routing, 60 destination options, 44 fragment).
    pub ext: Vec<u8>,
    pub ttl: Option<u8>,
}

/// The IP packet alone (no link layer), as an L3 link carries it.
pub fn ip_packet(src: IpAddr, dst: IpAddr, l4: &L4, ip: &Ip) -> Vec<u8> {
    let body = l4.bytes();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut opts = ip.options.clone();
            while opts.len() % 4 != 0 {
                opts.push(0);
            }
            let ihl = 5 + opts.len() / 4;
            let total = (ihl * 4 + body.len()) as u16;
            let mut h = vec![0x40 | ihl as u8, 0];
            h.extend_from_slice(&total.to_be_bytes());
            h.extend_from_slice(&[0, 1]);
            h.extend_from_slice(&ip.frag.to_be_bytes());
            h.extend_from_slice(&[ip.ttl.unwrap_or(64), l4.proto(false), 0, 0]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            h.extend_from_slice(&opts);
            h.extend_from_slice(&body);
            h
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut ext = Vec::new();
            let next_of = |i: usize| if i + 1 < ip.ext.len() { ip.ext[i + 1] } else { l4.proto(true) };
            for i in 0..ip.ext.len() {
                // Eight bytes each: next header, length 0, padding.
                ext.extend_from_slice(&[next_of(i), 0, 0, 0, 0, 0, 0, 0]);
            }
            let first = ip.ext.first().copied().unwrap_or(l4.proto(true));
            let len = (ext.len() + body.len()) as u16;
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&len.to_be_bytes());
            h.extend_from_slice(&[first, ip.ttl.unwrap_or(64)]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            h.extend_from_slice(&ext);
            h.extend_from_slice(&body);
            h
        }
        _ => panic!("mixed address families"),
    }
}

/// An Ethernet frame around `payload` with VLAN tags (TPIDs) before the EtherType.
pub fn ether(ethertype: u16, vlans: &[u16], payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    for &tpid in vlans {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&[0, 7]);
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A whole Ethernet frame for an IP packet.
pub fn frame(src: IpAddr, dst: IpAddr, l4: &L4) -> Vec<u8> {
    framed(src, dst, l4, &Ip::default(), &[])
}

pub fn framed(src: IpAddr, dst: IpAddr, l4: &L4, ip: &Ip, vlans: &[u16]) -> Vec<u8> {
    let ty = if src.is_ipv4() { 0x0800 } else { 0x86dd };
    ether(ty, vlans, &ip_packet(src, dst, l4, ip))
}

/// An ICMP error (destination unreachable) from `from` to `to`, quoting the
/// first bytes of `quoted` (an IP packet).
pub fn icmp_error(from: IpAddr, to: IpAddr, quoted: &[u8]) -> Vec<u8> {
    let v6 = from.is_ipv6();
    let keep = if v6 { 48 } else { 28 }.min(quoted.len());
    let l4 = L4::Icmp { ty: if v6 { 1 } else { 3 }, code: 3, rest: [0; 4], body: quoted[..keep].to_vec() };
    frame(from, to, &l4)
}
