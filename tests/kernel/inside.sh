#!/usr/bin/env bash
# The kernel-level checks, run inside a VM booted on another kernel (Debian
# 12's 6.1) by cli/tests/kernel_matrix.rs:  inside.sh SEGC REPO WORK
#
# Prints "ok: STEP" per check, "FAIL: STEP" and exits 1 on the first failure,
# "MATRIX-OK" at the end. Under emulation everything is slow: probes wait 6 s.
set -u
SEGC=$1 REPO=$2 WORK=$3 ATTACKS=${4:-}
PROBE="$REPO/tests/helpers/probe.py"
export PROBE_TIMEOUT=6 SEGC_AUDIT_DIR=$WORK/audit SEGC_AUDIT_KEY_FILE=$WORK/audit.key NO_COLOR=1
mkdir -p "$WORK" /run/netns
cd "$WORK" || exit 1

ok() { echo "ok: $1 [at ${SECONDS} s]"; }
fail() { echo "FAIL: $1"; exit 1; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
probe() { in_ns "$1" python3 "$PROBE" "${@:2}"; }
# Waits (up to 60 s: python starts slowly under emulation) for a helper's "ready".
ready() { for _ in $(seq 600); do grep -q '^ready' "$1" 2>/dev/null && return 0; sleep 0.1; done; cat "$1"; fail "$2 never ready"; }

echo "kernel: $(uname -r)"
mount | grep -q ' /sys/fs/bpf ' || mount -t bpf bpf /sys/fs/bpf

# 1. The real program agrees with the reference, packet by packet.
cat > packets <<'P'
10.10.2.20 10.10.3.5 tcp/9443
10.10.2.20 10.10.3.5 tcp/22
198.51.100.7 10.10.3.5 tcp/9443
172.16.0.50 10.20.1.1 udp/53
10.10.1.10 10.10.2.20 tcp/8443
2001:db8:20::9 2001:db8:10:3::5 icmp/128
10.10.3.5 198.51.100.7 tcp/443
10.10.9.9 10.10.3.5 tcp/22
P
"$SEGC" explain "$REPO/examples/online-shop" --packets packets > ref.txt || fail "explain (reference)"
"$SEGC" explain "$REPO/examples/online-shop" --packets packets --engine bpf > bpf.txt 2> bpf.err || { cat bpf.err; fail "explain --engine bpf loads on this kernel"; }
cmp -s ref.txt bpf.txt || { diff ref.txt bpf.txt; fail "the bpf engine agrees with the reference"; }
ok "explain --engine bpf agrees with the reference ($(wc -l < bpf.txt) packets)"

# 2. A veth pair in two namespaces, the filter on vb.
ip netns add a && ip netns add b || fail "namespaces"
ip -n a link set lo up; ip -n b link set lo up
ip link add va netns a type veth peer name vb netns b || fail "veth"
ip -n a addr add 10.99.0.1/24 dev va; ip -n b addr add 10.99.0.2/24 dev vb
ip -n a link set va up; ip -n b link set vb up
mkdir -p pol
cat > pol/main.seg <<'S'
zone client {
  cidrs = [10.99.0.1/32]
  scope = connected
}
zone server {
  cidrs = [10.99.0.2/32]
  scope = connected
}
flow client -> server on tcp/8080, tcp/8081, icmp/8
S
in_ns b python3 "$PROBE" serve 8080,8081,8085 "" > srv.log &
ready srv.log "the server"
probe a connect tcp 10.99.0.2 8085 || fail "before deploy, tcp/8085 passes"
"$SEGC" deploy pol --target host --netns b --iface vb > plan.txt || fail "deploy --plan"
grep -q "tc clsact" plan.txt || grep -q "TCX" plan.txt || { cat plan.txt; fail "the plan names the attach mode"; }
grep -q "kernel features:" plan.txt || fail "the plan names the kernel features"
ok "plan: $(grep -o 'attach .* of `vb`' plan.txt)"
"$SEGC" deploy pol --target host --netns b --iface vb --apply > apply.txt 2>&1 || { cat apply.txt; fail "deploy --apply"; }
ok "deployed: $(grep 'attached to' apply.txt)"
probe a connect tcp 10.99.0.2 8080 || fail "tcp/8080 is allowed"
probe a connect tcp 10.99.0.2 8085 && fail "tcp/8085 is denied"
ok "real TCP follows the policy"
probe a ping 10.99.0.2 91 || fail "ping client -> server"
probe b ping 10.99.0.1 91 && fail "ping server -> client with the same identifier"
ok "echo back is not a reply"
"$SEGC" drift pol --target host --netns b > drift.txt; [ $? -eq 0 ] || { cat drift.txt; fail "drift is clean"; }
ok "drift is clean"

# 3. A live connection on a flow the next policy removes stops at the swap.
coproc HOLD { in_ns a python3 "$PROBE" hold 10.99.0.2 8081; }
read -r -t 20 up <&"${HOLD[0]}"; [ "$up" = up ] || fail "a held connection"
sed -i 's/tcp\/8080, tcp\/8081/tcp\/8080/' pol/main.seg
"$SEGC" deploy pol --target host --netns b --iface vb --apply > swap.txt 2>&1 || { cat swap.txt; fail "swap"; }
echo >&"${HOLD[1]}"; read -r -t 20 again <&"${HOLD[0]}"
[ "$again" = lost ] || fail "the removed flow's live connection stops ($again)"
probe a connect tcp 10.99.0.2 8080 || fail "the kept flow still passes"
ok "a swap stops the connections it removes"

# 4. An interface created again is drift, and deploy attaches again.
ip -n b link del vb
ip link add va netns a type veth peer name vb netns b
ip -n a addr add 10.99.0.1/24 dev va; ip -n b addr add 10.99.0.2/24 dev vb
ip -n a link set va up; ip -n b link set vb up
sleep 1
"$SEGC" drift pol --target host --netns b > drift2.txt; [ $? -eq 1 ] && grep -q "not attached" drift2.txt || { cat drift2.txt; fail "drift sees the new interface unfiltered"; }
"$SEGC" deploy pol --target host --netns b --iface vb --apply > again.txt 2>&1 || { cat again.txt; fail "deploy again"; }
probe a connect tcp 10.99.0.2 8085 && fail "enforced again after the interface came back"
ok "a recreated interface: drift, then attached again"

# 5. Undeploy leaves the interface open and nothing pinned.
"$SEGC" undeploy --target host --netns b > undeploy.txt || fail "undeploy"
probe a connect tcp 10.99.0.2 8085 || fail "after undeploy tcp/8085 passes"
[ -e /sys/fs/bpf/segc/netns-b ] && fail "pins removed"
ok "undeploy"

# 6. An L3 link (TUN, through a relay) is enforced.
modprobe tun 2>/dev/null
if [ ! -e /dev/net/tun ]; then mkdir -p /dev/net && mknod /dev/net/tun c 10 200; fi
ip netns add x && ip netns add y || fail "tun namespaces"
ip -n x link set lo up; ip -n y link set lo up
rm -f /run/segc-tun.sock
in_ns x python3 "$REPO/tests/helpers/tun_relay.py" listen /run/segc-tun.sock tunx > rx.log &
ready rx.log "the listening relay"
in_ns y python3 "$REPO/tests/helpers/tun_relay.py" connect /run/segc-tun.sock tuny > ry.log &
ready ry.log "the connecting relay"
ip -n x addr add 10.97.0.1 peer 10.97.0.2 dev tunx; ip -n x link set tunx up
ip -n y addr add 10.97.0.2 peer 10.97.0.1 dev tuny; ip -n y link set tuny up
in_ns y python3 "$PROBE" serve 443,22 "" > tsrv.log &
ready tsrv.log "the server over the TUN link"
probe x connect tcp 10.97.0.2 22 || { cat rx.log ry.log tsrv.log; ls -la /dev/net; ip -n x addr; fail "before deploy, tcp/22 crosses the TUN link"; }
mkdir -p tun
printf 'zone x {\n  cidrs = [10.97.0.1/32]\n  scope = connected\n}\nzone y {\n  cidrs = [10.97.0.2/32]\n  scope = connected\n}\nflow x -> y on tcp/443\n' > tun/main.seg
"$SEGC" deploy tun --target host --netns y --iface tuny --apply > tun.txt 2>&1 || { cat tun.txt; fail "deploy on a TUN link"; }
grep -q "L3 link" tun.txt || { cat tun.txt; fail "the TUN link is an L3 link"; }
probe x connect tcp 10.97.0.2 443 || fail "tcp/443 over the TUN link"
probe x connect tcp 10.97.0.2 22 && fail "tcp/22 over the TUN link is denied"
"$SEGC" undeploy --target host --netns y > /dev/null || fail "undeploy the TUN link"
ok "an L3 (TUN) link is enforced"

# 7. The attack suite of the filter (BPF_PROG_TEST_RUN) on this kernel.
if [ -n "$ATTACKS" ]; then
  CI=true "$ATTACKS" --test-threads=2 > attacks.txt 2>&1 || { cat attacks.txt; fail "the filter's attack suite"; }
  ok "the filter's attack suite: $(grep -o '[0-9]* passed' attacks.txt)"
fi

echo MATRIX-OK
