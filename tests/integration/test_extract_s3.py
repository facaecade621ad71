"""GET /api/packets from the bucket (docs/storage.md, "Extraction from the
bucket"): with output.s3.deleteLocal the receiver's old windows are in the
bucket only, and in a tier sharing one bucket (prefix `cap/{receiver}/`) a
receiver answers for another receiver's captures. Against s3rver.

What a user would notice, packets compared byte for byte (timestamp,
caplen, origlen, bytes, in order) with the answers of a reference receiver
that keeps every file on disk (and with the sensors' inputs): the same
answers once the files are gone from the disk; the same answers from a
receiver that never received them; a window across the file still on disk
and bucket objects merged in order with no packet twice; an object whose
side index is missing read anyway (scanned, and said so); the bucket down:
502 with the reason, not an empty answer; a small cache: a clear 400 naming
output.s3.cacheMB for a request that needs more, narrow requests still
answered, and the cache directory never larger than its bound."""

import json
import os
import time
from pathlib import Path

import pytest

from conftest import assert_no_sanitizer, pcaplib
from http_helpers import get, http_args, parse_metrics, wait_http_up, metrics
from s3rver import BUCKET, S3rver, aws_env, wait_for
from test_extract import BASE, PER_SENSOR, extract, iso, make_inputs, reference, send_all

MiB = 1024 * 1024
ALL = {"from": iso(BASE), "to": iso(BASE + 10**12)}


def config(env, srv, name, prefix, delete_local, rx_name=None, cache_mb=None):
    lines = ["output:", "  file:", "    rotateSizeMB: 1", "  s3:", "    enabled: true",
             "    endpoint: %s" % srv.endpoint, "    bucket: %s" % BUCKET, "    pathStyle: true",
             "    prefix: %s" % prefix, "    retryMaxSec: 2",
             "    deleteLocal: %s" % ("true" if delete_local else "false")]
    if cache_mb:
        lines.append("    cacheMB: %d" % cache_mb)
    if rx_name:
        lines += ["tier:", "  name: %s" % rx_name]
    p = env.workdir / name
    p.write_text("\n".join(lines) + "\n")
    return p


def pending(hport):
    m = parse_metrics(metrics(hport))
    return m.get("packetstreamer_receiver_s3_pending")


def completed(outdir):
    return sorted(p for p in os.listdir(outdir) if p.endswith(".pcapng"))


def cache_bytes(outdir):
    d = Path(outdir) / ".s3cache"
    if not d.is_dir():
        return 0
    return sum(p.stat().st_size for p in d.iterdir() if p.is_file())


def packets(hport, **params):
    st, hdr, body = extract(hport, **params)
    assert st == 200, (params, st, body[:400])
    return hdr, pcaplib.read_named(body)


@pytest.fixture(scope="module")
def tier(tmp_path_factory):
    """s3rver; a reference receiver keeping its files (prefix ref/); receiver
    rx-a of a tier (prefix cap/{receiver}/) deleting its files once uploaded.
    Both got the same packets."""
    from conftest import Env, find_binary
    workdir = tmp_path_factory.mktemp("extract_s3")
    env = Env(find_binary(), workdir)
    srv = S3rver(env.workdir)
    srv.start()
    ref_port, ref_args = http_args()
    ref = env.receiver(config=config(env, srv, "ref.yaml", "ref/", False), args=ref_args,
                       env=aws_env(env))
    a_port, a_args = http_args()
    a_cfg = config(env, srv, "a.yaml", "cap/{receiver}/", True, rx_name="rx-a")
    a = env.receiver(config=a_cfg, args=a_args, env=aws_env(env))
    wait_http_up(ref_port)
    wait_http_up(a_port)
    inputs = make_inputs()
    send_all(ref.port, inputs)
    send_all(a.port, inputs)
    wait_for(lambda: pending(a_port) == 0 and pending(ref_port) == 0 and
             not completed(a.outdir), "uploads and the local deletions")
    assert len(completed(ref.outdir)) >= 4
    yield {"env": env, "s3": srv, "ref": ref, "ref_port": ref_port, "a": a, "a_port": a_port,
           "a_cfg": a_cfg, "a_args": a_args, "inputs": inputs}
    srv.stop()
    for r in list(env.receivers):
        assert r.stop(check=False) == 0, r.stderr[-3000:]
        assert_no_sanitizer(r.stderr, "receiver")
    env.cleanup()


QUERIES = [
    dict(ALL),
    {"from": iso(BASE + 1000 * 3_000_000 + 5), "to": iso(BASE + 2300 * 3_000_000),
     "pod": "shop/web-1"},
    {"from": iso(BASE + 300 * 3_000_000), "to": iso(BASE + 1900 * 3_000_000), "iface": "eth0",
     "filter": "udp"},
    {"from": iso(BASE), "to": iso(BASE + 10**12), "sensor": "node-b", "filter": "tcp"},
]


