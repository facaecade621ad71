"""GET /api/packets (docs/http.md): one pcapng with exactly the packets of a
window, of the selected interfaces (pods named SENSOR/NS/POD in the files,
docs/protocol.md "Pod interfaces"), passing a BPF filter, merged in
timestamp order across sensors and files, rotated ones and the one being
written; the side index lets a request skip files."""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse

import pytest

from conftest import SCALE, pcaplib
from http_helpers import get, http_args, parse_metrics, wait_http_up

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import psclient  # noqa: E402

BASE = 1_764_900_000_000_000_000  # 2025-12-05T02:00:00Z
SENSORS = {
    # sensor: its interfaces (sensor-local index -> announced name, description)
    "node-a": [("shop/web-1", b"iface=cali0a uid=u-1 labels=app=web"), ("eth0", b"")],
    "node-b": [("shop/db-0", b"iface=cali0b uid=u-2 labels=app=db"), ("eth0", b"")],
    "node-c": [("other/web-1", b"iface=cali0c uid=u-3 labels=app=web"), ("eth0", b"")],
}
PER_SENSOR = 2400  # packets per sensor: about 7 MiB in all, several 1 MiB files
BATCH = 100


def iso(ns):
    s, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + ".%09dZ" % frac


def make_inputs():
    """{sensor: [(iface index, Record)]}, timestamps interleaved across sensors
    and unique: sensor k's packet i at BASE + i * 3 ms + k ms."""
    out = {}
    for k, sensor in enumerate(sorted(SENSORS)):
        recs = pcaplib.gen_varied(PER_SENSOR, seed=11 + k)
        rows = []
        for i, r in enumerate(recs):
            ts = BASE + i * 3_000_000 + k * 1_000_000 + 17
            # every third packet on the host interface, the rest on the pod's
            rows.append((1 if i % 3 == 2 else 0, r._replace(ts_ns=ts)))
        out[sensor] = rows
    return out


def send_all(port, inputs):
    """One sensor after the other, each a whole run of batches: a file of the
    shared set holds long stretches of one sensor whose times overlap those
    of the other sensors' files, so order needs a merge across files."""
    for sensor in sorted(inputs):
        c = psclient.Client("127.0.0.1", port)
        kind, _ = c.hello(sensor)
        assert kind == "ACCEPT"
        for idx, (name, desc) in enumerate(SENSORS[sensor]):
            c.send_frame(psclient.T_IFACE, psclient.iface_payload(idx, name, desc=desc))
        rows = inputs[sensor]
        seq = 0
        for start in range(0, len(rows), BATCH):
            seq += 1
            raw = b"".join(psclient.records_bytes([r], iface=i) for i, r in rows[start:start + BATCH])
            c.send_frame(psclient.T_BATCH, psclient.batch_payload(seq, raw, len(rows[start:start + BATCH])))
        c.wait_ack(seq)
        c.bye(seq)
        c.close()


def reference(inputs, pred=lambda name: True, lo=0, hi=2**64):
    """(name, ts, caplen, origlen, data) of the inputs, filtered, by time."""
    out = []
    for sensor, rows in inputs.items():
        for i, r in rows:
            name = "%s/%s" % (sensor, SENSORS[sensor][i][0])
            if pred(name) and lo <= r.ts_ns <= hi:
                out.append((name, r.ts_ns, r.caplen, r.origlen, r.data))
    out.sort(key=lambda x: x[1])
    return out


