// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/* segc's enforcement: one decision function behind five entry points. XDP or
 * TC on the ingress of Ethernet links, TC on their egress; TC both ways on L3
 * links (TUN, WireGuard, ipip, gre, sit, ppp), where the packet starts at its
 * IP header and skb->protocol says which IP.
 *
 * Per packet: parse; drop what segc cannot judge; look the packet up in the
 * connection table (forward, then as a reply); else judge it by the live
 * policy (one 4-byte read of the epoch picks the slot of every policy map, so
 * a swap never shows a packet half of a policy; verdicts are cached per
 * address pair and service) and, if allowed, open a
 * connection. A connection remembers the epoch that judged it: the first
 * packet after a swap judges its original direction again, and a connection
 * the new policy does not allow is dropped from then on, both ways.
 *
 * docs/DECISIONS.md (17-25) has the reasons; in short:
 * - ARP and EtherTypes the operator names pass; every other non-IP frame
 *   (PPPoE, MPLS, ...) is dropped. At most two VLAN tags are parsed.
 * - IPv6 neighbour discovery (ICMPv6 133-137 with hop limit 255) passes.
 * - IP fragments are dropped, first and later: a later fragment has no ports
 *   to judge, and fragments are a classic evasion. IPv6 extension headers are
 *   walked, at most four; a longer chain is dropped.
 * - TCP flag combinations no connection ever uses (SYN+FIN, no flags, FIN
 *   without ACK, ...) are dropped, as Linux conntrack marks them invalid.
 * - Conntrack as Linux: only an allowed packet opens a connection (a TCP RST
 *   or FIN never does); a reply matches only its connection, a SYN without
 *   ACK is never a reply, ICMP echo replies match by identifier, ICMP errors
 *   pass when the packet they quote belongs to a connection; entries expire
 *   with Linux's timeouts, set in the config.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "segc.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* TC: hand a passed packet on to the next program (TCX_NEXT), or the next
 * filter of a clsact chain; at the end of either, the packet passes. */
#define SEGC_TC_PASS TC_ACT_UNSPEC

/* An inner map's template. Sizes, not types: the key structs are not
 * otherwise in the object's BTF, and the loader creates the real inner maps
 * (one set per policy) with exactly these sizes and flags. */
#define INNER(name, map_type, key_t, max)                                                                              \
	struct name {                                                                                                  \
		__uint(type, map_type);                                                                                \
		__uint(key_size, sizeof(key_t));                                                                       \
		__uint(value_size, sizeof(__u32));                                                                     \
		__uint(max_entries, max);                                                                              \
		__uint(map_flags, BPF_F_NO_PREALLOC);                                                                  \
	}

INNER(segc_zones4_inner, BPF_MAP_TYPE_LPM_TRIE, struct segc_zone_key4, SEGC_ZONES4_MAX);
INNER(segc_zones6_inner, BPF_MAP_TYPE_LPM_TRIE, struct segc_zone_key6, SEGC_ZONES6_MAX);
INNER(segc_ports_inner, BPF_MAP_TYPE_HASH, struct segc_port_key, SEGC_PORTS_MAX);
INNER(segc_pairs_inner, BPF_MAP_TYPE_HASH, struct segc_pair_key, SEGC_PAIRS_MAX);
INNER(segc_rules_inner, BPF_MAP_TYPE_LPM_TRIE, struct segc_rule_key, SEGC_RULES_MAX);
INNER(segc_feeds4_inner, BPF_MAP_TYPE_LPM_TRIE, struct segc_zone_key4, SEGC_FEEDS4_MAX);
INNER(segc_feeds6_inner, BPF_MAP_TYPE_LPM_TRIE, struct segc_zone_key6, SEGC_FEEDS6_MAX);

#define OUTER(name, inner)                                                                                             \
	struct {                                                                                                       \
		__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);                                                              \
		__uint(max_entries, 2);                                                                                \
		__type(key, __u32);                                                                                    \
		__array(values, struct inner);                                                                         \
	} name SEC(".maps")

OUTER(segc_zones4, segc_zones4_inner);
OUTER(segc_zones6, segc_zones6_inner);
OUTER(segc_ports, segc_ports_inner);
OUTER(segc_pairs, segc_pairs_inner);
OUTER(segc_rules, segc_rules_inner);
OUTER(segc_feeds4, segc_feeds4_inner);
OUTER(segc_feeds6, segc_feeds6_inner);

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct segc_verdict_key);
	__type(value, struct segc_verdict);
	__uint(max_entries, SEGC_VERDICTS_MAX);
} segc_verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct segc_config);
	__uint(max_entries, 1);
} segc_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct segc_conn_key);
	__type(value, struct segc_conn);
	__uint(max_entries, SEGC_CONNS_MAX);
} segc_conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct segc_counter);
	__uint(max_entries, SEGC_CNT_MAX);
} segc_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} segc_deny_seq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__type(key, struct segc_pair_counter_key);
	__type(value, struct segc_counter);
	__uint(max_entries, SEGC_PAIR_COUNTERS_MAX);
} segc_pair_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct segc_pair_slot);
	__uint(max_entries, SEGC_PAIR_SLOTS);
} segc_pair_slots SEC(".maps");

/* The flow cache: per CPU, direct-mapped by a hash of the packet's own
 * 5-tuple. A slot remembers what the full path found for that tuple in an
 * epoch: a connection (its state, which way the packet goes, when the shared
 * entry was last refreshed) or no connection either way (the verdict, and the
 * connection generation it holds for). See flow_fast. */
