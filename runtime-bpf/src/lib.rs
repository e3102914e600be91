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
pub const CACHE_MAX: u32 = 65536;
pub const PAIR_COUNTERS_MAX: u32 = 65536;

pub const CLASS_ICMP: u8 = 1;
pub const CLASS_TCP: u8 = 6;
pub const CLASS_UDP: u8 = 17;
pub const CLASS_OTHER: u8 = 255;

pub const F_NO_CONNTRACK: u32 = 1;

pub const CNT_ALLOW: u32 = 0;
pub const CNT_DENY: u32 = 1;
pub const CNT_ESTABLISHED: u32 = 2;
pub const CNT_NOT_IP: u32 = 3;
pub const CNT_MALFORMED: u32 = 4;
pub const CNT_ND: u32 = 5;
pub const CNT_MAX: u32 = 8;

/// Map and program names in the object.
pub mod names {
    pub const ZONES4: &str = "segc_zones4";
    pub const ZONES6: &str = "segc_zones6";
    pub const RULES: &str = "segc_rules";
    pub const PORTS: &str = "segc_ports";
    pub const PAIRS: &str = "segc_pairs";
    pub const ZONE_CACHE: &str = "segc_zone_cache";
    pub const CONFIG: &str = "segc_config";
    pub const CONNS: &str = "segc_conns";
    pub const COUNTERS: &str = "segc_counters";
    pub const PAIR_COUNTERS: &str = "segc_pair_counters";
    pub const EVENTS: &str = "segc_events";
    pub const XDP: &str = "segc_xdp";
    pub const TC: &str = "segc_tc";
    pub const TC_INGRESS: &str = "segc_tc_ingress";
    pub const XDP_EMPTY: &str = "segc_xdp_empty";
}

/// The data part of an IPv4 zone key (after the LPM prefix length):
/// generation (big-endian) then the address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZoneKey4 {
    pub gen: u32,
    pub addr: [u8; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZoneKey6 {
    pub gen: u32,
    pub addr: [u8; 16],
}

/// The data part of a range rule key: generation, zones (id + 1), class, port, all
/// big-endian; prefix length 112 + port prefix bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleKey {
    pub gen: u32,
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
    pub gen: u32,
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
    pub gen: u32,
    pub src_zone: u32,
    pub dst_zone: u32,
    pub class: u8,
    pub pad: [u8; 3],
}

/// Blocks of at most this many ports go to the exact table, port by port.
pub const EXACT_BLOCK_MAX: u32 = 8;

/// The fixed part of a rule key, in bits: generation, two zones, class, pad.
pub const RULE_FIXED_BITS: u32 = 32 + 32 + 32 + 8 + 8;
/// The fixed part of a zone key, in bits: the generation.
pub const ZONE_FIXED_BITS: u32 = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub gen: u32,
    pub flags: u32,
    pub sample_every: u32,
    pub pad: u32,
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
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::PairCounterKey {}
    unsafe impl aya::Pod for super::Event {}
}
