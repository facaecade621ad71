"""A receiver tier: one DNS name resolving to three receivers, twelve sensors.

Runs in a network namespace of its own (prefix "pstier-") whose /etc/hosts
(ip netns exec bind-mounts /etc/netns/NAME/hosts) gives the name rx-tier the
addresses 127.0.0.1-3, as a headless Service's DNS does. Sensors pick their
receiver by rendezvous hashing of their id (src/sensor/home.h): they spread,
each sticks to one receiver, and when one receiver goes away only its
sensors move; every packet arrives, and a packet arrives twice only if the
receiver that went away had written it (the batches in flight at the move,
docs/reliability.md).
"""

import collections
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import SCALE, child_env, pcaplib

NS = "pstier-%d" % os.getpid()
PORT = 18601
HTTP_PORT = 18602
RX_ADDRS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
SENSORS = 12
PACKETS = 1500


@pytest.fixture
def tierns():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespace)")
    hosts_dir = Path("/etc/netns") / NS
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        subprocess.run(["ip", "-n", NS, "link", "set", "lo", "up"], check=True)
        hosts_dir.mkdir(parents=True, exist_ok=True)
        (hosts_dir / "hosts").write_text(
            "".join("%s rx-tier\n" % a for a in RX_ADDRS) + "127.0.0.1 localhost\n")
        yield NS
    finally:
        subprocess.run(["ip", "netns", "pids", NS], capture_output=True)
        pids = subprocess.run(["ip", "netns", "pids", NS], capture_output=True, text=True).stdout
        for pid in pids.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", NS])
        shutil.rmtree(hosts_dir, ignore_errors=True)


def start(ns, args, log, env=None):
    f = open(log, "wb")
    e = {"PACKETSTREAMER_HTTP_ENABLE": "false"}
    e.update(env or {})
    p = subprocess.Popen(["ip", "netns", "exec", ns] + args, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=f, env=child_env(e))
    p.log = log
    return p


def wait_log(p, text, timeout):
    deadline = time.monotonic() + timeout * SCALE
    while time.monotonic() < deadline:
        if text in Path(p.log).read_text(errors="replace"):
            return
        if p.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError("%s: no %r:\n%s" % (p.args, text, Path(p.log).read_text()[-3000:]))


def http_json(ns, addr, path):
    r = subprocess.run(["ip", "netns", "exec", ns, "curl", "-sf", "--max-time", "5",
                        "http://%s:%d%s" % (addr, HTTP_PORT, path)], capture_output=True)
    assert r.returncode == 0, (path, r.stderr)
    return json.loads(r.stdout)


def test_tier_spreads_and_moves(tierns, tmp_path):
    binary = os.environ.get("PS_TEST_BIN") or str(Path(__file__).resolve().parents[2] / "build" /
                                                  "packetstreamer")
    rx = {}
    for a in RX_ADDRS:
        out = tmp_path / ("rx-" + a)
        out.mkdir()
        rx[a] = start(tierns, [binary, "receiver", "--listen", "%s:%d" % (a, PORT), "--output",
                               str(out), "--http", "%s:%d" % (a, HTTP_PORT)],
                      tmp_path / ("rx-%s.log" % a),
                      env={"PACKETSTREAMER_HTTP_ENABLE": "true",
                           "PACKETSTREAMER_TIER_PEERS": "rx-tier:%d" % HTTP_PORT,
                           "PACKETSTREAMER_TIER_NAME": "rx-" + a.split(".")[-1],
                           "PACKETSTREAMER_TIER_REFRESH_SEC": "1"})
    for p in rx.values():
        wait_log(p, "listening on", 15)
    inputs = {}
    sensors = []
    for i in range(SENSORS):
        sid = "node-%02d" % i
        path = tmp_path / ("%s.pcap" % sid)
        pcaplib.write_records(str(path), pcaplib.gen_varied(PACKETS, 500 + i), "pcap-ns")
        inputs[sid] = [bytes(r.data) for r in pcaplib.read(str(path))[1]]
        s = start(tierns, [binary, "sensor", "--read-file", str(path), "--receiver",
                           "rx-tier:%d" % PORT, "--id", sid],
                  tmp_path / ("%s.log" % sid),
                  env={"PACKETSTREAMER_SENSOR_READ_PACKETS_PER_SEC": "400"})
        s.sid = sid
        sensors.append(s)
    # where each sensor went first
    home = {}
    for s in sensors:
        wait_log(s, "connected to receiver", 20)
        line = [l for l in Path(s.log).read_text().splitlines() if "connected to receiver" in l][0]
        home[s.sid] = line.split(" at ")[1].split(" ")[0]
    counts = collections.Counter(home.values())
    assert len(counts) == 3, counts  # 12 sensors over 3 receivers: each has some
    # any receiver shows the whole tier, each sensor with the receiver that has it
    want = {sid: "rx-" + h.split(".")[-1] for sid, h in home.items()}
    deadline = time.monotonic() + 15 * SCALE
    while True:
        tier = http_json(tierns, RX_ADDRS[1], "/api/sensors")
        seen = {e["id"]: e["receiver"] for e in tier if e.get("connected")}
        if seen == want or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert seen == want
    status = http_json(tierns, RX_ADDRS[1], "/api/tier")
    assert sorted((x["address"], x["ok"], x["self"]) for x in status) == [
        ("%s:%d" % (a, HTTP_PORT), True, a == RX_ADDRS[1]) for a in RX_ADDRS]
    local = http_json(tierns, RX_ADDRS[1], "/api/sensors?scope=local")
    assert {e["id"] for e in local} == {s for s, h in home.items() if h == RX_ADDRS[1]}
    # the receiver with the most sensors goes away mid-stream
    victim = counts.most_common(1)[0][0]
    moved = sorted(s for s, h in home.items() if h == victim)
    rx[victim].send_signal(signal.SIGTERM)
    assert rx[victim].wait(30 * SCALE) == 0
    for s in sensors:
        assert s.wait(120 * SCALE) == 0, Path(s.log).read_text()[-3000:]
    for a, p in rx.items():
        if a != victim:
            p.send_signal(signal.SIGTERM)
            assert p.wait(30 * SCALE) == 0, Path(p.log).read_text()[-3000:]
    # what each receiver wrote, per sensor
    got = {a: collections.defaultdict(list) for a in RX_ADDRS}
    for a in RX_ADDRS:
        for f in sorted((tmp_path / ("rx-" + a)).glob("*.pcapng")):
            for ifname, _ts, _c, _o, data in pcaplib.read_named(str(f)):
                got[a][ifname.split("/")[0]].append(bytes(data))
    for sid, want in inputs.items():
        at = [a for a in RX_ADDRS if got[a][sid]]
        if sid not in moved:
            # stayed home: everything exactly once, on its home only
            assert at == [home[sid]], (sid, at)
            assert got[home[sid]][sid] == want
            continue
        # moved: from its home to exactly one other receiver
        others = [a for a in at if a != victim]
        assert len(others) == 1, (sid, at)
        union = got[victim][sid] + got[others[0]][sid]
        missing = collections.Counter(want) - collections.Counter(union)
        assert not missing, "%s lost %d packets" % (sid, sum(missing.values()))
        dups = collections.Counter(union) - collections.Counter(want)
        # a duplicate is a packet the departed receiver wrote and the
        # sensor sent again (in flight at the move), nothing else
        assert not (collections.Counter(dups) - collections.Counter(got[victim][sid])), sid
        log = Path([s for s in sensors if s.sid == sid][0].log).read_text()
        assert "home receiver %s is gone" % victim in log, log[-2000:]