enum { FLOW_EMPTY, FLOW_CONN, FLOW_NONE };

union flow_key {
	struct segc_conn_key k;
	__u64 w[5];
};

struct segc_flow {
	union flow_key key;
	__u64 refreshed; /* FLOW_CONN: jiffies when the full path last saw the connection */
	__u64 ct_gen;    /* FLOW_NONE: segc_ct_gen when the table was looked up */
	__u32 epoch;
	__u32 verdict;   /* FLOW_NONE: SEGC_V_* */
	__u32 src_zone;
	__u32 dst_zone;
	__u8 kind;       /* FLOW_* */
	__u8 state;      /* FLOW_CONN: SEGC_CT_* as last seen */
	__u8 reply;      /* FLOW_CONN: the tuple is the connection's reply direction */
	__u8 both_ways;  /* FLOW_NONE: the table was looked up both ways */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct segc_flow);
	__uint(max_entries, SEGC_FLOW_SLOTS);
} segc_flows SEC(".maps");

/* Bumped after every connection the filter opens: a cached "no connection"
 * holds only while it has not moved (shared by every CPU). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} segc_ct_gen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SEGC_EVENTS_BYTES);
} segc_events SEC(".maps");

enum verdict { V_PASS, V_DROP };

/* What parsing found. */
enum parsed { P_IP, P_NOT_IP, P_MALFORMED };

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10
#define TCP_URG 0x20

/* Everything the decision needs from a packet. */
struct pkt {
	__u8 family;
	__u8 proto;    /* IP protocol number */
	__u8 class;    /* SEGC_CLASS_* */
	__u8 hoplimit;
	__u16 sport;   /* big-endian; ICMP echo: the identifier */
	__u16 dport;   /* big-endian; ICMP: the type, big-endian */
	__u8 icmp_type;
	__u8 tcp_flags;
	__u16 ethertype; /* big-endian, for non-IP frames */
	__u16 l4off;     /* offset of the L4 header from the start of the frame */
	__u16 pad;
	__u8 saddr[16];
	__u8 daddr[16];
};

static __always_inline void count(__u32 idx, __u64 bytes)
{
	struct segc_counter *c = bpf_map_lookup_elem(&segc_counters, &idx);
	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
}

static __always_inline int is_echo_request(struct pkt *p)
{
	return p->class == SEGC_CLASS_ICMP && p->icmp_type == (p->family == 4 ? 8 : 128);
}

static __always_inline int is_echo_reply(struct pkt *p)
{
	return p->class == SEGC_CLASS_ICMP && p->icmp_type == (p->family == 4 ? 0 : 129);
}

static __always_inline int is_icmp_error(struct pkt *p)
{
	if (p->class != SEGC_CLASS_ICMP)
		return 0;
	if (p->family == 4)
		return p->icmp_type == 3 || p->icmp_type == 11 || p->icmp_type == 12;
	return p->icmp_type >= 1 && p->icmp_type <= 4;
}

/* The L4 fields: ports, ICMP type and identifier, TCP flags. */
static __always_inline int parse_l4(void *data, void *data_end, void *cur, __u8 l4, struct pkt *p)
{
	p->proto = l4;
	p->sport = 0;
	p->dport = 0;
	p->icmp_type = 0;
	p->tcp_flags = 0;
	p->l4off = cur - data;
	if (l4 == IPPROTO_TCP) {
		if (cur + 14 > data_end)
			return P_MALFORMED;
		p->sport = *(__u16 *)cur;
		p->dport = *(__u16 *)(cur + 2);
		p->tcp_flags = *(__u8 *)(cur + 13);
		p->class = SEGC_CLASS_TCP;
	} else if (l4 == IPPROTO_UDP) {
		if (cur + 4 > data_end)
			return P_MALFORMED;
		p->sport = *(__u16 *)cur;
		p->dport = *(__u16 *)(cur + 2);
		p->class = SEGC_CLASS_UDP;
	} else if ((l4 == IPPROTO_ICMP && p->family == 4) || (l4 == IPPROTO_ICMPV6 && p->family == 6)) {
		if (cur + 8 > data_end)
			return P_MALFORMED;
		p->icmp_type = *(__u8 *)cur;
		p->dport = bpf_htons(p->icmp_type);
		p->class = SEGC_CLASS_ICMP;
		if (is_echo_request(p) || is_echo_reply(p)) {
			p->sport = *(__u16 *)(cur + 4);
		}
	} else {
		p->class = SEGC_CLASS_OTHER;
	}
	return P_IP;
}

