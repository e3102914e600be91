//! Windows Defender Firewall (`windows/<NAME>.ps1`, SPEC §8). A zone with
//! `windows.group = "NAME"` is a set of Windows hosts; the script for NAME
//! sets every profile to block both ways by default, removes the rules of
//! group `segc:NAME`, and adds one `New-NetFirewallRule` a line.
//!
//! Windows rules have no order, and a Block rule beats every Allow rule, so
//! nothing here relies on order: every address list is a zone's own
//! addresses as longest-prefix matching assigns them (its atoms: `internet`
//! is everything outside the more specific zones), and the Allow rules carry
//! exactly the flows minus the denies. The denies are also written as Block
//! rules, so that an Allow rule of another group cannot open what the
//! policy denies. A packet between two Windows-bound zones needs the
//! sender's Outbound and the receiver's Inbound allow; both come from the
//! same policy. `eval` reads the script text back with Windows' semantics.

pub mod eval;

use std::collections::BTreeMap;

use crate::diag::Diagnostic;
use crate::ir::eval::Evaluator;
use crate::ir::{Action as RuleAction, Family, Model, Prefix, RangeSet, ServiceSet, ZoneId};
use crate::lower::atoms::{atoms, range_to_prefixes};
use crate::lower::cloud;

/// Address tokens per rule: Windows takes long lists, but rules with
/// thousands of addresses are slow to add and to evaluate; longer lists are
/// split over several rules (exact, since rules have no order).
pub const MAX_ADDRESSES: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Allow,
    Block,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmpv4,
    Icmpv6,
    Any,
}

impl Protocol {
    fn word(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Icmpv4 => "ICMPv4",
            Protocol::Icmpv6 => "ICMPv6",
            Protocol::Any => "Any",
        }
    }
}

/// One `New-NetFirewallRule`; an empty list is an omitted parameter (any).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    pub name: String,
    pub display_name: String,
    pub direction: Direction,
    pub action: Action,
    pub protocol: Protocol,
    pub local_address: Vec<String>,
    pub remote_address: Vec<String>,
    pub local_port: Vec<String>,
    pub remote_port: Vec<String>,
    pub icmp_type: Vec<String>,
}

/// The script for one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    pub group: String,
    pub zones: Vec<String>,
    pub rules: Vec<Rule>,
}

/// Each zone's addresses per family, as Windows address tokens.
fn addresses(ev: &Evaluator<'_>) -> BTreeMap<(ZoneId, Family), Vec<String>> {
    let mut m: BTreeMap<(ZoneId, Family), Vec<String>> = BTreeMap::new();
    for a in atoms(ev) {
        let ps = range_to_prefixes(a.family, a.first, a.last);
        let token = match ps.as_slice() {
            [p] if p.len == p.family.max_len() => p.first().to_string(),
            [p] => p.to_string(),
            _ => {
                let at = |x: u128| Prefix { family: a.family, addr: 0, len: 0 }.ip(x);
                format!("{}-{}", at(a.first), at(a.last))
            }
        };
        m.entry((a.zone, a.family)).or_default().push(token);
    }
    m
}

fn ports(r: &RangeSet) -> Vec<String> {
    if r.ranges() == [(0, u16::MAX)] {
        return vec![];
    }
    r.ranges().iter().map(|&(lo, hi)| if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") }).collect()
}

/// What one rule's protocol part says: (protocol, ports, ICMP types).
type Part = (Protocol, Vec<String>, Vec<String>);

/// The protocol parts of a service set for one family; `None` when the set
/// allows other IP protocols but not all of them (not expressible).
fn parts(set: &ServiceSet, fam: Family) -> Option<Vec<Part>> {
    if set.is_any() {
        return Some(vec![(Protocol::Any, vec![], vec![])]);
    }
    if set.other {
        return None;
    }
    let mut v = Vec::new();
    if !set.tcp.is_empty() {
        v.push((Protocol::Tcp, ports(&set.tcp), vec![]));
    }
    if !set.udp.is_empty() {
        v.push((Protocol::Udp, ports(&set.udp), vec![]));
    }
    if !set.icmp.is_empty() {
        // IcmpType takes types (or type:code), not ranges.
        let types: Vec<String> = if set.icmp.ranges() == [(0, 255)] {
            vec![]
        } else {
            set.icmp.ranges().iter().flat_map(|&(lo, hi)| (lo..=hi).map(|t| t.to_string())).collect()
        };
        v.push((if fam == Family::V4 { Protocol::Icmpv4 } else { Protocol::Icmpv6 }, vec![], types));
    }
    Some(v)
}

/// Everything the deny items between two zones take away, whatever the flows.
fn denied(ev: &Evaluator<'_>, model: &Model, from: ZoneId, to: ZoneId) -> ServiceSet {
    ev.pair(from, to).map_or_else(ServiceSet::default, |r| {
        r.denies.iter().fold(ServiceSet::default(), |acc, &id| acc.union(&model.rule(RuleAction::Deny, id).set))
    })
}

struct Side<'a> {
    model: &'a Model,
    group: &'a str,
    zone: ZoneId,
    peer: ZoneId,
    direction: Direction,
}

