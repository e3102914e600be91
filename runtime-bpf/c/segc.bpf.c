// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/* segc's enforcement: XDP on ingress, TC on egress, one decision function.
 *
 * A packet is judged by the policy tables of the live generation (one 4-byte
 * read of config.gen per packet, so a swap never shows a packet half of a
 * policy): the zones of the address pair (cached per generation; by longest
 * prefix on a miss), then one exact lookup on (generation, zones, protocol
 * class, port), and a longest-prefix lookup on port blocks only for zone pairs
 * that have large port ranges.
 * Allowed new traffic is remembered in an LRU connection table so that replies
 * pass in both directions.
 *
 * Decisions where the SPEC is silent (docs/DECISIONS.md has the reasons):
 * - ARP and other non-IP frames pass: segmentation is about IP traffic, and the
 *   host must keep resolving neighbours.
 * - IPv6 neighbour discovery (ICMPv6 133-137 with hop limit 255) passes.
 * - IP fragments are dropped: a non-first fragment has no ports to judge, and
 *   tiny first fragments are a classic filter evasion.
 * - IPv6 extension headers (hop-by-hop, routing, destination options) are
 *   walked, at most four; a fragment header drops the packet; anything else
 *   (ESP, AH, unknown) is judged as an "other" protocol, which only `any` allows.
 * - Up to two VLAN tags are parsed; deeper stacks are dropped.
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

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct segc_zone_key4);
	__type(value, __u32);
	__uint(max_entries, SEGC_ZONES4_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} segc_zones4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct segc_zone_key6);
	__type(value, __u32);
	__uint(max_entries, SEGC_ZONES6_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} segc_zones6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct segc_rule_key);
	__type(value, __u32);
	__uint(max_entries, SEGC_RULES_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} segc_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct segc_port_key);
	__type(value, __u32);
	__uint(max_entries, SEGC_PORTS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} segc_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct segc_pair_key);
	__type(value, __u32);
	__uint(max_entries, SEGC_PAIRS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} segc_pairs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct segc_cache_key);
	__type(value, struct segc_cache_val);
	__uint(max_entries, SEGC_CACHE_MAX);
} segc_zone_cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct segc_config);
	__uint(max_entries, 1);
} segc_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct segc_conn_key);
	__type(value, __u64);
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
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SEGC_EVENTS_BYTES);
} segc_events SEC(".maps");

enum verdict { V_PASS, V_DROP };

/* Everything the decision needs from a packet. */
struct pkt {
	__u8 family;
	__u8 proto;   /* IP protocol number */
	__u8 class;   /* SEGC_CLASS_* */
	__u8 hoplimit;
	__u16 sport;  /* big-endian */
	__u16 dport;  /* big-endian; for ICMP: the type, big-endian */
	__u8 icmp_type;
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

/* Parses Ethernet (up to two VLAN tags), IPv4 or IPv6 (with extension headers)
 * and the L4 ports. Returns 0 for IP packets, 1 for non-IP frames, -1 for
 * malformed or fragmented ones. */
static __always_inline int parse(void *data, void *data_end, struct pkt *p)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return -1;
	__u16 proto = eth->h_proto;
	void *cur = eth + 1;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if (cur + 4 > data_end)
			return -1;
		proto = *(__u16 *)(cur + 2);
		cur += 4;
	}
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
		return -1;

	__u8 l4;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cur;
		if ((void *)(ip + 1) > data_end)
			return -1;
		if (ip->ihl < 5)
			return -1;
		if (ip->frag_off & bpf_htons(0x3fff)) /* MF or an offset */
			return -1;
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
			return -1;
		p->family = 6;
		__builtin_memcpy(p->saddr, &ip6->saddr, 16);
		__builtin_memcpy(p->daddr, &ip6->daddr, 16);
		p->hoplimit = ip6->hop_limit;
		l4 = ip6->nexthdr;
		cur = ip6 + 1;