/* IPv4 or IPv6 at `cur` (IPv6 extension headers walked, at most four). */
static __always_inline int parse_ip(void *data, void *data_end, void *cur, __u16 proto, struct pkt *p)
{
	__u8 l4;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cur;
		if ((void *)(ip + 1) > data_end)
			return P_MALFORMED;
		if (ip->version != 4 || ip->ihl < 5)
			return P_MALFORMED;
		if (ip->frag_off & bpf_htons(0x3fff)) /* MF or an offset */
			return P_MALFORMED;
		p->family = 4;
		__builtin_memset(p->saddr, 0, 16);
		__builtin_memset(p->daddr, 0, 16);
		__builtin_memcpy(p->saddr, &ip->saddr, 4);
		__builtin_memcpy(p->daddr, &ip->daddr, 4);
		p->hoplimit = ip->ttl;
		l4 = ip->protocol;
		cur = (void *)ip + ip->ihl * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cur;
		if ((void *)(ip6 + 1) > data_end)
			return P_MALFORMED;
		if (ip6->version != 6)
			return P_MALFORMED;
		p->family = 6;
		__builtin_memcpy(p->saddr, &ip6->saddr, 16);
		__builtin_memcpy(p->daddr, &ip6->daddr, 16);
		p->hoplimit = ip6->hop_limit;
		l4 = ip6->nexthdr;
		cur = ip6 + 1;
#pragma unroll
		for (int i = 0; i < 4; i++) {
			if (l4 == IPPROTO_FRAGMENT)
				return P_MALFORMED;
			if (l4 != IPPROTO_HOPOPTS && l4 != IPPROTO_ROUTING && l4 != IPPROTO_DSTOPTS)
				break;
			if (cur + 2 > data_end)
				return P_MALFORMED;
			__u8 next = *(__u8 *)cur;
			__u8 len = *(__u8 *)(cur + 1);
			cur += (len + 1) * 8;
			l4 = next;
		}
		if (l4 == IPPROTO_HOPOPTS || l4 == IPPROTO_ROUTING || l4 == IPPROTO_DSTOPTS || l4 == IPPROTO_FRAGMENT)
			return P_MALFORMED;
	} else {
		p->ethertype = proto;
		return P_NOT_IP;
	}
	return parse_l4(data, data_end, cur, l4, p);
}

/* An Ethernet frame: up to two VLAN tags, then IP. */
static __always_inline int parse_eth(void *data, void *data_end, struct pkt *p)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return P_MALFORMED;
	__u16 proto = eth->h_proto;
	void *cur = eth + 1;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if (cur + 4 > data_end)
			return P_MALFORMED;
		proto = *(__u16 *)(cur + 2);
		cur += 4;
	}
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
		return P_MALFORMED;
	return parse_ip(data, data_end, cur, proto, p);
}

/* Whether TCP flags are a combination some connection uses (as Linux's
 * tcp_valid_flags): SYN, SYN+ACK, RST, RST+ACK, FIN+ACK, ACK, each with or
 * without URG; PSH, ECE and CWR do not matter. */
static __always_inline int tcp_flags_valid(__u8 flags)
{
	const __u64 valid = (1ull << TCP_SYN) | (1ull << (TCP_SYN | TCP_URG)) | (1ull << (TCP_SYN | TCP_ACK)) | (1ull << TCP_RST) |
			    (1ull << (TCP_RST | TCP_ACK)) | (1ull << (TCP_FIN | TCP_ACK)) | (1ull << (TCP_FIN | TCP_ACK | TCP_URG)) |
			    (1ull << TCP_ACK) | (1ull << (TCP_ACK | TCP_URG));
	__u8 f = flags & (TCP_FIN | TCP_SYN | TCP_RST | TCP_ACK | TCP_URG);
	return (valid >> f) & 1;
}

static __always_inline __u32 zone_of(__u32 slot, __u8 family, __u8 *addr)
{
	__u32 *z = 0;
	if (family == 4) {
		void *trie = bpf_map_lookup_elem(&segc_zones4, &slot);
		if (!trie)
			return 0;
		struct segc_zone_key4 k = {.prefixlen = 32};
		__builtin_memcpy(k.addr, addr, 4);
		z = bpf_map_lookup_elem(trie, &k);
	} else {
		void *trie = bpf_map_lookup_elem(&segc_zones6, &slot);
		if (!trie)
			return 0;
		struct segc_zone_key6 k = {.prefixlen = 128};
		__builtin_memcpy(k.addr, addr, 16);
		z = bpf_map_lookup_elem(trie, &k);
	}
	return z ? *z : 0;
}

/* Whether an address of a zone flagged SEGC_ZONE_FEED is in a blocked feed. */
static __always_inline int in_feed(__u32 slot, __u8 family, __u8 *addr, __u32 zone)
{
	if (!(zone & SEGC_ZONE_FEED))
		return 0;
	if (family == 4) {
		void *trie = bpf_map_lookup_elem(&segc_feeds4, &slot);
		if (!trie)
			return 0;
		struct segc_zone_key4 k = {.prefixlen = 32};
		__builtin_memcpy(k.addr, addr, 4);
		return bpf_map_lookup_elem(trie, &k) != 0;
	}
	void *trie = bpf_map_lookup_elem(&segc_feeds6, &slot);
	if (!trie)
		return 0;
	struct segc_zone_key6 k = {.prefixlen = 128};
	__builtin_memcpy(k.addr, addr, 16);
	return bpf_map_lookup_elem(trie, &k) != 0;
}

/* Whether the policy allows the packet between the two zones: one exact
 * lookup, and the range trie only where the pair has ranges for the class. */