impl Side<'_> {
    fn rules(&self, action: Action, set: &ServiceSet, addrs: &BTreeMap<(ZoneId, Family), Vec<String>>) -> Option<Vec<Rule>> {
        let mut out = Vec::new();
        for fam in [Family::V4, Family::V6] {
            let (Some(local), Some(remote)) = (addrs.get(&(self.zone, fam)), addrs.get(&(self.peer, fam))) else { continue };
            let mut set = set.clone();
            if action == Action::Block && set.other && !set.is_any() {
                // Defence in depth only: the default Block covers the rest.
                set.other = false;
            }
            for (protocol, port_list, icmp_type) in parts(&set, fam)? {
                for (li, l) in local.chunks(MAX_ADDRESSES).enumerate() {
                    for (ri, r) in remote.chunks(MAX_ADDRESSES).enumerate() {
                        out.push(self.rule(action, protocol, fam, (li, l), (ri, r), &port_list, &icmp_type));
                    }
                }
            }
        }
        Some(out)
    }

    #[allow(clippy::too_many_arguments, reason = "one rule's every field")]
    fn rule(
        &self,
        action: Action,
        protocol: Protocol,
        fam: Family,
        local: (usize, &[String]),
        remote: (usize, &[String]),
        port_list: &[String],
        icmp_type: &[String],
    ) -> Rule {
        let (zone, peer) = (&self.model.zone(self.zone).name, &self.model.zone(self.peer).name);
        let (dir, arrow) = match self.direction {
            Direction::Inbound => ("in", format!("{peer} -> {zone}")),
            Direction::Outbound => ("out", format!("{zone} -> {peer}")),
        };
        let act = if action == Action::Allow { "allow" } else { "block" };
        let fam_word = if fam == Family::V4 { "v4" } else { "v6" };
        let mut name = format!("segc:{}:{dir}:{zone}:{peer}:{act}:{}:{fam_word}", self.group, protocol.word().to_lowercase());
        if local.0 > 0 || remote.0 > 0 {
            name.push_str(&format!(":{}-{}", local.0, remote.0));
        }
        let (local_port, remote_port) = match self.direction {
            Direction::Inbound => (port_list.to_vec(), vec![]),
            Direction::Outbound => (vec![], port_list.to_vec()),
        };
        Rule {
            name,
            display_name: format!("segc {act} {arrow} {} {fam_word}", protocol.word()),
            direction: self.direction,
            action,
            protocol,
            local_address: local.1.to_vec(),
            remote_address: remote.1.to_vec(),
            local_port,
            remote_port,
            icmp_type: icmp_type.to_vec(),
        }
    }
}

/// The scripts, one per group, sorted by group; T002 where Windows cannot
/// say a flow exactly (other IP protocols allowed, but not all, which the
/// language cannot write today: they come only with `any`).
pub fn lower(model: &Model) -> Result<Vec<Script>, Vec<Diagnostic>> {
    let ev = Evaluator::new(model);
    let addrs = addresses(&ev);
    let mut groups: BTreeMap<String, Script> = BTreeMap::new();
    let mut diags = Vec::new();
    let zones: Vec<ZoneId> = (0..model.zones.len() as u32).map(ZoneId).collect();
    for &z in &zones {
        let Some(group) = model.zone(z).bindings.windows_group.clone() else { continue };
        let script = groups.entry(group.clone()).or_insert_with(|| Script { group: group.clone(), zones: vec![], rules: vec![] });
        script.zones.push(model.zone(z).name.clone());
        for &peer in &zones {
            for direction in [Direction::Inbound, Direction::Outbound] {
                let (from, to) = if direction == Direction::Inbound { (peer, z) } else { (z, peer) };
                let side = Side { model, group: &group, zone: z, peer, direction };
                let deny = denied(&ev, model, from, to);
                let mut allow = ev.allowed(from, to);
                // Other IP protocols come only with `any`: what is allowed is
                // then `any` minus the denies, which is an Allow Any rule beside
                // the denies' Block rules (Block beats Allow).
                if allow.other && !allow.is_any() && !deny.other {
                    allow = ServiceSet::any();
                }
                match side.rules(Action::Allow, &allow, &addrs) {
                    Some(r) => script.rules.extend(r),
                    None => diags.push(cloud::inexpressible(
                        model,
                        "Windows Firewall",
                        from,
                        to,
                        "other IP protocols are allowed, but not all protocols",
                    )),
                }
                script.rules.extend(side.rules(Action::Block, &deny, &addrs).unwrap_or_default());
            }
        }
    }
    let blocked = super::feeds::Blocked::of(&ev).prefixes();
    for script in groups.values_mut() {
        let own_untrusted =
            script.zones.iter().any(|z| model.zone_id(z).is_some_and(|id| model.zone(id).scope == crate::ir::Scope::Untrusted));
        script.rules.extend(feed_blocks(&script.group, &blocked, own_untrusted));
    }
    if !diags.is_empty() {
        diags.sort_by(|a, b| a.message.cmp(&b.message));
        diags.dedup_by(|a, b| a.message == b.message);
        return Err(diags);
    }
    let mut out: Vec<Script> = groups.into_values().collect();
    for s in &mut out {
        s.zones.sort();
        s.rules.sort();
    }
    Ok(out)
}

