"""s3rver (a real S3-compatible server on loopback, installed by `make deps`
from packaging/s3rver/package-lock.json) for the integration tests, and the
helpers the S3 tests share (test_s3.py, test_extract_s3.py)."""

import http.client
import os
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import SCALE, free_port, port_listening
from http_helpers import metrics, parse_metrics

MiB = 1024 * 1024
BUCKET = "caps"
S3RVER = Path(os.environ.get("PS_CACHE", "/var/tmp/packetstreamer-cache")) / "s3rver" / \
    "node_modules" / ".bin" / "s3rver"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "S3RVER", "AWS_SECRET_ACCESS_KEY": "S3RVER"}


class S3rver:
    """s3rver on a fixed port and data directory, so it can be stopped and
    started again with what it stored."""

    def __init__(self, workdir, tls=None):
        assert S3RVER.exists(), "s3rver is not installed: run `make deps` (packaging/s3rver.sh)"
        self.tls = tls  # (cert, key) for https
        self.port = free_port()
        self.data = workdir / "s3data"
        self.data.mkdir()
        self.log = workdir / "s3rver.log"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [str(S3RVER), "-d", str(self.data), "-a", "127.0.0.1", "-p", str(self.port),
             "--configure-bucket", BUCKET, "--no-vhost-buckets"]
            + (["--cert", str(self.tls[0]), "--key", str(self.tls[1])] if self.tls else []),
            stdin=subprocess.DEVNULL, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20 * SCALE
        while not port_listening(self.port):
            assert self.proc.poll() is None, "s3rver exited:\n" + self.log.read_text()
            assert time.monotonic() < deadline, "s3rver did not listen"
            time.sleep(0.05)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    @property
    def endpoint(self):
        return "%s://127.0.0.1:%d" % ("https" if self.tls else "http", self.port)

    def request(self, method, path):
        if self.tls:
            import ssl
            ctx = ssl.create_default_context(cafile=str(self.ca))
            c = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30 * SCALE,
                                            context=ctx)
        else:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30 * SCALE)
        try:
            c.request(method, path)
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def keys(self, indexes=False):
        """{key: size} of every object in the bucket (anonymous ListObjectsV2);
        the capture objects' side indexes (KEY.idx) only with indexes."""
        st, _, body = self.request("GET", "/%s?list-type=2&max-keys=1000" % BUCKET)
        assert st == 200, body
        ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
        root = ET.fromstring(body)
        out = {}
        for c in root.iter():
            if c.tag.endswith("Contents"):
                key = next(x.text for x in c if x.tag.endswith("Key"))
                size = int(next(x.text for x in c if x.tag.endswith("Size")))
                if indexes or not key.endswith(".idx"):
                    out[key] = size
        del ns
        return out

    def get(self, key):
        st, hdr, body = self.request("GET", "/%s/%s" % (BUCKET, key))
        assert st == 200, (key, st, body[:200])
        return body

    def head(self, key):
        st, hdr, _ = self.request("HEAD", "/%s/%s" % (BUCKET, key))
        assert st == 200, (key, st)
        return hdr


def s3_config(env, srv, name="s3.yaml", **keys):
    s3keys = {"enabled": "true", "endpoint": srv.endpoint, "bucket": BUCKET, "pathStyle": "true",
              "prefix": "cap/", "retryMaxSec": 2}
    s3keys.update(keys)
    file_keys = s3keys.pop("file", {})
    lines = ["output:", "  file:"] + ["    %s: %s" % kv for kv in file_keys.items()]
    if len(lines) == 2:
        lines.pop()
    lines += ["  s3:"] + ["    %s: %s" % kv for kv in s3keys.items()]
    p = env.workdir / name
    p.write_text("\n".join(lines) + "\n")
    return p


def aws_env(env, **extra):
    e = dict(AWS_ENV)
    e["HOME"] = str(env.workdir)  # no ~/.aws of the machine's user
    e.update(extra)
    return e


def s3_metrics(port):
    m = parse_metrics(metrics(port))
    return {k[len("packetstreamer_receiver_s3_"):]: v for k, v in m.items()
            if k.startswith("packetstreamer_receiver_s3_")}


def wait_for(cond, what, timeout=60):
    deadline = time.monotonic() + timeout * SCALE
    last = None
    while time.monotonic() < deadline:
        try:
            last = cond()
        except OSError as e:  # the HTTP server starts just after the listener
            last = e
        if last and not isinstance(last, OSError):
            return last
        time.sleep(0.2)
    pytest.fail("timed out waiting for %s (last: %r)" % (what, last))