static __always_inline int allowed(__u32 slot, __u32 sz, __u32 dz, struct pkt *p)
{
	__u16 port = p->class == SEGC_CLASS_OTHER ? 0 : p->dport;
	void *ports = bpf_map_lookup_elem(&segc_ports, &slot);
	if (!ports)
		return 0;
	struct segc_port_key pk = {.src_zone = bpf_htonl(sz), .dst_zone = bpf_htonl(dz), .class = p->class, .pad = 0, .port = port};
	if (bpf_map_lookup_elem(ports, &pk))
		return 1;
	void *pairs = bpf_map_lookup_elem(&segc_pairs, &slot);
	if (!pairs)
		return 0;
	struct segc_pair_key pair = {.src_zone = bpf_htonl(sz), .dst_zone = bpf_htonl(dz), .class = p->class};
	if (!bpf_map_lookup_elem(pairs, &pair))
		return 0;
	void *rules = bpf_map_lookup_elem(&segc_rules, &slot);
	if (!rules)
		return 0;
	struct segc_rule_key k = {.prefixlen = 96, .src_zone = bpf_htonl(sz), .dst_zone = bpf_htonl(dz), .class = p->class, .pad = 0, .port = port};
	return bpf_map_lookup_elem(rules, &k) != 0;
}

/* The policy's verdict (SEGC_V_*) for a packet in the live epoch, with its zones: from
 * the verdict cache, or from the zone tries and the port tables (then
 * cached). The cache is keyed by the epoch, which never repeats: an entry
 * from an older policy cannot match, even when its slot is reused. */
static __always_inline int judge(__u32 epoch, struct pkt *p, __u32 *sz, __u32 *dz)
{
	struct segc_verdict_key k = {.epoch = epoch, .family = p->family, .class = p->class};
	k.port = p->class == SEGC_CLASS_OTHER ? 0 : p->dport;
	__builtin_memcpy(k.saddr, p->saddr, 16);
	__builtin_memcpy(k.daddr, p->daddr, 16);
	struct segc_verdict *hit = bpf_map_lookup_elem(&segc_verdicts, &k);
	if (hit) {
		*sz = hit->src_zone;
		*dz = hit->dst_zone;
		return hit->allowed;
	}
	__u32 slot = epoch & 1;
	__u32 sraw = zone_of(slot, p->family, p->saddr), draw = zone_of(slot, p->family, p->daddr);
	struct segc_verdict v = {.src_zone = sraw & SEGC_ZONE_ID_MASK, .dst_zone = draw & SEGC_ZONE_ID_MASK, .allowed = SEGC_V_DENIED};
	if (v.src_zone && v.dst_zone) {
		if (in_feed(slot, p->family, p->saddr, sraw) || in_feed(slot, p->family, p->daddr, draw))
			v.allowed = SEGC_V_FEED;
		else
			v.allowed = allowed(slot, v.src_zone, v.dst_zone, p) ? SEGC_V_ALLOWED : SEGC_V_DENIED;
	}
	bpf_map_update_elem(&segc_verdicts, &k, &v, BPF_ANY);
	*sz = v.src_zone;
	*dz = v.dst_zone;
	return v.allowed;
}

static __always_inline void conn_key(struct segc_conn_key *k, struct pkt *p, int reverse)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->family = p->family;
	k->proto = p->proto;
	if (reverse) {
		k->sport = p->dport;
		k->dport = p->sport;
		__builtin_memcpy(k->saddr, p->daddr, 16);
		__builtin_memcpy(k->daddr, p->saddr, 16);
	} else {
		k->sport = p->sport;
		k->dport = p->dport;
		__builtin_memcpy(k->saddr, p->saddr, 16);
		__builtin_memcpy(k->daddr, p->daddr, 16);
	}
	if (p->class == SEGC_CLASS_ICMP) {
		/* Echo: both ports are the identifier, so a reply's reverse key is the request's. */
		k->sport = p->sport;
		k->dport = p->sport;
	}
}

/* The first packet of a connection, from its key (its original direction). */
static __always_inline void conn_packet(struct segc_conn_key *k, struct pkt *q)
{
	__builtin_memset(q, 0, sizeof(*q));
	q->family = k->family;
	q->proto = k->proto;
	q->sport = k->sport;
	q->dport = k->dport;
	__builtin_memcpy(q->saddr, k->saddr, 16);
	__builtin_memcpy(q->daddr, k->daddr, 16);
	if (k->proto == IPPROTO_TCP)
		q->class = SEGC_CLASS_TCP;
	else if (k->proto == IPPROTO_UDP)
		q->class = SEGC_CLASS_UDP;
	else if ((k->proto == IPPROTO_ICMP && k->family == 4) || (k->proto == IPPROTO_ICMPV6 && k->family == 6)) {
		q->class = SEGC_CLASS_ICMP;
		q->icmp_type = k->family == 4 ? 8 : 128;
		q->dport = bpf_htons(q->icmp_type);
	} else
		q->class = SEGC_CLASS_OTHER;
}

/* A connection's timeout, in jiffies. */
static __always_inline __u64 timeout(struct segc_config *cfg, __u8 proto, __u8 state)
{
	__u32 idx;
	if (proto == IPPROTO_TCP)
		idx = state == SEGC_CT_NEW ? SEGC_TO_TCP_SYN : state == SEGC_CT_CLOSING ? SEGC_TO_TCP_CLOSE : SEGC_TO_TCP_EST;
	else if (proto == IPPROTO_UDP)
		idx = state == SEGC_CT_NEW ? SEGC_TO_UDP : SEGC_TO_UDP_REPLIED;
	else if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6)
		idx = SEGC_TO_ICMP;
	else
		idx = SEGC_TO_OTHER;
	if (idx >= SEGC_TO_MAX)
		return 0;
	return (__u64)cfg->timeouts[idx] * cfg->hz;
}

/* Whether an allowed packet opens a connection: TCP SYN or mid-stream ACK
 * (picked up as Linux does), never RST or FIN; UDP and other protocols; ICMP
 * echo requests. */
