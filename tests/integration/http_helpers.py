"""Helpers for the HTTP tests: requests, metric parsing, promtool, and a
minimal protocol-level sensor that connects and then just stays connected."""

import http.client
import os
import random
import re
import socket
import struct
import subprocess
import time

import pytest

from conftest import SCALE, free_port


def get(port, path, headers=None, host="127.0.0.1", method="GET", timeout=10):
    """(status, headers dict lower-cased, body bytes). The path is sent as is
    (http.client neither normalises dot segments nor decodes escapes)."""
    c = http.client.HTTPConnection(host, port, timeout=timeout * SCALE)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def wait_status(port, path, want, timeout=15, host="127.0.0.1"):
    """Polls until path answers with status want; returns the body."""
    deadline = time.monotonic() + timeout * SCALE
    last = None
    while time.monotonic() < deadline:
        try:
            st, _, body = get(port, path, host=host, timeout=2)
            last = (st, body[:300])
            if st == want:
                return body
        except OSError as e:
            last = e
        time.sleep(0.1)
    pytest.fail("%s:%d%s never answered %d; last: %r" % (host, port, path, want, last))


def wait_http_up(port, timeout=15):
    return wait_status(port, "/healthz", 200, timeout)


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


def parse_metrics(text):
    """{'name{labels}': float} for every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, "bad exposition line: %r" % line
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def metrics(port):
    st, hdr, body = get(port, "/metrics")
    assert st == 200
    assert hdr["content-type"].startswith("text/plain; version=0.0.4"), hdr["content-type"]
    return body.decode()


def promtool_check(text, who):
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=30)
    assert p.returncode == 0, "%s: promtool check metrics failed:\n%s%s" % (
        who, p.stdout.decode(), p.stderr.decode())


def wait_metric(port, key, want, timeout=10):
    """Polls /metrics until sample key equals want (the loop publishes every 250 ms)."""
    deadline = time.monotonic() + timeout * SCALE
    got = None
    while time.monotonic() < deadline:
        got = parse_metrics(metrics(port)).get(key)
        if got == want:
            return
        time.sleep(0.1)
    pytest.fail("metric %s = %r, expected %r" % (key, got, want))


def wait_capture_listed(port, name, timeout=10):
    """The /api/captures entry for name once the writer's metadata for it is
    published (every second) and the file is complete."""
    import json
    deadline = time.monotonic() + timeout * SCALE
    entry = None
    while time.monotonic() < deadline:
        st, _, body = get(port, "/api/captures")
        assert st == 200
        found = [e for e in json.loads(body) if e["name"] == name]
        entry = found[0] if found else None
        if entry and entry["complete"] and entry["packets"] is not None:
            return entry
        time.sleep(0.1)
    pytest.fail("%s not listed with its metadata: %r" % (name, entry))


class FakeSensor:
    """Protocol v1 HELLO with codec none, then silence (the receiver sends
    no timeout on an idle session): a sensor that stays connected."""

    def __init__(self, port, sensor_id, token=b""):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10 * SCALE)
        ident = sensor_id.encode()
        payload = (b"PSTR" + struct.pack(">HHBBHII", 1, 1, 0x01, 0, 0, 1 << 20, 1 << 20)
                   + struct.pack(">Q", random.getrandbits(64))
                   + struct.pack(">H", len(ident)) + ident
                   + struct.pack(">H", len(token)) + token)
        self.sock.sendall(struct.pack(">IBBH", len(payload), 0x01, 0, 0) + payload)
        hdr = self._read(8)
        length, ftype = struct.unpack(">IB", hdr[:5])
        self.reply_type = ftype
        self.reply = self._read(length)

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("receiver closed the connection")
            buf += chunk
        return buf

    def send_frame(self, ftype, payload):
        self.sock.sendall(struct.pack(">IBBH", len(payload), ftype, 0, 0) + payload)

    @property
    def accepted(self):
        return self.reply_type == 0x02

    def close(self):
        self.sock.close()


def http_args(port=None):
    port = port or free_port()
    return port, ["--http", "127.0.0.1:%d" % port]


def gen_capture(captures, n, seed, name):
    return captures.varied(n, seed=seed, fmt="pcap-ns", name=name)


def have(tool):
    return any(os.access(os.path.join(d, tool), os.X_OK)
               for d in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep))
