//! The Windows target on a fixed policy: the script's form, its meaning,
//! quoting.

use std::net::IpAddr;

use super::*;
use crate::{compile_str, Options};

const SHOP: &str = r#"use std.zones.internet
zone pos {
  cidrs = [10.0.5.0/24, 2001:db8:5::/64]
  scope = cde
  windows.group = "POS terminals"
}
zone gw {
  cidrs = [10.0.9.0/24]
  scope = cde
}
zone back {
  cidrs = [10.0.0.0/16]
  scope = connected
  windows.group = "back-office"
}
flow pos -> gw on tcp/8443, icmp/8 {
  justification = "authorisations"
  reviewed = 2026-10-01
}
flow back -> internet on tcp/443, udp/53
deny back -> internet on udp/53
"#;

fn scripts(src: &str) -> Vec<(Script, String)> {
    let c = compile_str(src, &Options::default());
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    lower(&c.model).expect("windows").into_iter().map(|s| (s.clone(), render(&c.model, &s))).collect()
}

#[test]
fn every_rule_line_has_the_spec_form_and_the_preamble_comes_first() {
    let all = scripts(SHOP);
    assert_eq!(all.iter().map(|(s, _)| s.group.as_str()).collect::<Vec<_>>(), ["POS terminals", "back-office"]);
    let (_, text) = &all[0];
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(lines[1].starts_with(
        "Set-NetFirewallProfile -Profile Domain,Private,Public -Enabled True -DefaultInboundAction Block -DefaultOutboundAction Block"
    ));
    assert_eq!(lines[2], "Get-NetFirewallRule -Group \"segc:POS terminals\" -ErrorAction SilentlyContinue | Remove-NetFirewallRule");
    let rules: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with("New-NetFirewallRule")).collect();
    assert!(!rules.is_empty());
    let order = [
        "-Name",
        "-DisplayName",
        "-Group",
        "-Direction",
        "-Action",
        "-Protocol",
        "-LocalAddress",
        "-RemoteAddress",
        "-LocalPort",
        "-RemotePort",
        "-IcmpType",
    ];
    for l in &rules {
        let params: Vec<&str> = l.split(' ').filter(|w| w.starts_with('-') && order.contains(w)).collect();
        let pos: Vec<usize> = params.iter().map(|p| order.iter().position(|o| o == p).unwrap_or(99)).collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]) && pos[..6] == [0, 1, 2, 3, 4, 5], "{l}");
        assert!(l.contains("-Group \"segc:POS terminals\""), "{l}");
    }
    // ICMP echo to the gateway: types, never ranges; v4 only (gw has no v6).
    assert!(
        rules.iter().any(|l| l.contains("-Direction Outbound -Action Allow -Protocol ICMPv4") && l.ends_with("-IcmpType 8")),
        "{rules:?}"
    );
    assert!(!rules.iter().any(|l| l.contains("ICMPv6") && l.contains("10.0.9.")));
    // Outbound TCP to the gateway names the destination port as RemotePort.
    assert!(
        rules.iter().any(|l| l.contains("-Protocol TCP -LocalAddress 10.0.5.0/24 -RemoteAddress 10.0.9.0/24 -RemotePort 8443")),
        "{rules:?}"
    );
}

#[test]
fn internet_is_everything_outside_the_more_specific_zones_and_denies_are_blocks() {
    let all = scripts(SHOP);
    let (_, text) = &all[1];
    let parsed = eval::parse(text).expect("parses");
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    use crate::ir::Proto::{Tcp, Udp};
    // back (10.0.0.0/16 without pos and gw) may reach the internet on 443...
    assert!(parsed.side(false, ip("10.0.1.1"), ip("198.51.100.7"), Tcp(443)));
    // ...not pos or gw, which are inside 10.0.0.0/16 but not internet.
    assert!(!parsed.side(false, ip("10.0.1.1"), ip("10.0.9.1"), Tcp(443)));
    // udp/53 is denied: a Block rule says so, whatever another Allow says.
    assert!(text.lines().any(|l| l.contains("-Action Block -Protocol UDP") && l.contains("-RemotePort 53")));
    assert!(!parsed.side(false, ip("10.0.1.1"), ip("198.51.100.7"), Udp(53)));
    // 10.0.5.7 is a POS terminal, not back office: no back-office rule applies there.
    assert!(!parsed.side(false, ip("10.0.5.7"), ip("198.51.100.7"), Tcp(443)));
}

#[test]
fn any_minus_a_deny_is_allow_any_beside_a_block() {
    let src = SHOP.replace("flow back -> internet on tcp/443, udp/53", "flow back -> internet on any");
    let all = scripts(&src);
    let (_, text) = &all[1];
    assert!(text.lines().any(|l| l.contains("-Direction Outbound -Action Allow -Protocol Any") && l.contains(":internet:")), "{text}");
    let parsed = eval::parse(text).expect("parses");
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    use crate::ir::Proto::{Other, Tcp, Udp};
    assert!(parsed.side(false, ip("10.0.1.1"), ip("198.51.100.7"), Other(47)));
    assert!(parsed.side(false, ip("10.0.1.1"), ip("198.51.100.7"), Tcp(22)));
    assert!(!parsed.side(false, ip("10.0.1.1"), ip("198.51.100.7"), Udp(53)));
}

#[test]
fn strings_are_quoted_for_powershell() {
    assert_eq!(quoted("a\"b$c`d"), "\"a`\"b`$c``d\"");
    let w = eval::parse("New-NetFirewallRule -Name \"a`\"b\" -Direction Inbound -Action Allow -Protocol TCP").expect("parses");
    assert_eq!(w.rules[0].params["Name"], ["a\"b"]);
}
