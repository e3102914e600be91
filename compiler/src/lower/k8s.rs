//! Kubernetes NetworkPolicy (`k8s/networkpolicies.yaml`). A zone with
//! `k8s.namespace` (and optionally `k8s.selector`, such as `"app=vault"`) is
//! the pods it selects; one NetworkPolicy per such zone isolates them for
//! ingress and egress (default deny) and allows exactly what the policy allows.
//! Other zones are `ipBlock`s whose `except` lists the more specific zones
//! inside them, so longest-prefix membership holds. NetworkPolicy only allows:
//! denies are compiled away by allowing exactly `flows - denies`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{json, Map, Value};

use super::cloud::{self, Grant, Peer};
use crate::diag::{Code, Diagnostic};
use crate::ir::{Model, Prefix, Proto, ServiceSet, ZoneId};

fn ident(z: &crate::ir::Zone) -> Option<String> {
    z.bindings.k8s.as_ref().map(crate::ir::K8sBinding::ident)
}

/// A zone's addresses as ipBlocks: each of its prefixes, except the more
/// specific prefixes of other zones inside it.
fn ip_blocks(model: &Model, z: ZoneId) -> Vec<Value> {
    let all: Vec<(Prefix, ZoneId)> =
        model.zones.iter().enumerate().flat_map(|(i, zz)| zz.prefixes.iter().map(move |p| (p.prefix, ZoneId(i as u32)))).collect();
    let mut out = Vec::new();
    let mut own: Vec<Prefix> = model.zone(z).prefixes.iter().map(|p| p.prefix).collect();
    own.sort();
    for p in own {
        let inside: Vec<Prefix> = all.iter().filter(|(q, o)| *o != z && q.len > p.len && p.covers(q)).map(|(q, _)| *q).collect();
        let mut except: Vec<Prefix> = inside.iter().copied().filter(|q| !inside.iter().any(|r| r != q && r.covers(q))).collect();
        except.sort();
        let mut block = Map::new();
        block.insert("cidr".into(), json!(p.to_string()));
        if !except.is_empty() {
            block.insert("except".into(), json!(except.iter().map(Prefix::to_string).collect::<Vec<_>>()));
        }
        out.push(json!({ "ipBlock": Value::Object(block) }));
    }
    out
}

fn selector_value(model: &Model, z: ZoneId) -> Value {
    let sel = model.zone(z).bindings.k8s.as_ref().map(|k| k.selector.clone()).unwrap_or_default();
    if sel.is_empty() {
        json!({})
    } else {
        json!({ "matchLabels": sel })
    }
}

fn peers(model: &Model, g: &Grant) -> Vec<Value> {
    match &g.peer {
        Peer::Bound(z) => vec![json!({
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": model.zone(*z).bindings.k8s.as_ref().map(|k| &k.namespace)}},
            "podSelector": selector_value(model, *z),
        })],
        Peer::Prefixes(_) => ip_blocks(model, g.other),
    }
}

fn ports(model: &Model, set: &ServiceSet, from: ZoneId, to: ZoneId, diags: &mut Vec<Diagnostic>) -> Option<Vec<Value>> {
    if set.is_any() {
        return Some(Vec::new());
    }
    if !set.icmp.is_empty() {
        diags.push(cloud::inexpressible(model, "Kubernetes NetworkPolicy", from, to, "NetworkPolicy has no ICMP"));
        return None;
    }
    if set.other {
        diags.push(cloud::inexpressible(model, "Kubernetes NetworkPolicy", from, to, "NetworkPolicy selects TCP, UDP and SCTP ports only"));
        return None;
    }
    let mut v = Vec::new();
    for (proto, r) in [("TCP", &set.tcp), ("UDP", &set.udp)] {
        for &(lo, hi) in r.ranges() {
            if lo == hi {
                v.push(json!({"protocol": proto, "port": lo}));
            } else {
                v.push(json!({"protocol": proto, "port": lo, "endPort": hi}));
            }
        }
    }
    Some(v)
}

