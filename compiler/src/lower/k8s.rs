//! Kubernetes NetworkPolicy (`k8s/networkpolicies.yaml`). A zone with
//! `k8s.namespace` (and optionally `k8s.selector`, such as `"app=vault"`) is
//! the pods it selects; one NetworkPolicy per such zone isolates them for
//! ingress and egress (default deny) and allows exactly what the policy allows.
//! Other zones are `ipBlock`s whose `except` lists the more specific zones
//! inside them, so longest-prefix membership holds. NetworkPolicy only allows:
//! denies are compiled away by allowing exactly `flows - denies`.
//!
//! The policies are typed values borrowing the model's names, written as
//! YAML by hand (no intermediate JSON tree: a large policy has tens of
//! thousands of rules).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use super::cloud::{self, Grant, Peer};
use crate::diag::{Code, Diagnostic};
use crate::ir::{Model, Prefix, Proto, ServiceSet, ZoneId};

/// One zone's NetworkPolicy.
#[derive(Clone, Debug)]
pub struct NetworkPolicy<'m> {
    /// `segc-<zone>`, lower case.
    pub name: String,
    pub namespace: &'m str,
    /// The zone's name, as the `segc.dev/zone` label.
    pub zone_label: String,
    /// The pods it selects (empty: every pod of the namespace).
    pub pod_selector: &'m BTreeMap<String, String>,
    pub ingress: Vec<NpRule<'m>>,
    pub egress: Vec<NpRule<'m>>,
}

/// One ingress (`from`) or egress (`to`) rule.
#[derive(Clone, Debug)]
pub struct NpRule<'m> {
    pub peers: Vec<NpPeer<'m>>,
    /// Empty: every port and protocol.
    pub ports: Vec<NpPort>,
}

#[derive(Clone, Debug)]
pub enum NpPeer<'m> {
    /// The pods of a bound zone.
    Pods { namespace: &'m str, selector: &'m BTreeMap<String, String> },
    /// An unbound zone's addresses: a prefix less the more specific zones inside it.
    Block { cidr: Prefix, except: Vec<Prefix> },
}

#[derive(Clone, Copy, Debug)]
pub struct NpPort {
    /// `TCP` or `UDP`.
    pub protocol: &'static str,
    pub port: u16,
    /// The last port of a range.
    pub end: Option<u16>,
}

fn ident(z: &crate::ir::Zone) -> Option<String> {
    z.bindings.k8s.as_ref().map(crate::ir::K8sBinding::ident)
}

/// Every zone's prefixes with their zone, for `except` lists.
fn all_prefixes(model: &Model) -> Vec<(Prefix, ZoneId)> {
    model.zones.iter().enumerate().flat_map(|(i, z)| z.prefixes.iter().map(move |p| (p.prefix, ZoneId(i as u32)))).collect()
}

/// A zone's addresses as ipBlocks: each of its prefixes, except the more
/// specific prefixes of other zones inside it.
fn ip_blocks<'m>(model: &Model, all: &[(Prefix, ZoneId)], z: ZoneId) -> Vec<NpPeer<'m>> {
    let mut own: Vec<Prefix> = model.zone(z).prefixes.iter().map(|p| p.prefix).collect();
    own.sort();
    own.into_iter()
        .map(|p| {
            let inside: Vec<Prefix> = all.iter().filter(|(q, o)| *o != z && q.len > p.len && p.covers(q)).map(|(q, _)| *q).collect();
            let mut except: Vec<Prefix> = inside.iter().copied().filter(|q| !inside.iter().any(|r| r != q && r.covers(q))).collect();
            except.sort();
            NpPeer::Block { cidr: p, except }
        })
        .collect()
}

fn pods(model: &Model, z: ZoneId) -> Option<(&str, &BTreeMap<String, String>)> {
    model.zone(z).bindings.k8s.as_ref().map(|k| (k.namespace.as_str(), &k.selector))
}

