"""Upload of completed capture files to S3 (output.s3, docs/storage.md), against
s3rver, a real S3-compatible server on loopback (`make deps` installs it from
packaging/s3rver/package-lock.json).

What a user would notice: objects byte-identical to the files (and so to the
sensor's packets), multipart above the part size, each file in the bucket
exactly once across a server outage and receiver restarts, local files
deleted only after the upload is confirmed, a clear error and nothing deleted
when the credentials are refused, and the metrics saying all of it."""

import hashlib
import hmac
import http.client
import socketserver
import os
import shutil
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from conftest import (ERROR_LINE, SCALE, assert_clean_stderr, assert_records_equal, free_port,
                      output_files, pcaplib, port_listening, read_outputs)
from http_helpers import get, http_args, metrics, parse_metrics

from s3rver import (AWS_ENV, BUCKET, MiB, S3RVER, S3rver, aws_env, s3_config,  # noqa: F401
                    s3_metrics, wait_for)


@pytest.fixture
def s3(env):
    srv = S3rver(env.workdir)
    srv.start()
    yield srv
    srv.stop()


def stream(env, rx, path, sensor_id):
    rc, err = env.run_sensor(path, rx.port, sensor_id=sensor_id)
    assert rc == 0, "sensor exit %d:\n%s" % (rc, err)
    assert_clean_stderr(err, "sensor")


def objects_to_dir(srv, keys, dst):
    dst.mkdir(exist_ok=True)
    out = []
    for k in sorted(keys):
        p = dst / k.split("/")[-1]
        p.write_bytes(srv.get(k))
        out.append(p)
    return out


def test_closed_files_uploaded_byte_identical(env, captures, s3):
    path, expected = captures.varied(11_000, seed=71, fmt="pcap-ns")
    hport, hargs = http_args()
    cfg = s3_config(env, s3, file={"rotateSizeMB": 1})
    rx = env.receiver(config=cfg, args=hargs, env=aws_env(env))
    stream(env, rx, path, "up")
    # Every file but the one still open is completed: all of them go up while
    # the receiver runs.
    done = [f for f in rx.files()]
    assert len(done) >= 5
    wait_for(lambda: s3_metrics(hport).get("uploaded_total", 0) >= len(done), "uploads")
    m = s3_metrics(hport)
    # /api/captures says which files are in the bucket too
    import json
    st, _, body = get(hport, "/api/captures")
    assert st == 200
    stored = {e["name"]: e["stored"] for e in json.loads(body)}
    assert all(stored[f.name] == "local+s3" for f in done), stored
    rx.stop()
    files = rx.files()  # the last one completed at stop
    assert len(files) == len(done) + 1 or len(files) == len(done)
    keys = s3.keys()
    for f in done:
        assert keys.get("cap/" + f.name) == f.stat().st_size, f.name
        assert s3.get("cap/" + f.name) == f.read_bytes(), "object differs from " + f.name
        assert s3.head("cap/" + f.name)["etag"].strip('"') == hashlib.md5(f.read_bytes()).hexdigest()
    assert m["uploaded_total"] == len(done)
    assert m["uploaded_bytes_total"] == sum(f.stat().st_size for f in done)
    assert m["upload_seconds_count"] == len(done)
    assert m["failed_total"] == 0
    assert all(f.exists() for f in files), "deleteLocal is off: local files stay"
    assert "S3RVER" not in rx.stderr.replace("S3RVER/", ""), "a credential in the log"

    # A restart uploads the file completed at shutdown, and only that one.
    hport2, hargs2 = http_args()
    rx2 = env.receiver(outdir=rx.outdir, config=cfg, args=hargs2, env=aws_env(env))
    wait_for(lambda: len(s3.keys()) == len(files), "the last file's upload")
    wait_for(lambda: s3_metrics(hport2).get("pending") == 0, "an empty queue")
    m2 = s3_metrics(hport2)
    assert m2["uploaded_total"] == len(files) - len(done)
    rx2.stop()
    objs = objects_to_dir(s3, s3.keys(), env.workdir / "objects")
    assert_records_equal(read_outputs(objs), expected, ifname="up/" + path.name)


