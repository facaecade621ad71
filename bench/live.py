#!/usr/bin/python3
"""Live-capture benchmark: loss and cost of the sensor against
`tcpdump -i IF -w - | nc` under the same load.

    bench/live.py [--bin build/packetstreamer] [--cases 64:100000,64:top,1500:top]
                  [--seconds 3] [--repeat 1] [--no-pin] [--codec lz4|none|zlib]

Needs root, tcpreplay and netcat-openbsd (`apt-get install tcpreplay
netcat-openbsd`), and a Release build (`make build`). Standard library only.

Topology (created here, prefixed "pslb-", always deleted):

    pslb-gen  eth0  --veth--  vethb0  pslb-node   (sensor / tcpdump capture vethb0;
                                                   receiver / nc on 127.0.0.1 in pslb-node)

The generator is tcpreplay in pslb-gen, pinned to CPU 0; the capture side is
pinned to CPU 1 (--no-pin: no pinning). Frames are Ethernet/IPv4/UDP of the
case's size addressed to a MAC nobody owns, so the node's IP stack drops them
and answers nothing: every frame on vethb0 is a generated one. IPv6 is off in
both namespaces (no neighbour discovery noise). Per case and tool:

  1. start the receiver side (packetstreamer receiver -> pcapng in tmpfs, or
     `nc -l` -> file), then the capture side (the sensor with default
     settings except --interface vethb0, or `tcpdump -i vethb0 -n -w - | nc`);
  2. replay COUNT frames at the rate (`tcpreplay --pps` or `--topspeed`);
  3. wait 1.5 s, SIGTERM the capture side (the sensor then sends what it has
     and waits for the acknowledgements), then the receiver side;
  4. offered = tcpreplay's "Actual" packets; on_wire = vethb0's rx counter;
     captured / kernel drops = the sensor's summary line (tcpdump: its
     "captured" / "dropped by kernel" lines); delivered = packets the
     receiver acknowledged (the sensor's acked=); written = records in the
     output file; CPU = user+system seconds of each process (wait4 rusage,
     threads included); peak RSS = VmHWM just before the stop.

Prints a markdown table and appends every run to bench/results/live-<UTC>.json.
"""

import json
import os
import platform
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

NS = benchlib.Netns("pslb", gen_if="eth0", node_if="vethb0")
GEN, NODE = NS.gen, NS.node
GEN_IF, NODE_IF = NS.gen_if, NS.node_if
PORT = 18600

run = benchlib.run
setup, teardown, rx_packets = NS.setup, NS.teardown, NS.rx_packets
vmhwm_kb = benchlib.vm_hwm_kib
wait_file = benchlib.wait_log


def make_pcap(path, size, count=50000):
    """count frames of `size` bytes (Ethernet header included), unique
    counters, otherwise constant (compressible) payloads."""
    benchlib.make_udp_pcap(path, size, count, payload="counter")


def reap(proc, sig, timeout=30):
    """CPU seconds (user + system) of proc, stopped with sig."""
    return benchlib.cpu(benchlib.reap(proc, sig, timeout)[0])


