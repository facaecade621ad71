#!/usr/bin/python3
"""Hostile soak: honest sensors stream while hostile peers attack the
receiver, one attack after another (docs/security.md, "What one peer can
cost the receiver").

    bench/soak.py [--bin build/packetstreamer] [--honest 8] [--packets 20000]
                  [--pps 2500] [--attack-seconds 10] [--attacks bomb,hello_flood,...]
                  [--rss-limit-mib 256] [--dir /dev/shm]

One receiver with its default limits listens on 127.0.0.1. Eight honest
sensors (`sensor --read-file`, lz4, each a real process with its own
connection) stream a capture of --packets varied frames at --pps packets/s
each (`sensor.readPacketsPerSec`), again and again with a new sensor id each
run, for as long as the attacks last. The receiver keeps its default limits;
only its files rotate at 64 MiB, so the check below reads one at a time. Meanwhile the
attacks of tests/lib/hostile.py run in turn, each for --attack-seconds:
decompression bombs on 40 connections, 8000 HELLOs with new ids, IFACE
floods, a peer that never reads its ACKs, 1024 idle sockets from one address,
64 slow HTTP clients, STATS floods, a DNS-rebinding request and the takeover
of a live honest sensor's (id, session) with sequence 2^62.

Throughout, every 200 ms: GET /healthz (must answer 200 within 1 s) and the
receiver's RSS. At the end, the receiver stops with SIGTERM and must exit 0;
every honest run must have exited 0 with all packets acknowledged, and its
packets must be in the output byte for byte, in order, once each.

Pass: no honest packet lost, duplicated or changed; /healthz never failed;
peak RSS under --rss-limit-mib. Prints a table per attack (peak RSS during
it, /healthz failures, slowest /healthz, honest runs finished during it) and
writes bench/results/soak-<UTC>.json. Exit 1 on a failed check. Loopback
only; every attack is bounded in count and time.
"""

import collections
import http.client
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402
from benchlib import REPO, pcaplib  # noqa: E402

sys.path.insert(0, str(REPO / "tests" / "lib"))
import hostile  # noqa: E402

ORDER = ["bomb", "hello_flood", "iface_flood", "no_read", "idle_sockets", "slowloris",
         "stats_flood", "rebinding", "takeover"]


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Watch(threading.Thread):
    """Polls /healthz and the receiver's RSS; samples are tagged with the
    attack running at the time."""

    def __init__(self, pid, http_port):
        super().__init__(daemon=True)
        self.pid, self.http_port = pid, http_port
        self.phase = "warm-up"
        self.samples = collections.defaultdict(list)  # phase -> [(rss_kib, health_s or None)]
        self.stop = threading.Event()

    def health(self):
        t = time.monotonic()
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=1)
            c.request("GET", "/healthz")
            ok = c.getresponse().status == 200
            c.close()
        except OSError:
            ok = False
        return time.monotonic() - t if ok else None

    def run(self):
        while not self.stop.is_set():
            self.samples[self.phase].append((rss_kib(self.pid), self.health()))
            self.stop.wait(0.2)


class Honest(threading.Thread):
    """One honest sensor slot: runs `sensor --read-file` again and again."""

    def __init__(self, a, work, slot, pcap, port, stop):
        super().__init__(daemon=True)
        self.a, self.work, self.slot, self.pcap, self.port = a, work, slot, pcap, port
        self.stop = stop
        self.runs = []  # (sensor id, exit code, summary kv, phase at the end)
        self.watch = None
        self.env = dict(benchlib.child_env(),
                        PACKETSTREAMER_SENSOR_READ_PACKETS_PER_SEC=str(a.pps))

    def run(self):
        n = 0
        while not self.stop.is_set():
            sid = "honest-%d-r%d" % (self.slot, n)
            log = self.work / ("%s.log" % sid)
            with open(log, "w") as err:
                p = subprocess.run([self.a.bin, "sensor", "--read-file", str(self.pcap),
                                    "--receiver", "127.0.0.1:%d" % self.port, "--codec", "lz4",
                                    "--id", sid, "--http", "127.0.0.1:0"],
                                   stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=err,
                                   env=self.env, timeout=300)
            kv = benchlib.parse_kv(log.read_text(errors="replace"))
            self.runs.append((sid, p.returncode, kv, self.watch.phase if self.watch else "?"))
            n += 1