def test_multipart_above_part_size(env, captures, s3):
    path, expected = captures.varied(14_000, seed=72, fmt="pcap-ns")
    # one file of ~12 MiB, written without S3, then uploaded by a receiver
    # started over it with 5 MiB parts
    rx = env.receiver()
    stream(env, rx, path, "mp")
    rx.stop()
    [f] = rx.files()
    size = f.stat().st_size
    assert size > 10 * MiB
    hport, hargs = http_args()
    cfg = s3_config(env, s3, partSizeMB=5)
    rx2 = env.receiver(outdir=rx.outdir, config=cfg, args=hargs, env=aws_env(env))
    wait_for(lambda: s3_metrics(hport).get("uploaded_total") == 1, "the upload")
    rx2.stop()
    body = s3.get("cap/" + f.name)
    assert body == f.read_bytes()
    nparts = (size + 5 * MiB - 1) // (5 * MiB)
    assert nparts >= 3
    log = s3.log.read_text()
    # s3rver logs each request: the parts went up one by one, then Complete
    for n in range(1, nparts + 1):
        assert "%s?partNumber=%d&uploadId=" % (f.name, n) in log, "part %d not sent" % n
    assert "%s?partNumber=%d&" % (f.name, nparts + 1) not in log
    assert "%s?uploads=" % f.name in log
    assert_records_equal(pcaplib.read_named(body), expected, ifname="mp/" + path.name)
    assert "uploaded %s" % f.name in rx2.stderr


def test_server_outage_each_file_once_deleted_after_confirmation(env, captures, s3):
    path, expected = captures.varied(11_000, seed=73, fmt="pcap-ns")
    hport, hargs = http_args()
    cfg = s3_config(env, s3, deleteLocal="true", file={"rotateSizeMB": 1})
    rx = env.receiver(config=cfg, args=hargs, env=aws_env(env))
    s3.stop()  # the server goes away before anything is uploaded
    stream(env, rx, path, "out")
    wait_for(lambda: s3_metrics(hport).get("failed_total", 0) >= 2, "failed attempts")
    files = rx.files()
    assert len(files) >= 5
    assert all(f.exists() for f in files), "a file was deleted while its upload failed"
    assert s3_metrics(hport)["uploaded_total"] == 0
    s3.start()  # same data directory
    # uploads resume; stop the server again in the middle of them
    wait_for(lambda: s3_metrics(hport).get("uploaded_total", 0) >= 1, "the first upload")
    s3.stop()
    time.sleep(1)
    s3.start()
    wait_for(lambda: s3_metrics(hport).get("pending") == 0, "every upload", timeout=90)
    m = s3_metrics(hport)
    rx.stop()
    # the file completed at shutdown is still local; a restart sends it
    rx2 = env.receiver(outdir=rx.outdir, config=cfg, args=http_args()[1], env=aws_env(env))
    wait_for(lambda: not output_files(rx.outdir), "deletion of every uploaded file")
    rx2.stop()
    keys = s3.keys()
    assert len(keys) == m["uploaded_total"] + 1
    objs = objects_to_dir(s3, keys, env.workdir / "objects")
    # each record exactly once, in order: no file twice, none missing
    assert_records_equal(read_outputs(objs), expected, ifname="out/" + path.name)
    assert m["failed_total"] >= 2