static __always_inline int opens(struct pkt *p, __u8 *state)
{
	if (p->class == SEGC_CLASS_TCP) {
		if (p->tcp_flags & (TCP_RST | TCP_FIN))
			return 0;
		*state = (p->tcp_flags & TCP_SYN) ? SEGC_CT_NEW : SEGC_CT_ESTABLISHED;
		return 1;
	}
	*state = SEGC_CT_NEW;
	if (p->class == SEGC_CLASS_ICMP)
		return is_echo_request(p);
	return 1;
}

/* Moves a connection's state on for a packet of it. */
static __always_inline void advance(struct segc_conn *c, struct pkt *p, int reply)
{
	if (p->class == SEGC_CLASS_TCP) {
		if (p->tcp_flags & (TCP_RST | TCP_FIN))
			c->state = SEGC_CT_CLOSING;
		else if (reply && c->state == SEGC_CT_NEW && (p->tcp_flags & TCP_ACK))
			c->state = SEGC_CT_ESTABLISHED;
	} else if (reply) {
		c->state = SEGC_CT_ESTABLISHED;
	}
}

/* The ports of a quoted packet: an ICMP error carries the first 8 bytes of
 * the transport header only (no TCP flags). */
static __always_inline int parse_quoted(void *data_end, void *cur, __u8 l4, struct pkt *q)
{
	q->proto = l4;
	if (cur + 8 > data_end)
		return 0;
	if (l4 == IPPROTO_TCP || l4 == IPPROTO_UDP) {
		q->class = l4 == IPPROTO_TCP ? SEGC_CLASS_TCP : SEGC_CLASS_UDP;
		q->sport = *(__u16 *)cur;
		q->dport = *(__u16 *)(cur + 2);
		return 1;
	}
	if ((l4 == IPPROTO_ICMP && q->family == 4) || (l4 == IPPROTO_ICMPV6 && q->family == 6)) {
		q->class = SEGC_CLASS_ICMP;
		q->icmp_type = *(__u8 *)cur;
		q->sport = *(__u16 *)(cur + 4);
		return is_echo_request(q) || is_echo_reply(q);
	}
	q->class = SEGC_CLASS_OTHER;
	return 1;
}

/* An ICMP error quoting a packet of a tracked connection (either way), sent
 * back to that packet's source: RELATED. */
static __always_inline int related(void *data, void *data_end, struct pkt *p)
{
	struct pkt q = {};
	/* Bounded, so the verifier can prove the quoted header inside the packet
	 * (an error behind IPv6 extension headers longer than this is not related). */
	if (p->l4off > 4000)
		return 0;
	__u32 off = p->l4off & 0xfff;
	void *inner = data + off + 8;
	if (p->family == 4) {
		struct iphdr *ip = inner;
		if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5)
			return 0;
		q.family = 4;
		__builtin_memcpy(q.saddr, &ip->saddr, 4);
		__builtin_memcpy(q.daddr, &ip->daddr, 4);
		if (!parse_quoted(data_end, (void *)ip + ip->ihl * 4, ip->protocol, &q))
			return 0;
	} else {
		struct ipv6hdr *ip6 = inner;
		if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
			return 0;
		q.family = 6;
		__builtin_memcpy(q.saddr, &ip6->saddr, 16);
		__builtin_memcpy(q.daddr, &ip6->daddr, 16);
		if (!parse_quoted(data_end, ip6 + 1, ip6->nexthdr, &q))
			return 0;
	}
	/* The error goes back to the quoted packet's source. */
	__u64 a0, a1, b0, b1;
	__builtin_memcpy(&a0, q.saddr, 8);
	__builtin_memcpy(&a1, q.saddr + 8, 8);
	__builtin_memcpy(&b0, p->daddr, 8);
	__builtin_memcpy(&b1, p->daddr + 8, 8);
	if (a0 != b0 || a1 != b1)
		return 0;
	struct segc_conn_key k;
	conn_key(&k, &q, 0);
	if (bpf_map_lookup_elem(&segc_conns, &k))
		return 1;
	conn_key(&k, &q, 1);
	return bpf_map_lookup_elem(&segc_conns, &k) != 0;
}

/* Per-pair traffic: in the pair's slot of the per-CPU array (an inlined
 * lookup), claimed afresh in each epoch; where another pair holds the slot,
 * in the LRU hash (a helper call, the rare path). */
static __always_inline void count_pair(__u32 epoch, __u32 sz, __u32 dz, __u32 verdict, __u64 bytes)
{
	__u32 idx = (sz * 2654435761u ^ dz * 2246822519u ^ verdict * 3266489917u) & (SEGC_PAIR_SLOTS - 1);
	struct segc_pair_slot *slot = bpf_map_lookup_elem(&segc_pair_slots, &idx);
	if (slot) {
		if (slot->epoch != epoch) {
			slot->epoch = epoch;
			slot->src_zone = sz;
			slot->dst_zone = dz;
			slot->verdict = verdict;
			slot->packets = 0;
			slot->bytes = 0;
		}
		if (slot->src_zone == sz && slot->dst_zone == dz && slot->verdict == verdict) {
			slot->packets += 1;
			slot->bytes += bytes;
			return;
		}
	}
	struct segc_pair_counter_key k = {.epoch = epoch, .src_zone = sz, .dst_zone = dz, .verdict = verdict};
	struct segc_counter *c = bpf_map_lookup_elem(&segc_pair_counters, &k);
	if (!c) {
		struct segc_counter zero = {};
		bpf_map_update_elem(&segc_pair_counters, &k, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&segc_pair_counters, &k);
		if (!c)
			return;
	}
	c->packets += 1;
	c->bytes += bytes;
}

