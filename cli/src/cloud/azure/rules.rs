//! NSG rules as ARM stores them (properties as JSON), what a reviewer reads
//! of them, and the order in which one NSG changes (see the parent module).

use std::collections::{BTreeMap, BTreeSet};

#[cfg(test)]
use serde_json::json;
use serde_json::Value;

use crate::journal::RuleDetail;
use segc_compiler::lower::azure::{DENY_PRIORITY, FIRST_PRIORITY, MAX_RULES};

/// Every property that decides what a rule matches or does; ARM's own
/// (provisioningState, etag) and the description are left out. A key segc
/// never writes (port lists, application security groups) that appears on a
/// live rule makes it differ, so a hand edit that widens a rule is drift.
pub(super) fn comparable(p: &Value) -> Value {
    let keys = [
        "priority",
        "direction",
        "access",
        "protocol",
        "sourcePortRange",
        "sourcePortRanges",
        "destinationPortRange",
        "destinationPortRanges",
        "sourceAddressPrefix",
        "sourceAddressPrefixes",
        "destinationAddressPrefix",
        "destinationAddressPrefixes",
        "sourceApplicationSecurityGroups",
        "destinationApplicationSecurityGroups",
    ];
    Value::Object(
        keys.iter()
            .filter_map(|k| {
                p.get(*k).filter(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty())).map(|v| ((*k).to_string(), v.clone()))
            })
            .collect(),
    )
}

/// The values of a one-or-many property pair (`…Prefix` / `…Prefixes`),
/// and application security groups by name.
fn many(p: &Value, one: &str, list: &str, asgs: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(v) = p.get(one).and_then(Value::as_str) {
        out.push(v.to_string());
    }
    out.extend(p.get(list).and_then(Value::as_array).into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)));
    for a in p.get(asgs).and_then(Value::as_array).into_iter().flatten() {
        let id = a["id"].as_str().unwrap_or_default();
        out.push(format!("asg:{}", id.rsplit('/').next().unwrap_or(id)));
    }
    out
}

fn priority(p: &Value) -> u32 {
    p["priority"].as_u64().unwrap_or(0) as u32
}

fn direction(p: &Value) -> &str {
    p["direction"].as_str().unwrap_or("")
}

fn is_deny(p: &Value) -> bool {
    p["access"].as_str() == Some("Deny")
}

/// A rule as a reviewer reads it.
pub(super) fn detail(nsg: &str, zone: Option<&str>, name: &str, p: &Value) -> RuleDetail {
    let inbound = direction(p) == "Inbound";
    let src = many(p, "sourceAddressPrefix", "sourceAddressPrefixes", "sourceApplicationSecurityGroups");
    let dst = many(p, "destinationAddressPrefix", "destinationAddressPrefixes", "destinationApplicationSecurityGroups");
    let ports = many(p, "destinationPortRange", "destinationPortRanges", "");
    let protocol = match p["protocol"].as_str().unwrap_or("*") {
        "*" => "all".to_string(),
        other => other.to_lowercase(),
    };
    let ports = if ports.is_empty() || ports.iter().any(|x| x == "*") { "all".to_string() } else { ports.join(",") };
    let (peers, local) = if inbound { (src, dst) } else { (dst, src) };
    RuleDetail {
        resource: nsg.to_string(),
        zone: zone.map(str::to_string),
        direction: if inbound { "inbound" } else { "outbound" }.into(),
        access: p["access"].as_str().unwrap_or("").to_lowercase(),
        protocol,
        ports,
        peers,
        local,
        priority: Some(priority(p)),
        name: Some(name.to_string()),
    }
}

#[derive(Clone, Debug)]
pub enum Change {
    Create {
        nsg: String,
        zone: String,
    },
    Put {
        nsg: String,
        zone: Option<String>,
        rule: String,
        props: Value,
        new: bool,
    },
    Delete {
        nsg: String,
        zone: Option<String>,
        rule: String,
        props: Value,
    },
    /// An orphan, when nothing uses it.
    DeleteNsg {
        nsg: String,
        zone: Option<String>,
    },
    /// An orphan still in use: kept with its deny-all rules only.
    Keep {
        nsg: String,
        used_by: Vec<String>,
    },
}