def test_unknown_access_key_logged_nothing_deleted(env, captures, s3):
    path, expected = captures.varied(3000, seed=74, fmt="pcap-ns")
    hport, hargs = http_args()
    cfg = s3_config(env, s3, deleteLocal="true", file={"rotateSizeMB": 1})
    secret = "wJalrXUtnFEMI-not-a-real-secret"
    rx = env.receiver(config=cfg, args=hargs,
                      env=aws_env(env, AWS_ACCESS_KEY_ID="AKIDNOSUCHKEY", AWS_SECRET_ACCESS_KEY=secret))
    stream(env, rx, path, "bad")
    rx.stop(check=False)  # the capture file completes; the restart below has it pending
    assert rx.returncode == 0
    files = rx.files()
    assert files
    before = {f: f.read_bytes() for f in files}
    rx2 = env.receiver(outdir=rx.outdir, config=cfg, args=hargs,
                       env=aws_env(env, AWS_ACCESS_KEY_ID="AKIDNOSUCHKEY", AWS_SECRET_ACCESS_KEY=secret))
    wait_for(lambda: s3_metrics(hport).get("failed_total", 0) >= 1, "a failed attempt")
    time.sleep(1)
    m = s3_metrics(hport)
    rx2.stop(check=False)
    assert rx2.returncode == 0
    err = rx2.stderr
    lines = [l for l in err.splitlines() if "upload of " in l]
    assert lines, err
    assert ERROR_LINE.search(lines[0]), "a refused key must be an ERROR: " + lines[0]
    assert "InvalidAccessKeyId" in lines[0] and "credentials from the environment" in lines[0], lines[0]
    assert secret not in err and secret not in rx.stderr
    for f, data in before.items():
        assert f.exists() and f.read_bytes() == data, "%s was deleted or changed" % f
    assert s3.keys() == {}
    assert m["uploaded_total"] == 0 and m["pending"] == len(files)


def test_no_credentials_is_an_error(env, captures, s3):
    path, _ = captures.varied(500, seed=75, fmt="pcap-ns")
    rx = env.receiver()
    stream(env, rx, path, "nc")
    rx.stop()
    hport, hargs = http_args()
    rx2 = env.receiver(outdir=rx.outdir, config=s3_config(env, s3), args=hargs,
                       env={"HOME": str(env.workdir)})
    wait_for(lambda: s3_metrics(hport).get("failed_total", 0) >= 1, "a failed attempt")
    rx2.stop(check=False)
    assert "no AWS credentials" in rx2.stderr
    assert len(rx.files()) == 1


def test_shared_credentials_file_and_profile(env, captures, s3):
    path, _ = captures.varied(500, seed=76, fmt="pcap-ns")
    rx = env.receiver()
    stream(env, rx, path, "sc")
    rx.stop()
    creds = env.workdir / "credentials"
    creds.write_text("[default]\naws_access_key_id = WRONG\naws_secret_access_key = x\n\n"
                     "[capture]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n")
    hport, hargs = http_args()
    # and {receiver} in the prefix: this receiver's name
    rx2 = env.receiver(outdir=rx.outdir, config=s3_config(env, s3, prefix="cap/{receiver}/"),
                       args=hargs,
                       env={"HOME": str(env.workdir), "AWS_SHARED_CREDENTIALS_FILE": str(creds),
                            "AWS_PROFILE": "capture", "PACKETSTREAMER_TIER_NAME": "rx-a"})
    wait_for(lambda: s3_metrics(hport).get("uploaded_total") == 1, "the upload")
    rx2.stop()
    [f] = rx.files()
    assert list(s3.keys()) == ["cap/rx-a/" + f.name]
    assert s3.get("cap/rx-a/" + f.name) == f.read_bytes()