#pragma unroll
		for (int i = 0; i < 4; i++) {
			if (l4 == IPPROTO_FRAGMENT)
				return -1;
			if (l4 != IPPROTO_HOPOPTS && l4 != IPPROTO_ROUTING && l4 != IPPROTO_DSTOPTS)
				break;
			if (cur + 2 > data_end)
				return -1;
			__u8 next = *(__u8 *)cur;
			__u8 len = *(__u8 *)(cur + 1);
			cur += (len + 1) * 8;
			l4 = next;
		}
		if (l4 == IPPROTO_HOPOPTS || l4 == IPPROTO_ROUTING || l4 == IPPROTO_DSTOPTS || l4 == IPPROTO_FRAGMENT)
			return -1;
	} else {
		return 1;
	}

	p->proto = l4;
	p->sport = 0;
	p->dport = 0;
	p->icmp_type = 0;
	if (l4 == IPPROTO_TCP || l4 == IPPROTO_UDP) {
		if (cur + 4 > data_end)
			return -1;
		p->sport = *(__u16 *)cur;
		p->dport = *(__u16 *)(cur + 2);
		p->class = l4 == IPPROTO_TCP ? SEGC_CLASS_TCP : SEGC_CLASS_UDP;
	} else if ((l4 == IPPROTO_ICMP && p->family == 4) || (l4 == IPPROTO_ICMPV6 && p->family == 6)) {
		if (cur + 2 > data_end)
			return -1;
		p->icmp_type = *(__u8 *)cur;
		p->dport = bpf_htons(p->icmp_type);
		p->class = SEGC_CLASS_ICMP;
	} else {
		p->class = SEGC_CLASS_OTHER;
	}
	return 0;
}

static __always_inline __u32 zone_of(__u32 gen, __u8 family, __u8 *addr)
{
	__u32 *z;
	if (family == 4) {
		struct segc_zone_key4 k = {.prefixlen = 64, .gen = bpf_htonl(gen)};
		__builtin_memcpy(k.addr, addr, 4);
		z = bpf_map_lookup_elem(&segc_zones4, &k);
	} else {
		struct segc_zone_key6 k = {.prefixlen = 160, .gen = bpf_htonl(gen)};
		__builtin_memcpy(k.addr, addr, 16);
		z = bpf_map_lookup_elem(&segc_zones6, &k);
	}
	return z ? *z : 0;
}

/* The zones of both addresses: from the cache, or by longest prefix (then cached). */
static __always_inline void zones_of(__u32 epoch, __u32 gen, struct pkt *p, __u32 *sz, __u32 *dz)
{
	/* Keyed by the epoch, which never repeats: an entry from an older policy
	 * cannot match, even when that policy's buffer is reused. */
	struct segc_cache_key ck = {.gen = epoch, .family = p->family};
	__builtin_memcpy(ck.saddr, p->saddr, 16);
	__builtin_memcpy(ck.daddr, p->daddr, 16);
	struct segc_cache_val *hit = bpf_map_lookup_elem(&segc_zone_cache, &ck);
	if (hit) {
		*sz = hit->src_zone;
		*dz = hit->dst_zone;
		return;
	}
	struct segc_cache_val v = {.src_zone = zone_of(gen, p->family, p->saddr), .dst_zone = zone_of(gen, p->family, p->daddr)};
	bpf_map_update_elem(&segc_zone_cache, &ck, &v, BPF_ANY);
	*sz = v.src_zone;
	*dz = v.dst_zone;
}

/* Whether the policy allows the packet between the two zones: one exact
 * lookup, and the range trie only where the pair has ranges for the class. */
