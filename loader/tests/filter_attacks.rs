//! The filter against an attacker, through BPF_PROG_TEST_RUN on the real
//! program: fragments, VLAN stacks, IPv6 extension chains, truncated and
//! malformed headers, IP options, TCP flag combinations, ICMP errors, echo
//! identifiers, reversed tuples, swaps that remove a flow, expiry, non-IP
//! frames. Each frame gets the verdict it must get.

mod common;
mod craft;

use std::net::IpAddr;

use craft::*;
use segc_compiler::lower::bpf;
use segc_compiler::{compile_str, Options};
use segc_loader::{Filter, XDP_DROP, XDP_PASS};
use segc_runtime_bpf as rt;

const POLICY: &str = "zone client {\n cidrs = [10.1.0.0/24, fd01::/64]\n scope = connected\n}\n\
zone server {\n cidrs = [10.2.0.0/24, fd02::/64]\n scope = connected\n}\n\
flow client -> server on tcp/443, udp/53, icmp/8, icmp/128\n";

/// The same zones, without tcp/443.
const NARROWER: &str = "zone client {\n cidrs = [10.1.0.0/24, fd01::/64]\n scope = connected\n}\n\
zone server {\n cidrs = [10.2.0.0/24, fd02::/64]\n scope = connected\n}\n\
flow client -> server on udp/53, icmp/8, icmp/128\n";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

struct Bench {
    f: Filter,
}

impl Bench {
    fn new(policy: &str) -> Option<Bench> {
        if !common::require_root("attacks") {
            return None;
        }
        let mut f = Filter::load_for_test_runs().expect("the object loads");
        f.install(&tables(policy)).expect("install");
        Some(Bench { f })
    }

    fn run(&self, frame: &[u8]) -> u32 {
        self.f.run_xdp(rt::names::XDP, frame, 1).expect("test run").0
    }

    fn pass(&self, frame: &[u8], what: &str) {
        assert_eq!(self.run(frame), XDP_PASS, "must pass: {what}");
    }

    fn drop(&self, frame: &[u8], what: &str) {
        assert_eq!(self.run(frame), XDP_DROP, "must drop: {what}");
    }
}

fn tables(policy: &str) -> bpf::Tables {
    let c = compile_str(policy, &Options::default());
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    bpf::tables(&c.model)
}

fn tcp(sport: u16, dport: u16, flags: u8) -> L4 {
    L4::Tcp { sport, dport, flags }
}

#[test]
fn fragments_drop_first_later_and_overlapping() {
    let Some(b) = Bench::new(POLICY) else { return };
    let (c, s) = (ip("10.1.0.5"), ip("10.2.0.9"));
    let syn = tcp(40000, 443, SYN);
    b.pass(&frame(c, s, &syn), "the unfragmented packet");
    for (frag, what) in [(0x2000, "a first fragment (MF)"), (13, "a later fragment"), (0x2000 | 1, "an overlapping fragment")] {
        b.drop(&framed(c, s, &syn, &Ip { frag, ..Ip::default() }, &[]), what);
    }
    b.drop(&framed(ip("fd01::5"), ip("fd02::9"), &syn, &Ip { ext: vec![44], ..Ip::default() }, &[]), "an IPv6 fragment header");
}

#[test]
fn vlan_stacks_are_judged_up_to_two_tags() {
    let Some(b) = Bench::new(POLICY) else { return };
    let (c, s) = (ip("10.1.0.5"), ip("10.2.0.9"));
    let (ok, bad) = (tcp(40000, 443, SYN), tcp(40000, 22, SYN));
    b.pass(&framed(c, s, &ok, &Ip::default(), &[0x8100]), "one VLAN tag, allowed");
    b.drop(&framed(c, s, &bad, &Ip::default(), &[0x8100]), "one VLAN tag, denied");
    b.pass(&framed(c, s, &ok, &Ip::default(), &[0x88a8, 0x8100]), "QinQ, allowed");
    b.drop(&framed(c, s, &bad, &Ip::default(), &[0x88a8, 0x8100]), "QinQ, denied");
    b.drop(&framed(c, s, &ok, &Ip::default(), &[0x88a8, 0x8100, 0x8100]), "three tags: beyond the parser");
}

#[test]
fn ipv6_extension_chains_are_walked_to_four() {
    let Some(b) = Bench::new(POLICY) else { return };
    let (c, s) = (ip("fd01::5"), ip("fd02::9"));
    let (ok, bad) = (tcp(40000, 443, SYN), tcp(40000, 22, SYN));
    let chain = |n: usize| Ip { ext: [0u8, 60, 43, 60, 60][..n].to_vec(), ..Ip::default() };
    b.pass(&framed(c, s, &ok, &chain(4), &[]), "four extension headers, allowed");
    b.drop(&framed(c, s, &bad, &chain(4), &[]), "four extension headers, denied");
    b.drop(&framed(c, s, &ok, &chain(5), &[]), "five extension headers: past the walk limit");
}