def sigv4_problem(method, path, headers, body, secret):
    """None if the request carries a valid AWS Signature Version 4 for secret
    (the payload hash checked against the body too), else what is wrong.
    Written from the specification, independent of the receiver's libcurl."""
    auth = headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "no SigV4 Authorization header"
    fields = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    access, date, region, service, term = fields["Credential"].split("/")
    signed = fields["SignedHeaders"].split(";")
    payload = headers.get("x-amz-content-sha256")
    if payload != hashlib.sha256(body).hexdigest():
        return "x-amz-content-sha256 %r is not the body's SHA-256" % payload
    for h in ("host", "x-amz-date", "x-amz-content-sha256"):
        if h not in signed:
            return "%s not signed" % h
    if "x-amz-security-token" in headers and "x-amz-security-token" not in signed:
        return "session token not signed"
    u = urlsplit(path)
    canon_uri = quote(u.path, safe="/~")  # S3: no double encoding
    pairs = []
    for item in u.query.split("&") if u.query else []:
        k, _, v = item.partition("=")
        pairs.append((quote(unquote_plus_safe(k), safe="~"), quote(unquote_plus_safe(v), safe="~")))
    canon_query = "&".join("%s=%s" % kv for kv in sorted(pairs))
    canon_headers = "".join("%s:%s\n" % (h, " ".join(headers[h].split())) for h in signed)
    creq = "\n".join([method, canon_uri, canon_query, canon_headers, ";".join(signed), payload])
    amz_date = headers["x-amz-date"]
    scope = "/".join([date, region, service, term])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                     hashlib.sha256(creq.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, term):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    want = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    if want != fields["Signature"]:
        return "signature mismatch; canonical request:\n" + creq
    return None


def unquote_plus_safe(v):
    from urllib.parse import unquote
    return unquote(v)