def extract(port, **params):
    q = urllib.parse.urlencode(params)
    return get(port, "/api/packets?" + q, timeout=60)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from conftest import Env, find_binary
    workdir = tmp_path_factory.mktemp("extract")
    env = Env(find_binary(), workdir)
    cfg = workdir / "rx.yaml"
    cfg.write_text("output:\n  file:\n    rotateSizeMB: 1\n")
    hport, hargs = http_args()
    rx = env.receiver(config=cfg, args=hargs)
    wait_http_up(hport)
    inputs = make_inputs()
    send_all(rx.port, inputs)
    outdir = rx.outdir
    done = sorted(p for p in os.listdir(outdir) if p.endswith(".pcapng"))
    parts = [p for p in os.listdir(outdir) if p.endswith(".pcapng.part")]
    assert len(done) >= 4 and len(parts) == 1, (done, parts)
    # the builder indexes every completed file
    deadline = time.monotonic() + 20 * SCALE
    while time.monotonic() < deadline:
        idx = os.listdir(os.path.join(outdir, ".index")) if os.path.isdir(os.path.join(outdir, ".index")) else []
        if len([n for n in idx if n.endswith(".idx")]) >= len(done):
            break
        time.sleep(0.1)
    else:
        pytest.fail("not every file was indexed: %s" % idx)
    yield env, rx, hport, inputs, outdir
    rx.stop()
    env.cleanup()


def test_pod_window_exact_and_ordered(setup):
    env, rx, hport, inputs, outdir = setup
    lo, hi = BASE + 1000 * 3_000_000 + 5, BASE + 2300 * 3_000_000
    st, hdr, body = extract(hport, **{"from": iso(lo), "to": iso(hi), "pod": "shop/web-1"})
    assert st == 200, body[:300]
    assert hdr["content-type"] == "application/x-pcapng"
    want = reference(inputs, lambda n: n.endswith("/shop/web-1") and n.count("/") == 2, lo, hi)
    assert want and {w[0] for w in want} == {"node-a/shop/web-1"}
    got = pcaplib.read_named(body)
    assert len(got) == len(want)
    assert got == want
    # one IDB, named as in the files, with the pod's description
    ifs, _ = pcaplib.read(write_tmp(env, "pod.pcapng", body))
    assert [(i.name, i.description) for i in ifs] == [
        ("node-a/shop/web-1", "iface=cali0a uid=u-1 labels=app=web")]


def write_tmp(env, name, data):
    p = env.workdir / name
    p.write_bytes(data)
    return str(p)


def test_all_sensors_merged_across_files_and_part(setup):
    """No selector: every packet of the window, from all sensors, rotated
    files and the .part, in timestamp order; IDBs one per interface."""
    env, rx, hport, inputs, outdir = setup
    st, hdr, body = extract(hport, **{"from": iso(BASE), "to": iso(BASE + 10**12)})
    assert st == 200
    want = reference(inputs)
    got = pcaplib.read_named(body)
    assert len(got) == len(want) == 3 * PER_SENSOR
    assert got == want
    ifs, _ = pcaplib.read(write_tmp(env, "all.pcapng", body))
    assert sorted(i.name for i in ifs) == sorted(
        "%s/%s" % (s, n) for s in SENSORS for n, _ in SENSORS[s])
    # the .part file (the one being written) contributed: its last packets
    last_sensor = sorted(SENSORS)[-1]
    assert got[-1][0].startswith(last_sensor + "/")
    # tools read it
    res = subprocess.run(["tshark", "-r", write_tmp(env, "all2.pcapng", body), "-T", "fields",
                          "-e", "frame.number"], capture_output=True, timeout=120)
    if res.returncode == 0:
        assert len(res.stdout.split()) == len(want)


def test_selectors(setup):
    env, rx, hport, inputs, outdir = setup
    cases = [
        ({"namespace": "shop"}, lambda n: n.split("/")[1] == "shop" and n.count("/") == 2),
        ({"sensor": "node-b"}, lambda n: n.startswith("node-b/")),
        ({"iface": "eth0"}, lambda n: n.endswith("/eth0")),
        ({"sensor": "node-c", "iface": "other/web-1"}, lambda n: n == "node-c/other/web-1"),
        ({"pod": "other/web-1"}, lambda n: n == "node-c/other/web-1"),
    ]
    lo, hi = BASE + 500 * 3_000_000, BASE + 900 * 3_000_000
    for params, pred in cases:
        st, hdr, body = extract(hport, **{"from": iso(lo), "to": iso(hi)}, **params)
        assert st == 200, (params, body[:300])
        want = reference(inputs, pred, lo, hi)
        assert want, params
        assert pcaplib.read_named(body) == want, params


