//! Reads a `windows/<NAME>.ps1` back, as text, and judges packets with
//! Windows Defender Firewall's semantics: per direction, a matching Block
//! rule blocks whatever else matches; else a matching Allow rule allows;
//! else the profile's default decides (Windows' own defaults, inbound Block
//! and outbound Allow, unless the script sets them). Rules have no order.
//! A constraint this reader cannot judge against the reference's packets
//! (a source port, an unknown parameter or protocol) is an error, not a guess.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::ir::addr::addr_bits;
use crate::ir::{Prefix, Proto};

#[derive(Clone, Debug, Default)]
pub struct ParsedRule {
    pub inbound: bool,
    pub allow: bool,
    pub protocol: String,
    pub params: BTreeMap<String, Vec<String>>,
}

#[derive(Clone, Debug)]
pub struct Parsed {
    pub default_inbound_block: bool,
    pub default_outbound_block: bool,
    pub rules: Vec<ParsedRule>,
}

/// Splits a command line into its words: `"..."` strings (with PowerShell's
/// backtick escapes) and bare words.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
            continue;
        }
        let mut w = String::new();
        if c == '"' {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated string in: {line}")),
                    Some('`') => w.push(chars.next().ok_or("a backtick at the end")?),
                    Some('"') => break,
                    Some(x) => w.push(x),
                }
            }
        } else {
            while let Some(&x) = chars.peek() {
                if x == ' ' {
                    break;
                }
                w.push(x);
                chars.next();
            }
        }
        out.push(w);
    }
    Ok(out)
}

const KNOWN: &[&str] = &[
    "Name",
    "DisplayName",
    "Group",
    "Direction",
    "Action",
    "Protocol",
    "LocalAddress",
    "RemoteAddress",
    "LocalPort",
    "RemotePort",
    "IcmpType",
];

pub fn parse(text: &str) -> Result<Parsed, String> {
    let mut p = Parsed { default_inbound_block: true, default_outbound_block: false, rules: vec![] };
    for line in text.lines().map(str::trim) {
        let w = words(line)?;
        match w.first().map(String::as_str) {
            Some("Set-NetFirewallProfile") => {
                for pair in w.windows(2) {
                    match pair[0].as_str() {
                        "-DefaultInboundAction" => p.default_inbound_block = pair[1] == "Block",
                        "-DefaultOutboundAction" => p.default_outbound_block = pair[1] == "Block",
                        _ => {}
                    }
                }
            }
            Some("New-NetFirewallRule") => {
                let mut r = ParsedRule::default();
                let mut it = w[1..].iter();
                while let Some(param) = it.next() {
                    let name = param.strip_prefix('-').ok_or_else(|| format!("`{param}` is not a parameter"))?;
                    if !KNOWN.contains(&name) {
                        return Err(format!("parameter -{name} cannot be judged"));
                    }
                    let value = it.next().ok_or_else(|| format!("-{name} has no value"))?;
                    r.params.insert(name.to_string(), value.split(',').map(str::to_string).collect());
                }
                let one = |k: &str| r.params.get(k).and_then(|v| v.first()).cloned().unwrap_or_default();
                r.inbound = match one("Direction").as_str() {
                    "Inbound" | "" => true,
                    "Outbound" => false,
                    d => return Err(format!("direction {d}")),
                };
                r.allow = match one("Action").as_str() {
                    "Allow" | "" => true,
                    "Block" => false,
                    a => return Err(format!("action {a}")),
                };
                r.protocol = match one("Protocol").as_str() {
                    "" => "Any".to_string(),
                    x => x.to_string(),
                };
                if !["TCP", "UDP", "ICMPv4", "ICMPv6", "Any"].contains(&r.protocol.as_str()) {
                    return Err(format!("protocol {} cannot be judged", r.protocol));
                }
                // The reference has no source ports.
                if r.params.contains_key(if r.inbound { "RemotePort" } else { "LocalPort" }) {
                    return Err("a rule on source ports cannot be judged".into());
                }
                p.rules.push(r);
            }
            _ => {}
        }
    }
    Ok(p)
}