def check_output(outdir, honest, expected):
    """Every honest run's packets, byte for byte, in order, once. Files are
    read one at a time (in the order written) and each record is compared as
    it comes, so memory stays at one file's worth."""
    slot_of = {sid: h.slot for h in honest for sid, *_ in h.runs}
    pos, differ = collections.Counter(), collections.Counter()
    for f in sorted(outdir.glob("*.pcapng")):
        for name, ts, caplen, origlen, data in pcaplib.read_named(str(f)):
            sid = name.split("/")[0] if name else ""
            if sid not in slot_of:
                continue  # an attacker's interface
            want = expected[slot_of[sid]]
            i = pos[sid]
            if i >= len(want) or (want[i].ts_ns, want[i].caplen, want[i].origlen,
                                  want[i].data) != (ts, caplen, origlen, data):
                differ[sid] += 1
            pos[sid] += 1
    bad = []
    for h in honest:
        n = len(expected[h.slot])
        for sid, rc, kv, _ in h.runs:
            if rc != 0 or kv.get("unacked") != "0":
                bad.append("%s: exit %d, %s" % (sid, rc, kv))
            elif pos[sid] != n or differ[sid]:
                bad.append("%s: %d packets in the output, %d sent, %d differ" % (
                    sid, pos[sid], n, differ[sid]))
    return bad