def test_bpf_filter_matches_tcpdump(setup):
    env, rx, hport, inputs, outdir = setup
    # the merged inputs as one pcapng (one interface per name), then tcpdump
    want = reference(inputs)
    names = sorted({w[0] for w in want})
    interfaces = [pcaplib.Interface(n, pcaplib.LINKTYPE_ETHERNET, 262144, 9, 0, [], None) for n in names]
    recs = [pcaplib.Record(names.index(w[0]), w[1], w[2], w[3], w[4]) for w in want]
    merged = env.workdir / "merged.pcapng"
    pcaplib.write_pcapng(str(merged), interfaces, recs)
    for flt in ["udp", "tcp and port 47002", "ip6", "vlan", "arp", "greater 1000"]:
        res = subprocess.run(["tcpdump", "-r", str(merged), "--time-stamp-precision", "nano",
                              "-w", "-", flt], capture_output=True, timeout=120)
        assert res.returncode == 0, res.stderr
        ref = [(r[1], r[2], r[3], r[4]) for r in pcaplib.read_named(res.stdout)]
        st, hdr, body = extract(hport, **{"from": iso(BASE), "to": "now", "filter": flt})
        assert st == 200, body[:300]
        got = [(g[1], g[2], g[3], g[4]) for g in pcaplib.read_named(body)]
        assert got == ref, flt
        assert ref, flt  # every filter matches something in the varied mix


def test_limit(setup):
    env, rx, hport, inputs, outdir = setup
    st, hdr, body = extract(hport, **{"from": iso(BASE), "to": "now", "limit": "25",
                                      "sensor": "node-a"})
    assert st == 200
    assert pcaplib.read_named(body) == reference(inputs, lambda n: n.startswith("node-a/"))[:25]


def test_relative_times(setup):
    """The inputs are from 2025: a window of the last 5 minutes is empty, one
    of the last 3650 days holds them all."""
    env, rx, hport, inputs, outdir = setup
    st, hdr, body = extract(hport, **{"from": "-5m", "to": "now", "pod": "shop/web-1"})
    assert st == 200 and pcaplib.read_named(body) == []
    assert hdr.get("x-packetstreamer-matched") == "0"
    st, hdr, body = extract(hport, **{"from": "-3650d", "pod": "shop/web-1"})
    assert st == 200
    assert len(pcaplib.read_named(body)) == len(reference(inputs, lambda n: n == "node-a/shop/web-1"))
    # an offset: the same instant written in another zone
    h = BASE + 1200 * 3_000_000
    s, frac = divmod(h, 1_000_000_000)
    plus2 = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s + 7200)) + ".%09d+02:00" % frac
    st, _, b1 = extract(hport, **{"from": iso(BASE), "to": plus2, "pod": "shop/web-1"})
    st2, _, b2 = extract(hport, **{"from": iso(BASE), "to": iso(h), "pod": "shop/web-1"})
    assert st == st2 == 200 and b1 == b2 and pcaplib.read_named(b1)


@pytest.mark.parametrize("params,code,needle", [
    ({"from": "yesterday"}, "bad_time", "from"),
    ({"from": "2026-13-01T00:00:00Z"}, "bad_time", "from"),
    ({"from": "-5m", "to": "soon"}, "bad_time", "to"),
    ({}, "bad_time", "from"),
    ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "bad_range", "after"),
    ({"from": "-5m", "filter": "tcp port"}, "bad_filter", "syntax"),
    ({"from": "-5m", "filter": "nosuchproto"}, "bad_filter", "nosuchproto"),
    ({"from": "-5m", "limit": "abc"}, "bad_limit", "limit"),
    ({"from": "-5m", "limit": "0"}, "bad_limit", "limit"),
    ({"from": "-5m", "pod": "justaname"}, "bad_selector", "pod"),
])
def test_errors(setup, params, code, needle):
    env, rx, hport, inputs, outdir = setup
    st, hdr, body = extract(hport, **params)
    assert st == 400, (st, body)
    assert hdr["content-type"] == "application/json"
    j = json.loads(body)
    assert j["error"] == code and needle in j["reason"], j


