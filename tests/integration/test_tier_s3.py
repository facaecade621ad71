"""A receiver tier uploading to one bucket: three receivers, twelve sensors,
one s3rver, the busiest receiver killed with SIGKILL mid-stream.

Everything runs in a network namespace of its own (prefix "pss3tier-"),
s3rver included, whose /etc/hosts gives the name rx-tier the addresses
127.0.0.1-3 as in test_tier.py. The receivers share the bucket with
`output.s3.prefix: cap/{receiver}/` (docs/storage.md), so keys never collide.

SIGKILL, not SIGTERM as test_tier.py: it is the case SIGTERM cannot show (a
node lost, an OOM kill), where the receiver leaves a .part file behind and
files it never uploaded; a StatefulSet restarts the pod, and the restarted
receiver must repair the .part and upload what its predecessor left. Its
sensors move to the other receivers on their own.

What a user would notice, checked on the objects' pcapng records byte for
byte against the sensors' inputs: every packet in the bucket; a sensor that
stayed home exactly once, under its home's prefix only; a sensor that moved:
its old home has a prefix of its packets, its new one a suffix, and the
overlap (duplicates) is only the batches in flight at the move: the tail of
what the old home wrote, resent at the head of the new home's
(docs/reliability.md). The restarted receiver serves one of its objects
from the bucket, whole and with a Range, byte-identical to the object. A
download of that object through another receiver, named by the receiver that
holds it (`?receiver=`, as /api/captures lists it), gives the same bytes.
"""

import collections
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import SCALE, child_env, pcaplib

NS = "pss3tier-%d" % os.getpid()
PORT = 18621
HTTP_PORT = 18622
S3_PORT = 18623
RX_ADDRS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
SENSORS = 12
PACKETS = 1500
BUCKET = "caps"
S3RVER = Path(os.environ.get("PS_CACHE", "/var/tmp/packetstreamer-cache")) / "s3rver" / \
    "node_modules" / ".bin" / "s3rver"


@pytest.fixture
def tierns():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespace)")
    assert S3RVER.exists(), "s3rver is not installed: run `make deps` (packaging/s3rver.sh)"
    hosts_dir = Path("/etc/netns") / NS
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        subprocess.run(["ip", "-n", NS, "link", "set", "lo", "up"], check=True)
        hosts_dir.mkdir(parents=True, exist_ok=True)
        (hosts_dir / "hosts").write_text(
            "".join("%s rx-tier\n" % a for a in RX_ADDRS) + "127.0.0.1 localhost\n")
        yield NS
    finally:
        pids = subprocess.run(["ip", "netns", "pids", NS], capture_output=True, text=True).stdout
        for pid in pids.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", NS])
        shutil.rmtree(hosts_dir, ignore_errors=True)


def start(args, log, env=None):
    f = open(log, "ab")
    p = subprocess.Popen(["ip", "netns", "exec", NS] + args, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=f, env=child_env(env or {}))
    p.log = log
    return p


def wait_log(p, text, timeout, count=1):
    deadline = time.monotonic() + timeout * SCALE
    while time.monotonic() < deadline:
        if Path(p.log).read_text(errors="replace").count(text) >= count:
            return
        if p.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError("%s: no %r:\n%s" % (p.args, text, Path(p.log).read_text()[-3000:]))


def ns_get(url, headers=()):
    """(status, {header: value}, body) of a GET made inside the namespace."""
    import tempfile
    with tempfile.NamedTemporaryFile() as f:
        cmd = ["ip", "netns", "exec", NS, "curl", "-sS", "--max-time", str(30 * SCALE), "-D", "-",
               "-o", f.name]
        for h in headers:
            cmd += ["-H", h]
        r = subprocess.run(cmd + [url], capture_output=True, env=child_env({}))
        assert r.returncode == 0, (url, r.stderr)
        body = Path(f.name).read_bytes()
    out = r.stdout
    blocks = [b for b in out.decode("latin-1").split("\r\n\r\n") if b.strip()]
    lines = blocks[-1].split("\r\n")  # the last response (after any 100 Continue)
    status = int(lines[0].split()[1])
    hdrs = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, body


