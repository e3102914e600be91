/* The layout shared by the eBPF programs and the loader. The Rust mirror is
 * runtime-bpf/src/lib.rs; its tests compile this header and compare every size
 * and offset. Multi-byte key fields are big-endian so that LPM prefixes run
 * from the most significant bit.
 *
 * A policy lives in seven inner maps (zone tries, exact ports, ranged pairs,
 * port-range trie, feed tries), created fresh for each policy and placed in
 * slot `epoch & 1` of seven outer array-of-maps (a feed refresh places the
 * live policy maps and fresh feed tries in the idle slot); a swap fills the idle slot, then
 * flips the epoch in the config with one write. Keys carry no generation. */
#ifndef SEGC_H
#define SEGC_H

#include <linux/types.h>

#define SEGC_ZONES4_MAX 65536
#define SEGC_ZONES6_MAX 65536
#define SEGC_RULES_MAX 1048576
#define SEGC_PORTS_MAX 1048576
#define SEGC_PAIRS_MAX 262144
#define SEGC_VERDICTS_MAX 65536
#define SEGC_CONNS_MAX 262144
#define SEGC_PAIR_COUNTERS_MAX 65536
#define SEGC_PAIR_SLOTS 8192 /* a power of two */
#define SEGC_FLOW_SLOTS 4096 /* a power of two: the per-CPU flow cache */
#define SEGC_EVENTS_BYTES (256 * 1024)
#define SEGC_PASS_ETHERTYPES_MAX 8
#define SEGC_FEEDS4_MAX 1048576
#define SEGC_FEEDS6_MAX 1048576

/* A zone trie value is the zone id + 1, with SEGC_ZONE_FEED set when the zone
 * is untrusted and the policy blocks feeds: only such addresses are looked up
 * in the feed tries (a feed never cuts the policy's own networks). */
#define SEGC_ZONE_FEED 0x80000000u
#define SEGC_ZONE_ID_MASK 0x7fffffffu

/* Protocol classes in rule keys. ICMP covers ICMPv6 for IPv6 packets. */
#define SEGC_CLASS_ICMP 1
#define SEGC_CLASS_TCP 6
#define SEGC_CLASS_UDP 17
#define SEGC_CLASS_OTHER 255

/* config.flags */
#define SEGC_F_NO_CONNTRACK 1u /* judge every packet by policy alone (explain, tests) */
#define SEGC_F_NO_FLOW_CACHE 2u /* every packet takes the full path (benchmarks, tests) */

/* counters index */
#define SEGC_CNT_ALLOW 0       /* new traffic allowed by the policy */
#define SEGC_CNT_DENY 1        /* denied by the policy (a re-judged connection included) */
#define SEGC_CNT_ESTABLISHED 2 /* passed as part of a tracked connection, or related to one */
#define SEGC_CNT_NOT_IP 3      /* ARP and EtherTypes the operator passes */
#define SEGC_CNT_MALFORMED 4   /* truncated, fragmented or unparsable IP, dropped */
#define SEGC_CNT_ND 5          /* IPv6 neighbour discovery, passed */
#define SEGC_CNT_ETHERTYPE 6   /* other EtherTypes (PPPoE, MPLS, ...), dropped */
#define SEGC_CNT_INVALID 7     /* TCP flag combinations no connection uses, dropped */
#define SEGC_CNT_FEED 8        /* denied because an address is in a blocked feed (also in SEGC_CNT_DENY) */
#define SEGC_CNT_MAX 9

/* Connection states. */
#define SEGC_CT_NEW 0       /* TCP: a SYN seen, no answer yet; UDP: one way only */
#define SEGC_CT_ESTABLISHED 1 /* answered */
#define SEGC_CT_CLOSING 2   /* TCP: a FIN or RST seen */

/* config.timeouts index, in seconds */
#define SEGC_TO_TCP_SYN 0
#define SEGC_TO_TCP_EST 1
#define SEGC_TO_TCP_CLOSE 2
#define SEGC_TO_UDP 3
#define SEGC_TO_UDP_REPLIED 4
#define SEGC_TO_ICMP 5
#define SEGC_TO_OTHER 6
#define SEGC_TO_MAX 8