def test_deleted_locally_same_answers(tier):
    """(a) and (c): every completed file of rx-a is gone from its disk (the
    one being written is not); its answers equal the reference's, packet for
    packet, and the whole window merges the .part on disk with the bucket
    objects in timestamp order, each packet once."""
    a_port, ref_port = tier["a_port"], tier["ref_port"]
    assert not completed(tier["a"].outdir)
    assert [p for p in os.listdir(tier["a"].outdir) if p.endswith(".pcapng.part")]
    for q in QUERIES:
        _, want = packets(ref_port, **q)
        hdr, got = packets(a_port, **q)
        assert want, q
        assert got == want, q
    # the whole window: the inputs exactly, from the bucket and the .part
    hdr, got = packets(a_port, **ALL)
    assert got == reference(tier["inputs"])
    assert len(got) == 3 * PER_SENSOR
    assert int(hdr["x-packetstreamer-bucket-read"]) >= 4
    assert int(hdr["x-packetstreamer-files-read"]) == int(hdr["x-packetstreamer-bucket-read"]) + 1
    # its own indexes were kept: no scan, and the objects it read are cached
    assert hdr["x-packetstreamer-bucket-scanned"] == "0"
    # the reference keeps its files: local and bucket copies count once
    hdr, got = packets(ref_port, **ALL)
    assert got == reference(tier["inputs"])
    assert hdr["x-packetstreamer-bucket-read"] == "0"
    # every capture object has its side index next to it, not listed by /api/captures
    keys = tier["s3"].keys(indexes=True)
    caps = [k for k in keys if not k.endswith(".idx")]
    assert caps and all(k + ".idx" in keys for k in caps), sorted(keys)
    st, _, body = get(a_port, "/api/captures")
    assert st == 200
    assert not [e for e in json.loads(body) if e["name"].endswith(".idx")]
    m = parse_metrics(metrics(a_port))
    assert m["packetstreamer_receiver_s3_query_fetched_bytes_total"] > 0
    assert m["packetstreamer_receiver_s3_cache_bytes"] > 0


def restart_a(tier):
    """rx-a stopped (its .part completes) and started again: it uploads that
    last file and deletes it; then all its packets are in the bucket."""
    tier["a"].stop()
    env = tier["env"]
    a = env.receiver(outdir=tier["a"].outdir, config=tier["a_cfg"], args=tier["a_args"],
                     env=aws_env(env))
    tier["a"] = a
    wait_http_up(tier["a_port"])
    wait_for(lambda: pending(tier["a_port"]) == 0 and not completed(a.outdir),
             "the last file's upload")
    keys = tier["s3"].keys()
    wait_for(lambda: all(k + ".idx" in tier["s3"].keys(indexes=True) for k in keys),
             "the side indexes")


def test_other_receiver_extracts_identically(tier):
    """(b): rx-b, sharing the bucket, never received a packet; it answers
    every question about rx-a's captures as the reference does. One object's
    side index deleted from the bucket: rx-b scans that object and says so."""
    restart_a(tier)
    env, srv = tier["env"], tier["s3"]
    caps = sorted(k for k in srv.keys() if k.startswith("cap/rx-a/"))
    assert len(caps) >= 5
    st, _, _ = srv.request("DELETE", "/%s/%s.idx" % (BUCKET, caps[1]))
    assert st in (200, 204)
    b_port, b_args = http_args()
    b = env.receiver(config=config(env, srv, "b.yaml", "cap/{receiver}/", True, rx_name="rx-b"),
                     args=b_args, env=aws_env(env))
    wait_http_up(b_port)
    assert not completed(b.outdir)
    for i, q in enumerate(QUERIES):
        _, want = packets(tier["ref_port"], **q)
        hdr, got = packets(b_port, **q)
        assert got == want, q
        if i == 0:
            assert got == reference(tier["inputs"])
            assert hdr["x-packetstreamer-bucket-scanned"] == "1"
            assert int(hdr["x-packetstreamer-bucket-read"]) == len(caps)
            assert int(hdr["x-packetstreamer-bucket-fetched-bytes"]) == sum(
                srv.keys()[k] for k in caps)
    # indexes and objects were cached: asked again, nothing is fetched
    hdr, got = packets(b_port, **ALL)
    assert hdr["x-packetstreamer-bucket-scanned"] == "0"
    assert hdr["x-packetstreamer-bucket-fetched"] == "0"
    assert got == reference(tier["inputs"])
    tier["b"] = b
    tier["b_port"] = b_port