def test_unknown_pod_is_an_empty_pcapng(setup):
    env, rx, hport, inputs, outdir = setup
    st, hdr, body = extract(hport, **{"from": iso(BASE), "to": "now", "pod": "nope/none"})
    assert st == 200
    assert hdr.get("x-packetstreamer-matched") == "0"
    assert "no interface" in hdr.get("x-packetstreamer-note", "")
    ifs, recs = pcaplib.read(write_tmp(env, "empty.pcapng", body))
    assert ifs == [] and recs == []
    assert body[:4] == b"\x0a\x0d\x0d\x0a" and len(body) == int.from_bytes(body[4:8], "little")


def test_index_skips_files_and_is_rebuilt(setup):
    env, rx, hport, inputs, outdir = setup
    files = sorted(p for p in os.listdir(outdir) if p.endswith(".pcapng") or p.endswith(".part"))
    lo, hi = BASE + 100 * 3_000_000, BASE + 400 * 3_000_000
    params = {"from": iso(lo), "to": iso(hi), "pod": "shop/db-0"}
    want = reference(inputs, lambda n: n == "node-b/shop/db-0", lo, hi)
    st, hdr, body = extract(hport, **params)
    assert st == 200 and pcaplib.read_named(body) == want
    read = int(hdr["x-packetstreamer-files-read"])
    skipped = int(hdr["x-packetstreamer-files-skipped"])
    assert read + skipped == len(files)
    assert 1 <= read < len(files) - 1, hdr  # node-a's, node-c's and later node-b files skipped
    assert int(hdr["x-packetstreamer-files-scanned"]) <= 1  # only the .part, if at all
    # without the index: same answer, every file scanned (and indexed again)
    shutil.rmtree(os.path.join(outdir, ".index"))
    st, hdr2, body2 = extract(hport, **params)
    assert st == 200 and body2 == body
    assert int(hdr2["x-packetstreamer-files-scanned"]) == len(files)
    st, hdr3, body3 = extract(hport, **params)
    assert body3 == body and int(hdr3["x-packetstreamer-files-scanned"]) <= 1
    assert extract(hport, **{"from": "later"})[0] == 400
    st, _, text = get(hport, "/metrics")
    m = parse_metrics(text.decode())
    assert m['packetstreamer_extract_files_total{how="skipped"}'] >= 2 * skipped
    assert m['packetstreamer_extract_files_total{how="scanned"}'] >= len(files)
    assert m['packetstreamer_extract_requests_total{result="ok"}'] >= 3
    assert m['packetstreamer_extract_requests_total{result="bad_request"}'] >= 1
    assert m["packetstreamer_extract_packets_total"] >= 3 * len(want)


def test_access_rule(setup):
    """Protected like /captures: a loopback client whose Host is a name it
    does not know is refused."""
    env, rx, hport, inputs, outdir = setup
    st, _, _ = get(hport, "/api/packets?from=-5m", headers={"Host": "evil.example"})
    assert st == 421
    st, _, _ = get(hport, "/api/packets?from=-5m",
                   headers={"Origin": "http://evil.example", "Host": "127.0.0.1:%d" % hport})
    assert st == 403