static __always_inline int allowed(__u32 gen, __u32 sz, __u32 dz, struct pkt *p)
{
	__u16 port = p->class == SEGC_CLASS_OTHER ? 0 : p->dport;
	struct segc_port_key pk = {
		.gen = bpf_htonl(gen),
		.src_zone = bpf_htonl(sz),
		.dst_zone = bpf_htonl(dz),
		.class = p->class,
		.pad = 0,
		.port = port,
	};
	if (bpf_map_lookup_elem(&segc_ports, &pk))
		return 1;
	struct segc_pair_key pair = {.gen = bpf_htonl(gen), .src_zone = bpf_htonl(sz), .dst_zone = bpf_htonl(dz), .class = p->class};
	if (!bpf_map_lookup_elem(&segc_pairs, &pair))
		return 0;
	struct segc_rule_key k = {
		.prefixlen = 128,
		.gen = bpf_htonl(gen),
		.src_zone = bpf_htonl(sz),
		.dst_zone = bpf_htonl(dz),
		.class = p->class,
		.pad = 0,
		.port = port,
	};
	return bpf_map_lookup_elem(&segc_rules, &k) != 0;
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
	/* ICMP: echo request/reply pairs by type; the identifier is not tracked. */
	if (p->class == SEGC_CLASS_ICMP) {
		k->sport = 0;
		k->dport = 0;
	}
}

static __always_inline void count_pair(__u32 epoch, __u32 sz, __u32 dz, __u32 verdict, __u64 bytes)
{
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

static __always_inline enum verdict decide(void *data, void *data_end, __u8 dir)
{
	__u64 len = data_end - data;
	struct pkt p = {};
	int r = parse(data, data_end, &p);
	if (r > 0) {
		count(SEGC_CNT_NOT_IP, len);
		return V_PASS;
	}
	if (r < 0) {
		count(SEGC_CNT_MALFORMED, len);
		return V_DROP;
	}
	if (p.family == 6 && p.class == SEGC_CLASS_ICMP && p.icmp_type >= 133 && p.icmp_type <= 137 && p.hoplimit == 255) {
		count(SEGC_CNT_ND, len);
		return V_PASS;
	}
	__u32 zero = 0;
	struct segc_config *cfg = bpf_map_lookup_elem(&segc_config, &zero);
	if (!cfg)
		return V_DROP;
	int track = !(cfg->flags & SEGC_F_NO_CONNTRACK);
	struct segc_conn_key ck;
	if (track) {
		/* Both directions of an allowed connection are in the table: one
		 * lookup decides every packet after the first. */
		conn_key(&ck, &p, 0);
		if (bpf_map_lookup_elem(&segc_conns, &ck)) {
			count(SEGC_CNT_ESTABLISHED, len);
			return V_PASS;
		}
	}
	__u32 epoch = cfg->gen;
	__u32 gen = epoch & 1;
	__u32 sz, dz;
	zones_of(epoch, gen, &p, &sz, &dz);
	if (sz && dz && allowed(gen, sz, dz, &p)) {
		if (track) {
			__u64 now = bpf_ktime_get_ns();
			bpf_map_update_elem(&segc_conns, &ck, &now, BPF_ANY);
			struct segc_conn_key rk;
			conn_key(&rk, &p, 1);
			bpf_map_update_elem(&segc_conns, &rk, &now, BPF_ANY);
		}
		count(SEGC_CNT_ALLOW, len);
		count_pair(epoch, sz, dz, 0, len);
		return V_PASS;
	}
	count(SEGC_CNT_DENY, len);
	count_pair(epoch, sz, dz, 1, len);
	deny_event(cfg, &p, sz, dz, dir);
	return V_DROP;
}

SEC("xdp")
int segc_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	return decide(data, data_end, 0) == V_PASS ? XDP_PASS : XDP_DROP;
}

SEC("classifier")
int segc_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	return decide(data, data_end, 1) == V_PASS ? TC_ACT_OK : TC_ACT_SHOT;
}

/* Ingress through TC, for virtual devices (veth) where generic XDP costs the
 * GRO/GSO fast path. */
SEC("classifier")
int segc_tc_ingress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	return decide(data, data_end, 0) == V_PASS ? TC_ACT_OK : TC_ACT_SHOT;
}

/* The empty program the benchmark measures the filter against. */
SEC("xdp")
int segc_xdp_empty(struct xdp_md *ctx)
{
	return XDP_PASS;
}
