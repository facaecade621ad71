#!/usr/bin/python3
"""Flight recorder benchmark: the sensor's peak RSS in `capture.mode:
ondemand` with the default recorder (capture.recorder.seconds 30, sizeMB 64)
while 1400-byte frames arrive at 200 k pps (280 MB/s: the recorder is full
after a quarter of a second and then evicts continuously).

    bench/recorder.py [--bin build/packetstreamer] [--seconds 10] [--rate 200000]
                      [--size 1400] [--bound-mib 96]

Needs root and tcpreplay, and a Release build (`make build`). Topology as in
bench/live.py (benchlib.Netns, prefix "pslr-"): tcpreplay in pslr-gen, the
sensor capturing vethb0 in pslr-node, a receiver on 127.0.0.1 there (the
ondemand sensor is connected but streams nothing). Measured: VmHWM of the
sensor just before SIGTERM, its capture counters from the exit summary, and
how many frames reached vethb0. Exits 1 when the peak RSS exceeds --bound-mib
(the bound docs/performance.md documents). Appends the run to
bench/results/recorder-<UTC>.json.
"""

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402

NS = benchlib.Netns("pslr", gen_if="eth0", node_if="vethb0")


def main(argv=None):
    ap = benchlib.driver_args(__doc__, repeat=False)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=200000)
    ap.add_argument("--size", type=int, default=1400)
    ap.add_argument("--bound-mib", type=float, default=96.0)
    a = ap.parse_args(argv)
    benchlib.need_root("bench/recorder.py")
    benchlib.need_tools(("tcpreplay",), "apt-get install tcpreplay")
    version = benchlib.prepare_bin(a)
    port = 18610
    with benchlib.Workdir("psrec", a.dir, a.keep) as d, NS:
        pcap = d / "frames.pcap"
        benchlib.make_udp_pcap(pcap, a.size, count=20000)
        (d / "out").mkdir()
        cfg = d / "sensor.yaml"
        cfg.write_text("capture:\n  mode: ondemand\n  interfaces: [vethb0]\n")
        rx = subprocess.Popen(NS.exec_node() + [a.bin, "receiver", "--listen",
                                                "127.0.0.1:%d" % port, "--output",
                                                str(d / "out")],
                              stdout=subprocess.DEVNULL, stderr=open(d / "receiver.log", "w"),
                              env=benchlib.child_env())
        benchlib.wait_log(d / "receiver.log", "listening on", rx)
        sensor = subprocess.Popen(NS.exec_node("1") + [a.bin, "sensor", "--config", str(cfg),
                                                       "--receiver", "127.0.0.1:%d" % port,
                                                       "--id", "bench"],
                                  stdout=subprocess.DEVNULL,
                                  stderr=open(d / "sensor.log", "w"), env=benchlib.child_env())
        benchlib.wait_log(d / "sensor.log", "connected to receiver", sensor)
        benchlib.wait_log(d / "sensor.log", "capturing on vethb0", sensor)
        idle_kib = benchlib.vm_hwm_kib(sensor.pid)
        rx0 = NS.rx_packets()
        count = int(a.rate * a.seconds)
        sent, secs, _out = benchlib.tcpreplay(NS, pcap, count, a.rate, cpus="0")
        time.sleep(1.0)
        on_wire = NS.rx_packets() - rx0
        hwm_kib = benchlib.vm_hwm_kib(sensor.pid)
        benchlib.reap(sensor, signal.SIGTERM)
        benchlib.reap(rx, signal.SIGTERM)
        log = (d / "sensor.log").read_text()
        m = re.search(r"captured=(\d+) .*kernel_drops=(\d+)", log)
        files = list((d / "out").glob("*.pcapng"))
        res = {"size": a.size, "rate": a.rate, "seconds": a.seconds, "offered": sent,
               "offered_pps": round(sent / secs) if secs else None, "on_wire": on_wire,
               "captured": int(m.group(1)) if m else None,
               "kernel_drops": int(m.group(2)) if m else None,
               "streamed_files": len(files),
               "idle_rss_mib": round((idle_kib or 0) / 1024, 1),
               "peak_rss_mib": round((hwm_kib or 0) / 1024, 1), "bound_mib": a.bound_mib,
               "version": version, "machine": benchlib.machine()}
    print("| frame | rate pps | offered pps | on wire | captured (recorder) | kernel drops | "
          "RSS idle MiB | peak RSS MiB | bound MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("| %d | %d | %s | %d | %s | %s | %.1f | %.1f | %.0f |" % (
        res["size"], res["rate"], res["offered_pps"], res["on_wire"], res["captured"],
        res["kernel_drops"], res["idle_rss_mib"], res["peak_rss_mib"], res["bound_mib"]))
    print("results:", benchlib.write_results("recorder", res))
    return 0 if res["peak_rss_mib"] <= a.bound_mib else 1


if __name__ == "__main__":
    sys.exit(main())