/// Whether an address token (`a.b.c.d`, a prefix, or `first-last`) holds `ip`.
fn holds(token: &str, ip: IpAddr) -> bool {
    if let Some((a, b)) = token.split_once('-') {
        let (Ok(a), Ok(b)) = (a.parse::<IpAddr>(), b.parse::<IpAddr>()) else { return false };
        let ((fa, a), (fb, b), (fi, i)) = (addr_bits(a), addr_bits(b), addr_bits(ip));
        return fa == fi && fb == fi && a <= i && i <= b;
    }
    let (f, a) = addr_bits(ip);
    Prefix::parse(token).is_ok_and(|p| p.contains_addr(f, a))
}

fn port_in(tokens: &[String], port: u16) -> bool {
    tokens.iter().any(|t| {
        let (lo, hi) = t.split_once('-').unwrap_or((t, t));
        lo.parse::<u16>().is_ok_and(|lo| lo <= port) && hi.parse::<u16>().is_ok_and(|hi| port <= hi)
    })
}

impl ParsedRule {
    fn matches(&self, local: IpAddr, remote: IpAddr, proto: Proto) -> bool {
        let list = |k: &str, ip: IpAddr| self.params.get(k).is_none_or(|v| v.iter().any(|t| holds(t, ip)));
        if !list("LocalAddress", local) || !list("RemoteAddress", remote) {
            return false;
        }
        let dst_port = |p: u16| {
            let key = if self.inbound { "LocalPort" } else { "RemotePort" };
            self.params.get(key).is_none_or(|v| port_in(v, p))
        };
        match (self.protocol.as_str(), proto) {
            ("Any", _) => true,
            ("TCP", Proto::Tcp(p)) | ("UDP", Proto::Udp(p)) => dst_port(p),
            ("ICMPv4", Proto::Icmp(t)) if local.is_ipv4() => {
                self.params.get("IcmpType").is_none_or(|v| v.iter().any(|x| x.split(':').next() == Some(&t.to_string())))
            }
            ("ICMPv6", Proto::Icmp(t)) if local.is_ipv6() => {
                self.params.get("IcmpType").is_none_or(|v| v.iter().any(|x| x.split(':').next() == Some(&t.to_string())))
            }
            _ => false,
        }
    }
}

impl Parsed {
    /// The host's verdict in one direction: `local` is the host's address.
    pub fn side(&self, inbound: bool, local: IpAddr, remote: IpAddr, proto: Proto) -> bool {
        let matching: Vec<&ParsedRule> = self.rules.iter().filter(|r| r.inbound == inbound && r.matches(local, remote, proto)).collect();
        if matching.iter().any(|r| !r.allow) {
            return false;
        }
        if matching.iter().any(|r| r.allow) {
            return true;
        }
        !(if inbound { self.default_inbound_block } else { self.default_outbound_block })
    }
}

/// A packet's verdict where Windows hosts are involved: the sender's
/// outbound side (if its zone is Windows-bound) and the receiver's inbound
/// side (likewise); `None` when neither end is. `group_of` names the group a
/// host's address belongs to; `scripts` are the parsed scripts by group.
pub fn eval(
    scripts: &BTreeMap<String, Parsed>,
    group_of: &dyn Fn(IpAddr) -> Option<String>,
    src: IpAddr,
    dst: IpAddr,
    proto: Proto,
) -> Option<bool> {
    let (gs, gd) = (group_of(src), group_of(dst));
    if gs.is_none() && gd.is_none() {
        return None;
    }
    if src.is_ipv4() != dst.is_ipv4() {
        return Some(false);
    }
    let side = |g: &Option<String>, inbound: bool, local: IpAddr, remote: IpAddr| {
        g.as_ref().is_none_or(|g| scripts.get(g).is_some_and(|s| s.side(inbound, local, remote, proto)))
    };
    Some(side(&gs, false, src, dst) && side(&gd, true, dst, src))
}