/// The NetworkPolicies, as JSON values (one per bound zone).
pub fn lower(model: &Model) -> Result<Vec<Value>, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    // Two pod zones in one namespace must not select the same pods: a
    // selector that is a subset of another's (an empty one included) overlaps.
    let pods: Vec<(&crate::ir::Zone, &String, &BTreeMap<String, String>)> =
        model.zones.iter().filter_map(|z| z.bindings.k8s.as_ref().map(|k| (z, &k.namespace, &k.selector))).collect();
    for (i, (a, ns_a, la)) in pods.iter().enumerate() {
        for (b, ns_b, lb) in &pods[i + 1..] {
            let subset = |x: &BTreeMap<String, String>, y: &BTreeMap<String, String>| x.iter().all(|(k, v)| y.get(k) == Some(v));
            if ns_a == ns_b && (subset(la, lb) || subset(lb, la)) {
                diags.push(
                    Diagnostic::new(
                        Code::T002,
                        b.span,
                        format!("zones `{}` and `{}` select overlapping pods in namespace `{ns_a}`", a.name, b.name),
                    )
                    .with_label(a.span, "this zone's selector")
                    .with_help("give each zone a selector that the other's pods do not match"),
                );
            }
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let plan = cloud::plan_by(model, &ident, "k8s.namespace", "Kubernetes", false)?;
    let mut policies = Vec::new();
    for b in &plan.bound {
        let z = model.zone(b.zone);
        let mut ingress = Vec::new();
        for g in &b.ingress {
            if let Some(p) = ports(model, &g.set, g.other, b.zone, &mut diags) {
                let mut rule = Map::new();
                rule.insert("from".into(), json!(peers(model, g)));
                if !p.is_empty() {
                    rule.insert("ports".into(), json!(p));
                }
                ingress.push(Value::Object(rule));
            }
        }
        let mut egress = Vec::new();
        for g in &b.egress {
            if let Some(p) = ports(model, &g.set, b.zone, g.other, &mut diags) {
                let mut rule = Map::new();
                rule.insert("to".into(), json!(peers(model, g)));
                if !p.is_empty() {
                    rule.insert("ports".into(), json!(p));
                }
                egress.push(Value::Object(rule));
            }
        }
        policies.push(json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {
                "name": format!("segc-{}", z.name.replace('_', "-").to_lowercase()),
                "namespace": z.bindings.k8s.as_ref().map(|k| &k.namespace),
                "labels": {"app.kubernetes.io/managed-by": "segc", "segc.dev/zone": z.name.replace('_', "-")},
            },
            "spec": {
                "podSelector": selector_value(model, b.zone),
                "policyTypes": ["Ingress", "Egress"],
                "ingress": ingress,
                "egress": egress,
            },
        }));
    }
    if diags.is_empty() {
        Ok(policies)
    } else {
        Err(diags)
    }
}

/// A mapping key: bare when plainly safe, else double-quoted.
fn key(k: &str) -> String {
    let plain =
        k.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && k.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if plain {
        k.to_string()
    } else {
        serde_json::to_string(k).unwrap_or_default()
    }
}

/// Block-style YAML for JSON values; every string value double-quoted.
fn yaml(v: &Value, indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent);
    match v {
        Value::Object(m) if m.is_empty() => out.push_str(" {}\n"),
        Value::Array(a) if a.is_empty() => out.push_str(" []\n"),
        Value::Object(m) => {
            out.push('\n');
            for (k, val) in m {
                out.push_str(&format!("{pad}{}:", key(k)));
                yaml(val, indent + 1, out);
            }
        }
        Value::Array(a) => {
            out.push('\n');
            for item in a {
                out.push_str(&format!("{pad}-"));
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        // The first key on the dash line, the rest aligned under it.
                        let mut first = true;
                        for (k, val) in m {
                            if first {
                                out.push_str(&format!(" {}:", key(k)));
                                first = false;
                            } else {
                                out.push_str(&format!("{pad}  {}:", key(k)));
                            }
                            yaml(val, indent + 2, out);
                        }
                    }
                    other => yaml(other, indent + 1, out),
                }
            }
        }
        scalar => out.push_str(&format!(" {scalar}\n")),
    }
}

