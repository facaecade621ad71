"""A stand-in receiver speaking protocol v2 (capture jobs), for sensor tests.

It answers a sensor's HELLO with ACCEPT version 2 (the sensor's codec; none
and zlib are decoded), acknowledges every batch, keeps every record by
interface (index -> name, job) and every JOB_STATUS, and sends the jobs it
is told to start to the connected sensor and again on every new connection
(as the real receiver re-sends running jobs). Driven by JSON lines on stdin,
one JSON answer line each on stdout:

    {"cmd": "job", "job": 7, "name": "x", "start_ns": 0, "end_ns": 0,
     "preroll": 10, "filter": "...", "pods": "NS/NAME", ...}   -> {"ok": true}
    {"cmd": "stop", "job": 7}                                  -> {"ok": true}
    {"cmd": "kick"}  cuts the current connection            -> {"ok": true}
    {"cmd": "dump"}  -> {"connects": n, "version": v, "ifaces": {idx: [name, job]},
                         "records": {idx: [[ts_ns, hexdata], ...]},
                         "status": {job: [state, packets, bytes, drops, msg]}}
    {"cmd": "quit"}

Usage: jobrx.py HOST PORT  (prints {"ready": true} once listening)
"""
import json
import os
import socket
import struct
import sys
import threading
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import psclient as P  # noqa: E402

lock = threading.Lock()
state = {"connects": 0, "version": 0, "ifaces": {}, "records": {}, "status": {}}
jobs = {}  # job id -> JOB_START payload (sent on every connection)
conn = {"sock": None}


def send(sock, ftype, payload):
    try:
        sock.sendall(P.frame(ftype, payload))
    except OSError:
        pass


def read_exact(sock, n, buf):
    while len(buf) < n:
        d = sock.recv(65536)
        if not d:
            return None
        buf += d
    return buf


def serve(sock):
    buf = b""
    ifmap = {}
    while True:
        buf = read_exact(sock, 8, buf)
        if buf is None:
            return
        n, t = struct.unpack(">IB", buf[:5])
        buf = read_exact(sock, 8 + n, buf)
        if buf is None:
            return
        p, buf = buf[8:8 + n], buf[8 + n:]
        if t == P.T_HELLO:
            vmin, vmax, codecs, codec = struct.unpack(">HHBB", p[4:10])
            version = 2 if vmin <= 2 <= vmax else 1
            with lock:
                state["connects"] += 1
                state["version"] = version
                state["codec"] = codec
                conn["sock"] = sock
                conn["codec"] = codec
            send(sock, P.T_ACCEPT, struct.pack(">HBxIIQ", version, codec, 64 << 20, 64 << 20, 0))
            with lock:
                pending = list(jobs.values())
            if version == 2:
                for payload in pending:
                    send(sock, P.T_JOB_START, payload)
        elif t == P.T_IFACE:
            idx, lt, snap, nl = struct.unpack(">IIIH", p[:14])
            name = p[14:14 + nl].decode(errors="replace")
            off = 14 + nl
            (dl,) = struct.unpack(">H", p[off:off + 2])
            off += 2 + dl
            job = struct.unpack(">Q", p[off:off + 8])[0] if len(p) >= off + 8 else 0
            with lock:
                state["ifaces"][idx] = [name, job]
        elif t == P.T_BATCH:
            seq, codec, nrec, raw_len = struct.unpack(">QB3xII", p[:20])
            data = p[20:]
            if codec == P.CODEC_ZLIB:
                data = zlib.decompress(data)
            elif codec != P.CODEC_NONE:
                raise SystemExit("jobrx: codec %d not supported (use compression.codec none)"
                                 % codec)
            off = 0
            with lock:
                while off + 20 <= len(data):
                    idx, ts, cap, orig = struct.unpack(">IQII", data[off:off + 20])
                    rec = data[off + 20:off + 20 + cap]
                    state["records"].setdefault(idx, []).append([ts, rec.hex()])
                    off += 20 + cap
            send(sock, P.T_ACK, struct.pack(">Q", seq))
        elif t == P.T_JOB_STATUS:
            job, st, _res, pk, by, dr, ml = struct.unpack(">QIIQQQH", p[:42])
            with lock:
                state["status"][job] = [st, pk, by, dr, p[42:42 + ml].decode(errors="replace")]
        elif t == P.T_BYE:
            return


def accept_loop(ls):
    while True:
        s, _ = ls.accept()
        threading.Thread(target=lambda: (serve(s), s.close()), daemon=True).start()


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    ls = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(8)
    threading.Thread(target=accept_loop, args=(ls,), daemon=True).start()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        c = json.loads(line)
        cmd = c.pop("cmd")
        if cmd == "job":
            payload = P.job_start_payload(
                c["job"], c.get("name", "job"), start_ns=c.get("start_ns", 0),
                end_ns=c.get("end_ns", 0), max_packets=c.get("max_packets", 0),
                max_bytes=c.get("max_bytes", 0), preroll=c.get("preroll", 0),
                **{k: c.get(k, "") for k in P.JOB_START_FIELDS if k != "name"})
            with lock:
                jobs[c["job"]] = payload
                s = conn["sock"] if state["version"] == 2 else None
            if s:
                send(s, P.T_JOB_START, payload)
            out = {"ok": True}
        elif cmd == "stop":
            with lock:
                jobs.pop(c["job"], None)
                s = conn["sock"]
            if s:
                send(s, P.T_JOB_STOP, struct.pack(">Q", c["job"]))
            out = {"ok": True}
        elif cmd == "kick":  # cut the connection: the sensor reconnects
            with lock:
                s = conn["sock"]
                conn["sock"] = None
            if s:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            out = {"ok": True}
        elif cmd == "dump":
            with lock:
                out = json.loads(json.dumps(state))
        elif cmd == "quit":
            print(json.dumps({"ok": True}), flush=True)
            return
        else:
            out = {"error": cmd}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
