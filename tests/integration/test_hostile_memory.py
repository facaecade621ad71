"""What one peer can cost the receiver in memory and CPU (issue 13, items 1,
3, 4 and 12; docs/security.md, "What one peer can cost the receiver").

Each test performs the attack as a compromised node would, with a valid
handshake, while honest traffic (goodtraffic.py: a real sensor and a slow
protocol client) streams; it asserts the bound (the receiver's RSS from
/proc/PID/status, counters from /metrics) and that the honest packets
arrive byte-identical.

RSS figures hold for the ASan build with a small quarantine (set below) and
for the release build (which peaks at 9 to 45 MiB in these tests, the
ASan build at 30 to 75 MiB).
"""
import os
import socket
import struct
import threading
import time
import zlib

import psclient as P
from goodtraffic import GoodTraffic
from http_helpers import http_args, metrics, parse_metrics

# ASan keeps freed memory in a quarantine (256 MiB by default), which would
# hide whether the receiver gave memory back.
RX_ENV = {"ASAN_OPTIONS": "quarantine_size_mb=8:detect_leaks=1"}


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssPeak:
    """Samples the receiver's RSS every 20 ms until stop()."""

    def __init__(self, pid):
        self.pid, self.peak, self.done = pid, 0.0, threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.done.is_set():
            try:
                self.peak = max(self.peak, rss_mib(self.pid))
            except OSError:
                return
            time.sleep(0.02)

    def stop(self):
        self.done.set()
        self.t.join(5)
        return self.peak


def metric(http_port, key):
    return parse_metrics(metrics(http_port)).get(key, 0.0)


def rejected(http_port, reason):
    return metric(http_port, 'packetstreamer_receiver_rejected_connections_total{reason="%s"}'
                  % reason)


def wait_for(cond, timeout=15):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


class Rec:
    def __init__(self, ts_ns, data):
        self.ts_ns, self.caplen, self.origlen, self.data = ts_ns, len(data), len(data), data


def hostile(rx, sensor_id, **kw):
    c = P.Client("127.0.0.1", rx.port)
    kind, info = c.hello(sensor_id, **kw)
    assert kind == "ACCEPT", (kind, info)
    return c


def start(env, captures, rx_env=None):
    http_port, args = http_args()
    rx = env.receiver(args=args, env=dict(RX_ENV, **(rx_env or {})))
    good = GoodTraffic(env, rx, captures)
    return rx, http_port, good


def finish(rx, good):
    good.finish()
    rx.stop()
    good.check()


def test_decompression_bombs_are_refused_before_inflating(env, captures):
    """Item 1: 40 connections each send a 17 KB zlib batch that inflates to
    16 MiB. Before: each session kept a 16 MiB buffer (~700 MB RSS). Now the
    ratio bound (limits.maxInflateRatio, 256) refuses them before inflating:
    RSS stays under 120 MiB."""
    rx, http_port, good = start(env, captures)
    n = (16 << 20) // (20 + 262144)
    raw = P.records_bytes([Rec(1 + i, bytes(262144)) for i in range(n)])
    payload = struct.pack(">QB3xII", 1, P.CODEC_ZLIB, n, len(raw)) + zlib.compress(raw, 9)
    assert len(payload) < 20000
    peak = RssPeak(rx.proc.pid)
    held = []
    for i in range(40):
        c = hostile(rx, "bomb-%d" % i, codec=P.CODEC_ZLIB, max_frame=64 << 20,
                    max_batch_raw=64 << 20)
        c.iface(0, "eth0")
        c.send_frame(P.T_BATCH, payload)
        held.append(c)
    assert all(c.closed_by_peer(10) for c in held)
    assert wait_for(lambda: rejected(http_port, "decompression_bomb") >= 40)
    finish(rx, good)
    top = peak.stop()
    print("receiver RSS peak: %.0f MiB" % top)
    assert top < 120, "receiver RSS peaked at %.0f MiB" % top
    assert "limits.maxInflateRatio" in rx.stderr