pub fn render(policies: &[Value]) -> Vec<u8> {
    let mut out = String::from("# Generated by segc; do not edit.\n");
    for p in policies {
        out.push_str("---");
        let mut body = String::new();
        yaml(p, 0, &mut body);
        out.push_str(&body);
    }
    out.into_bytes()
}

/// NetworkPolicy semantics over the policies: a selected pod is isolated in
/// each direction its policies name and accepts what any of their rules allow.
/// `member` gives an address's pod (namespace, labels), if it is one. `None`
/// when neither end is a pod.
pub fn eval(
    policies: &[Value],
    member: &dyn Fn(IpAddr) -> Option<(String, BTreeMap<String, String>)>,
    src: IpAddr,
    dst: IpAddr,
    proto: Proto,
) -> Option<bool> {
    let (ps, pd) = (member(src), member(dst));
    if ps.is_none() && pd.is_none() {
        return None;
    }
    if src.is_ipv4() != dst.is_ipv4() {
        return Some(false);
    }
    let selects = |pol: &Value, pod: &(String, BTreeMap<String, String>)| {
        pol["metadata"]["namespace"].as_str() == Some(pod.0.as_str()) && label_match(&pol["spec"]["podSelector"], &pod.1)
    };
    let peer_ok = |peer: &Value, ip: IpAddr, pod: &Option<(String, BTreeMap<String, String>)>| {
        if let Some(block) = peer.get("ipBlock") {
            let inside = |c: &Value| {
                c.as_str().and_then(|c| Prefix::parse(c).ok()).is_some_and(|p| {
                    let (f, a) = crate::ir::addr::addr_bits(ip);
                    p.contains_addr(f, a)
                })
            };
            return inside(&block["cidr"]) && !block["except"].as_array().is_some_and(|e| e.iter().any(inside));
        }
        let Some((ns, labels)) = pod else { return false };
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"].as_str() == Some(ns.as_str())
            && label_match(&peer["podSelector"], labels)
    };
    let port_ok = |rule: &Value| match rule.get("ports").and_then(Value::as_array) {
        None => true,
        Some(ports) => ports.iter().any(|p| {
            let lo = p["port"].as_u64().unwrap_or(0);
            let hi = p["endPort"].as_u64().unwrap_or(lo);
            match (p["protocol"].as_str(), proto) {
                (Some("TCP"), Proto::Tcp(x)) | (Some("UDP"), Proto::Udp(x)) => lo <= u64::from(x) && u64::from(x) <= hi,
                _ => false,
            }
        }),
    };
    let direction =
        |pod: &Option<(String, BTreeMap<String, String>)>,
         key: &str,
         peers_key: &str,
         peer_ip: IpAddr,
         peer_pod: &Option<(String, BTreeMap<String, String>)>| {
            let Some(pod) = pod else { return true };
            let selected: Vec<&Value> = policies.iter().filter(|p| selects(p, pod)).collect();
            if selected.is_empty() {
                return true;
            }
            selected.iter().any(|pol| {
                pol["spec"][key].as_array().into_iter().flatten().any(|rule| {
                    port_ok(rule) && rule[peers_key].as_array().into_iter().flatten().any(|peer| peer_ok(peer, peer_ip, peer_pod))
                })
            })
        };
    Some(direction(&pd, "ingress", "from", src, &ps) && direction(&ps, "egress", "to", dst, &pd))
}

fn label_match(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    selector["matchLabels"].as_object().is_none_or(|m| m.iter().all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str()))
}
