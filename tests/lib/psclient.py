"""A minimal packetstreamer protocol client for tests (docs/protocol.md, v1 and v2).

It speaks exactly what a test asks for, so tests can send what no real sensor
sends (garbage, wrong magic, oversize frames, bombs...) and can stream slowly
on purpose (a sensor that stays connected while the test changes something).

    c = Client("127.0.0.1", port, tls=ssl_context_or_None, server_hostname=...)
    c.hello("slow-1")            -> ("ACCEPT", fields) or ("REJECT", (code, reason))
    c.iface(0, "eth0")
    c.batch(seq, records)        records: pcaplib.Record-like (ts_ns, caplen, origlen, data)
    c.wait_ack(seq)
    c.bye(seq); c.close()

Version 2 (capture jobs): c.hello("s", version=(1, 2)) -> ACCEPT version 2;
then c.version == 2, IFACE carries a job (c.iface(3, "eth0", job=5)),
c.read_job_frame() returns the next JOB_START / JOB_STOP (decoded), and
c.job_status(job, state, packets, bytes, drops, msg) reports on one.
"""
import os
import socket
import struct
import zlib

MAGIC = b"PSTR"
T_HELLO, T_ACCEPT, T_REJECT, T_IFACE, T_BATCH, T_STATS, T_ACK, T_HEARTBEAT, T_BYE = (
    0x01, 0x02, 0x03, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15)
T_JOB_START, T_JOB_STOP, T_JOB_STATUS = 0x20, 0x21, 0x22
JOB_RUNNING, JOB_FINISHED, JOB_STOPPED, JOB_FAILED = 1, 2, 3, 4
JOB_START_FIELDS = ("name", "namespaces", "pods", "label_selector", "interfaces", "filter")
CODEC_NONE, CODEC_ZLIB, CODEC_LZ4 = 0, 1, 2


def frame(ftype, payload):
    return struct.pack(">IBBH", len(payload), ftype, 0, 0) + payload


def hello_payload(sensor_id, token=b"", codec=CODEC_NONE, version=(1, 1), magic=MAGIC,
                  max_frame=1 << 20, max_batch_raw=1 << 20, session=None):
    sid = sensor_id.encode() if isinstance(sensor_id, str) else sensor_id
    session = session if session is not None else int.from_bytes(os.urandom(8), "big")
    return (magic + struct.pack(">HHBBHIIQ", version[0], version[1], 1 << codec, codec, 0,
                                max_frame, max_batch_raw, session)
            + struct.pack(">H", len(sid)) + sid + struct.pack(">H", len(token)) + token)


def iface_payload(index, name, linktype=1, snaplen=262144, desc=b"", job=None):
    """v1 layout, or v2's (a trailing u64 job) when job is not None."""
    n = name.encode()
    p = struct.pack(">IIIH", index, linktype, snaplen, len(n)) + n + struct.pack(">H", len(desc)) + desc
    return p if job is None else p + struct.pack(">Q", job)


def job_start_payload(job, name, start_ns=0, end_ns=0, max_packets=0, max_bytes=0, preroll=0,
                      reserved=0, **strings):
    p = struct.pack(">QQQQQII", job, start_ns, end_ns, max_packets, max_bytes, preroll, reserved)
    for f in JOB_START_FIELDS:
        v = name if f == "name" else strings.get(f, "")
        v = v.encode() if isinstance(v, str) else v
        p += struct.pack(">H", len(v)) + v
    return p


def parse_job_start(p):
    """A JOB_START payload as a dict (no validation: tests check fields)."""
    job, start, end, mp, mb, pre, res = struct.unpack(">QQQQQII", p[:48])
    d = {"job": job, "start_ns": start, "end_ns": end, "max_packets": mp, "max_bytes": mb,
         "preroll_sec": pre, "reserved": res}
    off = 48
    for f in JOB_START_FIELDS:
        (n,) = struct.unpack(">H", p[off:off + 2])
        d[f] = p[off + 2:off + 2 + n].decode(errors="replace")
        off += 2 + n
    d["trailing"] = len(p) - off
    return d