def test_token_required_off_loopback(env):
    hport, hargs = http_args()
    tok = env.workdir / "tok"
    tok.write_text("s3cret-token-for-test\n")
    cfg = env.workdir / "tok.yaml"
    cfg.write_text("http:\n  trustLoopback: false\n  token: s3cret-token-for-test\n")
    rx = env.receiver(config=cfg, args=hargs)
    wait_http_up(hport)
    st, _, _ = get(hport, "/api/packets?from=-5m")
    assert st == 401
    st, hdr, body = get(hport, "/api/packets?from=-5m",
                        headers={"Authorization": "Bearer s3cret-token-for-test"})
    assert st == 200 and hdr.get("x-packetstreamer-matched") == "0"
    rx.stop()


def test_pcap_format_refused(env):
    hport, hargs = http_args()
    rx = env.receiver(fmt="pcap", args=hargs)
    wait_http_up(hport)
    st, hdr, body = get(hport, "/api/packets?from=-5m")
    assert st == 501 and json.loads(body)["error"] == "unsupported_format"
    rx.stop()



def test_offline_sensors_merged(env, captures):
    """Three offline sensors (--read-file) at once, timestamps interleaved,
    1 MiB files: per sensor and for all, the extraction equals the inputs
    merged by time; a BPF filter equals tcpdump's over mergecap's merge."""
    cfg = env.workdir / "rx.yaml"
    cfg.write_text("output:\n  file:\n    rotateSizeMB: 1\n")
    hport, hargs = http_args()
    rx = env.receiver(config=cfg, args=hargs)
    wait_http_up(hport)
    start = 1_700_000_000_000_000_000
    inputs, procs = {}, []
    for k in range(3):
        recs = pcaplib.gen_varied(1500, seed=70 + k, start_ns=start + k * 333 + 1)
        path = env.workdir / ("offline-%d.pcapng" % k)
        pcaplib.write_records(str(path), recs, "pcapng")
        sid = "s%d" % k
        inputs[sid] = (path, pcaplib.read(str(path))[1])
        procs.append(env.start_sensor(path, rx.port, sensor_id=sid))
    for p in procs:
        rc, err = env.wait_sensor(p)
        assert rc == 0, err
    rows = sorted(("%s/%s" % (sid, path.name), r.ts_ns, r.caplen, r.origlen, r.data)
                  for sid, (path, recs) in inputs.items() for r in recs)
    rows.sort(key=lambda x: x[1])
    assert len({r[1] for r in rows}) == len(rows)  # no ties: one right order
    files = [p for p in os.listdir(rx.outdir) if ".pcapng" in p]
    assert len(files) >= 3, files

    st, hdr, body = extract(hport, **{"from": iso(start), "to": "now"})
    assert st == 200 and pcaplib.read_named(body) == rows
    lo, hi = rows[1000][1], rows[3000][1]
    st, hdr, body = extract(hport, **{"from": iso(lo), "to": iso(hi), "sensor": "s1"})
    assert st == 200
    assert pcaplib.read_named(body) == [r for r in rows if r[0].startswith("s1/") and lo <= r[1] <= hi]

    merged = env.workdir / "merged.pcapng"
    subprocess.run(["mergecap", "-w", str(merged)] + [str(p) for p, _ in inputs.values()],
                   check=True, timeout=120)
    res = subprocess.run(["tcpdump", "-r", str(merged), "--time-stamp-precision", "nano", "-w", "-",
                          "udp and not vlan"], capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr
    ref = [(r[1], r[2], r[3], r[4]) for r in pcaplib.read_named(res.stdout)]
    st, hdr, body = extract(hport, **{"from": iso(start), "filter": "udp and not vlan"})
    assert st == 200
    assert [(g[1], g[2], g[3], g[4]) for g in pcaplib.read_named(body)] == ref and ref
    rx.stop()


def test_index_built_at_start_and_orphans_removed(env):
    """Files without an index (an older receiver's, a deleted index) are
    indexed when the receiver starts; an index whose file is gone is removed."""
    out = env.mkdir("restart")
    names = ["packetstreamer-20251205T020000Z-00000%d.pcapng" % i for i in (1, 2)]
    for i, n in enumerate(names):
        # the second in microseconds (if_tsresol 6): the index is in ns
        recs = [pcaplib.Record(0, BASE + i * 10**9 + j * 1000, 60, 60, bytes([j]) * 60)
                for j in range(10)]
        pcaplib.write_pcapng(str(out / n), [("old/shop/web-%d" % i, 1, 262144, 9 - 3 * i)], recs)
    os.makedirs(out / ".index")
    (out / ".index" / "packetstreamer-20251205T010000Z-000009.pcapng.idx").write_text("{}")
    hport, hargs = http_args()
    rx = env.receiver(outdir=out, args=hargs)
    wait_http_up(hport)
    deadline = time.monotonic() + 20 * SCALE
    while time.monotonic() < deadline:
        idx = sorted(os.listdir(out / ".index"))
        if idx == [n + ".idx" for n in names]:
            break
        time.sleep(0.1)
    else:
        pytest.fail(str(idx))
    j = json.loads((out / ".index" / (names[1] + ".idx")).read_text())
    assert j["packets"] == 10 and j["interfaces"][0]["name"] == "old/shop/web-1"
    assert j["interfaces"][0]["tsresol"] == 6 and j["first_ns"] == BASE + 10**9
    assert j["last_ns"] == BASE + 10**9 + 9000
    st, hdr, body = extract(hport, **{"from": iso(BASE), "to": iso(BASE + 5 * 10**8),
                                      "pod": "shop/web-0"})
    assert st == 200 and len(pcaplib.read_named(body)) == 10
    assert hdr["x-packetstreamer-files-read"] == "1" and hdr["x-packetstreamer-files-skipped"] == "1"
    assert hdr["x-packetstreamer-files-scanned"] == "0"
    # microsecond input, nanosecond output, same instants
    st, hdr, body = extract(hport, **{"from": iso(BASE + 10**9 + 2000), "pod": "shop/web-1"})
    assert [g[1] for g in pcaplib.read_named(body)] == [BASE + 10**9 + j * 1000 for j in range(2, 10)]
    rx.stop()


def test_concurrent_extractions_bounded(setup):
    """At most 4 extractions stream at once: clients that stop reading hold
    theirs; a fifth gets 503 busy; once they go, extraction works again."""
    import socket
    env, rx, hport, inputs, outdir = setup
    path = "/api/packets?" + urllib.parse.urlencode({"from": iso(BASE), "to": "now"})
    held = []
    for _ in range(4):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", hport))
        s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path).encode())
        s.recv(1)  # the stream started; then it stops reading
        held.append(s)
    try:
        st, hdr, body = extract(hport, **{"from": iso(BASE), "limit": "1"})
        assert st == 503, (st, body[:200])
        assert json.loads(body)["error"] == "busy"
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 20 * SCALE
    while time.monotonic() < deadline:
        st, hdr, body = extract(hport, **{"from": iso(BASE), "limit": "1"})
        if st == 200:
            break
        time.sleep(0.2)
    assert st == 200 and len(pcaplib.read_named(body)) == 1


