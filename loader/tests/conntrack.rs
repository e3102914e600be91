//! The connection table against a model: a small state machine of what SPEC
//! §5 says (only an allowed packet opens a connection; a reply matches only
//! its connection, a SYN without ACK never does, echo replies match by
//! identifier, ICMP errors pass when they quote a packet of a connection; a
//! swap re-judges a connection's first packet), checked against the real
//! program on random sequences of packets and swaps (proptest).

mod common;
mod craft;

use std::collections::HashMap;
use std::net::IpAddr;

use craft::*;
use proptest::prelude::*;
use segc_compiler::ir::eval::Evaluator;
use segc_compiler::ir::{Model, Proto};
use segc_compiler::lower::bpf;
use segc_compiler::{compile_str, Options};
use segc_loader::{Filter, XDP_PASS};
use segc_runtime_bpf as rt;

const ZONES: &str = "zone c {\n cidrs = [10.1.0.0/24]\n scope = connected\n}\nzone s {\n cidrs = [10.2.0.0/24]\n scope = connected\n}\n";
/// Two policies between the same zones: the sequences swap between them.
const FLOWS: [&str; 2] =
    ["flow c -> s on tcp/443, udp/53, icmp/8\nflow s -> c on tcp/22\n", "flow c -> s on udp/53\nflow s -> c on tcp/22, tcp/443, icmp/8\n"];

/// One packet of a sequence.
#[derive(Clone, Debug)]
enum Pkt {
    Tcp {
        src: u8,
        dst: u8,
        sport: u16,
        dport: u16,
        flags: u8,
    },
    Udp {
        src: u8,
        dst: u8,
        sport: u16,
        dport: u16,
    },
    Echo {
        src: u8,
        dst: u8,
        reply: bool,
        id: u16,
    },
    /// An ICMP error from `from` about the packet `quoted`.
    Error {
        from: u8,
        quoted: Box<Pkt>,
    },
}

/// Hosts 0, 1 are in zone c; 2, 3 in zone s.
fn addr(h: u8) -> IpAddr {
    format!("10.{}.0.{}", 1 + h / 2, 5 + h % 2).parse().expect("address")
}

impl Pkt {
    fn ends(&self) -> (u8, u8) {
        match self {
            Pkt::Tcp { src, dst, .. } | Pkt::Udp { src, dst, .. } | Pkt::Echo { src, dst, .. } => (*src, *dst),
            Pkt::Error { from, quoted } => (*from, quoted.ends().0),
        }
    }

    fn l4(&self) -> L4 {
        match self {
            Pkt::Tcp { sport, dport, flags, .. } => L4::Tcp { sport: *sport, dport: *dport, flags: *flags },
            Pkt::Udp { sport, dport, .. } => L4::Udp { sport: *sport, dport: *dport },
            Pkt::Echo { reply, id, .. } => echo(false, *reply, *id),
            Pkt::Error { .. } => L4::Other { proto: 0 },
        }
    }

    fn frame(&self) -> Vec<u8> {
        match self {
            Pkt::Error { from, quoted } => {
                let (s, d) = quoted.ends();
                icmp_error(addr(*from), addr(s), &ip_packet(addr(s), addr(d), &quoted.l4(), &Ip::default()))
            }
            _ => {
                let (s, d) = self.ends();
                frame(addr(s), addr(d), &self.l4())
            }
        }
    }

    /// What the policy judges: the protocol and port (ICMP type).
    fn proto(&self) -> Proto {
        match self {
            Pkt::Tcp { dport, .. } => Proto::Tcp(*dport),
            Pkt::Udp { dport, .. } => Proto::Udp(*dport),
            Pkt::Echo { reply, .. } => Proto::Icmp(if *reply { 0 } else { 8 }),
            Pkt::Error { .. } => Proto::Icmp(3),
        }
    }

    /// The connection key of the packet's own direction, and of its reverse.
    fn key(&self, reverse: bool) -> Option<(u8, u8, u8, u16, u16)> {
        let (p, s, d, sp, dp) = match self {
            Pkt::Tcp { src, dst, sport, dport, .. } => (6, *src, *dst, *sport, *dport),
            Pkt::Udp { src, dst, sport, dport } => (17, *src, *dst, *sport, *dport),
            Pkt::Echo { src, dst, id, .. } => (1, *src, *dst, *id, *id),
            Pkt::Error { .. } => return None,
        };
        Some(if reverse { (p, d, s, dp, sp) } else { (p, s, d, sp, dp) })
    }
}