def bucket_keys():
    """{key: size} of every capture object in the bucket (s3rver answers anonymous
    ListObjectsV2; fewer than 1000 objects here)."""
    st, _, body = ns_get("http://127.0.0.1:%d/%s?list-type=2&max-keys=1000" % (S3_PORT, BUCKET))
    assert st == 200, body[:300]
    assert b"<IsTruncated>true" not in body
    text = body.decode()
    keys = re.findall(r"<Key>([^<]*)</Key>", text)
    sizes = [int(s) for s in re.findall(r"<Size>(\d+)</Size>", text)]
    assert len(keys) == len(sizes)
    # the capture objects; their side indexes (KEY.idx, docs/storage.md) aside
    return {k: n for k, n in zip(keys, sizes) if not k.endswith(".idx")}


def bucket_get(key):
    st, _, body = ns_get("http://127.0.0.1:%d/%s/%s" % (S3_PORT, BUCKET, key))
    assert st == 200, (key, st)
    return body


def s3_pending(addr):
    st, _, body = ns_get("http://%s:%d/metrics" % (addr, HTTP_PORT))
    assert st == 200
    m = re.search(rb"^packetstreamer_receiver_s3_pending (\S+)$", body, re.M)
    return float(m.group(1)) if m else None


def wait_drained(addr, p, timeout=60):
    deadline = time.monotonic() + timeout * SCALE
    while time.monotonic() < deadline:
        assert p.poll() is None, Path(p.log).read_text()[-3000:]
        try:
            if s3_pending(addr) == 0:
                return
        except AssertionError:
            pass  # the HTTP server starts just after the listener
        time.sleep(0.2)
    raise AssertionError("%s: uploads still pending:\n%s" % (addr, Path(p.log).read_text()[-3000:]))


