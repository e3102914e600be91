#!/usr/bin/env python3
"""Two TUN devices in two network namespaces, joined by a relay: an L3 link
for the namespace tests (the kernel here has no ipip or WireGuard).

    ip netns exec A tun_relay.py listen SOCKET tunA   # creates tunA, waits for the peer
    ip netns exec B tun_relay.py connect SOCKET tunB  # creates tunB, joins

Each side creates its TUN device (IFF_TUN | IFF_NO_PI: packets start at the
IP header), prints "ready", then copies packets between the device and a Unix
socket (visible from both namespaces), each packet prefixed by its length.
"""
import errno, fcntl, os, select, socket, struct, sys, time

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000

def tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd

def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out

def relay(fd, s):
    while True:
        ready, _, _ = select.select([fd, s], [], [])
        if fd in ready:
            try:
                pkt = os.read(fd, 65535)
            except OSError as e:
                # EIO until the device is up: wait for it.
                if e.errno != errno.EIO:
                    raise
                time.sleep(0.05)
                continue
            s.sendall(struct.pack("!H", len(pkt)) + pkt)
        if s in ready:
            n = struct.unpack("!H", recv_exact(s, 2))[0]
            pkt = recv_exact(s, n)
            try:
                os.write(fd, pkt)
            except OSError as e:
                if e.errno != errno.EIO:
                    raise

def main():
    mode, path, name = sys.argv[1:4]
    fd = tun(name)
    if mode == "listen":
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path); srv.listen(1)
        print("ready", flush=True)
        s, _ = srv.accept()
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        print("ready", flush=True)
    try:
        relay(fd, s)
    except (EOFError, OSError):
        pass

if __name__ == "__main__":
    main()
