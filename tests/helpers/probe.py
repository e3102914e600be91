#!/usr/bin/env python3
"""Traffic probes for the namespace tests (stdlib only).

    probe.py serve TCPPORTS UDPPORTS     # echo server on [::] (IPv4 too), all ports given
    probe.py connect tcp|udp HOST PORT [SPORT]  # exit 0 if the echo came back within 1.5 s
    probe.py burst HOST PORT N           # N UDP datagrams from one socket, no waiting
    probe.py hold HOST PORT              # one TCP connection, kept: "up" after the first echo,
                                         # then one echo per stdin line, printing "ok" or "lost"
    probe.py ping HOST ID                # one ICMP echo with identifier ID; exit 0 on its reply

Ports are comma-separated. The server prints "ready" once every socket listens.
"""
import os, select, socket, struct, sys, threading, time

# Seconds to wait for an answer; longer under emulation (the kernel matrix).
TIMEOUT = float(os.environ.get("PROBE_TIMEOUT", "1.5"))

def serve(tcp_ports, udp_ports):
    socks = []
    for port in tcp_ports:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", port)); s.listen(16); socks.append(("tcp", s))
    for port in udp_ports:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", port)); socks.append(("udp", s))
    print("ready", flush=True)
    while True:
        ready, _, _ = select.select([s for _, s in socks], [], [], 60)
        if not ready:
            return
        for kind, s in socks:
            if s not in ready:
                continue
            if kind == "tcp":
                c, _ = s.accept()
                threading.Thread(target=echo_connection, args=(c,), daemon=True).start()
            else:
                data, peer = s.recvfrom(64)
                s.sendto(b"pong:" + data, peer)

def echo_connection(c):
    """Echoes every message of one connection until it closes (or idles 30 s)."""
    c.settimeout(30)
    try:
        while True:
            data = c.recv(64)
            if not data:
                break
            c.sendall(b"pong:" + data)
    except OSError:
        pass
    c.close()

def connect(proto, host, port, sport=0):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(fam, kind); s.settimeout(TIMEOUT)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        if sport:
            s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", sport))
        s.connect((host, port)); s.send(b"ping")
        return 0 if s.recv(64) == b"pong:ping" else 1
    except OSError:
        return 1

def burst(host, port, n):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    for i in range(n):
        s.sendto(b"burst", (host, port))
    # Stay open to take the echoes: a closed port would answer them with ICMP
    # port-unreachable errors, which are traffic of their own.
    s.settimeout(0.2)
    try:
        while True:
            s.recv(64)
    except OSError:
        pass
    return 0

def hold(host, port):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(TIMEOUT)
    try:
        s.connect((host, port)); s.send(b"ping")
        print("up" if s.recv(64) == b"pong:ping" else "lost", flush=True)
    except OSError:
        print("lost", flush=True)
        return 1
    for line in sys.stdin:
        try:
            s.send(b"again")
            print("ok" if s.recv(64) == b"pong:again" else "lost", flush=True)
        except OSError:
            print("lost", flush=True)
    return 0

def ping(host, ident):
    v6 = ":" in host
    fam = socket.AF_INET6 if v6 else socket.AF_INET
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    s = socket.socket(fam, socket.SOCK_RAW, proto); s.settimeout(TIMEOUT)
    kind, reply = (128, 129) if v6 else (8, 0)
    body = struct.pack("!BBHHH", kind, 0, 0, ident, 1) + b"segc"
    if not v6:
        total = sum(struct.unpack("!%dH" % (len(body) // 2), body))
        while total >> 16:
            total = (total & 0xffff) + (total >> 16)
        body = body[:2] + struct.pack("!H", ~total & 0xffff) + body[4:]
    s.sendto(body, (host, 0))
    end = time.time() + TIMEOUT
    while time.time() < end:
        try:
            data = s.recv(256)
        except OSError:
            return 1
        icmp = data if v6 else data[(data[0] & 15) * 4:]
        t, _, _, i = struct.unpack("!BBHH", icmp[:6])
        if t == reply and i == ident:
            return 0
    return 1

if __name__ == "__main__":
    if sys.argv[1] == "hold":
        sys.exit(hold(sys.argv[2], int(sys.argv[3])))
    if sys.argv[1] == "ping":
        sys.exit(ping(sys.argv[2], int(sys.argv[3])))
    if sys.argv[1] == "burst":
        sys.exit(burst(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    if sys.argv[1] == "serve":
        ports = lambda a: [int(p) for p in a.split(",") if p]
        serve(ports(sys.argv[2]), ports(sys.argv[3]))
    else:
        sys.exit(connect(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]) if len(sys.argv) > 5 else 0))