struct segc_zone_key4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct segc_zone_key6 {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Exact policy lookup: one port (or ICMP type; 0 for other protocols) of a
 * zone pair. Present means allowed. Blocks of up to 8 ports are stored here. */
struct segc_port_key {
	__u32 src_zone; /* big-endian, zone id + 1 */
	__u32 dst_zone; /* big-endian, zone id + 1 */
	__u8 class;
	__u8 pad;
	__u16 port; /* big-endian */
};

/* Present when a (zone pair, class) also has larger port blocks in the
 * range trie, so the trie is consulted only where it can match. */
struct segc_pair_key {
	__u32 src_zone; /* big-endian */
	__u32 dst_zone; /* big-endian */
	__u8 class;
	__u8 pad[3];
};

/* Range policy lookup: prefixlen = 80 + port prefix length. Present means allowed. */
struct segc_rule_key {
	__u32 prefixlen;
	__u32 src_zone; /* big-endian, zone id + 1 */
	__u32 dst_zone; /* big-endian, zone id + 1 */
	__u8 class;
	__u8 pad;
	__u16 port; /* big-endian; the ICMP type for SEGC_CLASS_ICMP */
};

/* The policy's verdict for an address pair and service, cached per policy
 * epoch: one lookup instead of two zone tries and the port tables. */
struct segc_verdict_key {
	__u32 epoch;
	__u8 family;
	__u8 class;
	__u16 port; /* as in the rule keys; 0 for SEGC_CLASS_OTHER */
	__u8 saddr[16];
	__u8 daddr[16];
};

struct segc_verdict {
	__u32 src_zone;
	__u32 dst_zone;
	__u32 allowed; /* SEGC_V_* */
};

#define SEGC_V_DENIED 0
#define SEGC_V_ALLOWED 1
#define SEGC_V_FEED 2 /* denied: an address is in a blocked feed */

struct segc_config {
	__u32 gen;          /* the policy epoch; its low bit selects the live slot */
	__u32 hz;           /* jiffies per second, measured by the loader */
	__u32 flags;        /* SEGC_F_* */
	__u32 sample_every; /* one deny event per this many denies (per CPU); 0: none */
	__u32 n_pass;       /* how many of pass_ethertypes are set */
	__u32 timeouts[SEGC_TO_MAX];                    /* seconds, SEGC_TO_* */
	__u16 pass_ethertypes[SEGC_PASS_ETHERTYPES_MAX]; /* big-endian */
};

/* A connection, as its first packet saw it (the original direction). ICMP
 * echo: both ports are the identifier. */
struct segc_conn_key {
	__u8 family; /* 4 or 6 */
	__u8 proto;
	__u16 sport; /* big-endian */
	__u16 dport; /* big-endian */
	__u16 pad;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct segc_conn {
	__u64 seen; /* last packet, either way, in jiffies (cheap to read; timeouts are seconds) */
	__u32 epoch;   /* the policy epoch that last judged the connection */
	__u8 state;    /* SEGC_CT_* */
	__u8 pad[3];
};

struct segc_counter {
	__u64 packets;
	__u64 bytes;
};

/* Traffic per zone pair and verdict, for the live epoch (zone ids are only
 * meaningful within one policy). */
struct segc_pair_counter_key {
	__u32 epoch;
	__u32 src_zone; /* zone id + 1; 0: no zone */
	__u32 dst_zone;
	__u32 verdict;  /* 0 allowed, 1 denied */
};

/* Traffic of one zone pair and verdict on one CPU, in a slot of a per-CPU
 * array picked by a hash of the pair: counted without a helper call. A pair
 * whose slot another pair holds (in the live epoch) is counted in
 * segc_pair_counters instead; readers add both. */
struct segc_pair_slot {
	__u32 epoch;
	__u32 src_zone;
	__u32 dst_zone;
	__u32 verdict;
	__u64 packets;
	__u64 bytes;
};

/* A sampled deny, sent through the ring buffer. */
struct segc_event {
	__u64 ts_ns;
	__u8 family;
	__u8 proto;
	__u16 sport;
	__u16 dport;
	__u8 direction; /* 0 ingress, 1 egress */
	__u8 pad;
	__u32 src_zone;
	__u32 dst_zone;
	__u8 saddr[16];
	__u8 daddr[16];
};

#endif