def test_memory_budget_bounds_large_frames(env, captures):
    """Item 1, the global budget: 24 connections each start a 16 MiB batch
    frame and never finish it. Before: each held a 16 MiB receive buffer
    (~400 MB RSS). Now at most limits.memoryBudgetMB (here 40 MiB) is held,
    the others wait unread (memory_waits_total), and a holder that stalls
    while others wait is cut (memory_budget): RSS stays under 130 MiB and
    the honest streams, whose frames fit the base buffer, go on."""
    rx, http_port, good = start(env, captures,
                                {"PACKETSTREAMER_LIMITS_MEMORY_BUDGET_MB": "40"})
    peak = RssPeak(rx.proc.pid)
    frame_len = 16 << 20
    # The batch header (20 bytes) and all but the last byte of its records.
    body = struct.pack(">QB3xII", 1, P.CODEC_NONE, 1, frame_len - 20) + bytes(frame_len - 21)

    def push(c):
        try:
            c.sock.settimeout(12)
            c.send(struct.pack(">IBBH", frame_len, P.T_BATCH, 0, 0) + body)
        except OSError:
            pass  # waiting unread (the window is full), or cut

    conns = []
    for i in range(24):
        c = hostile(rx, "hog-%d" % i, max_frame=64 << 20, max_batch_raw=64 << 20)
        c.iface(0, "eth0")
        conns.append(c)
    threads = [threading.Thread(target=push, args=(c,), daemon=True) for c in conns]
    for t in threads:
        t.start()
    assert wait_for(lambda: metric(http_port, "packetstreamer_receiver_memory_waits_total") > 0)
    assert wait_for(lambda: rejected(http_port, "memory_budget") >= 1, timeout=20)
    buffered = metric(http_port, "packetstreamer_receiver_buffer_bytes")
    assert buffered <= 41 << 20, buffered
    for c in conns:
        c.close()
    finish(rx, good)
    top = peak.stop()
    print("receiver RSS peak: %.0f MiB" % top)
    assert top < 130, "receiver RSS peaked at %.0f MiB" % top


def test_interface_flood_is_bounded_and_freed(env, captures):
    """Item 3: IFACE frames with ever new names. Before: every entry was kept
    for the process's life (317 MB of frames -> 1.28 GB RSS). Now a session
    may hold limits.maxInterfacesPerSession (here 1024) and is cut beyond it
    (too_many_interfaces); re-announcing an index frees the entry it held,
    and a session's entries go when it closes: the interface count returns
    to the honest streams' and RSS stays under 120 MiB."""
    rx, http_port, good = start(env, captures,
                                {"PACKETSTREAMER_LIMITS_MAX_INTERFACES_PER_SESSION": "1024"})
    peak = RssPeak(rx.proc.pid)
    key = "packetstreamer_receiver_interfaces"
    assert wait_for(lambda: metric(http_port, key) >= 2)
    honest = metric(http_port, key)
    pad = "x" * 200
    # Churn: 8 indexes re-announced with new names, 200 000 times in all.
    c = hostile(rx, "ifaces-churn")
    for burst in range(100):
        c.send(b"".join(P.frame(P.T_IFACE, P.iface_payload(k % 8, "if-%d-%d-%s" % (burst, k, pad)))
                        for k in range(2000)))
    c.send_frame(P.T_HEARTBEAT, b"")
    assert wait_for(lambda: metric(http_port, key) <= honest + 8)
    c.close()
    # New indexes: the 1025th closes the connection.
    c = hostile(rx, "ifaces-many")
    try:
        c.send(b"".join(P.frame(P.T_IFACE, P.iface_payload(k, "n%d" % k)) for k in range(1100)))
    except OSError:
        pass
    assert c.closed_by_peer(10)
    assert wait_for(lambda: rejected(http_port, "too_many_interfaces") == 1)
    assert wait_for(lambda: metric(http_port, key) <= honest)
    finish(rx, good)
    top = peak.stop()
    print("receiver RSS peak: %.0f MiB" % top)
    assert top < 120, "receiver RSS peaked at %.0f MiB" % top
    assert "limits.maxInterfacesPerSession" in rx.stderr