def one_run(a, tool, size, rate, count, pcap, work):
    d = Path(tempfile.mkdtemp(prefix="%s-%d-%s-" % (tool, size, rate), dir=work))
    pin = ["taskset", "-c", "1"] if a.pin else []
    node = ["ip", "netns", "exec", NODE] + pin
    procs = {}
    if tool == "sensor":
        procs["receiver"] = subprocess.Popen(
            node + [a.bin, "receiver", "--listen", "127.0.0.1:%d" % PORT, "--output", str(d / "out")],
            stdout=subprocess.DEVNULL, stderr=open(d / "receiver.log", "w"))
        wait_file(d / "receiver.log", "listening on", procs["receiver"])
        procs["sensor"] = subprocess.Popen(
            node + [a.bin, "sensor", "--receiver", "127.0.0.1:%d" % PORT, "--interface", NODE_IF,
                    "--id", "bench", "--codec", a.codec], stdout=subprocess.DEVNULL, stderr=open(d / "sensor.log", "w"))
        wait_file(d / "sensor.log", "connected to receiver", procs["sensor"])
        wait_file(d / "sensor.log", "capturing on %s" % NODE_IF, procs["sensor"])
        stop = [("sensor", signal.SIGTERM), ("receiver", signal.SIGTERM)]
    else:
        out = open(d / "out.pcap", "wb")
        procs["nc-server"] = subprocess.Popen(node + ["nc", "-l", "127.0.0.1", str(PORT)],
                                              stdout=out, stderr=open(d / "ncs.log", "w"))
        time.sleep(0.3)
        r, w = os.pipe()
        procs["tcpdump"] = subprocess.Popen(node + ["tcpdump", "-i", NODE_IF, "-n", "-w", "-"],
                                            stdout=w, stderr=open(d / "tcpdump.log", "w"))
        procs["nc-client"] = subprocess.Popen(node + ["nc", "-N", "127.0.0.1", str(PORT)], stdin=r,
                                              stdout=subprocess.DEVNULL,
                                              stderr=open(d / "ncc.log", "w"))
        os.close(r)
        os.close(w)
        out.close()
        wait_file(d / "tcpdump.log", "listening on", procs["tcpdump"])
        stop = [("tcpdump", signal.SIGTERM), ("nc-client", None), ("nc-server", None)]
    time.sleep(0.5)
    rx0 = rx_packets()
    gen = ["ip", "netns", "exec", GEN] + (["taskset", "-c", "0"] if a.pin else []) + [
        "tcpreplay", "-i", GEN_IF, "-K", "--limit=%d" % count, "--loop=0"] + (
        ["--topspeed"] if rate == "top" else ["--pps=%s" % rate]) + [str(pcap)]
    g = run(*gen)
    time.sleep(1.5)
    rx1 = rx_packets()
    hwm = {n: vmhwm_kb(p.pid) for n, p in procs.items()}
    cpu = {}
    for n, sig in stop:
        cpu[n] = reap(procs[n], sig)
    m = re.search(r"Actual: (\d+) packets .* in ([\d.]+) seconds", g.stdout)
    offered, secs = (int(m.group(1)), float(m.group(2))) if m else (count, 0.0)
    res = {"tool": tool, "size": size, "rate": rate, "offered": offered,
           "offered_pps": round(offered / secs) if secs else None, "on_wire": rx1 - rx0,
           "cpu_s": {k: round(v, 3) for k, v in cpu.items()}, "peak_rss_kb": hwm,
           "exit": {n: p.returncode for n, p in procs.items()}}
    if tool == "sensor":
        log = (d / "sensor.log").read_text()
        m = re.search(r"capture: .*captured=(\d+) .*kernel_drops=(\d+) if_drops=(\d+) "
                      r"sensor_drops=(\d+)", log)
        res["captured"], res["kernel_drops"] = int(m.group(1)), int(m.group(2))
        res["if_drops"], res["sensor_drops"] = int(m.group(3)), int(m.group(4))
        res["delivered"] = int(re.search(r" acked=(\d+)", log).group(1))
        files = sorted((d / "out").glob("*.pcapng"))
        res["written"] = sum(pcaplib.count_packets(str(f)) for f in files)
        res["capture_cpu_s"] = cpu["sensor"]
        res["total_cpu_s"] = cpu["sensor"] + cpu["receiver"]
        res["capture_rss_kb"] = hwm["sensor"]
    else:
        log = (d / "tcpdump.log").read_text()
        m1 = re.search(r"(\d+) packets captured", log)
        m2 = re.search(r"(\d+) packets dropped by kernel", log)
        res["captured"] = int(m1.group(1)) if m1 else None
        res["kernel_drops"] = int(m2.group(1)) if m2 else None
        res["sensor_drops"] = 0
        try:
            res["written"] = pcaplib.count_packets(str(d / "out.pcap"))
        except ValueError:  # a pcap cut mid-record by the stop
            res["written"] = len(pcaplib.read(str(d / "out.pcap"))[1])
        res["delivered"] = res["written"]
        res["capture_cpu_s"] = cpu["tcpdump"]
        res["total_cpu_s"] = sum(cpu.values())
        res["capture_rss_kb"] = hwm["tcpdump"]
    w = res["written"] or 0
    res["loss_pct"] = round(100.0 * (res["on_wire"] - w) / res["on_wire"], 3) if res["on_wire"] else None
    res["capture_cpu_s_per_M"] = round(res["capture_cpu_s"] / (w / 1e6), 3) if w else None
    res["total_cpu_s_per_M"] = round(res["total_cpu_s"] / (w / 1e6), 3) if w else None
    shutil.rmtree(d, ignore_errors=True)
    return res


COLUMNS = [
    ("frame", "size", "%d"),
    ("rate pps", lambda r: r["rate"] if r["rate"] != "top" else "top (%s)" % r["offered_pps"], None),
    ("tool", "tool", None),
    ("offered", "offered", "%d"),
    ("on wire", "on_wire", "%d"),
    ("captured", "captured", None),
    ("kernel drops", "kernel_drops", None),
    ("sensor drops", "sensor_drops", None),
    ("delivered", "delivered", None),
    ("written", "written", None),
    ("loss %", "loss_pct", None),
    ("capture CPU s/M", "capture_cpu_s_per_M", None),
    ("total CPU s/M", "total_cpu_s_per_M", None),
    ("capture RSS MiB", lambda r: (r["capture_rss_kb"] or 0) / 1024, "%.1f"),
]


def main(argv=None):
    ap = benchlib.driver_args(__doc__)
    ap.add_argument("--cases", default="64:100000,64:200000,64:top,1500:50000,1500:100000,1500:top")
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of fixed-rate cases")
    ap.add_argument("--top-packets", type=int, default=1000000)
    ap.add_argument("--codec", default="lz4", help="the sensor's codec (lz4 is its default)")
    ap.add_argument("--no-pin", dest="pin", action="store_false")
    a = ap.parse_args(argv)
    benchlib.need_root("live.py")
    benchlib.need_tools(("tcpreplay", "nc", "tcpdump"),
                        "apt-get install tcpreplay netcat-openbsd tcpdump")
    benchlib.prepare_bin(a)
    cases = benchlib.rate_cases(a.cases, a.seconds,
                                lambda size: a.top_packets if size <= 256 else a.top_packets // 3)
    with benchlib.Workdir("pslb-", a.dir, a.keep) as work:
        try:
            setup()
            pcaps = {}
            for size, _, _ in cases:
                if size not in pcaps:
                    pcaps[size] = work / ("udp%d.pcap" % size)
                    make_pcap(pcaps[size], size)

            def one(case, tool, rep):
                size, rate, count = case
                r = one_run(a, tool.split("|")[0], size, rate, count, pcaps[size], work)
                r["tool"] = tool
                return r

            results = benchlib.run_cases(cases, ("sensor", "tcpdump|nc"), a.repeat, one,
                                         lambda r: print(json.dumps(r), file=sys.stderr))
        finally:
            teardown()
    out = benchlib.write_results("live", {"machine": platform.uname()._asdict(),
                                          "cpus": os.cpu_count(), "pinned": a.pin,
                                          "codec": a.codec, "runs": results})
    print(benchlib.table(COLUMNS, results))
    print("results: %s" % out.relative_to(REPO))


if __name__ == "__main__":
    benchlib.main(main, "live.py")