class StrictProxy:
    """Between the receiver and s3rver: checks every request's SigV4
    signature (s3rver does not check them all) and can cut one PUT's body
    halfway, as a server that dies mid-upload."""

    def __init__(self, upstream_port, secret="S3RVER"):
        self.problems = []
        self.requests = []
        self.cut_puts = set()  # cut these PUTs of capture objects (1-based, in arrival order)
        self.head_etag = None  # answer HEADs with this ETag instead of the object's
        self.cuts = 0
        self._puts = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                hdrs = {k.lower(): v for k, v in self.headers.items()}
                # the side indexes (KEY.idx, put after each confirmed upload)
                # are not counted: the cuts aim at the capture objects
                if self.command == "PUT" and ".idx" not in self.path:
                    proxy._puts += 1
                    if proxy._puts in proxy.cut_puts:
                        self.rfile.read(n // 2)
                        proxy.cuts += 1
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                body = self.rfile.read(n)
                proxy.requests.append((self.command, self.path))
                why = sigv4_problem(self.command, self.path, hdrs, body, secret)
                if why:
                    proxy.problems.append("%s %s: %s" % (self.command, self.path, why))
                    out = b"<Error><Code>SignatureDoesNotMatch</Code></Error>"
                    self.send_response(403)
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                    return
                c = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                fwd = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("connection", "expect")}
                c.request(self.command, self.path, body=body if n else None, headers=fwd)
                r = c.getresponse()
                data = r.read()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("connection", "keep-alive", "transfer-encoding",
                                         "content-length", "date"):
                        if (k.lower() == "etag" and self.command == "HEAD"
                                and proxy.head_etag is not None):
                            v = proxy.head_etag
                        self.send_header(k, v)
                # a HEAD answer carries the object's length, with no body
                self.send_header("Content-Length", r.getheader("Content-Length", "0")
                                 if self.command == "HEAD" else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                c.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

            def log_message(self, *a):
                pass

        class Server(socketserver.ThreadingMixIn, HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self):
        return "http://127.0.0.1:%d" % self.port

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def strict(s3):
    p = StrictProxy(s3.port)
    yield p
    p.close()


def test_signatures_valid_and_cut_upload_redone(env, captures, s3, strict):
    # Every request signed as AWS checks it, single PUTs and multipart, with a
    # session token; and a PUT whose connection dies halfway is redone: the
    # object is whole and there once.
    path, expected = captures.varied(14_000, seed=78, fmt="pcap-ns")
    rx = env.receiver(config=s3_config(env, s3, name="plain.yaml", enabled="false",
                                       file={"rotateSizeMB": 6}))
    stream(env, rx, path, "sig")
    rx.stop()
    files = rx.files()
    assert len(files) >= 2 and any(f.stat().st_size > 5 * MiB for f in files)
    # files 1 and 2 go up in two parts each, the last in one PUT: cut part 2
    # of file 1 (PUT 2, retried within its upload as PUT 3; file 2 is PUTs 4
    # and 5) and the single PUT of file 3 (PUT 6: the file is tried again)
    small = [f for f in files if f.stat().st_size <= 5 * MiB]
    assert len(files) == 3 and small == [files[-1]], [f.stat().st_size for f in files]
    strict.cut_puts = {2, 6}
    hport, hargs = http_args()
    cfg = s3_config(env, strict, partSizeMB=5)
    rx2 = env.receiver(outdir=rx.outdir, config=cfg, args=hargs,
                       env=aws_env(env, AWS_SESSION_TOKEN="FQoGZXIvYXdzE-session"))
    wait_for(lambda: s3_metrics(hport).get("uploaded_total") == len(files), "the uploads",
             timeout=90)
    m = s3_metrics(hport)
    rx2.stop()
    assert strict.problems == [], "\n".join(strict.problems[:3])
    assert strict.cuts == 2
    assert m["failed_total"] == 1  # the cut single PUT; the cut part was retried in place
    methods = {(m_, p.split("?")[1].split("=")[0] if "?" in p else "") for m_, p in strict.requests}
    assert ("POST", "uploads") in methods and ("PUT", "partNumber") in methods
    assert ("POST", "uploadId") in methods and ("HEAD", "") in methods
    keys = s3.keys()
    assert sorted(keys) == sorted("cap/" + f.name for f in files)
    for f in files:
        assert s3.get("cap/" + f.name) == f.read_bytes(), f.name
    assert "FQoGZXIvYXdzE-session" not in rx2.stderr


class FakeSts(BaseHTTPRequestHandler):
    """AssumeRoleWithWebIdentity: checks the token and the role, answers
    s3rver's credentials with a session token."""
    calls = []
    lifetime = 3600  # seconds the credentials are valid

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(n).decode())
        FakeSts.calls.append(form)
        ok = (form.get("Action") == ["AssumeRoleWithWebIdentity"]
              and form.get("WebIdentityToken") == ["eyJ.test-token.sig"]
              and form.get("RoleArn") == ["arn:aws:iam::123456789012:role/capture"])
        if ok:
            exp = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                time.gmtime(time.time() + FakeSts.lifetime))
            body = ("<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/"
                    "2011-06-15/\"><AssumeRoleWithWebIdentityResult><Credentials>"
                    "<AccessKeyId>S3RVER</AccessKeyId><SecretAccessKey>S3RVER</SecretAccessKey>"
                    "<SessionToken>session-token-xyz</SessionToken><Expiration>%s</Expiration>"
                    "</Credentials></AssumeRoleWithWebIdentityResult>"
                    "</AssumeRoleWithWebIdentityResponse>" % exp).encode()
            self.send_response(200)
        else:
            body = (b"<ErrorResponse><Error><Code>InvalidIdentityToken</Code>"
                    b"<Message>bad token</Message></Error></ErrorResponse>")
            self.send_response(400)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_web_identity_sts(env, captures, s3):
    path, _ = captures.varied(500, seed=77, fmt="pcap-ns")
    rx = env.receiver()
    stream(env, rx, path, "wi")
    rx.stop()
    sts = HTTPServer(("127.0.0.1", 0), FakeSts)
    threading.Thread(target=sts.serve_forever, daemon=True).start()
    token = env.workdir / "token"
    token.write_text("eyJ.test-token.sig\n")
    FakeSts.calls = []
    hport, hargs = http_args()
    cfg = s3_config(env, s3, stsEndpoint="http://127.0.0.1:%d" % sts.server_address[1])
    rx2 = env.receiver(outdir=rx.outdir, config=cfg, args=hargs,
                       env={"HOME": str(env.workdir), "AWS_WEB_IDENTITY_TOKEN_FILE": str(token),
                            "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/capture"})
    try:
        wait_for(lambda: s3_metrics(hport).get("uploaded_total") == 1, "the upload")
        rx2.stop()
    finally:
        sts.shutdown()
    assert len(FakeSts.calls) == 1, "STS credentials are kept until they near expiry"
    FakeSts.lifetime = 3600
    [f] = rx.files()
    assert s3.get("cap/" + f.name) == f.read_bytes()
    assert "session-token-xyz" not in rx2.stderr and "test-token" not in rx2.stderr


