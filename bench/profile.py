#!/usr/bin/python3
"""Instruction counts per packet (valgrind callgrind) of the sensor and the
receiver on the offline path.

    bench/profile.py [--bin build-prof/packetstreamer] [--small 50000] [--large 250000]
                     [--codecs none,lz4] [--top 12] [--tls]

Instruction counts do not depend on the machine's load, so unlike CPU seconds
they are comparable between runs on a shared VM. Method: for each codec and
each of two IMIX captures (--small and --large packets, bench/offline.py's
generator), run sensor --read-file -> receiver on loopback twice, once with
the sensor under callgrind and once with the receiver under callgrind (the
other process runs natively). Instructions per packet = (Ir(large) -
Ir(small)) / (large - small): start-up, configuration, TLS library
initialisation and shutdown cancel out. Callgrind counts every thread of the
process (the sensor's compression workers included). The large run's
profile is annotated (callgrind_annotate, exclusive Ir per function) and the
top functions are printed. --tls: sensor and receiver speak mutual TLS as
the chart deploys it (the handshake cancels out like the start-up). Needs valgrind; `make bench-profile` builds
build-prof/ (Release, -O3, plus -g for symbols) and runs this.
"""

import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402
from benchlib import REPO, pcaplib  # noqa: E402


def total_ir(path):
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError("no totals in %s" % path)


def top_functions(path, n):
    r = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=99", str(path)],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    rows = []
    for line in r.stdout.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(\S.*)$", line)
        if m and "PROGRAM TOTALS" not in line:
            rows.append((int(m.group(1).replace(",", "")), float(m.group(2)), m.group(3).strip()))
    return rows[:n]


def one(a, work, pcap, packets, codec, role):
    """One sensor -> receiver run with `role` under callgrind; returns the
    callgrind output file."""
    port = benchlib.free_port()
    out = work / ("out-%s-%s-%d" % (role, codec, packets))
    out.mkdir()
    cg = work / ("callgrind-%s-%s-%d.out" % (role, codec, packets))
    vg = ["valgrind", "--tool=callgrind", "--callgrind-out-file=%s" % cg]
    env = benchlib.child_env()
    rx_cmd = [a.bin, "receiver", "--listen", "127.0.0.1:%d" % port, "--output", str(out),
              "--http", "127.0.0.1:0"]
    sx_cmd = [a.bin, "sensor", "--read-file", str(pcap), "--receiver", "127.0.0.1:%d" % port,
              "--codec", codec, "--id", "prof", "--http", "127.0.0.1:0"]
    if a.tls:
        c = a.tls
        rx_cmd += ["--tls-cert", str(c.p("receiver.crt")), "--tls-key", str(c.p("receiver.key")),
                   "--tls-ca", str(c.p("ca.crt"))]
        sx_cmd += ["--tls-cert", str(c.p("bench.crt")), "--tls-key", str(c.p("bench.key")),
                   "--tls-ca", str(c.p("ca.crt"))]
    rxlog, sxlog = work / "rx.log", work / "sx.log"
    procs = []
    try:
        rx = subprocess.Popen((vg if role == "receiver" else []) + rx_cmd, env=env,
                              stdout=subprocess.DEVNULL, stderr=open(rxlog, "w"))
        procs.append(rx)
        end = time.time() + 60
        while not benchlib.listening(port):
            if rx.poll() is not None or time.time() > end:
                raise RuntimeError("receiver did not start:\n" + rxlog.read_text()[-2000:])
            time.sleep(0.05)
        sx = subprocess.Popen((vg if role == "sensor" else []) + sx_cmd, env=env,
                              stdout=subprocess.DEVNULL, stderr=open(sxlog, "w"))
        procs.append(sx)
        rc, _, _, _ = benchlib.wait4(sx, poll_s=0.05, timeout=a.timeout)
        if rc != 0:
            raise RuntimeError("sensor exited %d:\n%s" % (rc, sxlog.read_text()[-2000:]))
        benchlib.reap(rx, signal.SIGTERM, timeout=a.timeout)
        if rx.returncode != 0:
            raise RuntimeError("receiver exited %d:\n%s" % (rx.returncode, rxlog.read_text()[-2000:]))
    finally:
        benchlib.kill_all(procs)
    written = sum(benchlib.count_records(p) for p in out.glob("*.pcapng"))
    shutil.rmtree(out)
    if written != packets:
        raise RuntimeError("%s/%s: %d packets written, expected %d" % (role, codec, written, packets))
    return cg


