"""Capture jobs and the flight recorder, on a real sensor capturing real
pods' traffic (network namespaces, conftest.py). The first tests use
tests/lib/jobrx.py, a stand-in receiver speaking protocol v2 (ACCEPT 2,
JOB_START / JOB_STOP, every record and JOB_STATUS kept), to pin the sensor's
behaviour frame by frame; the last one goes through the real receiver (its
HTTP API and the job's own file set).

- ondemand: the sensor watches the pods' interfaces but streams nothing;
- a job on one pod's interface with preroll 10 and a 5 s deadline delivers
  exactly that pod's packets from 10 s before the job to its end, byte for
  byte against tcpdump in the pod's namespace, with no gap and no duplicate
  at the seam between the recorder's packets and the job's own capture;
- two overlapping jobs with different filters on one interface each get
  exactly their packets; a job started before the sensor connects reaches
  it.
"""

import json
import subprocess
import time
from collections import Counter

from conftest import (NODE, PY, REPO, RX, RX_ADDR, RX_PORT, UDP_PORT, assert_no_sanitizer, binary,
                      l4_ports, ns_exec, pcaplib, same_frames)

CONFIG = ("gatherMaxWaitMs: 100\ncompression:\n  codec: none\n"
          "capture:\n  mode: ondemand\n  podInterfaces: true\n  statsIntervalSec: 1\n")
PORT_B = 7003
SEC = 1000000000

SENDER = r"""
import socket, sys, time
dst, ports, pps, secs = sys.argv[1], [int(p) for p in sys.argv[2].split(",")], int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
t0 = time.time(); i = 0
print("ready", flush=True)
while time.time() - t0 < secs:
    s.sendto(("seq-%08d-" % i).encode().ljust(100 + i % 300, b"x"), (dst, ports[i % len(ports)]))
    i += 1
    next_t = t0 + i / pps
    d = next_t - time.time()
    if d > 0:
        time.sleep(d)
print("sent", i, flush=True)
"""