def test_live_selectors_and_filter(env):
    """/live takes the same selectors and BPF filter: a client for one pod
    with a filter gets exactly those packets of what arrives."""
    from http_helpers import metrics, wait_metric
    hport, hargs = http_args()
    rx = env.receiver(args=hargs)
    wait_http_up(hport)
    base = "http://127.0.0.1:%d/live?" % hport
    st, _, body = get(hport, "/live?filter=" + urllib.parse.quote("tcp port"))
    assert st == 400 and json.loads(body)["error"] == "bad_filter"
    assert "syntax" in json.loads(body)["reason"]
    st, _, body = get(hport, "/live?pod=nopod")
    assert st == 400 and json.loads(body)["error"] == "bad_selector"
    t = int(6 * SCALE)
    pod = subprocess.Popen(["curl", "-sS", "-N", "--max-time", str(t),
                            base + urllib.parse.urlencode({"pod": "shop/web-1", "filter": "udp"})],
                           stdout=subprocess.PIPE)
    ns = subprocess.Popen(["curl", "-sS", "-N", "--max-time", str(t),
                           base + urllib.parse.urlencode({"namespace": "shop", "iface": "shop/db-0"})],
                          stdout=subprocess.PIPE)
    deadline = time.monotonic() + 10 * SCALE
    while parse_metrics(metrics(hport)).get("packetstreamer_live_clients", 0) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    inputs = make_inputs()
    small = {s: rows[:300] for s, rows in inputs.items()}
    merged = env.workdir / "live-in.pcapng"
    want = reference(small, lambda n: n == "node-a/shop/web-1")
    pcaplib.write_pcapng(str(merged), [("node-a/shop/web-1", 1, 262144, 9)],
                         [pcaplib.Record(0, w[1], w[2], w[3], w[4]) for w in want])
    res = subprocess.run(["tcpdump", "-r", str(merged), "--time-stamp-precision", "nano", "-w",
                          "-", "udp"], capture_output=True, timeout=60)
    ref = [(r[1], r[4]) for r in pcaplib.read_named(res.stdout)]
    send_all(rx.port, small)
    n_ns = len(reference(small, lambda n: n == "node-b/shop/db-0"))
    wait_metric(hport, "packetstreamer_live_packets_total", len(ref) + n_ns)
    got_pod = pcaplib.read_named(pod.communicate(timeout=30 * SCALE)[0])
    got_ns = pcaplib.read_named(ns.communicate(timeout=30 * SCALE)[0])
    assert ref and [(g[1], g[4]) for g in got_pod] == ref
    assert {g[0] for g in got_pod} == {"node-a/shop/web-1"}
    # live order is arrival order: one sensor's packets, as sent
    assert got_ns == reference(small, lambda n: n == "node-b/shop/db-0")
    rx.stop()