static __always_inline void deny_event(struct segc_config *cfg, struct pkt *p, __u32 sz, __u32 dz, __u8 dir)
{
	if (!cfg->sample_every)
		return;
	__u32 zero = 0;
	__u64 *seq = bpf_map_lookup_elem(&segc_deny_seq, &zero);
	if (!seq)
		return;
	*seq += 1;
	if (*seq % cfg->sample_every != 0)
		return;
	struct segc_event *e = bpf_ringbuf_reserve(&segc_events, sizeof(*e), 0);
	if (!e)
		return; /* full: the rate limit of last resort */
	e->ts_ns = bpf_ktime_get_ns();
	e->family = p->family;
	e->proto = p->proto;
	e->sport = p->sport;
	e->dport = p->dport;
	e->direction = dir;
	e->pad = 0;
	e->src_zone = sz;
	e->dst_zone = dz;
	__builtin_memcpy(e->saddr, p->saddr, 16);
	__builtin_memcpy(e->daddr, p->daddr, 16);
	bpf_ringbuf_submit(e, 0);
}

static __always_inline enum verdict deny(struct segc_config *cfg, struct pkt *p, __u32 epoch, __u32 sz, __u32 dz, __u8 dir, __u64 len,
					 int why)
{
	count(SEGC_CNT_DENY, len);
	if (why == SEGC_V_FEED)
		count(SEGC_CNT_FEED, len);
	count_pair(epoch, sz, dz, 1, len);
	deny_event(cfg, p, sz, dz, dir);
	return V_DROP;
}

/* Whether the packet may answer a connection: a SYN without ACK opens, it
 * never answers; an echo request is never a reply. */
static __always_inline int may_reply(struct pkt *p)
{
	return !(p->class == SEGC_CLASS_TCP && (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN) && !is_echo_request(p);
}

/* Whether a packet would move its connection's state on (see advance). */
static __always_inline int moves(struct pkt *p, __u8 state, int reply)
{
	if (p->class == SEGC_CLASS_TCP)
		return (p->tcp_flags & (TCP_RST | TCP_FIN)) || (reply && state == SEGC_CT_NEW && (p->tcp_flags & TCP_ACK));
	return reply && state != SEGC_CT_ESTABLISHED;
}

static __always_inline __u64 *ct_gen(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&segc_ct_gen, &zero);
}

/* The packet's slot in the flow cache (TCP, UDP and other protocols; ICMP
 * always takes the full path, for its echo and error rules). */
static __always_inline struct segc_flow *flow_slot(struct pkt *p, union flow_key *fk)
{
	if (p->class == SEGC_CLASS_ICMP)
		return 0;
	conn_key(&fk->k, p, 0);
	__u64 h = fk->w[0] * 0x9e3779b97f4a7c15ull;
#pragma unroll
	for (int i = 1; i < 5; i++)
		h = (h ^ fk->w[i]) * 0x9e3779b97f4a7c15ull;
	__u32 idx = (__u32)(h >> 40) & (SEGC_FLOW_SLOTS - 1);
	return bpf_map_lookup_elem(&segc_flows, &idx);
}

static __always_inline int flow_matches(struct segc_flow *f, union flow_key *fk, __u32 epoch)
{
	return f->kind != FLOW_EMPTY && f->epoch == epoch && f->key.w[0] == fk->w[0] && f->key.w[1] == fk->w[1] &&
	       f->key.w[2] == fk->w[2] && f->key.w[3] == fk->w[3] && f->key.w[4] == fk->w[4];
}

static __always_inline void flow_conn(struct segc_flow *f, union flow_key *fk, __u32 epoch, __u64 now, __u8 state, int reply)
{
	if (!f)
		return;
	f->key = *fk;
	f->kind = FLOW_CONN;
	f->epoch = epoch;
	f->refreshed = now;
	f->state = state;
	f->reply = reply;
}

/* The connection table's verdict: 1 pass, -1 drop (re-judged away), 0 no
 * connection (judge by policy). A connection found is remembered in the
 * packet's flow slot `f` (when it has one). */
static __always_inline int tracked(struct segc_config *cfg, struct pkt *p, __u32 epoch, __u8 dir, __u64 len, struct segc_flow *f,
				   union flow_key *fk)
{
	struct segc_conn_key k;
	struct segc_conn *c = 0;
	int reply = 0;
	if (!is_echo_reply(p)) {
		conn_key(&k, p, 0);
		c = bpf_map_lookup_elem(&segc_conns, &k);
	}
	if (!c && may_reply(p)) {
		conn_key(&k, p, 1);
		c = bpf_map_lookup_elem(&segc_conns, &k);
		reply = 1;
	}
	if (!c)
		return 0;
	/* Jiffies: the verifier inlines this read, where bpf_ktime_get_ns() is a
	 * helper call that cost a third of the established path. */
	__u64 now = bpf_jiffies64();
	if (now - c->seen > timeout(cfg, k.proto, c->state)) {
		bpf_map_delete_elem(&segc_conns, &k);
		return 0;
	}
	if (c->epoch != epoch) {
		/* The policy changed since the connection was judged: judge its
		 * first packet again. */
		struct pkt q;
		__u32 sz, dz;
		conn_packet(&k, &q);
		int j = judge(epoch, &q, &sz, &dz);
		if (j != SEGC_V_ALLOWED) {
			bpf_map_delete_elem(&segc_conns, &k);
			deny(cfg, p, epoch, sz, dz, dir, len, j);
			return -1;
		}
		c->epoch = epoch;
	}
	advance(c, p, reply);
	c->seen = now;
	flow_conn(f, fk, epoch, now, c->state, reply);
	count(SEGC_CNT_ESTABLISHED, len);
	return 1;
}

