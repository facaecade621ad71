"""Hostile peers of the receiver (docs/security.md, "What one peer can cost
the receiver"): each attack below is what a compromised node or a buggy
sensor can do with a valid connection. Used by the soak benchmark
(bench/soak.py) and by regression tests.

Every attack talks to 127.0.0.1 only, is bounded in count and in time, and
returns early when `stop` (a threading.Event) is set. Each returns a dict of
what it did, for the report.

    from hostile import ATTACKS
    ATTACKS["bomb"](port=8081, http_port=8080, stop=threading.Event(), seconds=10)
"""
import os
import socket
import struct
import threading
import time
import zlib

import psclient as P

HOST = "127.0.0.1"


def _connect(port, timeout=5):
    s = socket.create_connection((HOST, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _hello(port, sensor_id, token=b"", session=None, codec=P.CODEC_NONE, timeout=5, **kw):
    """A connected psclient.Client past its handshake, or None if refused."""
    try:
        c = P.Client(HOST, port, timeout=timeout)
        kind, _ = c.hello(sensor_id, token=token, session=session, codec=codec, **kw)
    except OSError:
        return None
    if kind != "ACCEPT":
        c.close()
        return None
    return c


def _until(stop, seconds):
    end = time.monotonic() + seconds
    return lambda: not stop.is_set() and time.monotonic() < end


def bomb(port, stop, seconds=10, conns=40, raw_mib=16, token=b"", **_):
    """Item 1: batches of zeros that inflate 1000-fold (17 KB -> 16 MiB), on
    many connections held open at once."""
    # Valid records (so the connection lives on holding its buffer): 256 KiB
    # of zeros each, on an announced interface.
    n = (raw_mib << 20) // (20 + 262144)
    raw = P.records_bytes([_Rec(1 + i, 262144, 262144, bytes(262144)) for i in range(n)])
    data = zlib.compress(raw, 9)
    payload = struct.pack(">QB3xII", 1, P.CODEC_ZLIB, n, len(raw)) + data
    held, sent = [], 0
    go = _until(stop, seconds)
    try:
        for i in range(conns):
            if not go():
                break
            # asks for the largest batches the protocol allows (64 MiB)
            c = _hello(port, "bomb-%d" % i, token=token, codec=P.CODEC_ZLIB,
                       max_frame=64 << 20, max_batch_raw=64 << 20)
            if c is None:
                continue
            try:
                c.iface(0, "eth0")
                c.send_frame(P.T_BATCH, payload)
                sent += 1
            except OSError:
                pass
            held.append(c)
        while go():
            time.sleep(0.1)
    finally:
        for c in held:
            c.close()
    return {"connections": len(held), "bombs_sent": sent, "compressed_bytes": len(data)}


def hello_flood(port, stop, seconds=10, count=8000, token=b"", **_):
    """Item 2: a new (id, session) per connection, then gone."""
    done = 0
    go = _until(stop, seconds)
    while done < count and go():
        c = _hello(port, "flood-%d-%s" % (done, os.urandom(4).hex()), token=token)
        if c is not None:
            c.close()
        done += 1
    return {"hellos": done}


def iface_flood(port, stop, seconds=10, count=200_000, token=b"", **_):
    """Item 3: IFACE frames with new names on one connection."""
    c = _hello(port, "ifaces", token=token)
    if c is None:
        return {"ifaces": 0, "refused": True}
    sent = 0
    go = _until(stop, seconds)
    try:
        while sent < count and go():
            chunk = b"".join(P.frame(P.T_IFACE, P.iface_payload(sent + k, "if-%07d-%s" % (sent + k, "x" * 200)))
                             for k in range(256))
            c.send(chunk)
            sent += 256
    except OSError:
        pass
    finally:
        c.close()
    return {"ifaces": sent}


def no_read(port, stop, seconds=10, token=b"", **_):
    """Item 4: a peer that sends small batches and never reads its ACKs."""
    c = _hello(port, "deaf", token=token)
    if c is None:
        return {"batches": 0, "refused": True}
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    rec = P.records_bytes([_Rec(1, 60, 60, bytes(60))])
    seq, cut = 0, False
    go = _until(stop, seconds)
    c.iface(0, "eth0")
    try:
        while go():
            buf = b"".join(P.frame(P.T_BATCH, P.batch_payload(seq + k + 1, rec, 1)) for k in range(64))
            c.send(buf)
            seq += 64
    except OSError:
        cut = True
    finally:
        c.close()
    return {"batches": seq, "cut": cut}


def idle_sockets(port, stop, seconds=10, count=1024, **_):
    """Item 5: connections that never say HELLO, from one address."""
    held = []
    go = _until(stop, seconds)
    try:
        for _i in range(count):
            if not go():
                break
            try:
                held.append(_connect(port, timeout=2))
            except OSError:
                break
        while go():
            time.sleep(0.1)
    finally:
        for s in held:
            s.close()
    return {"sockets": len(held)}


def slowloris(http_port, stop, seconds=10, count=64, **_):
    """Item 6: HTTP clients that send their request headers a byte at a time."""
    held = []
    go = _until(stop, seconds)
    try:
        for _i in range(count):
            try:
                s = _connect(http_port, timeout=2)
                s.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                held.append(s)
            except OSError:
                break
        while go():
            for s in list(held):
                try:
                    s.send(b"X")
                except OSError:
                    held.remove(s)
            time.sleep(0.5)
    finally:
        for s in held:
            s.close()
    return {"connections": count}


def takeover(port, stop, victim_id, victim_session, seconds=5, token=b"", **_):
    """Item 7: another client claims a live sensor's (id, session) and sends
    sequence 2^62 so that the real sensor's later batches look like duplicates."""
    tries, accepted = 0, 0
    go = _until(stop, seconds)
    rec = P.records_bytes([_Rec(1, 60, 60, bytes(60))])
    while go() and tries < 20:
        tries += 1
        c = _hello(port, victim_id, token=token, session=victim_session)
        if c is None:
            time.sleep(0.2)
            continue
        accepted += 1
        try:
            c.iface(0, "eth0")
            c.send_frame(P.T_BATCH, P.batch_payload(1 << 62, rec, 1))
            time.sleep(0.2)
        except OSError:
            pass
        c.close()
    return {"tries": tries, "accepted": accepted}


def stats_flood(port, stop, seconds=10, ifaces=4096, token=b"", **_):
    """Item 12: many interfaces, then STATS frames as fast as they go."""
    c = _hello(port, "stats", token=token)
    if c is None:
        return {"stats": 0, "refused": True}
    sent = 0
    go = _until(stop, seconds)
    try:
        c.send(b"".join(P.frame(P.T_IFACE, P.iface_payload(i, "s%d" % i)) for i in range(ifaces)))
        while go():
            buf = b"".join(P.frame(P.T_STATS, struct.pack(">IQQQQQQ", (sent + k) % ifaces, sent + k,
                                                            0, 0, 0, 0, time.time_ns()))
                           for k in range(512))
            c.send(buf)
            sent += 512
    except OSError:
        pass
    finally:
        c.close()
    return {"stats": sent}


def rebinding(http_port, stop, **_):
    """Item 11: a browser driven by DNS rebinding asks with a foreign Host."""
    s = _connect(http_port)
    try:
        s.sendall(b"GET /api/captures HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n")
        status = s.recv(64).split(b" ")[1].decode()
    except (OSError, IndexError):
        status = "closed"
    finally:
        s.close()
    return {"status": status}


class _Rec:
    def __init__(self, ts_ns, caplen, origlen, data):
        self.ts_ns, self.caplen, self.origlen, self.data = ts_ns, caplen, origlen, data


ATTACKS = {
    "bomb": bomb,
    "hello_flood": hello_flood,
    "iface_flood": iface_flood,
    "no_read": no_read,
    "idle_sockets": idle_sockets,
    "slowloris": slowloris,
    "stats_flood": stats_flood,
    "rebinding": rebinding,
    "takeover": takeover,
}


def run_in_thread(fn, **kw):
    """Starts an attack in a daemon thread; returns (thread, result dict)."""
    out = {}

    def body():
        try:
            out.update(fn(**kw))
        except Exception as e:  # noqa: BLE001 - the report names what broke
            out["error"] = repr(e)

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, out
