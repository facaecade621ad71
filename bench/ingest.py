#!/usr/bin/python3
"""Receiver-ingest benchmark: one receiver, N concurrent sensors streaming a
capture file (`packetstreamer sensor --read-file`), for N = 1, 16, 64.

    bench/ingest.py [--bin build/packetstreamer] [--sensors 1,16,64]
                    [--packets 1000000] [--frame 1400|imix] [--codec none]
                    [--repeat 1] [--dir /dev/shm]

The sensors are real packetstreamer processes, each with its own capture
read from tmpfs (all N read the same file, the page cache holds it once), its
own connection, handshake, batches and acknowledgements: what the receiver
sees is exactly what N nodes would send, and no second implementation of the
protocol has to be trusted. The price is that on a 2-core machine the
sensors compete with the receiver for the CPUs, so the throughput is a lower
bound of what the receiver alone can ingest; the receiver's own cost is
measured separately (its CPU seconds per million packets).

Per N: generate (once) a capture of --packets / N frames (--frame 1400:
Ethernet/IPv4/UDP frames of 1400 bytes with incompressible payloads; imix:
bench/offline.py's IMIX, 354.3 bytes on average); start a receiver (pcapng
into tmpfs), start the N sensors together (`--codec none` by default: the
sensors' compression would be the bottleneck, not the receiver; --codec lz4
measures the receiver decompressing too), wait for each to exit (each exits 0
only once the receiver has acknowledged all its packets), SIGTERM the
receiver, count the records in the output (must be N x per-sensor packets:
the sensors wait, the receiver applies backpressure, nothing may be dropped)
and check every sensor's summary says unacked=0 dropped=0.

Wall = first sensor start -> last sensor exit. Throughput = packets (and
packet bytes, 10^6 per MB) / wall. Receiver CPU = user + system seconds over
its life (wait4), per million packets. Peak RSS = VmHWM of the receiver, and
the largest of the sensors'. Prints a markdown table and writes
bench/results/ingest-<UTC>.json.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402
from benchlib import MB, REPO, pcaplib  # noqa: E402


def make_input(path, frame, n, big=None):
    """A capture of n frames; for fixed-size frames cut from `big` (a larger
    capture made by make_udp_pcap) when given. Returns the packet bytes."""
    if frame == "imix":
        pcaplib.write_imix(str(path), n, seed=1, fmt="pcap")
        full, rest = divmod(n, 12)
        return full * sum(pcaplib.IMIX_SIZES) + sum(pcaplib.IMIX_SIZES[:rest])
    size = int(frame)
    if big is None:
        benchlib.make_udp_pcap(path, size, n)
    else:
        with open(big, "rb") as f:
            data = f.read(24 + n * (16 + size))
        if len(data) != 24 + n * (16 + size):
            raise RuntimeError("%s is too short" % big)
        Path(path).write_bytes(data)
    return size * n


def one_run(a, work, nsens, pcap, per_sensor, packet_bytes, run_no):
    out = work / ("out-%d-%d" % (nsens, run_no))
    out.mkdir()
    port = benchlib.free_port()
    env = benchlib.child_env()
    rxlog = work / ("receiver-%d-%d.log" % (nsens, run_no))
    procs = []
    try:
        rx = subprocess.Popen([a.bin, "receiver", "--listen", "127.0.0.1:%d" % port, "--output",
                               str(out), "--http", "127.0.0.1:0"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=open(rxlog, "w"), env=env)
        procs.append(rx)
        end = time.time() + 20
        while not benchlib.listening(port):
            if rx.poll() is not None or time.time() > end:
                raise RuntimeError("receiver did not start:\n" + rxlog.read_text()[-2000:])
            time.sleep(0.01)
        sensors = []
        t0 = time.perf_counter()
        for i in range(nsens):
            log = work / ("sensor-%d-%d-%d.log" % (nsens, run_no, i))
            s = subprocess.Popen([a.bin, "sensor", "--read-file", str(pcap), "--receiver",
                                  "127.0.0.1:%d" % port, "--codec", a.codec,
                                  "--id", "ingest-%03d" % i, "--http", "127.0.0.1:0"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=open(log, "w"), env=env)
            procs.append(s)
            sensors.append((s, log))
        # reap the sensors in any order, sampling every process's VmHWM meanwhile
        left = {s.pid: (s, log) for s, log in sensors}
        sensor_hwm, rx_hwm, sensor_cpu, failures = 0, 0, 0.0, []
        deadline = time.monotonic() + a.timeout
        while left:
            pid, status, ru = os.wait4(-1, os.WNOHANG)
            if pid in left:
                s, log = left.pop(pid)
                s.returncode = os.waitstatus_to_exitcode(status)
                sensor_cpu += benchlib.cpu(ru)
                kv = benchlib.parse_kv(log.read_text(errors="replace"))
                if s.returncode != 0 or kv.get("unacked") != "0" or kv.get("dropped", "0") != "0" \
                        or int(kv.get("acked", -1)) != per_sensor:
                    failures.append("%s: exit %d, %s" % (log.name, s.returncode,
                                                         log.read_text()[-500:]))
                continue
            if pid == rx.pid:
                rx.returncode = os.waitstatus_to_exitcode(status)
                raise RuntimeError("receiver exited %d during the run:\n%s"
                                   % (rx.returncode, rxlog.read_text()[-2000:]))
            if pid:
                continue
            for s, _ in left.values():
                h = benchlib.vm_hwm_kib(s.pid)
                sensor_hwm = max(sensor_hwm, h or 0)
            rx_hwm = max(rx_hwm, benchlib.vm_hwm_kib(rx.pid) or 0)
            if time.monotonic() > deadline:
                raise RuntimeError("N=%d: sensors still running after %ds" % (nsens, a.timeout))
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        rx_ru, _, h = benchlib.reap(rx, signal.SIGTERM, timeout=60)
        rx_hwm = max(rx_hwm, h or 0)
        if rx.returncode != 0:
            raise RuntimeError("receiver exited %d:\n%s" % (rx.returncode, rxlog.read_text()[-2000:]))
    finally:
        benchlib.kill_all(procs)
    if failures:
        raise RuntimeError("N=%d: %d sensor(s) failed:\n%s" % (nsens, len(failures), failures[0]))
    files = sorted(out.glob("*.pcapng"))
    written = sum(benchlib.count_records(f) for f in files)
    out_bytes = sum(f.stat().st_size for f in files)
    shutil.rmtree(out)
    total = nsens * per_sensor
    if written != total:
        raise RuntimeError("N=%d: %d packets written, expected %d" % (nsens, written, total))
    mpkt = total / 1e6
    return {"sensors": nsens, "run": run_no, "packets": total, "packets_per_sensor": per_sensor,
            "packet_bytes": packet_bytes * nsens, "written": written, "lost": total - written,
            "wall_s": wall, "packets_per_s": total / wall,
            "mb_per_s": packet_bytes * nsens / wall / MB,
            "receiver_cpu_s": benchlib.cpu(rx_ru), "receiver_user_s": rx_ru.ru_utime,
            "receiver_sys_s": rx_ru.ru_stime,
            "receiver_cpu_s_per_mpkt": benchlib.cpu(rx_ru) / mpkt,
            "receiver_peak_rss_mib": rx_hwm / 1024,
            "sensors_cpu_s_per_mpkt": sensor_cpu / mpkt,
            "sensor_max_peak_rss_mib": sensor_hwm / 1024, "output_bytes": out_bytes,
            "output_files": len(files)}


COLUMNS = [
    ("sensors", "sensors", "%d"),
    ("packets", "packets", "%d"),
    ("wall s", "wall_s", "%.3f"),
    ("packets/s", "packets_per_s", "%.0f"),
    ("MB/s", "mb_per_s", "%.1f"),
    ("written", "written", "%d"),
    ("lost", "lost", "%d"),
    ("receiver CPU s/M pkt", "receiver_cpu_s_per_mpkt", "%.3f"),
    ("receiver RSS MiB", "receiver_peak_rss_mib", "%.1f"),
    ("sensors CPU s/M pkt", "sensors_cpu_s_per_mpkt", "%.3f"),
    ("sensor RSS MiB (max)", "sensor_max_peak_rss_mib", "%.1f"),
]


def main(argv=None):
    ap = benchlib.driver_args(__doc__)
    ap.add_argument("--sensors", default="1,16,64")
    ap.add_argument("--packets", type=int, default=1_000_000, help="total packets per run")
    ap.add_argument("--frame", default="1400", help="frame size in bytes, or imix")
    ap.add_argument("--codec", default="none")
    ap.add_argument("--timeout", type=float, default=300)
    a = ap.parse_args(argv)
    version = benchlib.prepare_bin(a)
    ns = [int(x) for x in a.sensors.split(",") if x]
    with benchlib.Workdir("pspf-ingest-", a.dir, a.keep) as work:
        # warm-up: page cache, tmpfs pages, the binary
        wpcap = work / "warm.pcap"
        wbytes = make_input(wpcap, a.frame, 20000)
        one_run(a, work, 1, wpcap, 20000, wbytes, -1)
        big = None
        if a.frame != "imix":
            big = work / "big.pcap"
            t = time.perf_counter()
            make_input(big, a.frame, a.packets // min(ns))
            print("input: %d frames generated in %.1fs" % (a.packets // min(ns),
                                                          time.perf_counter() - t),
                  file=sys.stderr)
        inputs = {}

        def one(n, _, rep):
            if n not in inputs:  # one input per N, made before its first run
                for old, _, _ in inputs.values():  # the last N's is done with: free the tmpfs
                    old.unlink(missing_ok=True)
                pcap = work / ("in-%d.pcap" % n)
                inputs[n] = (pcap, a.packets // n, make_input(pcap, a.frame, a.packets // n, big))
            return one_run(a, work, n, *inputs[n], rep)

        def report(r):
            print("N=%d run %d: %d packets in %.3fs, %.0f pkt/s, %.1f MB/s, receiver %.3f "
                  "CPU s/M, RSS %.1f MiB, lost %d" % (
                      r["sensors"], r["run"], r["packets"], r["wall_s"], r["packets_per_s"],
                      r["mb_per_s"], r["receiver_cpu_s_per_mpkt"], r["receiver_peak_rss_mib"],
                      r["lost"]), file=sys.stderr, flush=True)

        allruns = benchlib.run_cases(ns, [None], a.repeat, one, report)
    rows = benchlib.medians(allruns, "sensors")
    print("\n%s, frames %s, sensor codec %s, %s, %d CPUs, median of %d\n"
          % (version, a.frame, a.codec, benchlib.machine()["cpu"], os.cpu_count(), a.repeat))
    print(benchlib.table(COLUMNS, rows))
    out = benchlib.write_results("ingest", {
        "benchmark": "ingest", "version": version, "binary": a.bin, "machine": benchlib.machine(),
        "frame": a.frame, "codec": a.codec, "packets": a.packets, "repeat": a.repeat,
        "load_after": benchlib.load(), "medians": rows, "runs": allruns})
    print("\nresults: %s" % out.relative_to(REPO))


if __name__ == "__main__":
    benchlib.main(main, "ingest.py")