/* The flow cache's answer for a packet whose tuple holds slot `f` in this
 * epoch: V_PASS or V_DROP as the full path would decide, or -1 to take it.
 * - A connection: passes while the full path saw it less than a second ago
 *   (it refreshes the shared entry, so its timeout runs as without the cache)
 *   and within its timeout, and while the packet would not move its state
 *   (RST, FIN, the reply that establishes it take the full path), and for
 *   the reply direction only while the packet may be a reply (a SYN back on
 *   the reply's tuple is a new connection, never a reply).
 * - No connection either way: holds while no connection was opened since
 *   (segc_ct_gen); then the cached verdict decides, except for an allowed
 *   packet that would open one.
 * Everything the full path counts or reports is counted and reported. */
static __always_inline int flow_fast(struct segc_config *cfg, struct pkt *p, struct segc_flow *f, __u64 gen, __u32 epoch, __u8 dir,
				     __u64 len)
{
	if (f->kind == FLOW_CONN) {
		__u64 age = bpf_jiffies64() - f->refreshed;
		if (age >= cfg->hz || age > timeout(cfg, p->proto, f->state) || moves(p, f->state, f->reply) || (f->reply && !may_reply(p)))
			return -1;
		count(SEGC_CNT_ESTABLISHED, len);
		return V_PASS;
	}
	if (f->ct_gen != gen || (may_reply(p) && !f->both_ways))
		return -1;
	if (f->verdict == SEGC_V_ALLOWED) {
		__u8 state;
		if (opens(p, &state))
			return -1;
		count(SEGC_CNT_ALLOW, len);
		count_pair(epoch, f->src_zone, f->dst_zone, 0, len);
		return V_PASS;
	}
	return deny(cfg, p, epoch, f->src_zone, f->dst_zone, dir, len, f->verdict);
}

static __always_inline enum verdict decide(void *data, void *data_end, int parsed, struct pkt *p, __u8 dir)
{
	__u64 len = data_end - data;
	__u32 zero = 0;
	struct segc_config *cfg = bpf_map_lookup_elem(&segc_config, &zero);
	if (!cfg)
		return V_DROP;
	if (parsed == P_MALFORMED) {
		count(SEGC_CNT_MALFORMED, len);
		return V_DROP;
	}
	if (parsed == P_NOT_IP) {
		if (p->ethertype == bpf_htons(ETH_P_ARP)) {
			count(SEGC_CNT_NOT_IP, len);
			return V_PASS;
		}
#pragma unroll
		for (int i = 0; i < SEGC_PASS_ETHERTYPES_MAX; i++) {
			if (i < cfg->n_pass && cfg->pass_ethertypes[i] == p->ethertype) {
				count(SEGC_CNT_NOT_IP, len);
				return V_PASS;
			}
		}
		count(SEGC_CNT_ETHERTYPE, len);
		return V_DROP;
	}
	if (p->family == 6 && p->class == SEGC_CLASS_ICMP && p->icmp_type >= 133 && p->icmp_type <= 137 && p->hoplimit == 255) {
		count(SEGC_CNT_ND, len);
		return V_PASS;
	}
	if (p->class == SEGC_CLASS_TCP && !tcp_flags_valid(p->tcp_flags)) {
		count(SEGC_CNT_INVALID, len);
		return V_DROP;
	}
	__u32 epoch = cfg->gen;
	int track = !(cfg->flags & SEGC_F_NO_CONNTRACK);
	union flow_key fk;
	struct segc_flow *f = 0;
	__u64 gen = 0;
	if (track) {
		__u64 *g = ct_gen();
		if (!g)
			return V_DROP;
		/* Read before the table is looked up: a connection opened after
		 * this read moves it, and the "no connection" cached below with it
		 * no longer holds. */
		gen = *g;
		if (!(cfg->flags & SEGC_F_NO_FLOW_CACHE))
			f = flow_slot(p, &fk);
		if (f && flow_matches(f, &fk, epoch)) {
			int v = flow_fast(cfg, p, f, gen, epoch, dir, len);
			if (v >= 0)
				return v;
		}
		int t = tracked(cfg, p, epoch, dir, len, f, &fk);
		if (t > 0)
			return V_PASS;
		if (t < 0)
			return V_DROP;
		if (is_icmp_error(p) && related(data, data_end, p)) {
			count(SEGC_CNT_ESTABLISHED, len);
			return V_PASS;
		}
	}
	__u32 sz, dz;
	int j = judge(epoch, p, &sz, &dz);
	__u8 state;
	if (j == SEGC_V_ALLOWED && track && opens(p, &state)) {
		struct segc_conn_key k;
		__u64 now = bpf_jiffies64();
		struct segc_conn c = {.seen = now, .epoch = epoch, .state = state};
		conn_key(&k, p, 0);
		bpf_map_update_elem(&segc_conns, &k, &c, BPF_ANY);
		__u64 *g = ct_gen();
		if (g)
			__sync_fetch_and_add(g, 1);
		flow_conn(f, &fk, epoch, now, state, 0);
	} else if (f) {
		f->key = fk;
		f->kind = FLOW_NONE;
		f->epoch = epoch;
		f->ct_gen = gen;
		f->both_ways = may_reply(p);
		f->verdict = j;
		f->src_zone = sz;
		f->dst_zone = dz;
	}
	if (j == SEGC_V_ALLOWED) {
		count(SEGC_CNT_ALLOW, len);
		count_pair(epoch, sz, dz, 0, len);
		return V_PASS;
	}
	return deny(cfg, p, epoch, sz, dz, dir, len, j);
}