def test_extract_while_writing_and_rotating(env):
    """Extractions while a sensor streams and files rotate under them (a
    .part renamed mid-request): each answer is a valid pcapng, in time
    order, without duplicates, every packet one that was sent; the last one,
    after the sensor is done, has them all."""
    import threading
    cfg = env.workdir / "rx.yaml"
    cfg.write_text("output:\n  file:\n    rotateSizeMB: 1\n")
    hport, hargs = http_args()
    rx = env.receiver(config=cfg, args=hargs)
    wait_http_up(hport)
    recs = pcaplib.gen_varied(6000, seed=91)
    sent = {}
    done = threading.Event()

    def sensor():
        c = psclient.Client("127.0.0.1", rx.port)
        assert c.hello("node-w")[0] == "ACCEPT"
        c.send_frame(psclient.T_IFACE, psclient.iface_payload(0, "shop/writer-0"))
        for seq, start in enumerate(range(0, len(recs), 50), 1):
            batch = [r._replace(ts_ns=BASE + i * 1000) for i, r in enumerate(recs[start:start + 50], start)]
            for r in batch:
                sent[r.ts_ns] = r.data
            c.batch(seq, batch)
            c.wait_ack(seq)
        c.bye(seq)
        c.close()
        done.set()

    t = threading.Thread(target=sensor)
    t.start()
    answers = 0
    while not done.is_set() or answers < 3:
        st, hdr, body = extract(hport, **{"from": iso(BASE), "pod": "shop/writer-0"})
        assert st == 200
        got = pcaplib.read_named(body)  # raises on a malformed stream
        ts = [g[1] for g in got]
        assert ts == sorted(ts) and len(set(ts)) == len(ts)
        assert all(sent.get(g[1]) == g[4] for g in got)
        answers += 1
    t.join()
    st, hdr, body = extract(hport, **{"from": iso(BASE), "pod": "shop/writer-0"})
    got = pcaplib.read_named(body)
    assert [g[1] for g in got] == sorted(sent) and len(got) == len(recs)
    assert len([p for p in os.listdir(rx.outdir) if p.endswith(".pcapng")]) >= 3
    rx.stop()
