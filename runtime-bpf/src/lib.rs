//! segc's eBPF programs and the layout they share with the loader.
//!
//! The programs are C (`c/segc.bpf.c`, layout in `c/segc.h`), built by clang in
//! `build.rs`, or taken from the committed `obj/segc.bpf.o` where clang is not
//! installed. The structs below mirror `segc.h` byte for byte; the tests compile
//! the header and compare every size and offset.
#![no_std]

/// The compiled object, aligned for the ELF parser.
pub static OBJECT: &[u8] = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/segc.bpf.o"))).0;

#[repr(C, align(8))]
struct Aligned<T: ?Sized>(T);

pub const ZONES4_MAX: u32 = 65536;
pub const ZONES6_MAX: u32 = 65536;
pub const RULES_MAX: u32 = 1_048_576;
pub const CONNS_MAX: u32 = 262_144;
pub const PORTS_MAX: u32 = 1_048_576;
pub const PAIRS_MAX: u32 = 262_144;
pub const VERDICTS_MAX: u32 = 65536;
pub const PAIR_COUNTERS_MAX: u32 = 65536;
pub const PAIR_SLOTS: u32 = 8192;
pub const FLOW_SLOTS: u32 = 4096;
pub const FEEDS4_MAX: u32 = 1_048_576;
pub const FEEDS6_MAX: u32 = 1_048_576;

/// Set on a zone trie value when the zone is untrusted and the policy blocks
/// feeds (the runtime then looks the address up in the feed tries).
pub const ZONE_FEED: u32 = 0x8000_0000;

pub const PASS_ETHERTYPES_MAX: usize = 8;

pub const CLASS_ICMP: u8 = 1;
pub const CLASS_TCP: u8 = 6;
pub const CLASS_UDP: u8 = 17;
pub const CLASS_OTHER: u8 = 255;

pub const F_NO_CONNTRACK: u32 = 1;
/// Every packet takes the full path: connection table, verdict cache,
/// policy (benchmarks and tests of that path).
pub const F_NO_FLOW_CACHE: u32 = 2;

pub const CNT_ALLOW: u32 = 0;
pub const CNT_DENY: u32 = 1;
pub const CNT_ESTABLISHED: u32 = 2;
pub const CNT_NOT_IP: u32 = 3;
pub const CNT_MALFORMED: u32 = 4;
pub const CNT_ND: u32 = 5;
pub const CNT_ETHERTYPE: u32 = 6;
pub const CNT_INVALID: u32 = 7;
pub const CNT_FEED: u32 = 8;
pub const CNT_MAX: u32 = 9;

/// Connection states.
pub const CT_NEW: u8 = 0;
pub const CT_ESTABLISHED: u8 = 1;
pub const CT_CLOSING: u8 = 2;

/// `Config::timeouts` index (seconds).
pub const TO_TCP_SYN: usize = 0;
pub const TO_TCP_EST: usize = 1;
pub const TO_TCP_CLOSE: usize = 2;
pub const TO_UDP: usize = 3;
pub const TO_UDP_REPLIED: usize = 4;
pub const TO_ICMP: usize = 5;
pub const TO_OTHER: usize = 6;
pub const TO_MAX: usize = 8;

/// Linux's conntrack defaults, in seconds: TCP established 5 days, closing
/// (after FIN or RST) and unanswered SYN 2 minutes, UDP 30 s (180 s once
/// answered), ICMP 30 s, other protocols 10 minutes.
pub const DEFAULT_TIMEOUTS: [u32; TO_MAX] = [120, 432_000, 120, 30, 180, 30, 600, 0];