SEC("xdp")
int segc_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct pkt p = {};
	int parsed = parse_eth(data, data_end, &p);
	return decide(data, data_end, parsed, &p, 0) == V_PASS ? XDP_PASS : XDP_DROP;
}

static __always_inline int tc_eth(struct __sk_buff *skb, __u8 dir)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct pkt p = {};
	int parsed = parse_eth(data, data_end, &p);
	return decide(data, data_end, parsed, &p, dir) == V_PASS ? SEGC_TC_PASS : TC_ACT_SHOT;
}

/* L3 links: no link-layer header; skb->protocol names the IP version. */
static __always_inline int tc_l3(struct __sk_buff *skb, __u8 dir)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct pkt p = {};
	int parsed = parse_ip(data, data_end, data, (__u16)skb->protocol, &p);
	return decide(data, data_end, parsed, &p, dir) == V_PASS ? SEGC_TC_PASS : TC_ACT_SHOT;
}

SEC("classifier")
int segc_tc(struct __sk_buff *skb)
{
	return tc_eth(skb, 1);
}

/* Ingress through TC, for virtual devices (veth) where generic XDP costs the
 * GRO/GSO fast path. */
SEC("classifier")
int segc_tc_ingress(struct __sk_buff *skb)
{
	return tc_eth(skb, 0);
}

SEC("classifier")
int segc_tc_l3_ingress(struct __sk_buff *skb)
{
	return tc_l3(skb, 0);
}

SEC("classifier")
int segc_tc_l3_egress(struct __sk_buff *skb)
{
	return tc_l3(skb, 1);
}

/* The empty program the benchmark measures the filter against. */
SEC("xdp")
int segc_xdp_empty(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* The perf gate's yardstick: the primitives every filtered packet pays for,
 * written apart from the filter so a change to the filter never moves it.
 * It bounds-checks Ethernet, IPv4 and TCP headers, hashes the 5-tuple into a
 * slot of the per-CPU flow cache and compares the slot's key, reads the
 * config, the connection generation and jiffies, and looks the tuple up in
 * the connection table (a helper call). It reads and never writes. The gate
 * divides the filter's time by this program's, so what the machine charges
 * for these primitives (which moves between hosts and kernels far more than
 * the empty program does) cancels out. */
SEC("xdp")
int segc_xdp_yardstick(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 || ip->protocol != IPPROTO_TCP)
		return XDP_PASS;
	__u8 *tcp = (void *)(ip + 1);
	if (tcp + 20 > (__u8 *)data_end)
		return XDP_PASS;
	__u32 zero = 0;
	struct segc_config *cfg = bpf_map_lookup_elem(&segc_config, &zero);
	__u64 *g = bpf_map_lookup_elem(&segc_ct_gen, &zero);
	if (!cfg || !g)
		return XDP_PASS;
	union flow_key fk = {};
	fk.k.family = 4;
	__builtin_memcpy(fk.k.saddr, &ip->saddr, 4);
	__builtin_memcpy(fk.k.daddr, &ip->daddr, 4);
	__builtin_memcpy(&fk.k.sport, tcp, 2);
	__builtin_memcpy(&fk.k.dport, tcp + 2, 2);
	fk.k.proto = IPPROTO_TCP;
	__u64 h = fk.w[0] * 0x9e3779b97f4a7c15ull;
#pragma unroll
	for (int i = 1; i < 5; i++)
		h = (h ^ fk.w[i]) * 0x9e3779b97f4a7c15ull;
	__u32 idx = (__u32)(h >> 40) & (SEGC_FLOW_SLOTS - 1);
	struct segc_flow *f = bpf_map_lookup_elem(&segc_flows, &idx);
	if (!f)
		return XDP_PASS;
	int same = f->epoch == cfg->gen && f->ct_gen == *g && f->key.w[0] == fk.w[0] && f->key.w[1] == fk.w[1] &&
		   f->key.w[2] == fk.w[2] && f->key.w[3] == fk.w[3] && f->key.w[4] == fk.w[4];
	__u64 age = bpf_jiffies64() - f->refreshed;
	struct segc_conn *c = bpf_map_lookup_elem(&segc_conns, &fk.k);
	/* Keep every result: the compiler may not drop what the filter would use. */
	__u64 used = (__u64)same + (age < cfg->hz) + (c != 0);
	__asm__ __volatile__("" : : "r"(used));
	return XDP_PASS;
}

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} segc_clock SEC(".maps");

/* Reads the kernel's jiffies into segc_clock, so the loader can measure HZ
 * (connection timeouts are seconds, connection times jiffies). */
SEC("xdp")
int segc_xdp_clock(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 now = bpf_jiffies64();
	bpf_map_update_elem(&segc_clock, &zero, &now, BPF_ANY);
	return XDP_PASS;
}