def test_config_checks(env):
    for keys, msg in (({"enabled": "true"}, "output.s3.bucket is not set"),
                      ({"enabled": "true", "bucket": "bkt", "endpoint": "ftp://x"},
                       "must be an http:// or https:// URL"),
                      ({"enabled": "true", "bucket": "bkt", "sseKmsKeyId": "k"},
                       "sse is not aws:kms"),
                      ({"enabled": "true", "bucket": "bkt", "partSizeMB": 4}, "partSizeMB")):
        p = env.workdir / "bad.yaml"
        p.write_text("output:\n  s3:\n" + "".join("    %s: %s\n" % kv for kv in keys.items()))
        rc, out = env.run([str(env.binary), "check-config", "--role", "receiver", "--config", str(p)])
        assert rc != 0 and msg in out, (keys, out)
    # the chart writes sse as S3 spells it
    p.write_text("output:\n  s3:\n    enabled: true\n    bucket: bkt\n    sse: AES256\n")
    rc, out = env.run([str(env.binary), "check-config", "--role", "receiver", "--config", str(p)])
    assert rc == 0, out


def test_api_lists_and_serves_bucket_objects(env, captures, s3):
    # deleteLocal: uploaded files leave the disk but stay listed and
    # downloadable, streamed through from the bucket, Range included
    import json
    path, expected = captures.varied(6000, seed=79, fmt="pcap-ns")
    hport, hargs = http_args()
    cfg = s3_config(env, s3, deleteLocal="true", file={"rotateSizeMB": 1})
    rx = env.receiver(config=cfg, args=hargs, env=aws_env(env))
    stream(env, rx, path, "api")
    wait_for(lambda: s3_metrics(hport).get("uploaded_total", 0) >= 3, "uploads")
    wait_for(lambda: s3_metrics(hport).get("pending") == 0, "an empty queue")
    local = {f.name for f in rx.files()}
    assert not local, "uploaded files are deleted with deleteLocal: %s" % local
    keys = s3.keys()
    st, _, body = get(hport, "/api/captures")
    assert st == 200
    entries = {e["name"]: e for e in json.loads(body)}
    in_bucket = {k[len("cap/"):] for k in keys}
    assert in_bucket <= set(entries), (in_bucket, set(entries))
    names = sorted(in_bucket)
    for n in names:
        e = entries[n]
        assert e["stored"] == "s3" and e["size"] == keys["cap/" + n] and e["complete"]
        assert e["url"] == "/captures/" + n and e["modified"]
    parts = [e for e in entries.values() if e["name"].endswith(".part")]
    assert all(e["stored"] == "local" for e in parts)
    bodies = []
    for n in names:
        st, hdr, data = get(hport, "/captures/" + n, timeout=60)
        assert st == 200 and data == s3.get("cap/" + n), n
        assert hdr["content-length"] == str(len(data)) and hdr["accept-ranges"] == "bytes"
        bodies.append(data)
    n0 = names[0]
    st, hdr, data = get(hport, "/captures/" + n0, headers={"Range": "bytes=100-4195"})
    assert st == 206 and data == bodies[0][100:4196]
    assert hdr["content-range"] == "bytes 100-4195/%d" % len(bodies[0])
    st, hdr, _ = get(hport, "/captures/" + n0, headers={"Range": "bytes=%d-" % (len(bodies[0]) + 5)})
    assert st == 416 and hdr["content-range"] == "bytes */%d" % len(bodies[0])
    missing = n0.replace("-000001.", "-000999.")
    st, _, _ = get(hport, "/captures/" + missing)
    assert st == 404
    rx.stop()
    # the file completed at shutdown goes up at the next start
    hport2, hargs2 = http_args()
    rx2 = env.receiver(outdir=rx.outdir, config=cfg, args=hargs2, env=aws_env(env))
    wait_for(lambda: not rx.files(), "the last upload and its deletion")
    rx2.stop()
    objs = objects_to_dir(s3, s3.keys(), env.workdir / "objects")
    assert_records_equal(read_outputs(objs), expected, ifname="api/" + path.name)