class JobRx:
    def __init__(self, tmp):
        self.log = open(tmp / "jobrx.log", "w")
        self.p = subprocess.Popen(ns_exec(RX) + [PY, str(REPO / "tests" / "lib" / "jobrx.py"),
                                                 RX_ADDR, str(RX_PORT)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                  text=True, bufsize=1)
        assert json.loads(self.p.stdout.readline())["ready"]

    def cmd(self, **kw):
        self.p.stdin.write(json.dumps(kw) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        assert line, "jobrx exited"
        return json.loads(line)

    def dump(self):
        return self.cmd(cmd="dump")

    def wait_status(self, job, states, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            st = self.dump()["status"].get(str(job))
            if st and st[0] in states:
                return st
            time.sleep(0.2)
        raise AssertionError("job %d: no state in %s: %s" % (job, states, self.dump()["status"]))

    def job_frames(self, job):
        """(ts, frame) of the job's interfaces, in arrival order."""
        d = self.dump()
        out = []
        for idx, (name, j) in d["ifaces"].items():
            if j == job:
                out += [(ts, bytes.fromhex(h)) for ts, h in d["records"].get(idx, [])]
        return out

    def close(self):
        if self.p.poll() is None:
            try:
                self.cmd(cmd="quit")
                self.p.wait(5)
            except Exception:
                self.p.kill()
        self.log.close()


def sender(cluster, pod, dst, ports, pps, secs):
    ns = cluster.pods[pod][0]
    p = cluster.start(ns_exec(ns) + [PY, "-c", SENDER, dst, ",".join(map(str, ports)), str(pps),
                                     str(secs)], cluster.tmp / ("sender-%s.log" % pod))
    p.wait_log("^ready")
    return p


def tcpdump_all(cluster, pod):
    ns = cluster.pods[pod][0]
    out = cluster.tmp / ("ref-%s.pcap" % pod)
    p = cluster.start(ns_exec(ns) + ["tcpdump", "-i", "eth0", "-U", "--immediate-mode", "-n",
                                     "-s", "0", "--time-stamp-precision",
                                     "nano", "-w", str(out)],
                      cluster.tmp / ("tcpdump-%s.log" % pod))
    p.wait_log("listening on")
    p.ref = out
    return p


def udp_to(frames, ports):
    out = []
    for f in frames:
        p = l4_ports(f)
        if p and p[0] == 17 and p[2] in ports:
            out.append(f)
    return out


def contiguous_run(got, ref):
    """Where got sits in ref as one contiguous run (no gap, no duplicate), or
    an assertion message. The test's UDP payloads are unique (a sequence
    number); a pod's ARP and neighbour discovery frames may repeat."""
    assert got, "the job delivered nothing"
    seqs = [f for f in got if b"seq-" in f]
    assert seqs and len(set(seqs)) == len(seqs), "duplicates in the job's packets"
    k = got.index(seqs[0])
    try:
        i = ref.index(seqs[0]) - k
    except ValueError:
        raise AssertionError("the job's first packet is not in the reference")
    assert i >= 0, "the job has packets before the reference's first"
    run = ref[i:i + len(got)]
    # the same frames (none missing, none extra, none twice), and the test's
    # own stream in the same order; a frame of the other direction (an ARP
    # reply) may sit one place off, the pod and the node seeing the two
    # directions at slightly different moments
    assert Counter(run) == Counter(got), same_frames(got, run)
    assert [f for f in run if b"seq-" in f] == seqs, "the pod's stream is out of order"
    return i


def test_ondemand_streams_nothing_and_preroll_seam(cluster, tmp_path):
    rx = JobRx(tmp_path)
    try:
        cluster.servers(["pb"])
        ref = tcpdump_all(cluster, "pa")
        sensor = cluster.sensor(CONFIG)
        sensor.wait_log("connected to receiver")
        sensor.wait_log("capturing on vethpa")
        v4b = cluster.pods["pb"][2]
        send = sender(cluster, "pa", v4b, [UDP_PORT], 200, 26)
        # ondemand: traffic flows for 12 s, nothing is streamed
        time.sleep(12)
        d = rx.dump()
        assert d["version"] == 2
        assert d["records"] == {} and d["ifaces"] == {}, d["ifaces"]
        start = time.time_ns()
        rx.cmd(cmd="job", job=41, name="seam", start_ns=start, end_ns=start + 5 * SEC,
               preroll=10, interfaces="vethpa")
        st = rx.wait_status(41, (2,), timeout=15)
        send.p.wait(30)
        time.sleep(0.5)
        ref.stop()
        got = rx.job_frames(41)
        ts = [t for t, _ in got]
        # the pod's own stream is in time order; the job keeps the kernel's
        # order, where a frame of the other direction may be stamped a few
        # microseconds before the one ahead of it (a veth stamps a received
        # frame when it is queued, a sent one when it leaves; tcpdump on
        # the node shows the same), so the whole is compared by order with
        # the reference below, not sorted
        own = [t for t, f in got if b"seq-" in f]
        assert own == sorted(own), "the pod's packets out of time order"
        # the window: from 10 s before the job to its end (the recorder's
        # packets are stamped on the node, the reference in the pod: same
        # frames, slightly different clocks' moments)
        assert abs(min(ts) - (start - 10 * SEC)) < 0.1 * SEC, (min(ts) - start) / SEC
        assert max(ts) < start + 5 * SEC and start + 5 * SEC - max(ts) < 0.1 * SEC
        # every frame of the pod (its ARP and neighbour discovery too), in
        # the reference's order, none missing or doubled at the seam
        frames = [f for _, f in got]
        _ifs, recs = pcaplib.read(str(ref.ref))
        contiguous_run(frames, [bytes(r.data) for r in recs])
        assert len(udp_to(frames, [UDP_PORT])) > 200 * 14  # 15 s of 200 pps, less the edges
        assert st[1] == len(got) and st[3] == 0, st  # JOB_STATUS counts them, no drops
        d = rx.dump()
        assert all(j == 41 for _n, j in d["ifaces"].values()), d["ifaces"]
        assert sensor.stop() == 0
        assert_no_sanitizer(sensor.text(), "sensor")
    finally:
        rx.close()


def test_overlapping_jobs_and_job_before_connect(cluster, tmp_path):
    rx = JobRx(tmp_path)
    try:
        cluster.servers(["pb"])
        ref = tcpdump_all(cluster, "pa")
        v4b = cluster.pods["pb"][2]
        send = sender(cluster, "pa", v4b, [UDP_PORT, PORT_B], 200, 20)
        time.sleep(1)
        # job A exists before the sensor connects: it is sent at the handshake
        start_a = time.time_ns()
        rx.cmd(cmd="job", job=51, name="a", start_ns=start_a, end_ns=start_a + 12 * SEC,
               interfaces="vethpa", filter="udp dst port %d" % UDP_PORT)
        sensor = cluster.sensor(CONFIG)
        sensor.wait_log("job a \\(51\\) capturing on vethpa")
        time.sleep(2)
        # job B overlaps A on the same interface, with another filter, and a
        # preroll through its filter
        start_b = time.time_ns()
        rx.cmd(cmd="job", job=52, name="b", start_ns=start_b, preroll=2,
               interfaces="vethpa", filter="udp dst port %d" % PORT_B)
        sensor.wait_log("job b \\(52\\) capturing on vethpa")
        time.sleep(4)
        rx.cmd(cmd="stop", job=52)
        st_b = rx.wait_status(52, (3,))
        st_a = rx.wait_status(51, (2,), timeout=15)
        send.p.wait(30)
        time.sleep(0.5)
        ref.stop()
        _ifs, recs = pcaplib.read(str(ref.ref))
        ref_frames = [bytes(r.data) for r in recs]
        got_a = [f for _, f in rx.job_frames(51)]
        got_b = [f for _, f in rx.job_frames(52)]
        # each exactly its filter's packets, contiguous in the reference
        assert udp_to(got_a, [UDP_PORT]) == got_a and udp_to(got_b, [PORT_B]) == got_b
        contiguous_run(got_a, udp_to(ref_frames, [UDP_PORT]))
        contiguous_run(got_b, udp_to(ref_frames, [PORT_B]))
        ts_b = [t for t, _ in rx.job_frames(52)]
        assert abs(ts_b[0] - (start_b - 2 * SEC)) < 0.1 * SEC
        assert st_a[1] == len(got_a) and st_b[1] == len(got_b), (st_a, st_b)
        assert len(got_a) > 100 * 10 and len(got_b) > 100 * 5
        # the two jobs have their own interfaces, announced with their ids
        d = rx.dump()
        jobs = sorted(j for _n, j in d["ifaces"].values())
        assert 51 in jobs and 52 in jobs and 0 not in jobs, d["ifaces"]
        assert sensor.stop() == 0
        assert_no_sanitizer(sensor.text(), "sensor")
    finally:
        rx.close()


# ---- with the real receiver (jobs-rx): HTTP API, job file set ----

HTTP = "127.0.0.1:18556"


def api(method, path, body=None):
    args = ns_exec(RX) + ["curl", "-s", "-X", method, "http://%s%s" % (HTTP, path)]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    r = subprocess.run(args, stdout=subprocess.PIPE, text=True, timeout=20)
    return json.loads(r.stdout)


def test_real_receiver_job_with_preroll(cluster, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    rx = cluster.start(ns_exec(RX) + [binary(), "receiver", "--listen", "%s:%d" % (RX_ADDR, RX_PORT),
                                      "--output", str(out), "--http", HTTP],
                       tmp_path / "receiver.log")
    rx.wait_log("listening on")
    cluster.servers(["pb"])
    ref = tcpdump_all(cluster, "pa")
    sensor = cluster.sensor("capture:\n  mode: ondemand\n  podInterfaces: true\n"
                            "  statsIntervalSec: 1\n")
    sensor.wait_log("connected to receiver")
    sensor.wait_log("capturing on vethpa")
    send = sender(cluster, "pa", cluster.pods["pb"][2], [UDP_PORT], 200, 24)
    time.sleep(12)
    # ondemand: nothing reached the receiver's main files
    mains = [p for p in out.glob("*.pcapng") if not p.name.startswith("job-")]
    assert sum(len(pcaplib.read(str(p))[1]) for p in mains) == 0
    t0 = time.time_ns()
    j = api("POST", "/api/jobs", {"name": "seam", "selector": {"interfaces": ["vethpa"]},
                                  "preroll": 10, "duration": 5})
    t1 = time.time_ns()
    assert "id" in j, j
    deadline = time.time() + 20
    while time.time() < deadline:
        j = api("GET", "/api/jobs/%d" % j["id"])
        if j["state"] != "running":
            break
        time.sleep(0.3)
    assert j["state"] == "finished", j
    send.p.wait(30)
    time.sleep(0.5)
    ref.stop()
    assert sensor.stop() == 0
    assert rx.stop() == 0
    files = sorted(out.glob("job-seam-*.pcapng"))
    assert files, sorted(p.name for p in out.iterdir())
    got = []
    for f in files:
        for ifname, ts, _cap, _orig, data in pcaplib.read_named(str(f)):
            assert ifname == "node1/vethpa", ifname
            got.append((ts, bytes(data)))
    ts = [t for t, _ in got]
    assert t0 - 10 * SEC - 0.1 * SEC <= ts[0] <= t1 - 10 * SEC + 0.1 * SEC, (ts[0] - t0) / SEC
    assert ts[-1] <= t1 + 5 * SEC
    _ifs, recs = pcaplib.read(str(ref.ref))
    contiguous_run([f for _, f in got], [bytes(r.data) for r in recs])
    mains = [p for p in out.glob("*.pcapng") if not p.name.startswith("job-")]
    assert sum(len(pcaplib.read(str(p))[1]) for p in mains) == 0
    assert_no_sanitizer(sensor.text(), "sensor")
    assert_no_sanitizer(rx.text(), "receiver")


def test_pod_selectors(cluster, tmp_path):
    """namespaces / pods / labelSelector pick pods' interfaces through the
    Kubernetes stand-in (tests/lib/kubeapi.py), as capture.pods does."""
    from test_pods import StandIn, config, gateway_ping
    api = StandIn(tmp_path)
    rx = JobRx(tmp_path)
    try:
        pa, pb, pc = (cluster.pods[n] for n in ("pa", "pb", "pc"))
        api.add("pa", "shop", {"app": "web", "tier": "front"}, [pa[2], pa[3]])
        api.add("pb", "shop", {"app": "db"}, [pb[2], pb[3]])
        api.add("pc", "pay", {"app": "web"}, [pc[2], pc[3]])
        for p in ("pa", "pb"):
            gateway_ping(cluster, p)
        cluster.servers(["pa", "pb", "pc"])
        cfg = config(api, "").replace("podInterfaces: true\n",
                                      "podInterfaces: true\n  mode: ondemand\n")
        s = cluster.sensor(cfg + "compression:\n  codec: none\n")
        s.wait_log(r"capturing on vethpa as pod shop/pa ")
        s.wait_log(r"capturing on vethpb as pod shop/pb ")
        s.wait_log(r"capturing on calipc as pod pay/pc ")
        s.wait_log("connected to receiver")
        now = time.time_ns()
        rx.cmd(cmd="job", job=61, name="one-pod", start_ns=now, pods="shop/pa")
        rx.cmd(cmd="job", job=62, name="web-in-pay", start_ns=now, namespaces="pay",
               label_selector="app=web")
        rx.cmd(cmd="job", job=63, name="web", start_ns=now, label_selector="app in (web)")
        rx.cmd(cmd="job", job=64, name="shop-db-lo", start_ns=now, namespaces="shop",
               label_selector="app=db", interfaces="lo*")
        for j in (61, 62, 63):
            rx.wait_status(j, (1,))
        time.sleep(0.5)
        cluster.send("pb", pa[2], "B2A4", count=20)
        cluster.send("pb", pc[2], "B2C4", count=20)
        time.sleep(1.0)
        for j in (61, 62, 63, 64):
            rx.cmd(cmd="stop", job=j)
            rx.wait_status(j, (3,))
        d = rx.dump()
        names = {}
        for idx, (name, job) in d["ifaces"].items():
            names.setdefault(job, set()).add(name)
        assert names.get(61) == {"shop/pa"}, names
        assert names.get(62) == {"pay/pc"}, names
        assert names.get(63) == {"shop/pa", "pay/pc"}, names
        assert 64 not in names, names  # all selectors must hold: no interface is lo*
        assert 0 not in names, names   # ondemand: no continuous interface
        a = [f for _, f in rx.job_frames(61)]
        c = [f for _, f in rx.job_frames(62)]
        assert sum(b"B2A4" in f for f in a) >= 20 and not any(b"B2C4" in f for f in a)
        assert sum(b"B2C4" in f for f in c) >= 20 and not any(b"B2A4" in f for f in c)
        assert s.stop() == 0
        assert_no_sanitizer(s.text(), "sensor")
    finally:
        rx.close()
        api.close()


def test_job_survives_reconnect(cluster, tmp_path):
    """The connection is cut while a job runs: the sensor reconnects, the
    receiver re-sends JOB_START, the sensor keeps the running job (same
    capture, same interface index, counters going on) and re-announces it."""
    rx = JobRx(tmp_path)
    try:
        cluster.servers(["pb"])
        sensor = cluster.sensor(CONFIG)
        sensor.wait_log("connected to receiver")
        sensor.wait_log("capturing on vethpa")
        send = sender(cluster, "pa", cluster.pods["pb"][2], [UDP_PORT], 200, 8)
        rx.cmd(cmd="job", job=71, name="keep", start_ns=time.time_ns(), interfaces="vethpa")
        sensor.wait_log(r"job keep \(71\) capturing on vethpa")
        time.sleep(2)
        before = rx.dump()
        idx = [i for i, (_n, j) in before["ifaces"].items() if j == 71]
        assert len(idx) == 1, before["ifaces"]
        rx.cmd(cmd="kick")
        deadline = time.time() + 15
        while rx.dump()["connects"] < 2 and time.time() < deadline:
            time.sleep(0.1)
        assert rx.dump()["connects"] >= 2
        send.p.wait(30)
        time.sleep(1.5)
        rx.cmd(cmd="stop", job=71)
        st = rx.wait_status(71, (3,))
        d = rx.dump()
        assert [i for i, (_n, j) in d["ifaces"].items() if j == 71] == idx, d["ifaces"]
        assert sensor.text().count("job keep (71) capturing on") == 1
        frames = [f for _, f in rx.job_frames(71)]
        seqs = [f for f in frames if b"seq-" in f]
        # every packet once (what was in flight when the connection was cut is
        # sent again and acknowledged once: the stand-in keeps duplicates, so
        # compare the set), packets before and after the cut, counted by the
        # sensor's JOB_STATUS as one job
        assert len(set(seqs)) > 200 * 5, len(set(seqs))
        nums = sorted(int(f[f.index(b"seq-") + 4:f.index(b"seq-") + 12]) for f in set(seqs))
        assert nums == list(range(nums[0], nums[-1] + 1)), "gap in the job's packets"
        assert st[1] >= len(set(frames)), st
        assert sensor.stop() == 0
        assert_no_sanitizer(sensor.text(), "sensor")
    finally:
        rx.close()


def test_receiver_restart_mid_job(cluster, tmp_path):
    """The receiver is stopped and started again while a job runs: it
    resumes the job from its persisted state, the sensor keeps capturing and
    spooling meanwhile, and the job's files hold the pod's packets once
    each, with no gap across the restart."""
    out = tmp_path / "out"
    out.mkdir()

    def start_rx(n):
        p = cluster.start(ns_exec(RX) + [binary(), "receiver", "--listen",
                                         "%s:%d" % (RX_ADDR, RX_PORT), "--output", str(out),
                                         "--http", HTTP], tmp_path / ("receiver-%d.log" % n))
        p.wait_log("listening on")
        return p
    rx = start_rx(1)
    cluster.servers(["pb"])
    ref = tcpdump_all(cluster, "pa")
    sensor = cluster.sensor("gatherMaxWaitMs: 100\ncapture:\n  mode: ondemand\n"
                            "  podInterfaces: true\n  statsIntervalSec: 1\n")
    sensor.wait_log("connected to receiver")
    sensor.wait_log("capturing on vethpa")
    send = sender(cluster, "pa", cluster.pods["pb"][2], [UDP_PORT], 200, 14)
    j = api("POST", "/api/jobs", {"name": "across", "selector": {"interfaces": ["vethpa"]},
                                  "duration": 8})
    assert "id" in j, j
    sensor.wait_log(r"job across \(\d+\) capturing on vethpa")
    time.sleep(2)
    assert rx.stop() == 0
    time.sleep(1.5)  # the pod goes on talking; the sensor spools the job's packets
    rx = start_rx(2)
    sensor.wait_log("connected to receiver", timeout=20)
    deadline = time.time() + 25
    while time.time() < deadline:
        j = api("GET", "/api/jobs/%d" % j["id"])
        if j["state"] != "running":
            break
        time.sleep(0.3)
    assert j["state"] == "finished", j
    send.p.wait(30)
    time.sleep(0.5)
    ref.stop()
    assert sensor.stop() == 0
    assert rx.stop() == 0
    got = [bytes(d) for f in sorted(out.glob("job-across-*.pcapng"))
           for _n, _ts, _c, _o, d in pcaplib.read_named(str(f))]
    assert len([f for f in got if b"seq-" in f]) > 200 * 6, len(got)
    _ifs, recs = pcaplib.read(str(ref.ref))
    contiguous_run(got, [bytes(r.data) for r in recs])
    assert_no_sanitizer(sensor.text(), "sensor")
    assert_no_sanitizer(rx.text(), "receiver")
