//! Building test frames: Ethernet, IPv4 or IPv6, and a TCP, UDP or ICMP header,
//! as a NIC would hand them to XDP.

use std::net::IpAddr;

use segc_compiler::ir::Proto;

const ETH_IPV4: [u8; 2] = [0x08, 0x00];
const ETH_IPV6: [u8; 2] = [0x86, 0xdd];

fn l4(proto: Proto, v6: bool) -> (u8, Vec<u8>) {
    match proto {
        Proto::Tcp(port) => {
            let mut h = vec![0u8; 20];
            h[0..2].copy_from_slice(&40000u16.to_be_bytes());
            h[2..4].copy_from_slice(&port.to_be_bytes());
            h[12] = 5 << 4; // data offset
            h[13] = 0x02; // SYN
            h[14..16].copy_from_slice(&64240u16.to_be_bytes());
            (6, h)
        }
        Proto::Udp(port) => {
            let mut h = vec![0u8; 8];
            h[0..2].copy_from_slice(&40000u16.to_be_bytes());
            h[2..4].copy_from_slice(&port.to_be_bytes());
            h[4..6].copy_from_slice(&8u16.to_be_bytes());
            (17, h)
        }
        Proto::Icmp(t) => {
            let mut h = vec![0u8; 8];
            h[0] = t;
            (if v6 { 58 } else { 1 }, h)
        }
        Proto::Other(n) => (n, vec![0u8; 8]),
    }
}

/// A frame from `src` to `dst`, or `None` when their families differ.
pub fn frame(src: IpAddr, dst: IpAddr, proto: Proto) -> Option<Vec<u8>> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let (p, body) = l4(proto, false);
            f.extend_from_slice(&ETH_IPV4);
            let total = 20 + body.len() as u16;
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&total.to_be_bytes());
            ip.extend_from_slice(&[0, 1, 0x40, 0, 64, p, 0, 0]); // id, DF, ttl, proto, checksum
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let sum = checksum(&ip);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            f.extend_from_slice(&ip);
            f.extend_from_slice(&body);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let (p, body) = l4(proto, true);
            f.extend_from_slice(&ETH_IPV6);
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(body.len() as u16).to_be_bytes());
            f.extend_from_slice(&[p, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
            f.extend_from_slice(&body);
        }
        _ => return None,
    }
    Some(f)
}

fn checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