const FIN_SYN_RST_ACK_URG: u8 = FIN | SYN | RST | ACK | URG;

fn valid_flags(f: u8) -> bool {
    let f = f & FIN_SYN_RST_ACK_URG;
    [SYN, SYN | URG, SYN | ACK, RST, RST | ACK, FIN | ACK, FIN | ACK | URG, ACK, ACK | URG].contains(&f)
}

/// The model: connections by original key, with the epoch that judged them.
struct Conntrack<'m> {
    policies: [Evaluator<'m>; 2],
    live: usize,
    epoch: u32,
    conns: HashMap<(u8, u8, u8, u16, u16), u32>,
}

impl Conntrack<'_> {
    fn allowed(&self, p: &Pkt) -> bool {
        let (s, d) = p.ends();
        self.policies[self.live].verdict(addr(s), addr(d), p.proto()).allow
    }

    /// The first packet of a connection, from its key.
    fn first(key: (u8, u8, u8, u16, u16)) -> Pkt {
        let (proto, src, dst, sport, dport) = key;
        match proto {
            6 => Pkt::Tcp { src, dst, sport, dport, flags: SYN },
            17 => Pkt::Udp { src, dst, sport, dport },
            _ => Pkt::Echo { src, dst, reply: false, id: sport },
        }
    }

    fn judge(&mut self, p: &Pkt) -> bool {
        if let Pkt::Tcp { flags, .. } = p {
            if !valid_flags(*flags) {
                return false;
            }
        }
        let (echo_req, echo_reply) = match p {
            Pkt::Echo { reply, .. } => (!reply, *reply),
            _ => (false, false),
        };
        let syn_only = matches!(p, Pkt::Tcp { flags, .. } if flags & (SYN | ACK) == SYN);
        let mut hit = None;
        if !echo_reply {
            hit = p.key(false).filter(|k| self.conns.contains_key(k));
        }
        if hit.is_none() && !syn_only && !echo_req {
            hit = p.key(true).filter(|k| self.conns.contains_key(k));
        }
        if let Some(k) = hit {
            if self.conns[&k] != self.epoch {
                if !self.allowed(&Conntrack::first(k)) {
                    self.conns.remove(&k);
                    return false;
                }
                self.conns.insert(k, self.epoch);
            }
            return true;
        }
        if let Pkt::Error { from: _, quoted } = p {
            let related = [quoted.key(false), quoted.key(true)].iter().flatten().any(|k| self.conns.contains_key(k));
            if related {
                return true;
            }
        }
        if !self.allowed(p) {
            return false;
        }
        let opens = match p {
            Pkt::Tcp { flags, .. } => flags & (RST | FIN) == 0,
            Pkt::Udp { .. } => true,
            Pkt::Echo { reply, .. } => !reply,
            Pkt::Error { .. } => false,
        };
        if opens {
            if let Some(k) = p.key(false) {
                self.conns.insert(k, self.epoch);
            }
        }
        true
    }
}

fn packet() -> impl Strategy<Value = Pkt> {
    let host = 0u8..4;
    let port = prop::sample::select(vec![22u16, 53, 443, 40000, 40001]);
    let flags = prop::sample::select(vec![SYN, SYN | ACK, ACK, ACK | PSH, FIN | ACK, RST, RST | ACK, SYN | FIN, 0]);
    let leaf = prop_oneof![
        4 => (host.clone(), host.clone(), port.clone(), port.clone(), flags).prop_map(|(src, dst, sport, dport, flags)| Pkt::Tcp { src, dst, sport, dport, flags }),
        2 => (host.clone(), host.clone(), port.clone(), port.clone()).prop_map(|(src, dst, sport, dport)| Pkt::Udp { src, dst, sport, dport }),
        2 => (host.clone(), host.clone(), any::<bool>(), 1u16..3).prop_map(|(src, dst, reply, id)| Pkt::Echo { src, dst, reply, id }),
    ];
    leaf.prop_recursive(1, 2, 1, move |inner| (0u8..4, inner).prop_map(|(from, q)| Pkt::Error { from, quoted: Box::new(q) }))
}