def job_status_payload(job, state, packets=0, nbytes=0, drops=0, msg=b"", reserved=0):
    msg = msg.encode() if isinstance(msg, str) else msg
    return struct.pack(">QIIQQQH", job, state, reserved, packets, nbytes, drops, len(msg)) + msg


def records_bytes(records, iface=0):
    out = bytearray()
    for r in records:
        out += struct.pack(">IQII", iface, r.ts_ns, r.caplen, r.origlen) + r.data
    return bytes(out)


def batch_payload(seq, raw, nrecords, codec=CODEC_NONE, raw_len=None):
    data = raw if codec == CODEC_NONE else zlib.compress(raw)
    return struct.pack(">QB3xII", seq, codec, nrecords, len(raw) if raw_len is None else raw_len) + data


class Client:
    def __init__(self, host, port, tls=None, server_hostname=None, timeout=10):
        raw = socket.create_connection((host, port), timeout=timeout)
        self.sock = tls.wrap_socket(raw, server_hostname=server_hostname or host) if tls else raw
        self.buf = b""
        self.version = 1
        self.jobs = []  # JOB_START / JOB_STOP frames seen while waiting for ACKs

    def send(self, data):
        self.sock.sendall(data)

    def send_frame(self, ftype, payload):
        self.send(frame(ftype, payload))

    def read_frame(self):
        """(type, payload), or None on EOF."""
        while len(self.buf) < 8 or len(self.buf) < 8 + struct.unpack(">I", self.buf[:4])[0]:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        n, t = struct.unpack(">IB", self.buf[:5])
        payload, self.buf = self.buf[8:8 + n], self.buf[8 + n:]
        return t, payload

    def hello(self, sensor_id, **kw):
        self.send_frame(T_HELLO, hello_payload(sensor_id, **kw))
        f = self.read_frame()
        if f is None:
            return ("EOF", None)
        t, p = f
        if t == T_ACCEPT:
            fields = struct.unpack(">HBxIIQ", p)
            self.version = fields[0]
            return ("ACCEPT", fields)
        if t == T_REJECT:
            code, n = struct.unpack(">HH", p[:4])
            return ("REJECT", (code, p[4:4 + n].decode(errors="replace")))
        return ("?", f)

    def iface(self, index, name, job=0, desc=b"", linktype=1):
        """In a v2 session the IFACE carries job (0: the continuous capture)."""
        self.send_frame(T_IFACE, iface_payload(index, name, linktype=linktype, desc=desc,
                                               job=job if self.version >= 2 else None))

    def job_status(self, job, state, packets=0, nbytes=0, drops=0, msg=b""):
        self.send_frame(T_JOB_STATUS, job_status_payload(job, state, packets, nbytes, drops, msg))

    def read_job_frame(self, timeout=10):
        """The next JOB_START (("START", dict)) or JOB_STOP (("STOP", job)),
        skipping ACKs and HEARTBEATs; None on EOF or timeout."""
        if self.jobs:
            return self.jobs.pop(0)
        self.sock.settimeout(timeout)
        try:
            while True:
                f = self.read_frame()
                if f is None:
                    return None
                j = _job_frame(f)
                if j:
                    return j
        except socket.timeout:
            return None
        finally:
            self.sock.settimeout(None)

    def batch(self, seq, records, codec=CODEC_NONE):
        self.send_frame(T_BATCH, batch_payload(seq, records_bytes(records), len(records), codec))

    def wait_ack(self, seq):
        while True:
            f = self.read_frame()
            if f is None:
                raise EOFError("connection closed before ACK %d" % seq)
            if f[0] == T_ACK and struct.unpack(">Q", f[1])[0] >= seq:
                return
            j = _job_frame(f)
            if j:
                self.jobs.append(j)

    def bye(self, last_seq):
        self.send_frame(T_BYE, struct.pack(">Q", last_seq))

    def closed_by_peer(self, timeout=10):
        """True once the peer closes (EOF or reset) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        except OSError:
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _job_frame(f):
    if f[0] == T_JOB_START:
        return ("START", parse_job_start(f[1]))
    if f[0] == T_JOB_STOP:
        return ("STOP", struct.unpack(">Q", f[1])[0])
    return None