#[test]
fn truncated_and_malformed_headers_drop() {
    let Some(b) = Bench::new(POLICY) else { return };
    let (c, s) = (ip("10.1.0.5"), ip("10.2.0.9"));
    let whole = frame(c, s, &tcp(40000, 443, SYN));
    b.pass(&whole, "the whole packet");
    for cut in [14 + 10, 14 + 19, 14 + 20 + 3, 14 + 20 + 13] {
        b.drop(&whole[..cut], &format!("cut at {cut} bytes"));
    }
    let mut ihl4 = whole.clone();
    ihl4[14] = 0x44;
    b.drop(&ihl4, "an IPv4 header length of 16 bytes");
    let mut v6_in_v4 = whole.clone();
    v6_in_v4[14] = 0x65;
    b.drop(&v6_in_v4, "IPv6 version under the IPv4 EtherType");
    let six = frame(ip("fd01::5"), ip("fd02::9"), &L4::Udp { sport: 4000, dport: 53 });
    b.pass(&six, "a whole IPv6 datagram");
    b.drop(&six[..14 + 39], "a cut IPv6 header");
    b.drop(&six[..14 + 40 + 3], "a cut UDP header");
}

#[test]
fn ports_are_read_after_ip_options() {
    let Some(b) = Bench::new(POLICY) else { return };
    let (c, s) = (ip("10.1.0.5"), ip("10.2.0.9"));
    let opts = Ip { options: vec![0x94, 0x04, 0, 0, 1, 1, 1, 0], ..Ip::default() };
    b.pass(&framed(c, s, &tcp(40000, 443, SYN), &opts, &[]), "allowed port behind 8 bytes of options");
    b.drop(&framed(c, s, &tcp(40000, 22, SYN), &opts, &[]), "denied port behind options");
    let long = Ip { options: vec![1; 40], ..Ip::default() };
    let f = framed(c, s, &tcp(40000, 443, SYN), &long, &[]);
    b.drop(&f[..14 + 60 + 10], "options that leave no room for the TCP header");
}

#[test]
fn tcp_flag_combinations_no_connection_uses_drop() {
    let Some(b) = Bench::new(POLICY) else { return };
    let (c, s) = (ip("10.1.0.5"), ip("10.2.0.9"));
    for (flags, what) in [
        (SYN | FIN, "SYN+FIN"),
        (0, "no flags"),
        (FIN, "FIN without ACK"),
        (FIN | PSH | URG, "XMAS"),
        (SYN | RST, "SYN+RST"),
        (RST | FIN, "RST+FIN"),
    ] {
        b.drop(&frame(c, s, &tcp(40000, 443, flags)), &format!("{what} to an allowed port"));
    }
    // RST/ACK probes: to a port the policy allows they pass (no connection is
    // opened by them); against the policy's direction they drop.
    b.pass(&frame(c, s, &tcp(40001, 443, RST | ACK)), "RST/ACK along an allowed flow");
    b.drop(&frame(s, c, &tcp(443, 40001, RST | ACK)), "RST/ACK probing back: no connection");
    b.drop(&frame(s, c, &tcp(443, 40001, ACK)), "the RST/ACK opened nothing");
    b.drop(&frame(c, s, &tcp(40002, 22, RST | ACK)), "RST/ACK to a denied port");
}

#[test]
fn replies_match_only_their_connection() {
    let Some(b) = Bench::new(POLICY) else { return };
    let (c, s) = (ip("10.1.0.5"), ip("10.2.0.9"));
    // The review's attack: client:22 -> server:443, then server:443 -> client:22.
    b.pass(&frame(c, s, &tcp(22, 443, SYN)), "the allowed connection's SYN");
    b.drop(&frame(s, c, &tcp(443, 22, SYN)), "a new connection back along the reversed tuple");
    b.pass(&frame(s, c, &tcp(443, 22, SYN | ACK)), "the SYN+ACK answer");
    b.pass(&frame(c, s, &tcp(22, 443, ACK)), "the handshake's ACK");
    b.pass(&frame(s, c, &tcp(443, 22, ACK | PSH)), "data back");
    b.drop(&frame(s, c, &tcp(443, 23, ACK)), "another client port");
    b.drop(&frame(s, c, &tcp(444, 22, ACK)), "another server port");
    b.drop(&frame(s, ip("10.1.0.6"), &tcp(443, 22, ACK)), "another client");
    // UDP: the answer from the port asked, to the port that asked.
    b.pass(&frame(c, s, &L4::Udp { sport: 5000, dport: 53 }), "a DNS query");
    b.pass(&frame(s, c, &L4::Udp { sport: 53, dport: 5000 }), "its answer");
    b.drop(&frame(s, c, &L4::Udp { sport: 53, dport: 5001 }), "an answer to no query");
}

#[test]
fn echo_replies_match_by_identifier_and_echo_requests_never_reply() {
    let Some(b) = Bench::new(POLICY) else { return };
    for (c, s, v6) in [(ip("10.1.0.5"), ip("10.2.0.9"), false), (ip("fd01::5"), ip("fd02::9"), true)] {
        b.pass(&frame(c, s, &echo(v6, false, 7)), "an allowed echo request");
        b.pass(&frame(s, c, &echo(v6, true, 7)), "its reply");
        b.drop(&frame(s, c, &echo(v6, true, 8)), "a reply with another identifier");
        b.drop(&frame(s, c, &echo(v6, false, 7)), "an echo request back, with the same identifier");
    }
}