def test_peer_that_never_reads_is_cut(env, captures):
    """Item 4: a peer sends batches and never reads its ACKs, with a receive
    window clamped shut and a small MSS, so that the receiver's kernel
    buffer stays small (about 1 MB) and ACKs pile up in the receiver itself.
    Before: without end. Now more than limits.maxWriteQueueKB (here 64)
    queued cuts it (slow_reader); RSS stays under 120 MiB."""
    rx, http_port, good = start(env, captures, {"PACKETSTREAMER_LIMITS_MAX_WRITE_QUEUE_KB": "64"})
    peak = RssPeak(rx.proc.pid)
    c = P.Client.__new__(P.Client)
    c.buf = b""
    c.sock = socket.socket()
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_WINDOW_CLAMP, 2048)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    c.sock.settimeout(10)
    c.sock.connect(("127.0.0.1", rx.port))
    kind, _ = c.hello("deaf")
    assert kind == "ACCEPT"
    c.iface(0, "eth0")
    rec = P.records_bytes([Rec(1, bytes(60))])
    seq, cut, pending = 0, False, b""
    end = time.monotonic() + 60
    c.sock.setblocking(False)
    while time.monotonic() < end and not cut:
        if not pending:
            seq += 1
            pending = P.frame(P.T_BATCH, P.batch_payload(seq, rec, 1))
        try:
            pending = pending[c.sock.send(pending):]
        except BlockingIOError:
            time.sleep(0.001)
        except OSError:
            cut = True
    c.close()
    assert wait_for(lambda: rejected(http_port, "slow_reader") == 1), (seq, [l for l in rx.stderr.splitlines() if "deaf" in l or "WARN" in l][:10])
    finish(rx, good)
    top = peak.stop()
    print("receiver RSS peak: %.0f MiB" % top)
    assert top < 120
    assert "limits.maxWriteQueueKB" in rx.stderr


def test_stats_cost_does_not_grow_with_interfaces(env, captures):
    """Item 12: STATS for interface index 65535 (the session's tables span
    65 536 entries). Before: every frame re-summed 65 536 counters (100 000
    frames: tens of CPU seconds). Now each frame costs the same whatever the
    index: under 3 CPU seconds for 100 000 frames under ASan (about 0.2), and the
    sensor's drop total is still right."""
    rx, http_port, good = start(env, captures)
    c = hostile(rx, "stats")
    c.send_frame(P.T_IFACE, P.iface_payload(65535, "big"))
    c.send_frame(P.T_IFACE, P.iface_payload(0, "small"))
    c.send_frame(P.T_STATS, struct.pack(">IQQQQQQ", 0, 1, 0, 0, 0, 7, time.time_ns()))
    before = cpu_s(rx.proc.pid)
    n = 100_000
    for chunk in range(n // 1000):
        c.send(b"".join(P.frame(P.T_STATS, struct.pack(">IQQQQQQ", 65535, 10, 1, 2, 3, 0,
                                                         time.time_ns()))
                        for _ in range(1000)))
    c.send_frame(P.T_STATS, struct.pack(">IQQQQQQ", 65535, 10, 10, 20, 30, 0, time.time_ns()))
    key = 'packetstreamer_receiver_sensor_dropped_packets_total{sensor="stats"}'
    # Index 0's sensor drops (7), then index 65535's latest kernel, interface
    # and sensor drops (20 + 30 + 0).
    assert wait_for(lambda: metric(http_port, key) == 57)
    spent = cpu_s(rx.proc.pid) - before
    print("receiver CPU for %d STATS frames: %.2f s" % (n, spent))
    c.close()
    finish(rx, good)
    assert spent < 3, "receiver spent %.1f CPU s on %d STATS frames" % (spent, n)