/// A step: a packet, an answer to (or a repeat of) an earlier packet, an
/// ICMP error about an earlier packet, or a swap to the other policy.
#[derive(Clone, Debug)]
enum Step {
    Packet(Pkt),
    /// The earlier packet (index modulo those sent) reversed; `variant`
    /// picks TCP flags, or echo reply or request.
    Answer(usize, u8),
    /// The earlier packet again, same direction, other TCP flags.
    Again(usize, u8),
    /// An error from host `from` quoting the earlier packet.
    ErrorAbout(usize, u8),
    /// The last packet again, exactly (the flow cache's case).
    Repeat,
    Swap,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        6 => packet().prop_map(Step::Packet),
        5 => (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Step::Answer(i, v)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Step::Again(i, v)),
        2 => (any::<usize>(), 0u8..4).prop_map(|(i, h)| Step::ErrorAbout(i, h)),
        3 => Just(Step::Repeat),
        1 => Just(Step::Swap),
    ];
    prop::collection::vec(step, 1..80)
}

const FLAG_CHOICES: [u8; 8] = [SYN, SYN | ACK, ACK, ACK | PSH, FIN | ACK, RST, RST | ACK, SYN | FIN];

/// The packet a derived step stands for, given the packets sent so far.
fn derive(step: &Step, sent: &[Pkt]) -> Option<Pkt> {
    let pick = |i: usize| sent.get(i % sent.len().max(1)).cloned();
    match step {
        Step::Packet(p) => Some(p.clone()),
        Step::Swap => None,
        Step::Repeat => sent.last().cloned(),
        Step::Answer(i, v) => Some(match pick(*i)? {
            Pkt::Tcp { src, dst, sport, dport, .. } => {
                Pkt::Tcp { src: dst, dst: src, sport: dport, dport: sport, flags: FLAG_CHOICES[*v as usize % 8] }
            }
            Pkt::Udp { src, dst, sport, dport } => Pkt::Udp { src: dst, dst: src, sport: dport, dport: sport },
            Pkt::Echo { src, dst, id, .. } => Pkt::Echo { src: dst, dst: src, reply: v % 4 != 0, id },
            e @ Pkt::Error { .. } => e,
        }),
        Step::Again(i, v) => Some(match pick(*i)? {
            Pkt::Tcp { src, dst, sport, dport, .. } => Pkt::Tcp { src, dst, sport, dport, flags: FLAG_CHOICES[*v as usize % 8] },
            other => other,
        }),
        Step::ErrorAbout(i, from) => Some(Pkt::Error { from: *from, quoted: Box::new(pick(*i)?) }),
    }
}

#[test]
fn the_connection_table_follows_the_model() {
    if !common::require_root("the_connection_table_follows_the_model") {
        return;
    }
    let models: Vec<Model> = FLOWS.iter().map(|f| compile_str(&format!("{ZONES}{f}"), &Options::default()).model).collect();
    let tables: Vec<bpf::Tables> = models.iter().map(bpf::tables).collect();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 64, ..ProptestConfig::default() });
    runner
        .run(&steps(), |steps| {
            let mut f = Filter::load_for_test_runs().expect("the object loads");
            let swap = f.install(&tables[0]).expect("install");
            let mut model = Conntrack {
                policies: [Evaluator::new(&models[0]), Evaluator::new(&models[1])],
                live: 0,
                epoch: swap.generation,
                conns: HashMap::new(),
            };
            let mut sent: Vec<Pkt> = Vec::new();
            for (i, step) in steps.iter().enumerate() {
                if let Step::Swap = step {
                    model.live ^= 1;
                    model.epoch = f.install(&tables[model.live]).expect("swap").generation;
                    continue;
                }
                let Some(p) = derive(step, &sent) else { continue };
                if matches!(p, Pkt::Error { ref quoted, .. } if matches!(**quoted, Pkt::Error { .. })) {
                    continue; // an error about an error: never sent
                }
                let got = f.run_xdp(rt::names::XDP, &p.frame(), 1).expect("test run").0 == XDP_PASS;
                let want = model.judge(&p);
                prop_assert_eq!(got, want, "step {}: {:?} (policy {})", i, p, model.live);
                if !matches!(p, Pkt::Error { .. }) {
                    sent.push(p);
                }
            }
            Ok(())
        })
        .expect("the program's connection table behaves as the model");
}