def test_tier_uploads_every_packet_across_a_killed_receiver(tierns, tmp_path):
    binary = os.environ.get("PS_TEST_BIN") or str(Path(__file__).resolve().parents[2] / "build" /
                                                  "packetstreamer")
    t0 = time.monotonic()
    data = tmp_path / "s3data"
    data.mkdir()
    s3 = start([str(S3RVER), "-d", str(data), "-a", "127.0.0.1", "-p", str(S3_PORT),
                "--configure-bucket", BUCKET, "--no-vhost-buckets"], tmp_path / "s3rver.log")
    cfg = tmp_path / "rx.yaml"
    cfg.write_text("output:\n  file:\n    rotateSizeMB: 1\n  s3:\n    enabled: true\n"
                   "    endpoint: http://127.0.0.1:%d\n    bucket: %s\n    pathStyle: true\n"
                   "    prefix: cap/{receiver}/\n    deleteLocal: true\n    retryMaxSec: 2\n"
                   % (S3_PORT, BUCKET))
    name = {a: "rx-" + a.split(".")[-1] for a in RX_ADDRS}

    def receiver(a):
        out = tmp_path / ("rx-" + a)
        out.mkdir(exist_ok=True)
        return start([binary, "receiver", "--config", str(cfg), "--listen", "%s:%d" % (a, PORT),
                      "--output", str(out), "--http", "%s:%d" % (a, HTTP_PORT)],
                     tmp_path / ("rx-%s.log" % a),
                     env={"PACKETSTREAMER_HTTP_ENABLE": "true",
                          "PACKETSTREAMER_TIER_PEERS": "rx-tier:%d" % HTTP_PORT,
                          "PACKETSTREAMER_TIER_NAME": name[a],
                          "PACKETSTREAMER_TIER_REFRESH_SEC": "1",
                          "AWS_ACCESS_KEY_ID": "S3RVER", "AWS_SECRET_ACCESS_KEY": "S3RVER",
                          "HOME": str(tmp_path)})

    deadline = time.monotonic() + 20 * SCALE
    while True:
        try:
            if ns_get("http://127.0.0.1:%d/" % S3_PORT)[0]:
                break
        except AssertionError:
            assert s3.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "s3rver.log").read_text()
            time.sleep(0.1)
    rx = {a: receiver(a) for a in RX_ADDRS}
    for p in rx.values():
        wait_log(p, "listening on", 15)
    inputs = {}
    for i in range(SENSORS):  # all inputs first: the sensors then start together
        sid = "node-%02d" % i
        path = tmp_path / ("%s.pcap" % sid)
        pcaplib.write_records(str(path), pcaplib.gen_varied(PACKETS, 900 + i), "pcap-ns")
        inputs[sid] = [bytes(r.data) for r in pcaplib.read(str(path))[1]]
    sensors = []
    for sid in inputs:
        s = start([binary, "sensor", "--read-file", str(tmp_path / ("%s.pcap" % sid)),
                   "--receiver", "rx-tier:%d" % PORT, "--id", sid], tmp_path / ("%s.log" % sid),
                  env={"PACKETSTREAMER_HTTP_ENABLE": "false",
                       "PACKETSTREAMER_SENSOR_READ_PACKETS_PER_SEC": "400"})
        s.sid = sid
        sensors.append(s)
    home = {}
    for s in sensors:
        wait_log(s, "connected to receiver", 20)
        line = [l for l in Path(s.log).read_text().splitlines() if "connected to receiver" in l][0]
        home[s.sid] = line.split(" at ")[1].split(" ")[0]
    counts = collections.Counter(home.values())
    assert len(counts) == 3, counts  # rendezvous hashing spreads 12 sensors over all 3
    victim = counts.most_common(1)[0][0]
    moved = sorted(s for s, h in home.items() if h == victim)
    # mid-stream (each sensor streams for ~3.7 s): let the victim complete
    # and upload a file or two first, then kill it
    time.sleep(1.0 * SCALE)
    vdir = tmp_path / ("rx-" + victim)
    deadline = time.monotonic() + 3 * SCALE  # kill it with a file half written
    while not any(f.name.endswith(".part") and f.stat().st_size > 100000
                  for f in vdir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert all(s.poll() is None for s in sensors if s.sid in moved), "finished before the kill"
    rx[victim].send_signal(signal.SIGKILL)
    assert rx[victim].wait(10 * SCALE) == -signal.SIGKILL
    killed_at = time.monotonic()
    for s in sensors:
        assert s.wait(120 * SCALE) == 0, Path(s.log).read_text()[-3000:]
    for sid in moved:
        log = Path([s for s in sensors if s.sid == sid][0].log).read_text()
        assert "home receiver %s is gone" % victim in log, log[-2000:]
    before_restart = {k for k in bucket_keys() if k.startswith("cap/%s/" % name[victim])}
    left = sorted(f.name for f in (tmp_path / ("rx-" + victim)).iterdir()
                  if f.name.endswith((".pcapng", ".pcapng.part")))
    assert any(n.endswith(".part") for n in left), "SIGKILL left no .part: %s" % left

    # the StatefulSet restarts the killed pod: the .part is repaired and
    # everything its predecessor had not uploaded goes up
    rx[victim] = receiver(victim)
    wait_log(rx[victim], "listening on", 15, count=2)
    wait_drained(victim, rx[victim])
    victim_keys = {k for k in bucket_keys() if k.startswith("cap/%s/" % name[victim])}
    assert victim_keys > before_restart, "the restart uploaded nothing"
    assert not [f for f in (tmp_path / ("rx-" + victim)).iterdir()
                if f.name in left], "files the killed receiver left are not uploaded (deleteLocal)"

    # the survivors complete their last file at SIGTERM; it goes up at their
    # next start (docs/storage.md), as after a rolling restart
    for a in RX_ADDRS:
        if a != victim:
            wait_drained(a, rx[a])
            rx[a].send_signal(signal.SIGTERM)
            assert rx[a].wait(30 * SCALE) == 0, Path(rx[a].log).read_text()[-3000:]
            rx[a] = receiver(a)
    for a in RX_ADDRS:
        if a != victim:
            wait_log(rx[a], "listening on", 15, count=2)
            wait_drained(a, rx[a])

    # every packet, per receiver prefix, in file order
    keys = bucket_keys()
    got = {a: collections.defaultdict(list) for a in RX_ADDRS}
    bodies = {}
    for k in sorted(keys):
        a = [a for a in RX_ADDRS if k.startswith("cap/%s/" % name[a])]
        assert len(a) == 1, "an object outside the receivers' prefixes: %s" % k
        body = bodies[k] = bucket_get(k)
        assert len(body) == keys[k]
        for ifname, _ts, _c, _o, rec in pcaplib.read_named(body):
            got[a[0]][ifname.split("/")[0]].append(bytes(rec))
    dup_packets = 0
    for sid, want in inputs.items():
        at = [a for a in RX_ADDRS if got[a][sid]]
        if sid not in moved:
            assert at == [home[sid]], (sid, at)
            assert got[home[sid]][sid] == want, "%s: not every packet exactly once" % sid
            continue
        others = [a for a in at if a != victim]
        assert len(others) == 1, (sid, at)
        old, new = got[victim][sid], got[others[0]][sid]
        # the old home wrote a prefix of the stream, the new one the rest
        # from where the old home's acknowledgements stopped: the overlap is
        # the batches in flight at the move, nothing else is duplicated
        assert old == want[:len(old)], "%s: the killed receiver's packets are not a prefix" % sid
        start_new = len(want) - len(new)
        assert new == want[start_new:], "%s: the new home's packets are not a suffix" % sid
        assert start_new <= len(old), "%s lost %d packets" % (sid, start_new - len(old))
        dup = want[start_new:len(old)]
        dup_packets += len(dup)

    # a download through another receiver of an object the killed receiver
    # uploaded: served from the bucket, whole and with a Range
    other = [a for a in RX_ADDRS if a != victim][0]
    vkeys = sorted(k for k in keys if k.startswith("cap/%s/" % name[victim]))
    obj = vkeys[0]
    fname = obj.split("/")[-1]
    body = bodies[obj]
    assert len(body) > 5000
    # through the restarted receiver (its own prefix), whole and ranged
    st, hdr, data = ns_get("http://%s:%d/captures/%s" % (victim, HTTP_PORT, fname))
    assert st == 200 and data == body, (st, len(data), len(body))
    st, hdr, data = ns_get("http://%s:%d/captures/%s" % (victim, HTTP_PORT, fname),
                           headers=["Range: bytes=1000-4999"])
    assert st == 206 and data == body[1000:5000]
    assert hdr["content-range"] == "bytes 1000-4999/%d" % len(body)
    # through another receiver: its listing names the object with the
    # receiver that holds it, and ?receiver= fetches exactly that object
    st, _, listing = ns_get("http://%s:%d/api/captures" % (other, HTTP_PORT))
    assert st == 200
    import json
    rows = [r for r in json.loads(listing) if r["name"] == fname and
            r.get("receiver") == name[victim]]
    assert len(rows) == 1 and rows[0]["stored"] == "s3", rows
    assert rows[0]["url"] == "/captures/%s?receiver=%s" % (fname, name[victim])
    url = "http://%s:%d%s" % (other, HTTP_PORT, rows[0]["url"])
    st, hdr, data = ns_get(url)
    assert st == 200 and data == body, (st, len(data), len(body))
    st, hdr, data = ns_get(url, headers=["Range: bytes=1000-4999"])
    assert st == 206 and data == body[1000:5000]
    assert hdr["content-range"] == "bytes 1000-4999/%d" % len(body)
    # without ?receiver=: this receiver's own object of that name when it
    # has one, the only one there is, or a 409 naming the holders
    own = bodies.get("cap/%s/%s" % (name[other], fname))
    holders = [k for k in keys if k.endswith("/" + fname) and
               not k.startswith("cap/%s/" % name[other])]
    st, hdr, data = ns_get("http://%s:%d/captures/%s" % (other, HTTP_PORT, fname))
    if own is not None:
        assert st == 200 and data == own
    elif len(holders) == 1:
        assert st == 200 and data == body
    else:
        assert st == 409 and name[victim].encode() in data, (st, data[:200])
    st, _, data = ns_get("http://%s:%d/captures/%s?receiver=../x" % (other, HTTP_PORT, fname))
    assert st == 400
    print("tier+s3: victim %s (%d sensors moved), %d objects, %d duplicate packets, %.1f s "
          "(killed at %.1f s)" % (name[victim], len(moved), len(keys), dup_packets,
                                   time.monotonic() - t0, killed_at - t0))
    for p in rx.values():
        p.send_signal(signal.SIGTERM)
        assert p.wait(30 * SCALE) == 0
    s3.kill()
    s3.wait()