#[test]
fn icmp_errors_pass_only_for_a_tracked_packet() {
    let Some(b) = Bench::new(POLICY) else { return };
    for (c, s, router) in [(ip("10.1.0.5"), ip("10.2.0.9"), ip("10.2.0.1")), (ip("fd01::5"), ip("fd02::9"), ip("fd02::1"))] {
        let syn = tcp(41000, 443, SYN);
        b.pass(&frame(c, s, &syn), "the connection's SYN");
        let quoted = ip_packet(c, s, &syn, &Ip::default());
        b.pass(&icmp_error(s, c, &quoted), "an error about it, from the server");
        b.pass(&icmp_error(router, c, &quoted), "an error about it, from a router");
        let never = ip_packet(c, s, &tcp(41001, 22, SYN), &Ip::default());
        b.drop(&icmp_error(s, c, &never), "an error quoting a packet that was never allowed");
        b.drop(&icmp_error(s, if c.is_ipv4() { ip("10.1.0.6") } else { ip("fd01::6") }, &quoted), "an error sent to someone else");
    }
}

#[test]
fn a_swap_stops_what_it_removes() {
    let Some(mut b) = Bench::new(POLICY) else { return };
    let (c, s) = (ip("10.1.0.5"), ip("10.2.0.9"));
    b.pass(&frame(c, s, &tcp(42000, 443, SYN)), "SYN");
    b.pass(&frame(s, c, &tcp(443, 42000, SYN | ACK)), "SYN+ACK");
    b.pass(&frame(c, s, &L4::Udp { sport: 5000, dport: 53 }), "DNS");
    b.f.install(&tables(NARROWER)).expect("swap");
    b.drop(&frame(s, c, &tcp(443, 42000, ACK)), "the removed flow's reply, first packet after the swap");
    b.drop(&frame(c, s, &tcp(42000, 443, ACK)), "the removed flow, the other way");
    b.drop(&frame(c, s, &tcp(42001, 443, SYN)), "a new connection to the removed port");
    b.pass(&frame(s, c, &L4::Udp { sport: 53, dport: 5000 }), "a connection the new policy still allows");
    b.f.install(&tables(POLICY)).expect("swap back");
    b.drop(&frame(s, c, &tcp(443, 42000, ACK)), "the dropped connection stays gone");
    b.pass(&frame(c, s, &tcp(42002, 443, SYN)), "a new connection once allowed again");
}

#[test]
fn connections_expire() {
    let Some(mut b) = Bench::new(POLICY) else { return };
    let mut timeouts = [0u32; rt::TO_MAX];
    timeouts[rt::TO_TCP_SYN] = 1;
    timeouts[rt::TO_UDP] = 1;
    b.f.set_link_options(&[], timeouts).expect("timeouts");
    let (c, s) = (ip("10.1.0.5"), ip("10.2.0.9"));
    b.pass(&frame(c, s, &tcp(43000, 443, SYN)), "SYN");
    b.pass(&frame(c, s, &L4::Udp { sport: 6000, dport: 53 }), "a query");
    std::thread::sleep(std::time::Duration::from_millis(1300));
    b.drop(&frame(s, c, &tcp(443, 43000, SYN | ACK)), "an answer after the unanswered SYN expired");
    b.drop(&frame(s, c, &L4::Udp { sport: 53, dport: 6000 }), "an answer after the query expired");
}

#[test]
fn non_ip_frames_pass_only_when_named() {
    let Some(mut b) = Bench::new(POLICY) else { return };
    let arp = ether(0x0806, &[], &[0u8; 28]);
    b.pass(&arp, "ARP");
    b.pass(&ether(0x0806, &[0x8100], &[0u8; 28]), "ARP on a VLAN");
    let inner = ip_packet(ip("10.1.0.5"), ip("10.2.0.9"), &tcp(40000, 22, SYN), &Ip::default());
    let mut pppoe = vec![0x11, 0, 0, 1, 0, inner.len() as u8 + 2, 0, 0x21];
    pppoe.extend_from_slice(&inner);
    b.drop(&ether(0x8864, &[], &pppoe), "IP inside PPPoE");
    let mut mpls = vec![0, 0, 0x11, 64];
    mpls.extend_from_slice(&inner);
    b.drop(&ether(0x8847, &[], &mpls), "IP inside MPLS");
    let lldp = ether(0x88cc, &[], &[0u8; 32]);
    b.drop(&lldp, "LLDP, not named");
    b.f.set_link_options(&[0x88cc], [0; rt::TO_MAX]).expect("pass LLDP");
    b.pass(&lldp, "LLDP, named by --pass-ethertype");
    b.drop(&ether(0x8864, &[], &pppoe), "PPPoE still");
}
