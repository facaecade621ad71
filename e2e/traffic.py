#!/usr/bin/python3
"""Traffic for the e2e tests, run inside a pod namespace (ip netns exec).

  traffic.py server UDP_PORT TCP_PORT      dual-stack listeners; prints "ready"
  traffic.py client DST MARKER COUNT UDP_PORT TCP_PORT
        COUNT UDP datagrams to DST:UDP_PORT, then one TCP connection to
        DST:TCP_PORT carrying COUNT writes; every payload starts with MARKER
        and is unique. Prints the payloads sent, one per line (hex).

Only the standard library: the tests must not need scapy.
"""
import socket
import sys
import threading
import time


def server(udp_port, tcp_port):
    u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    u.bind(("::", udp_port))
    t = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind(("::", tcp_port))
    t.listen(64)

    def udp_loop():
        while True:
            u.recvfrom(65535)

    def handle(c):
        with c:
            while c.recv(65536):
                pass

    def tcp_loop():
        while True:
            c, _ = t.accept()
            threading.Thread(target=handle, args=(c,), daemon=True).start()

    threading.Thread(target=udp_loop, daemon=True).start()
    threading.Thread(target=tcp_loop, daemon=True).start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def client(dst, marker, count, udp_port, tcp_port):
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    sent = []
    u = socket.socket(fam, socket.SOCK_DGRAM)
    for i in range(count):
        p = ("%s-udp-%d-" % (marker, i)).encode().ljust(64 + i * 7, b"u")
        u.sendto(p, (dst, udp_port))
        sent.append(p)
        time.sleep(0.002)
    u.close()
    t = socket.create_connection((dst, tcp_port), timeout=5)
    t.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(count):
        p = ("%s-tcp-%d-" % (marker, i)).encode().ljust(80 + i * 5, b"t")
        t.sendall(p)
        sent.append(p)
        time.sleep(0.005)
    t.shutdown(socket.SHUT_WR)
    t.settimeout(5)
    while t.recv(65536):
        pass
    t.close()
    for p in sent:
        print(p.hex())


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]), int(sys.argv[3]))
    else:
        client(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