impl Change {
    /// The NSG the change is about.
    pub fn nsg(&self) -> &str {
        match self {
            Change::Create { nsg, .. }
            | Change::Put { nsg, .. }
            | Change::Delete { nsg, .. }
            | Change::DeleteNsg { nsg, .. }
            | Change::Keep { nsg, .. } => nsg,
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Create { nsg, zone } => write!(f, "create nsg {nsg} (zone {zone})"),
            Change::Put { nsg, zone, rule, props, new } => {
                write!(f, "{} {}", if *new { "add" } else { "update" }, detail(nsg, zone.as_deref(), rule, props))
            }
            Change::Delete { nsg, zone, rule, props } => write!(f, "delete {}", detail(nsg, zone.as_deref(), rule, props)),
            Change::DeleteNsg { nsg, zone } => {
                write!(f, "delete nsg {nsg}")?;
                if let Some(z) = zone {
                    write!(f, " (zone {z} left the policy)")?;
                }
                Ok(())
            }
            Change::Keep { nsg, used_by } => {
                write!(f, "kept nsg {nsg}, reduced to deny-all: still used by {}; delete it once they are gone", used_by.join(", "))
            }
        }
    }
}

/// The changes of one managed NSG, in a safe order (see the parent module).
pub(super) fn order(nsg: &str, zone: Option<&str>, live: &BTreeMap<String, Value>, want: &BTreeMap<String, Value>) -> Vec<Change> {
    let z = zone.map(str::to_string);
    let put = |name: &String, props: &Value| Change::Put {
        nsg: nsg.into(),
        zone: z.clone(),
        rule: name.clone(),
        props: props.clone(),
        new: !live.contains_key(name),
    };
    let delete = |name: &String| Change::Delete { nsg: nsg.into(), zone: z.clone(), rule: name.clone(), props: live[name].clone() };
    let puts: Vec<&String> = want.keys().filter(|n| live.get(*n).is_none_or(|p| comparable(p) != comparable(&want[*n]))).collect();
    let stale: Vec<&String> = live.keys().filter(|n| !want.contains_key(*n)).collect();
    let holder: BTreeMap<(String, u32), &String> = live.iter().map(|(n, p)| ((direction(p).to_string(), priority(p)), n)).collect();
    // Stale rules that must go first: holders of a priority a put needs, and
    // as many as the rule limit needs.
    let mut early: BTreeSet<&String> = BTreeSet::new();
    for n in &puts {
        let p = &want[*n];
        if let Some(h) = holder.get(&(direction(p).to_string(), priority(p))) {
            if *h != *n && !want.contains_key(*h) {
                early.insert(h);
            }
        }
    }
    let adds = puts.iter().filter(|n| !live.contains_key(**n)).count();
    let over = (live.len() + adds).saturating_sub(MAX_RULES);
    let mut by_allow_first: Vec<&String> = stale.clone();
    by_allow_first.sort_by_key(|n| is_deny(&live[*n]));
    for n in by_allow_first.iter().filter(|n| !early.contains(*n)).take(over.saturating_sub(early.len())).copied().collect::<Vec<_>>() {
        early.insert(n);
    }
    // Deleting a deny can only open what stale allows still allow: they go first.
    if early.iter().any(|n| is_deny(&live[*n])) {
        early.extend(stale.iter().filter(|n| !is_deny(&live[**n])));
    }
    let mut out: Vec<Change> = by_allow_first.iter().filter(|n| early.contains(*n)).map(|n| delete(n)).collect();
    // Puts: a rule moving onto a priority that another moving rule still
    // holds goes after it; a cycle (two rules swapping) is broken by moving
    // one to a free priority first.
    let mut pending: Vec<&String> = puts.clone();
    let mut held: BTreeMap<(String, u32), String> =
        live.iter().filter(|(n, _)| !early.contains(n)).map(|(n, p)| ((direction(p).to_string(), priority(p)), n.clone())).collect();
    while !pending.is_empty() {
        let ready = pending.iter().position(|n| {
            let p = &want[*n];
            held.get(&(direction(p).to_string(), priority(p))).is_none_or(|h| h == *n)
        });
        let i = match ready {
            Some(i) => i,
            None => {
                // Every pending put waits for another (a cycle of kept rules
                // swapping priorities; stale holders were deleted above):
                // move the first one's holder aside, to a priority nobody
                // uses. Among segc's allow rules order does not matter.
                let p = &want[pending[0]];
                let key = (direction(p).to_string(), priority(p));
                let h = held[&key].clone();
                if !want.contains_key(&h) {
                    // Never move a stale rule: that would change what it shadows.
                    out.push(delete(&h));
                    held.remove(&key);
                    continue;
                }
                let used: BTreeSet<u32> = held
                    .keys()
                    .filter(|(d, _)| *d == key.0)
                    .map(|(_, q)| *q)
                    .chain(want.values().filter(|w| direction(w) == key.0).map(priority))
                    .collect();
                let free = (FIRST_PRIORITY..DENY_PRIORITY).find(|q| !used.contains(q)).unwrap_or(DENY_PRIORITY - 1);
                let mut aside = live.get(&h).cloned().unwrap_or_else(|| want[&h].clone());
                aside["priority"] = Value::from(free);
                held.remove(&key);
                held.insert((key.0.clone(), free), h.clone());
                out.push(Change::Put { nsg: nsg.into(), zone: z.clone(), rule: h, props: aside, new: false });
                continue;
            }
        };
        let n = pending.remove(i);
        held.retain(|_, h| h != n);
        held.insert((direction(&want[n]).to_string(), priority(&want[n])), n.clone());
        out.push(put(n, &want[n]));
    }
    out.extend(by_allow_first.iter().filter(|n| !early.contains(*n)).map(|n| delete(n)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(priority: u32, access: &str, port: &str) -> Value {
        json!({"priority": priority, "direction": "Inbound", "access": access, "protocol": "Tcp", "sourcePortRange": "*",
               "destinationPortRange": port, "sourceAddressPrefix": "10.0.0.0/8", "destinationAddressPrefix": "*"})
    }

    fn names(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Put { rule, props, .. } => format!("put {rule}@{}", props["priority"]),
                Change::Delete { rule, .. } => format!("delete {rule}"),
                other => other.to_string(),
            })
            .collect()
    }

    #[test]
    fn a_stale_rule_on_a_needed_priority_goes_first_and_allows_before_denies() {
        let live = BTreeMap::from([
            ("rogue".to_string(), rule(300, "Allow", "22")),
            ("block".to_string(), rule(310, "Deny", "23")),
            ("other".to_string(), rule(320, "Allow", "24")),
            ("keep".to_string(), rule(400, "Allow", "443")),
        ]);
        let want = BTreeMap::from([("keep".to_string(), rule(400, "Allow", "443")), ("new".to_string(), rule(310, "Allow", "8443"))]);
        // `new` needs 310, held by the stale deny `block`: every stale allow
        // goes first, then `block`, then the put.
        assert_eq!(names(&order("n", None, &live, &want)), ["delete other", "delete rogue", "delete block", "put new@310"]);
        // Nothing in the way: put first, then stale allows, then stale denies.
        let want = BTreeMap::from([("keep".to_string(), rule(400, "Allow", "443")), ("new".to_string(), rule(500, "Allow", "8443"))]);
        assert_eq!(names(&order("n", None, &live, &want)), ["put new@500", "delete other", "delete rogue", "delete block"]);
    }

    #[test]
    fn moving_rules_wait_for_each_other_and_a_swap_is_broken() {
        let live = BTreeMap::from([("a".to_string(), rule(300, "Allow", "1")), ("b".to_string(), rule(301, "Allow", "2"))]);
        // b moves to 302, then a onto 301.
        let want = BTreeMap::from([("a".to_string(), rule(301, "Allow", "1")), ("b".to_string(), rule(302, "Allow", "2"))]);
        assert_eq!(names(&order("n", None, &live, &want)), ["put b@302", "put a@301"]);
        // a and b swap: one moves aside first.
        let want = BTreeMap::from([("a".to_string(), rule(301, "Allow", "1")), ("b".to_string(), rule(300, "Allow", "2"))]);
        let got = names(&order("n", None, &live, &want));
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], "put b@100", "{got:?}");
        assert_eq!(&got[1..], ["put a@301", "put b@300"], "{got:?}");
    }
}
