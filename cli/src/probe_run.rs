//! `segc probes --run --from ZONE`: the zone's probes sent from this host
//! (PCI DSS 11.4.5 evidence). TCP: a connect (open when it completes, closed
//! on a reset, filtered when nothing comes back in time). UDP: a datagram
//! (open on a reply, closed on an ICMP port unreachable, filtered on
//! silence, which is also what a silent open service looks like). ICMP: an
//! echo request (type 8, ICMPv6 128) on a raw socket; other ICMP types and other IP
//! protocols cannot be elicited and are skipped. A must-allow probe holds
//! when the target answered at all, a must-deny probe only when nothing came
//! back. One probe at a time, at most `rate` a second.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use segc_compiler::analysis::probes::{echo_request, Probe};
use segc_compiler::ir::addr::addr_bits;
use segc_compiler::ir::Proto;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Observed {
    Open,
    Closed,
    Filtered,
    Skipped,
}

#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    #[serde(flatten)]
    pub probe: Probe,
    pub observed: Observed,
    /// `None` for a skipped probe.
    pub as_expected: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Runs the probes, one at a time, at most `rate` a second.
pub fn run(probes: &[Probe], timeout: Duration, rate: u32) -> Vec<Outcome> {
    let gap = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut out = Vec::new();
    for p in probes {
        let started = Instant::now();
        // Silence is tried twice: a lost first packet (a neighbour not yet
        // resolved) must not read as a filter.
        let attempt = || match Proto::parse(&p.proto) {
            Ok(Proto::Tcp(port)) => (tcp(p.dst, port, timeout), None),
            Ok(Proto::Udp(port)) => (udp(p.dst, port, timeout), None),
            Ok(icmp @ Proto::Icmp(_)) if icmp == echo_request(addr_bits(p.dst).0) => match echo(p.dst, timeout) {
                Ok(o) => (o, None),
                Err(e) => (Observed::Skipped, Some(format!("cannot send an echo request: {e}"))),
            },
            Ok(Proto::Icmp(t)) => (Observed::Skipped, Some(format!("ICMP type {t} cannot be elicited"))),
            _ => (Observed::Skipped, Some(format!("{} cannot be sent from here", p.proto))),
        };
        let (observed, note) = match attempt() {
            (Observed::Filtered, _) => attempt(),
            first => first,
        };
        let as_expected = match (observed, p.expect) {
            (Observed::Skipped, _) => None,
            (Observed::Filtered, expect) => Some(expect == "deny"),
            (_, expect) => Some(expect == "allow"),
        };
        out.push(Outcome { probe: p.clone(), observed, as_expected, note });
        if let Some(rest) = gap.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    out
}

fn tcp(dst: IpAddr, port: u16, timeout: Duration) -> Observed {
    match TcpStream::connect_timeout(&SocketAddr::new(dst, port), timeout) {
        Ok(_) => Observed::Open,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Observed::Closed,
        Err(_) => Observed::Filtered,
    }
}

fn udp(dst: IpAddr, port: u16, timeout: Duration) -> Observed {
    let bind: SocketAddr = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("a socket address");
    let Ok(s) = UdpSocket::bind(bind) else { return Observed::Filtered };
    if s.connect(SocketAddr::new(dst, port)).is_err() || s.set_read_timeout(Some(timeout)).is_err() {
        return Observed::Filtered;
    }
    if let Err(e) = s.send(b"segc probe") {
        return if e.kind() == ErrorKind::ConnectionRefused { Observed::Closed } else { Observed::Filtered };
    }
    let mut buf = [0u8; 512];
    match s.recv(&mut buf) {
        Ok(_) => Observed::Open,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Observed::Closed,
        Err(_) => Observed::Filtered,
    }
}

/// An ICMP echo request on a raw socket (root), and its reply.
fn echo(dst: IpAddr, timeout: Duration) -> std::io::Result<Observed> {
    let (family, proto, request) = match dst {
        IpAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_ICMP, 8u8),
        IpAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_ICMPV6, 128u8),
    };
    // SAFETY: plain socket(2); the descriptor is owned below.
    let fd = unsafe { libc::socket(family, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let ident = (std::process::id() & 0xffff) as u16;
    let mut pkt = [request, 0, 0, 0, (ident >> 8) as u8, ident as u8, 0, 1, b's', b'e', b'g', b'c'];
    if dst.is_ipv4() {
        let sum = checksum(&pkt);
        pkt[2..4].copy_from_slice(&sum.to_be_bytes());
    } // The kernel fills in the ICMPv6 checksum.
    let (addr, len) = sockaddr(dst);
    // SAFETY: pkt and addr are valid for the lengths given.
    let sent = unsafe { libc::sendto(fd.as_raw_fd(), pkt.as_ptr().cast(), pkt.len(), 0, std::ptr::addr_of!(addr).cast(), len) };
    if sent < 0 {
        let e = std::io::Error::last_os_error();
        // A local filter or route refusing the packet: nothing answered.
        return if e.kind() == ErrorKind::PermissionDenied { Ok(Observed::Filtered) } else { Err(e) };
    }
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().clamp(1, i32::MAX as u128) as i32) };
        if n <= 0 {
            break;
        }
        // SAFETY: buf is valid for its length.
        let got = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if got <= 0 {
            continue;
        }
        let b = &buf[..got as usize];
        // IPv4 raw sockets deliver the IP header; IPv6 ones do not.
        let icmp = if dst.is_ipv4() { b.get(usize::from(b[0] & 0x0f) * 4..).unwrap_or(&[]) } else { b };
        let from_dst = !dst.is_ipv4() || b.get(12..16) == Some(&octets(dst)[..]);
        let reply = if dst.is_ipv4() { 0 } else { 129 };
        if from_dst && icmp.len() >= 8 && icmp[0] == reply && icmp[4..6] == [(ident >> 8) as u8, ident as u8] {
            return Ok(Observed::Open);
        }
    }
    Ok(Observed::Filtered)
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn sockaddr(ip: IpAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match ip {
        IpAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in.
            let sin = unsafe { &mut *std::ptr::addr_of_mut!(ss).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr = libc::in_addr { s_addr: u32::from_ne_bytes(a.octets()) };
            (ss, std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        IpAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *std::ptr::addr_of_mut!(ss).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr = libc::in6_addr { s6_addr: a.octets() };
            (ss, std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}
