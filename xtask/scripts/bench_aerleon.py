#!/usr/bin/env python3
"""Build time of segc (all targets) against Aerleon (nftables generator only) on
the same generated policy: 1000 zones, 20000 flows (tcp ports), in one run.

    python3 bench_aerleon.py SEGC_BINARY [ZONES FLOWS]

Needs `pip install aerleon`. Prints one line per tool and their ratio.
"""
import os, random, statistics, subprocess, sys, tempfile, time

segc = sys.argv[1]
zones = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
flows = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
rng = random.Random(42)
cidr = lambda i: f"10.{i // 256}.{i % 256}.0/24"
pairs = [(rng.randrange(zones), rng.randrange(zones), 1000 + rng.randrange(20000)) for _ in range(flows)]

# segc: every zone bound to every cloud target, so all six targets build.
tmp = tempfile.mkdtemp(prefix="segc-aerleon-")
with open(os.path.join(tmp, "main.seg"), "w") as f:
    f.write('policy "bench" {}\n')
    for i in range(zones):
        f.write(f'zone z{i} {{\n  cidrs = [{cidr(i)}]\n  scope = connected\n'
                f'  aws.security_group = "z{i}"\n  azure.nsg = "z{i}"\n  gcp.tag = "z{i}"\n  k8s.namespace = "z{i}"\n}}\n')
    for a, b, p in pairs:
        f.write(f"flow z{a} -> z{b} on tcp/{p}\n")

def run_segc():
    out = os.path.join(tmp, "out")
    t = time.perf_counter()
    r = subprocess.run([segc, "build", "--target", "bpf,nft,aws,azure,gcp,k8s", "-o", out, tmp], capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"segc build failed:\n{r.stderr[-2000:]}")
    return dt

# This kind of VM changes speed over seconds: segc runs three times before
# Aerleon and three times after, and the median of the six is compared.
segc_times = [run_segc() for _ in range(3)]

# Aerleon: the same zones as networks, the same flows as accept terms.
from aerleon import api
from aerleon.lib import naming

definitions = naming.Naming()
networks = {"networks": {f"Z{i}": {"values": [{"address": cidr(i)}]} for i in range(zones)}}
ports = sorted({p for _, _, p in pairs})
services = {"services": {f"P{p}": [{"port": p, "protocol": "tcp"}] for p in ports}}
definitions.ParseDefinitionsObject(networks, "")
definitions.ParseDefinitionsObject(services, "")
policy = {
    "filename": "bench",
    "filters": [{
        "header": {"targets": {"nftables": "mixed INPUT"}},
        "terms": [
            {"name": f"t{n}", "source-address": f"Z{a}", "destination-address": f"Z{b}",
             "destination-port": f"P{p}", "protocol": "tcp", "action": "accept"}
            for n, (a, b, p) in enumerate(pairs)
        ],
    }],
}
t = time.perf_counter()
configs = api.Generate([policy], definitions)
aerleon = time.perf_counter() - t
if not configs:
    sys.exit("aerleon produced nothing")
segc_times += [run_segc() for _ in range(3)]

s = statistics.median(segc_times)
print("segc runs (ms):", " ".join(f"{t * 1e3:.0f}" for t in segc_times))
print(f"segc build, all 6 targets, {zones} zones / {flows} flows: median {s * 1e3:.0f} ms over {len(segc_times)} runs, 3 before and 3 after Aerleon's (process start included)")
print(f"aerleon Generate, nftables only, same policy: {aerleon * 1e3:.0f} ms (1 run)")
print(f"ratio: aerleon / segc = {aerleon / s:.0f}x")