def one_live(a, ns, work, pcap, pps, seconds, codec):
    """Live: the receiver native, the sensor under callgrind capturing vethb0
    while tcpreplay sends pps x seconds frames. Returns (callgrind file, sent)."""
    d = Path(tempfile.mkdtemp(prefix="live-", dir=work))
    cg = d / "callgrind.out"
    port = 18602
    env = benchlib.child_env()
    node = ns.exec_node()
    procs = []
    try:
        rx = subprocess.Popen(node + [a.bin, "receiver", "--listen", "127.0.0.1:%d" % port,
                                      "--output", str(d / "out"), "--http", "127.0.0.1:0"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=open(d / "rx.log", "w"), env=env)
        procs.append(rx)
        benchlib.wait_log(d / "rx.log", "listening on", rx)
        sx = subprocess.Popen(node + ["valgrind", "--tool=callgrind",
                                      "--callgrind-out-file=%s" % cg, a.bin, "sensor",
                                      "--receiver", "127.0.0.1:%d" % port, "--interface",
                                      ns.node_if, "--codec", codec, "--id", "prof",
                                      "--http", "127.0.0.1:0"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=open(d / "sx.log", "w"), env=env)
        procs.append(sx)
        benchlib.wait_log(d / "sx.log", "capturing on %s" % ns.node_if, sx, timeout=120)
        time.sleep(1)
        sent, _, _ = benchlib.tcpreplay(ns, pcap, int(pps * seconds), pps)
        time.sleep(2)
        benchlib.reap(sx, signal.SIGTERM, timeout=a.timeout)
        benchlib.reap(rx, signal.SIGTERM, timeout=60)
    finally:
        benchlib.kill_all(procs)
    written = sum(benchlib.count_records(f, tagged_only=True) for f in (d / "out").glob("*.pcapng"))
    if written != sent:
        raise RuntimeError("live %s at %d pps: %d written of %d sent (the sensor under "
                           "callgrind is too slow: lower --live-pps)" % (codec, pps, written, sent))
    return cg, sent


def live_profile(a, work, results, rows):
    """Instructions per packet of the live sensor (TPACKET_V3 ring -> batch
    -> codec -> socket): two runs of the same length at pps and 3 x pps, so
    time-driven work (timers, statistics) cancels out of the difference."""
    with benchlib.Netns("pspf-prof") as ns:
        for size in (64, 1400):
            pcap = work / ("udp%d.pcap" % size)
            benchlib.make_udp_pcap(pcap, size, 20000)
            for codec in [c for c in a.codecs.split(",") if c]:
                ir, sent = {}, {}
                for pps in (a.live_pps, 3 * a.live_pps):
                    cg, n = one_live(a, ns, work, pcap, pps, a.live_seconds, codec)
                    ir[pps], sent[pps] = total_ir(cg), n
                lo, hi = a.live_pps, 3 * a.live_pps
                per = (ir[hi] - ir[lo]) / (sent[hi] - sent[lo])
                top = top_functions(cg, a.top)
                role = "live sensor, %d B" % size
                rows.append((role, codec, ir[lo], ir[hi], per))
                results["runs"].append({"role": role, "codec": codec, "ir": ir, "sent": sent,
                                        "ir_per_packet": per,
                                        "top_exclusive": [{"ir": t[0], "pct": t[1], "fn": t[2]}
                                                          for t in top]})
                print("%s, codec %s: %.0f instructions/packet" % (role, codec, per),
                      file=sys.stderr)
                for t in top:
                    print("    %14d %5.1f%%  %s" % t, file=sys.stderr)


COLUMNS = [
    ("process", "role", None),
    ("sensor codec", "codec", None),
    ("Ir (small run)", "ir_small", "%d"),
    ("Ir (large run)", "ir_large", "%d"),
    ("instructions / packet", "ir_per_packet", "%.0f"),
]


def main(argv=None):
    ap = benchlib.driver_args(__doc__, default_bin=str(REPO / "build-prof" / "packetstreamer"),
                              repeat=False)  # instruction counts do not vary
    ap.add_argument("--small", type=int, default=50000)
    ap.add_argument("--large", type=int, default=250000)
    ap.add_argument("--codecs", default="none,lz4")
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--live", action="store_true",
                    help="also profile the live sensor (root: network namespaces pspf-prof-*, "
                         "tcpreplay): 64 and 1400 B frames, --live-pps and 3x that")
    ap.add_argument("--live-pps", type=int, default=5000)
    ap.add_argument("--live-seconds", type=float, default=4.0)
    ap.add_argument("--tls", action="store_true", help="sensor -> receiver over mutual TLS")
    a = ap.parse_args(argv)
    benchlib.need_tools(("valgrind",), "apt-get install valgrind")
    benchlib.prepare_bin(a, "make bench-profile builds it")
    results = {"binary": a.bin, "small": a.small, "large": a.large, "machine": benchlib.machine(),
               "runs": []}
    codecs = [c for c in a.codecs.split(",") if c]
    with benchlib.Workdir("pspf-prof-", a.dir, a.keep) as work:
        if a.tls:
            from peers import make_certs
            a.tls = make_certs(work)
            results["tls"] = True
        pcaps = {}
        for n in (a.small, a.large):
            pcaps[n] = work / ("imix-%d.pcap" % n)
            pcaplib.write_imix(str(pcaps[n]), n, seed=1, fmt="pcap")
        rows = []
        if a.live:
            live_profile(a, work, results, rows)

        def case(codec, role, rep):
            ir = {}
            for n in (a.small, a.large):
                cg = one(a, work, pcaps[n], n, codec, role)
                ir[n] = total_ir(cg)
            top = top_functions(cg, a.top)
            return {"role": role, "codec": codec, "ir": ir,
                    "ir_per_packet": (ir[a.large] - ir[a.small]) / (a.large - a.small),
                    "top_exclusive": [{"ir": t[0], "pct": t[1], "fn": t[2]} for t in top]}

        def report(r):
            print("%s, sensor codec %s: %.0f instructions/packet (Ir %d at %d, %d at %d)"
                  % (r["role"], r["codec"], r["ir_per_packet"], r["ir"][a.small], a.small,
                     r["ir"][a.large], a.large), file=sys.stderr)
            for t in r["top_exclusive"]:
                print("    %14d %5.1f%%  %s" % (t["ir"], t["pct"], t["fn"]), file=sys.stderr)

        runs = benchlib.run_cases(codecs, ("sensor", "receiver"), 1, case, report)
        results["runs"].extend(runs)
        rows.extend((r["role"], r["codec"], r["ir"][a.small], r["ir"][a.large], r["ir_per_packet"])
                    for r in runs)
    print(benchlib.table(COLUMNS, [dict(zip(("role", "codec", "ir_small", "ir_large",
                                             "ir_per_packet"), row)) for row in rows]))
    out = benchlib.write_results("profile", results)
    print("results: %s" % out.relative_to(REPO))


if __name__ == "__main__":
    benchlib.main(main, "profile.py")
