"""A minimal packetstreamer protocol client for tests (docs/protocol.md, v1).

It speaks exactly what a test asks for, so tests can send what no real sensor
sends (garbage, wrong magic, oversize frames, bombs...) and can stream slowly
on purpose (a sensor that stays connected while the test changes something).

    c = Client("127.0.0.1", port, tls=ssl_context_or_None, server_hostname=...)
    c.hello("slow-1")            -> ("ACCEPT", fields) or ("REJECT", (code, reason))
    c.iface(0, "eth0")
    c.batch(seq, records)        records: pcaplib.Record-like (ts_ns, caplen, origlen, data)
    c.wait_ack(seq)
    c.bye(seq); c.close()
"""
import os
import socket
import struct
import zlib

MAGIC = b"PSTR"
T_HELLO, T_ACCEPT, T_REJECT, T_IFACE, T_BATCH, T_STATS, T_ACK, T_HEARTBEAT, T_BYE = (
    0x01, 0x02, 0x03, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15)
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


def iface_payload(index, name, linktype=1, snaplen=262144, desc=b""):
    n = name.encode()
    return struct.pack(">IIIH", index, linktype, snaplen, len(n)) + n + struct.pack(">H", len(desc)) + desc


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
            return ("ACCEPT", struct.unpack(">HBxIIQ", p))
        if t == T_REJECT:
            code, n = struct.unpack(">HH", p[:4])
            return ("REJECT", (code, p[4:4 + n].decode(errors="replace")))
        return ("?", f)

    def iface(self, index, name):
        self.send_frame(T_IFACE, iface_payload(index, name))

    def batch(self, seq, records, codec=CODEC_NONE):
        self.send_frame(T_BATCH, batch_payload(seq, records_bytes(records), len(records), codec))

    def wait_ack(self, seq):
        while True:
            f = self.read_frame()
            if f is None:
                raise EOFError("connection closed before ACK %d" % seq)
            if f[0] == T_ACK and struct.unpack(">Q", f[1])[0] >= seq:
                return

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