def test_bucket_down_is_502(tier):
    """(d): the bucket stopped; a receiver that must read from it answers
    502 with the reason, never a short or empty pcapng; one that has what
    it needs cached answers from its last listing, and says so."""
    env, srv = tier["env"], tier["s3"]
    srv.stop()
    try:
        c_port, c_args = http_args()
        env.receiver(config=config(env, srv, "c.yaml", "cap/{receiver}/", True, rx_name="rx-c"),
                     args=c_args, env=aws_env(env))
        wait_http_up(c_port)
        st, hdr, body = extract(c_port, **ALL)
        assert st == 502, (st, body[:300])
        assert hdr["content-type"] == "application/json"
        err = json.loads(body)
        assert err["error"] == "bucket_unavailable"
        assert "bucket" in err["reason"] and len(err["reason"]) > 20
        # rx-b listed the bucket and cached every object and index before: once
        # its listing is older than 10 s, it answers from that listing and its
        # cache, exactly, and says so
        time.sleep(10.5)
        hdr, got = packets(tier["b_port"], **ALL)
        assert got == reference(tier["inputs"])
        assert "listing the bucket" in hdr["x-packetstreamer-bucket-note"], hdr
        assert hdr["x-packetstreamer-bucket-fetched"] == "0"
    finally:
        srv.start()


def test_cache_bound(tier):
    """(e): cacheMB 2 with objects of a little over 1 MiB: a request that
    needs them all is refused with a 400 naming output.s3.cacheMB; narrow
    requests (one object each) are answered exactly, evicting the older
    object; the cache directory never holds more than 2 MiB."""
    env, srv = tier["env"], tier["s3"]
    d_port, d_args = http_args()
    d = env.receiver(config=config(env, srv, "d.yaml", "cap/{receiver}/", True, rx_name="rx-d",
                                   cache_mb=2), args=d_args, env=aws_env(env))
    wait_http_up(d_port)
    st, _, body = extract(d_port, **ALL)
    assert st == 400, (st, body[:300])
    err = json.loads(body)
    assert err["error"] == "too_broad" and "output.s3.cacheMB" in err["reason"], err
    assert cache_bytes(d.outdir) <= 2 * MiB
    # node-a's first and last packets are in different objects
    rows = tier["inputs"]["node-a"]
    for ts in (rows[0][1].ts_ns, rows[-1][1].ts_ns, rows[0][1].ts_ns):
        q = {"from": iso(ts - 1000), "to": iso(ts + 1000), "sensor": "node-a"}
        _, want = packets(tier["ref_port"], **q)
        hdr, got = packets(d_port, **q)
        assert len(want) == 1 and got == want, q
        assert hdr["x-packetstreamer-bucket-read"] == "1"
        assert 0 < cache_bytes(d.outdir) <= 2 * MiB
    # the gauge is published every 250 ms
    v = wait_for(lambda: parse_metrics(metrics(d_port))["packetstreamer_receiver_s3_cache_bytes"],
                 "the cache gauge")
    assert 0 < v <= 2 * MiB


def test_scanning_more_than_the_cache(tier):
    """An old bucket: no object has its side index, and together they are
    larger than the cache (cacheMB 2, objects of a little over 1 MiB). A
    narrow question scans every object to plan (each released once its
    index is saved), holds only the one it reads, and is answered exactly;
    the cache never exceeds its bound. Asked again, nothing is scanned."""
    env, srv = tier["env"], tier["s3"]
    caps = sorted(k for k in srv.keys() if k.startswith("cap/rx-a/"))
    assert len(caps) >= 3 and sum(srv.keys()[k] for k in caps) > 2 * MiB
    for k in caps:
        st, _, _ = srv.request("DELETE", "/%s/%s.idx" % (BUCKET, k))
        assert st in (200, 204)
    e_port, e_args = http_args()
    e = env.receiver(config=config(env, srv, "e.yaml", "cap/{receiver}/", True, rx_name="rx-e",
                                   cache_mb=2), args=e_args, env=aws_env(env))
    wait_http_up(e_port)
    rows = tier["inputs"]["node-a"]
    ts = rows[-1][1].ts_ns
    q = {"from": iso(ts - 1000), "to": iso(ts + 1000), "sensor": "node-a"}
    _, want = packets(tier["ref_port"], **q)
    hdr, got = packets(e_port, **q)
    assert len(want) == 1 and got == want, q
    assert hdr["x-packetstreamer-bucket-scanned"] == str(len(caps))
    assert hdr["x-packetstreamer-bucket-read"] == "1"
    assert 0 < cache_bytes(e.outdir) <= 2 * MiB
    hdr, got = packets(e_port, **q)
    assert got == want and hdr["x-packetstreamer-bucket-scanned"] == "0"