def main():
    ap = benchlib.driver_args(__doc__, repeat=False)
    ap.add_argument("--honest", type=int, default=8)
    ap.add_argument("--packets", type=int, default=20000)
    ap.add_argument("--pps", type=int, default=2500, help="each honest sensor's pace")
    ap.add_argument("--attack-seconds", type=float, default=10)
    ap.add_argument("--attacks", default=",".join(ORDER))
    ap.add_argument("--rss-limit-mib", type=float, default=256)
    a = ap.parse_args()
    version = benchlib.prepare_bin(a)
    attacks = [x for x in a.attacks.split(",") if x]
    for x in attacks:
        if x not in hostile.ATTACKS:
            raise SystemExit("unknown attack %r (known: %s)" % (x, ", ".join(ORDER)))
    with benchlib.Workdir("pspf-soak-", a.dir, a.keep) as work:
        out = work / "out"
        out.mkdir()
        expected, pcaps = {}, {}
        for i in range(a.honest):
            expected[i] = pcaplib.gen_varied(a.packets, seed=100 + i)
            pcaps[i] = work / ("honest-%d.pcap" % i)
            pcaplib.write_pcap(pcaps[i], expected[i], nanosecond=True)
        port, http_port = benchlib.free_port(), benchlib.free_port()
        rxlog = work / "receiver.log"
        rx = subprocess.Popen([a.bin, "receiver", "--listen", "127.0.0.1:%d" % port, "--output",
                               str(out), "--http", "127.0.0.1:%d" % http_port],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=open(rxlog, "w"),
                              env=dict(benchlib.child_env(),
                                       PACKETSTREAMER_OUTPUT_FILE_ROTATE_SIZE_MB="64"))
        stop = threading.Event()
        watch, honest, results = None, [], {}
        try:
            end = time.time() + 20
            while not (benchlib.listening(port) and benchlib.listening(http_port)):
                if rx.poll() is not None or time.time() > end:
                    raise RuntimeError("receiver did not start:\n" + rxlog.read_text()[-2000:])
                time.sleep(0.02)
            watch = Watch(rx.pid, http_port)
            watch.start()
            for i in range(a.honest):
                h = Honest(a, work, i, pcaps[i], port, stop)
                h.watch = watch
                h.start()
                honest.append(h)
            time.sleep(2)
            for name in attacks:
                watch.phase = name
                kw = {"port": port, "http_port": http_port, "stop": threading.Event(),
                      "seconds": a.attack_seconds}
                if name == "takeover":
                    kw.update(victim(http_port))
                t0 = time.monotonic()
                results[name] = hostile.ATTACKS[name](**kw)
                left = a.attack_seconds - (time.monotonic() - t0)
                if left > 0:
                    time.sleep(left)
                print("soak: %s done: %s" % (name, results[name]), file=sys.stderr)
            watch.phase = "cool-down"
            stop.set()
            for h in honest:
                h.join(timeout=300)
            time.sleep(1)
            watch.stop.set()
            watch.join()
            benchlib.reap(rx, signal.SIGTERM, timeout=60)
            if rx.returncode != 0:
                raise RuntimeError("receiver exited %d:\n%s" % (rx.returncode,
                                                               rxlog.read_text()[-2000:]))
        finally:
            stop.set()
            if watch:
                watch.stop.set()
            benchlib.kill_all([rx])
        bad = check_output(out, honest, expected)
        rows, peak, fails = [], 0, 0
        for phase in ["warm-up"] + attacks + ["cool-down"]:
            s = watch.samples.get(phase, [])
            ph_peak = max((r for r, _ in s), default=0) / 1024
            ph_fail = sum(1 for _, h in s if h is None)
            slow = max((h for _, h in s if h is not None), default=0)
            done = sum(1 for h in honest for r in h.runs if r[3] == phase)
            rows.append({"phase": phase, "rss_peak_mib": ph_peak, "healthz_failures": ph_fail,
                         "healthz_slowest_ms": slow * 1000, "honest_runs_finished": done,
                         "samples": len(s), "attack": results.get(phase)})
            peak, fails = max(peak, ph_peak), fails + ph_fail
        runs = sum(len(h.runs) for h in honest)
        print(benchlib.table([("phase", "phase", None), ("RSS peak MiB", "rss_peak_mib", "%.1f"),
                              ("/healthz failures", "healthz_failures", "%d"),
                              ("slowest /healthz ms", "healthz_slowest_ms", "%.0f"),
                              ("honest runs done", "honest_runs_finished", "%d")], rows))
        print("\nhonest runs: %d (%d packets each), bad: %d; peak RSS %.1f MiB (limit %.0f); "
              "/healthz failures: %d" % (runs, a.packets, len(bad), peak, a.rss_limit_mib, fails))
        res = benchlib.write_results("soak", {"version": version, "machine": benchlib.machine(),
                                              "args": vars(a), "phases": rows,
                                              "honest_runs": runs, "bad": bad,
                                              "rss_peak_mib": peak, "healthz_failures": fails})
        print("results: %s" % res, file=sys.stderr)
        problems = bad[:5]
        if peak > a.rss_limit_mib:
            problems.append("peak RSS %.1f MiB over %.0f" % (peak, a.rss_limit_mib))
        if fails:
            problems.append("/healthz failed %d times" % fails)
        if not runs:
            problems.append("no honest run finished")
        if problems:
            raise RuntimeError("; ".join(problems))
    return 0


def victim(http_port):
    """The (id, session) of a connected honest sensor, as /api/sensors shows it."""
    c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
    c.request("GET", "/api/sensors")
    sensors = json.loads(c.getresponse().read())
    c.close()
    rows = sensors.get("sensors", sensors) if isinstance(sensors, dict) else sensors
    live = [s for s in rows if str(s.get("id", "")).startswith("honest-") and s.get("connected")]
    s = (live or [s for s in rows if str(s.get("id", "")).startswith("honest-")])[0]
    return {"victim_id": s["id"], "victim_session": int(s["session"], 16)}


if __name__ == "__main__":
    benchlib.main(main, "soak")