/// Block rules for the blocked feeds, both directions: the addresses as
/// remote ones, and as local ones where the group holds an untrusted zone (a
/// feed may cut its own members). Block beats every Allow.
fn feed_blocks(group: &str, blocked: &[Prefix], own_untrusted: bool) -> Vec<Rule> {
    let mut out = Vec::new();
    for fam in [Family::V4, Family::V6] {
        let list: Vec<String> = blocked.iter().filter(|p| p.family == fam).map(|p| p.to_string()).collect();
        let fam_word = if fam == Family::V4 { "v4" } else { "v6" };
        for (i, chunk) in list.chunks(MAX_ADDRESSES).enumerate() {
            for direction in [Direction::Inbound, Direction::Outbound] {
                let dir = if direction == Direction::Inbound { "in" } else { "out" };
                for (side, local) in [("remote", false), ("local", true)] {
                    if local && !own_untrusted {
                        continue;
                    }
                    out.push(Rule {
                        name: format!("segc:{group}:{dir}:feed:{side}:{fam_word}:{i}"),
                        display_name: format!("segc block feed {side} {fam_word} {dir} {i}"),
                        direction,
                        action: Action::Block,
                        protocol: Protocol::Any,
                        local_address: if local { chunk.to_vec() } else { vec![] },
                        remote_address: if local { vec![] } else { chunk.to_vec() },
                        local_port: vec![],
                        remote_port: vec![],
                        icmp_type: vec![],
                    });
                }
            }
        }
    }
    out
}

/// A PowerShell double-quoted string: backtick, `"` and `$` escaped.
fn quoted(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if matches!(c, '`' | '"' | '$') {
            q.push('`');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// The script's text.
pub fn render(model: &Model, s: &Script) -> String {
    let group = format!("segc:{}", s.group);
    let policy: String = model.policy.name.as_deref().unwrap_or("policy").chars().filter(|c| !c.is_control()).collect();
    let mut out = String::new();
    out.push_str(&format!("# segc: Windows Defender Firewall rules for group {group} (zones: {})\n", s.zones.join(", ")));
    out.push_str(&format!("# Policy `{policy}`, built by segc: rebuild rather than edit (`segc build --target windows`).\n"));
    out.push_str("# Run as Administrator (`powershell -ExecutionPolicy Bypass -File`), as a GPO startup script, or from Intune.\n");
    out.push_str("#Requires -RunAsAdministrator\n$ErrorActionPreference = 'Stop'\n");
    out.push_str(
        "Set-NetFirewallProfile -Profile Domain,Private,Public -Enabled True -DefaultInboundAction Block -DefaultOutboundAction Block\n",
    );
    out.push_str(&format!("Get-NetFirewallRule -Group {} -ErrorAction SilentlyContinue | Remove-NetFirewallRule\n", quoted(&group)));
    for r in &s.rules {
        out.push_str(&format!(
            "New-NetFirewallRule -Name {} -DisplayName {} -Group {} -Direction {:?} -Action {:?} -Protocol {}",
            quoted(&r.name),
            quoted(&r.display_name),
            quoted(&group),
            r.direction,
            r.action,
            r.protocol.word()
        ));
        for (param, list) in [
            ("LocalAddress", &r.local_address),
            ("RemoteAddress", &r.remote_address),
            ("LocalPort", &r.local_port),
            ("RemotePort", &r.remote_port),
            ("IcmpType", &r.icmp_type),
        ] {
            if !list.is_empty() {
                out.push_str(&format!(" -{param} {}", list.join(",")));
            }
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "# Any enabled Allow rule of another group still allows (Windows: Block beats Allow, and nothing else orders rules).\n$others = @(Get-NetFirewallRule -Enabled True -Action Allow | Where-Object {{ $_.Group -ne {} }})\nif ($others.Count -gt 0) {{ Write-Warning \"$($others.Count) enabled Allow rules outside {} may allow more than the policy: Get-NetFirewallRule -Enabled True -Action Allow\" }}\n",
        quoted(&group),
        group
    ));
    out
}

#[cfg(test)]
mod tests;