/// Whom a grant names: the pods of a bound zone, or an unbound zone's
/// ipBlocks (computed once a zone).
fn peers<'m>(model: &'m Model, all: &[(Prefix, ZoneId)], blocks: &mut HashMap<ZoneId, Vec<NpPeer<'m>>>, g: &Grant) -> Vec<NpPeer<'m>> {
    match &g.peer {
        Peer::Bound(z) => pods(model, *z).map(|(namespace, selector)| NpPeer::Pods { namespace, selector }).into_iter().collect(),
        Peer::Prefixes(_) => blocks.entry(g.other).or_insert_with(|| ip_blocks(model, all, g.other)).clone(),
    }
}

fn ports(model: &Model, set: &ServiceSet, from: ZoneId, to: ZoneId, diags: &mut Vec<Diagnostic>) -> Option<Vec<NpPort>> {
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
    for (protocol, r) in [("TCP", &set.tcp), ("UDP", &set.udp)] {
        for &(lo, hi) in r.ranges() {
            v.push(NpPort { protocol, port: lo, end: (lo != hi).then_some(hi) });
        }
    }
    Some(v)
}

/// The NetworkPolicies (one per bound zone).
pub fn lower(model: &Model) -> Result<Vec<NetworkPolicy<'_>>, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    // Two pod zones in one namespace must not select the same pods: a
    // selector that is a subset of another's (an empty one included) overlaps.
    let pod_zones: Vec<(&crate::ir::Zone, &String, &BTreeMap<String, String>)> =
        model.zones.iter().filter_map(|z| z.bindings.k8s.as_ref().map(|k| (z, &k.namespace, &k.selector))).collect();
    for (i, (a, ns_a, la)) in pod_zones.iter().enumerate() {
        for (b, ns_b, lb) in &pod_zones[i + 1..] {
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
    let all = all_prefixes(model);
    let mut blocks = HashMap::new();
    let mut peers = |g: &Grant| peers(model, &all, &mut blocks, g);
    let mut policies = Vec::with_capacity(plan.bound.len());
    for b in &plan.bound {
        let z = model.zone(b.zone);
        let Some((namespace, pod_selector)) = pods(model, b.zone) else { continue };
        let mut ingress = Vec::with_capacity(b.ingress.len());
        for g in &b.ingress {
            if let Some(ports) = ports(model, g.set, g.other, b.zone, &mut diags) {
                ingress.push(NpRule { peers: peers(g), ports });
            }
        }
        let mut egress = Vec::with_capacity(b.egress.len());
        for g in &b.egress {
            if let Some(ports) = ports(model, g.set, b.zone, g.other, &mut diags) {
                egress.push(NpRule { peers: peers(g), ports });
            }
        }
        policies.push(NetworkPolicy {
            name: format!("segc-{}", z.name.replace('_', "-").to_lowercase()),
            namespace,
            zone_label: z.name.replace('_', "-"),
            pod_selector,
            ingress,
            egress,
        });
    }
    if diags.is_empty() {
        Ok(policies)
    } else {
        Err(diags)
    }
}

/// Block-style YAML, written as the generic writer this replaced did (keys
/// in sorted order, every string double-quoted): a map's keys at its indent;
/// a sequence's items `- ` at its indent, an item map's first key on the
/// dash line and the rest aligned under it.
struct Yaml(Vec<u8>);

impl Yaml {
    fn pad(&mut self, indent: usize) {
        self.0.resize(self.0.len() + 2 * indent, b' ');
    }

    /// A non-empty map or sequence starts on the next line.
    fn open(&mut self) {
        self.0.push(b'\n');
    }

    /// Starts a sequence value: `[]` when empty (and nothing follows), else
    /// the next line. Whether items follow.
    fn seq(&mut self, empty: bool) -> bool {
        if empty {
            self.0.extend_from_slice(b" []\n");
        } else {
            self.open();
        }
        !empty
    }

    fn key(&mut self, indent: usize, k: &str) {
        self.pad(indent);
        self.name(k);
    }

    /// A key of a map that is an item of the sequence at `indent`.
    fn item_key(&mut self, indent: usize, first: bool, k: &str) {
        if first {
            self.0.push(b' ');
        } else {
            self.pad(indent + 1);
        }
        self.name(k);
    }

    /// A key: bare when plainly safe, else double-quoted.
    fn name(&mut self, k: &str) {
        let plain = k.bytes().next().is_some_and(|c| c.is_ascii_alphabetic())
            && k.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'/'));
        if plain {
            self.0.extend_from_slice(k.as_bytes());
        } else {
            self.quoted(k);
        }
        self.0.push(b':');
    }

    fn dash(&mut self, indent: usize) {
        self.pad(indent);
        self.0.push(b'-');
    }

    fn quoted(&mut self, s: &str) {
        // JSON's quoting is YAML's; serde_json escapes only these bytes.
        if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
            self.0.push(b'"');
            self.0.extend_from_slice(s.as_bytes());
            self.0.push(b'"');
            return;
        }
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.0, s);
    }

    fn str(&mut self, s: &str) {
        self.0.push(b' ');
        self.quoted(s);
        self.0.push(b'\n');
    }

    fn num(&mut self, n: u16) {
        self.0.push(b' ');
        self.0.extend_from_slice(crate::ir::service::range_text(n, n).as_bytes());
        self.0.push(b'\n');
    }

    fn selector(&mut self, indent: usize, labels: &BTreeMap<String, String>) {
        if labels.is_empty() {
            self.0.extend_from_slice(b" {}\n");
            return;
        }
        self.open();
        self.key(indent, "matchLabels");
        self.open();
        for (k, v) in labels {
            self.key(indent + 1, k);
            self.str(v);
        }
    }

    /// `rules` as a sequence at `indent`; `peers_key` is `from` or `to`.
    fn rules(&mut self, indent: usize, rules: &[NpRule<'_>], peers_key: &str) {
        if !self.seq(rules.is_empty()) {
            return;
        }
        for r in rules {
            self.dash(indent);
            // Sorted keys: from < ports < to.
            let mut first = true;
            if peers_key == "from" {
                self.item_key(indent, first, peers_key);
                self.peers(indent + 2, &r.peers);
                first = false;
            }
            if !r.ports.is_empty() {
                self.item_key(indent, first, "ports");
                self.ports(indent + 2, &r.ports);
                first = false;
            }
            if peers_key == "to" {
                self.item_key(indent, first, peers_key);
                self.peers(indent + 2, &r.peers);
            }
        }
    }

    fn peers(&mut self, indent: usize, peers: &[NpPeer<'_>]) {
        if !self.seq(peers.is_empty()) {
            return;
        }
        for p in peers {
            self.dash(indent);
            match p {
                NpPeer::Pods { namespace, selector } => {
                    self.item_key(indent, true, "namespaceSelector");
                    self.open();
                    self.key(indent + 2, "matchLabels");
                    self.open();
                    self.key(indent + 3, "kubernetes.io/metadata.name");
                    self.str(namespace);
                    self.item_key(indent, false, "podSelector");
                    self.selector(indent + 2, selector);
                }
                NpPeer::Block { cidr, except } => {
                    self.item_key(indent, true, "ipBlock");
                    self.open();
                    self.key(indent + 2, "cidr");
                    self.str(&cidr.to_string());
                    if !except.is_empty() {
                        self.key(indent + 2, "except");
                        self.open();
                        for e in except {
                            self.dash(indent + 3);
                            self.str(&e.to_string());
                        }
                    }
                }
            }
        }
    }

    fn ports(&mut self, indent: usize, ports: &[NpPort]) {
        self.open();
        for p in ports {
            self.dash(indent);
            // Sorted keys: endPort < port < protocol.
            match p.end {
                Some(end) => {
                    self.item_key(indent, true, "endPort");
                    self.num(end);
                    self.item_key(indent, false, "port");
                }
                None => self.item_key(indent, true, "port"),
            }
            self.num(p.port);
            self.item_key(indent, false, "protocol");
            self.str(p.protocol);
        }
    }
}

pub fn render(policies: &[NetworkPolicy<'_>]) -> Vec<u8> {
    let rules: usize = policies.iter().map(|p| p.ingress.len() + p.egress.len()).sum();
    let mut y = Yaml(Vec::with_capacity(64 + policies.len() * 512 + rules * 256));
    y.0.extend_from_slice(b"# Generated by segc; do not edit.\n");
    for p in policies {
        y.0.extend_from_slice(b"---");
        y.open();
        y.key(0, "apiVersion");
        y.str("networking.k8s.io/v1");
        y.key(0, "kind");
        y.str("NetworkPolicy");
        y.key(0, "metadata");
        y.open();
        y.key(1, "labels");
        y.open();
        y.key(2, "app.kubernetes.io/managed-by");
        y.str("segc");
        y.key(2, "segc.dev/zone");
        y.str(&p.zone_label);
        y.key(1, "name");
        y.str(&p.name);
        y.key(1, "namespace");
        y.str(p.namespace);
        y.key(0, "spec");
        y.open();
        y.key(1, "egress");
        y.rules(2, &p.egress, "to");
        y.key(1, "ingress");
        y.rules(2, &p.ingress, "from");
        y.key(1, "podSelector");
        y.selector(2, p.pod_selector);
        y.key(1, "policyTypes");
        y.open();
        for t in ["Ingress", "Egress"] {
            y.dash(2);
            y.str(t);
        }
    }
    y.0
}

/// A pod: its namespace and labels.
pub type Pod = (String, BTreeMap<String, String>);

/// NetworkPolicy semantics over the policies: a selected pod is isolated in
/// each direction its policies name and accepts what any of their rules allow.
/// `member` gives an address's pod, if it is one. `None` when neither end is a pod.
pub fn eval(
    policies: &[NetworkPolicy<'_>],
    member: &dyn Fn(IpAddr) -> Option<Pod>,
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
    let label_match = |sel: &BTreeMap<String, String>, labels: &BTreeMap<String, String>| sel.iter().all(|(k, v)| labels.get(k) == Some(v));
    let selects = |pol: &NetworkPolicy<'_>, pod: &Pod| pol.namespace == pod.0 && label_match(pol.pod_selector, &pod.1);
    let peer_ok = |peer: &NpPeer<'_>, ip: IpAddr, pod: &Option<Pod>| match peer {
        NpPeer::Block { cidr, except } => {
            let (f, a) = crate::ir::addr::addr_bits(ip);
            cidr.contains_addr(f, a) && !except.iter().any(|e| e.contains_addr(f, a))
        }
        NpPeer::Pods { namespace, selector } => pod.as_ref().is_some_and(|(ns, labels)| ns == namespace && label_match(selector, labels)),
    };
    let port_ok = |rule: &NpRule<'_>| {
        rule.ports.is_empty()
            || rule.ports.iter().any(|p| {
                let (lo, hi) = (p.port, p.end.unwrap_or(p.port));
                match (p.protocol, proto) {
                    ("TCP", Proto::Tcp(x)) | ("UDP", Proto::Udp(x)) => lo <= x && x <= hi,
                    _ => false,
                }
            })
    };
    let direction = |pod: &Option<Pod>, ingress: bool, peer_ip: IpAddr, peer_pod: &Option<Pod>| {
        let Some(pod) = pod else { return true };
        let selected: Vec<&NetworkPolicy<'_>> = policies.iter().filter(|p| selects(p, pod)).collect();
        if selected.is_empty() {
            return true;
        }
        selected.iter().any(|pol| {
            let rules = if ingress { &pol.ingress } else { &pol.egress };
            rules.iter().any(|rule| port_ok(rule) && rule.peers.iter().any(|peer| peer_ok(peer, peer_ip, peer_pod)))
        })
    };
    Some(direction(&pd, true, src, &ps) && direction(&ps, false, dst, &pd))
}
