#!/usr/bin/env python3
"""Traffic probes for the namespace tests (stdlib only).

    probe.py serve TCPPORTS UDPPORTS     # echo server on [::] (IPv4 too), all ports given
    probe.py connect tcp|udp HOST PORT   # exit 0 if the echo came back within 1.5 s
    probe.py burst HOST PORT N           # N UDP datagrams from one socket, no waiting

Ports are comma-separated. The server prints "ready" once every socket listens.
"""
import select, socket, sys

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
                c, _ = s.accept(); c.settimeout(2)
                try:
                    data = c.recv(64)
                    c.sendall(b"pong:" + data)
                except OSError:
                    pass
                c.close()
            else:
                data, peer = s.recvfrom(64)
                s.sendto(b"pong:" + data, peer)

def connect(proto, host, port):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(fam, kind); s.settimeout(1.5)
    try:
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

if __name__ == "__main__":
    if sys.argv[1] == "burst":
        sys.exit(burst(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    if sys.argv[1] == "serve":
        ports = lambda a: [int(p) for p in a.split(",") if p]
        serve(ports(sys.argv[2]), ports(sys.argv[3]))
    else:
        sys.exit(connect(sys.argv[2], sys.argv[3], int(sys.argv[4])))