def test_https_endpoint_with_private_ca(env, captures):
    # MinIO-style: https with a private CA, trusted through output.s3.caFile
    # only; without it the TLS failure is logged and nothing is uploaded
    import certs as certlib
    c = certlib.Certs(env.workdir / "pki")
    crt, key = c.leaf("ca", "s3", dns=["localhost"], ips=["127.0.0.1"])
    srv = S3rver(env.workdir, tls=(crt, key))
    srv.ca = c.p("ca.crt")
    srv.start()
    try:
        path, expected = captures.varied(800, seed=80, fmt="pcap-ns")
        rx = env.receiver()
        stream(env, rx, path, "tls")
        rx.stop()
        [f] = rx.files()
        hport, hargs = http_args()
        rx2 = env.receiver(outdir=rx.outdir, config=s3_config(env, srv, name="noca.yaml"),
                           args=hargs, env=aws_env(env))
        wait_for(lambda: s3_metrics(hport).get("failed_total", 0) >= 1, "a failed attempt")
        rx2.stop()
        assert "certificate" in rx2.stderr.lower(), rx2.stderr[-2000:]
        assert srv.keys() == {}
        hport, hargs = http_args()
        rx3 = env.receiver(outdir=rx.outdir,
                           config=s3_config(env, srv, name="ca.yaml", caFile=c.p("ca.crt")),
                           args=hargs, env=aws_env(env))
        wait_for(lambda: s3_metrics(hport).get("uploaded_total") == 1, "the upload")
        rx3.stop()
        assert srv.get("cap/" + f.name) == f.read_bytes()
    finally:
        srv.stop()


def test_deleted_only_after_confirmation(env, captures, s3, strict):
    # the server takes the PUT but its HEAD shows another checksum: not
    # confirmed, so not counted and not deleted; once HEAD agrees, it is
    path, _ = captures.varied(800, seed=81, fmt="pcap-ns")
    rx = env.receiver()
    stream(env, rx, path, "conf")
    rx.stop()
    [f] = rx.files()
    data = f.read_bytes()
    strict.head_etag = '"0123456789abcdef0123456789abcdef"'
    hport, hargs = http_args()
    rx2 = env.receiver(outdir=rx.outdir, config=s3_config(env, strict, deleteLocal="true"),
                       args=hargs, env=aws_env(env))
    wait_for(lambda: s3_metrics(hport).get("failed_total", 0) >= 2, "failed confirmations")
    m = s3_metrics(hport)
    assert f.exists(), "deleted without a confirmed upload"
    assert m["uploaded_total"] == 0 and m["pending"] == 1
    assert "ETag 0123456789abcdef0123456789abcdef in the bucket" in rx2.stderr
    strict.head_etag = None
    wait_for(lambda: s3_metrics(hport).get("uploaded_total") == 1, "the confirmation", timeout=30)
    wait_for(lambda: not f.exists(), "the deletion")
    rx2.stop()
    assert s3.get("cap/" + f.name) == data