/// Map and program names in the object.
pub mod names {
    pub const ZONES4: &str = "segc_zones4";
    pub const ZONES6: &str = "segc_zones6";
    pub const RULES: &str = "segc_rules";
    pub const PORTS: &str = "segc_ports";
    pub const PAIRS: &str = "segc_pairs";
    pub const FEEDS4: &str = "segc_feeds4";
    pub const FEEDS6: &str = "segc_feeds6";
    pub const VERDICTS: &str = "segc_verdicts";
    pub const CLOCK: &str = "segc_clock";
    pub const CONFIG: &str = "segc_config";
    pub const CONNS: &str = "segc_conns";
    pub const COUNTERS: &str = "segc_counters";
    pub const PAIR_COUNTERS: &str = "segc_pair_counters";
    pub const PAIR_SLOTS: &str = "segc_pair_slots";
    pub const EVENTS: &str = "segc_events";
    pub const XDP: &str = "segc_xdp";
    pub const TC: &str = "segc_tc";
    pub const TC_INGRESS: &str = "segc_tc_ingress";
    pub const TC_L3_INGRESS: &str = "segc_tc_l3_ingress";
    pub const TC_L3_EGRESS: &str = "segc_tc_l3_egress";
    pub const XDP_EMPTY: &str = "segc_xdp_empty";
    pub const XDP_YARDSTICK: &str = "segc_xdp_yardstick";
    pub const XDP_CLOCK: &str = "segc_xdp_clock";
}

/// The data part of an IPv4 zone key (after the LPM prefix length).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZoneKey4 {
    pub addr: [u8; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZoneKey6 {
    pub addr: [u8; 16],
}

/// The data part of a range rule key: zones (id + 1), class, port, all
/// big-endian; prefix length 80 + port prefix bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleKey {
    pub src_zone: u32,
    pub dst_zone: u32,
    pub class: u8,
    pub pad: u8,
    pub port: u16,
}

/// An exact policy entry: one port of a zone pair and class.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortKey {
    pub src_zone: u32,
    pub dst_zone: u32,
    pub class: u8,
    pub pad: u8,
    pub port: u16,
}

/// Marks a (zone pair, class) that has port blocks in the range trie.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PairKey {
    pub src_zone: u32,
    pub dst_zone: u32,
    pub class: u8,
    pub pad: [u8; 3],
}

/// Blocks of at most this many ports go to the exact table, port by port.
pub const EXACT_BLOCK_MAX: u32 = 8;

/// The fixed part of a rule key, in bits: two zones, class, pad.
pub const RULE_FIXED_BITS: u32 = 32 + 32 + 8 + 8;
/// The fixed part of a zone key, in bits: none (the key is the address).
pub const ZONE_FIXED_BITS: u32 = 0;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub gen: u32,
    /// Jiffies per second (connection times are jiffies), measured by the loader.
    pub hz: u32,
    pub flags: u32,
    pub sample_every: u32,
    pub n_pass: u32,
    pub timeouts: [u32; TO_MAX],
    /// Big-endian EtherTypes passed besides ARP.
    pub pass_ethertypes: [u16; PASS_ETHERTYPES_MAX],
}

/// A tracked connection (value of the connection table).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conn {
    /// The last packet, in jiffies.
    pub seen: u64,
    pub epoch: u32,
    pub state: u8,
    pub pad: [u8; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnKey {
    pub family: u8,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub pad: u16,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// Traffic per zone pair and verdict (0 allowed, 1 denied) in one epoch.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PairCounterKey {
    pub epoch: u32,
    pub src_zone: u32,
    pub dst_zone: u32,
    pub verdict: u32,
}

/// One zone pair's traffic on one CPU, in its slot of the per-CPU array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PairSlot {
    pub epoch: u32,
    pub src_zone: u32,
    pub dst_zone: u32,
    pub verdict: u32,
    pub packets: u64,
    pub bytes: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub ts_ns: u64,
    pub family: u8,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub direction: u8,
    pub pad: u8,
    pub src_zone: u32,
    pub dst_zone: u32,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: every one of these is `#[repr(C)]`, made only of integers and
    // byte arrays, with no padding the kernel could leave uninitialised.
    unsafe impl aya::Pod for super::ZoneKey4 {}
    unsafe impl aya::Pod for super::ZoneKey6 {}
    unsafe impl aya::Pod for super::RuleKey {}
    unsafe impl aya::Pod for super::PortKey {}
    unsafe impl aya::Pod for super::PairKey {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::ConnKey {}
    unsafe impl aya::Pod for super::Conn {}
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::PairCounterKey {}
    unsafe impl aya::Pod for super::Event {}
    unsafe impl aya::Pod for super::PairSlot {}
}