def test_failed_multipart_upload_aborted(env, captures, s3, strict):
    # part 2 fails on every try: the upload is aborted (DELETE ?uploadId),
    # then the file is uploaded again from the start
    path, expected = captures.varied(7_500, seed=82, fmt="pcap-ns")
    rx = env.receiver()
    stream(env, rx, path, "ab")
    rx.stop()
    [f] = rx.files()
    assert f.stat().st_size > 5 * MiB
    strict.cut_puts = {2, 3, 4}  # part 2 and its two retries
    hport, hargs = http_args()
    rx2 = env.receiver(outdir=rx.outdir, config=s3_config(env, strict, partSizeMB=5),
                       args=hargs, env=aws_env(env))
    wait_for(lambda: s3_metrics(hport).get("uploaded_total") == 1, "the upload", timeout=90)
    m = s3_metrics(hport)
    rx2.stop()
    assert strict.problems == [], strict.problems[:3]
    deletes = [p for m_, p in strict.requests if m_ == "DELETE"]
    assert len(deletes) == 1 and "uploadId=" in deletes[0], strict.requests
    assert m["failed_total"] == 1
    assert s3.get("cap/" + f.name) == f.read_bytes()


def test_web_identity_renewed_before_expiry(env, captures, s3):
    # credentials that expire in 302 s are renewed 5 minutes before, i.e.
    # after about 2 s: uploads spread over several seconds ask STS again,
    # each time with the token file read again
    path, expected = captures.varied(8000, seed=83, fmt="pcap-ns")
    sts = HTTPServer(("127.0.0.1", 0), FakeSts)
    threading.Thread(target=sts.serve_forever, daemon=True).start()
    token = env.workdir / "token"
    token.write_text("eyJ.test-token.sig\n")
    FakeSts.calls = []
    FakeSts.lifetime = 302
    hport, hargs = http_args()
    cfg = s3_config(env, s3, stsEndpoint="http://127.0.0.1:%d" % sts.server_address[1],
                    file={"rotateSizeMB": 1})
    rx = env.receiver(config=cfg, args=hargs,
                      env={"HOME": str(env.workdir), "AWS_WEB_IDENTITY_TOKEN_FILE": str(token),
                           "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/capture"})
    try:
        rc, err = env.run_sensor(path, rx.port, sensor_id="renew",
                                 env={"PACKETSTREAMER_SENSOR_READ_PACKETS_PER_SEC": "1000"})
        assert rc == 0, err
        done = len(rx.files())
        wait_for(lambda: s3_metrics(hport).get("uploaded_total", 0) >= done, "the uploads")
        rx.stop()
    finally:
        sts.shutdown()
        FakeSts.lifetime = 3600
    assert done >= 5
    assert len(FakeSts.calls) >= 3, "credentials not renewed: %d STS calls" % len(FakeSts.calls)
    assert "upload of" not in rx.stderr, "a failed attempt was logged"


def test_retention_before_upload_is_counted(env, captures, s3):
    # the bucket is down and retention (maxFiles) deletes files before they
    # could go up: each is logged and counted, the queue forgets it, the
    # files retention keeps go up once the bucket is back
    path, _ = captures.varied(11_000, seed=84, fmt="pcap-ns")
    s3.stop()
    hport, hargs = http_args()
    cfg = s3_config(env, s3, file={"rotateSizeMB": 1, "maxFiles": 2})
    rx = env.receiver(config=cfg, args=hargs, env=aws_env(env))
    stream(env, rx, path, "ret")
    kept = rx.files()
    assert len(kept) == 2
    wait_for(lambda: s3_metrics(hport).get("pending") == 2, "the queue to drop deleted files")
    assert rx.stderr.count("is gone before its upload") >= 5
    s3.start()
    wait_for(lambda: s3_metrics(hport).get("uploaded_total") == 2, "the kept files' uploads")
    m = s3_metrics(hport)
    rx.stop()
    # (the file completed at shutdown may have gone up too)
    keys = set(s3.keys())
    assert {"cap/" + f.name for f in kept} <= keys
    assert keys <= {"cap/" + f.name for f in kept + rx.files()}
    assert m["failed_total"] >= 5 + 1
