#!/usr/bin/python3
"""Offline benchmark: stream a generated IMIX capture sensor -> receiver on
loopback for each codec and measure time, CPU and memory of both processes.

    bench/offline.py [--bin build/packetstreamer] [--packets 1000000]
                     [--codecs none,lz4,zlib] [--repeat 1] [--dir /dev/shm]

Everything lives in tmpfs (the input capture and the receiver's output), so
the disk is not measured. Per codec and repetition:

  1. start a receiver (pcapng output into tmpfs), wait until it listens;
  2. run `sensor --read-file` and wait for it with os.wait4 (wall time from
     just before the sensor starts until it has exited; its rusage; its peak
     RSS from /proc/PID/status VmHWM, see wait4() for why not ru_maxrss);
  3. SIGTERM the receiver, os.wait4 it (its rusage and peak RSS);
  4. count the packets written (must equal --packets) and read raw_bytes /
     wire_bytes from the sensor's last log line.

Prints a markdown table (medians over --repeat) and writes every run to
bench/results/offline-<UTC time>.json. Standard library only; see
bench/README.md for the meaning of each column.
"""

import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402
from benchlib import (MB, REPO, child_env, cpu, free_port, listening, machine,  # noqa: E402
                      parse_kv, pcaplib, vm_hwm_kib)


def wait4(proc):
    rc, ru, hwm, _ = benchlib.wait4(proc)
    return rc, ru, hwm


def one_run(args, workdir, input_path, codec, run_no):
    outdir = workdir / ("out-%s-%d" % (codec, run_no))
    outdir.mkdir()
    port = free_port()
    rx_err = workdir / ("receiver-%s-%d.log" % (codec, run_no))
    sx_err = workdir / ("sensor-%s-%d.log" % (codec, run_no))
    env = child_env()
    with open(rx_err, "wb") as rxf:
        rx = subprocess.Popen([args.bin, "receiver", "--listen", "127.0.0.1:%d" % port,
                               "--output", str(outdir), "--format", "pcapng"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=rxf,
                              env=env)
    try:
        deadline = time.monotonic() + 20
        while not listening(port):
            if rx.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("receiver did not start:\n" + rx_err.read_text()[-2000:])
            time.sleep(0.01)
        with open(sx_err, "wb") as sxf:
            t0 = time.perf_counter()
            sx = subprocess.Popen([args.bin, "sensor", "--read-file", str(input_path),
                                   "--receiver", "127.0.0.1:%d" % port, "--codec", codec,
                                   "--id", "bench"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sxf,
                                  env=env)
            sx_rc, sx_ru, sx_hwm = wait4(sx)
            wall = time.perf_counter() - t0
        sensor_log = sx_err.read_text(errors="replace")
        if sx_rc != 0:
            raise RuntimeError("sensor (%s) exited %d:\n%s" % (codec, sx_rc, sensor_log[-2000:]))
        rx_hwm_before = vm_hwm_kib(rx.pid)
        rx.send_signal(signal.SIGTERM)
        rx_rc, rx_ru, rx_hwm = wait4(rx)
        rx_hwm = max(h for h in (rx_hwm, rx_hwm_before, 0) if h is not None)
        if rx_rc != 0:
            raise RuntimeError("receiver exited %d:\n%s" % (rx_rc, rx_err.read_text()[-2000:]))
    finally:
        if rx.returncode is None and rx.poll() is None:
            rx.kill()
            rx.wait()
    files = [p for p in outdir.iterdir() if p.name.endswith((".pcapng", ".pcap"))]
    written = sum(pcaplib.count_packets(str(p)) for p in files)
    out_bytes = sum(p.stat().st_size for p in files)
    shutil.rmtree(outdir)
    if written != args.packets:
        raise RuntimeError("codec %s: %d packets written, expected %d" % (codec, written, args.packets))
    kv = parse_kv(sensor_log)
    raw, wire = int(kv.get("raw_bytes", 0)), int(kv.get("wire_bytes", 0))
    mpkt = args.packets / 1e6
    return {
        "codec": codec,
        "run": run_no,
        "wall_s": wall,
        "packets_per_s": args.packets / wall,
        "mb_per_s": args.packet_bytes / wall / MB,
        "sensor_cpu_s": cpu(sx_ru),
        "sensor_user_s": sx_ru.ru_utime,
        "sensor_sys_s": sx_ru.ru_stime,
        "sensor_cpu_s_per_mpkt": cpu(sx_ru) / mpkt,
        "sensor_peak_rss_mib": (sx_hwm or 0) / 1024,
        "sensor_ru_maxrss_mib": sx_ru.ru_maxrss / 1024,
        "receiver_cpu_s": cpu(rx_ru),
        "receiver_user_s": rx_ru.ru_utime,
        "receiver_sys_s": rx_ru.ru_stime,
        "receiver_cpu_s_per_mpkt": cpu(rx_ru) / mpkt,
        "receiver_peak_rss_mib": rx_hwm / 1024,
        "receiver_ru_maxrss_mib": rx_ru.ru_maxrss / 1024,
        "raw_bytes": raw,
        "wire_bytes": wire,
        "compression_ratio": (raw / wire) if wire else None,
        "packets_written": written,
        "output_bytes": out_bytes,
        "sensor_last_line": sensor_log.strip().splitlines()[-1] if sensor_log.strip() else "",
    }


COLUMNS = [
    ("codec", "codec", None),
    ("wall s", "wall_s", "%.3f"),
    ("packets/s", "packets_per_s", "%.0f"),
    ("MB/s", "mb_per_s", "%.1f"),
    ("sensor CPU s", "sensor_cpu_s", "%.3f"),
    ("sensor CPU s/Mpkt", "sensor_cpu_s_per_mpkt", "%.3f"),
    ("sensor RSS MiB", "sensor_peak_rss_mib", "%.1f"),
    ("receiver CPU s", "receiver_cpu_s", "%.3f"),
    ("receiver CPU s/Mpkt", "receiver_cpu_s_per_mpkt", "%.3f"),
    ("receiver RSS MiB", "receiver_peak_rss_mib", "%.1f"),
    ("ratio raw/wire", "compression_ratio", "%.2f"),
]


def main(argv=None):
    ap = benchlib.driver_args(__doc__)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--codecs", default="none,lz4,zlib", help="comma-separated")
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed runs (first codec) before measuring: page cache, tmpfs pages")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--results", default=str(REPO / "bench" / "results"),
                    help="directory for the JSON results")
    args = ap.parse_args(argv)
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    if args.packets <= 0 or args.repeat <= 0 or not codecs:
        ap.error("--packets and --repeat must be positive, --codecs non-empty")
    version = benchlib.prepare_bin(args)

    with benchlib.Workdir("packetstreamer-bench-", args.dir, args.keep) as workdir:
        input_path = workdir / "imix.pcap"
        t = time.perf_counter()
        pcaplib.write_imix(str(input_path), args.packets, seed=args.seed, fmt="pcap")
        # packet bytes: sum of caplen (IMIX cycle of 12 frames, 7x64 + 4x576 + 1500)
        full, rest = divmod(args.packets, 12)
        args.packet_bytes = full * sum(pcaplib.IMIX_SIZES) + sum(pcaplib.IMIX_SIZES[:rest])
        input_size = input_path.stat().st_size
        print("%s; input %d packets, %.1f MB of packets (%d bytes of pcap) in %s, generated in %.1fs"
              % (version, args.packets, args.packet_bytes / MB, input_size, workdir,
                 time.perf_counter() - t), file=sys.stderr)
        for i in range(args.warmup):
            r = one_run(args, workdir, input_path, codecs[0], -1 - i)
            print("  warm-up (%s): %.3fs" % (codecs[0], r["wall_s"]), file=sys.stderr)

        def report(r):
            print("  %s run %d: %.3fs, %.0f packets/s, sensor %.2fs CPU, receiver %.2fs CPU"
                  % (r["codec"], r["run"], r["wall_s"], r["packets_per_s"], r["sensor_cpu_s"],
                     r["receiver_cpu_s"]), file=sys.stderr)

        runs = benchlib.run_cases(codecs, [None], args.repeat,
                                  lambda codec, _, rep: one_run(args, workdir, input_path, codec,
                                                                rep), report)
    meds = benchlib.medians(runs, "codec")
    results = [{"codec": m["codec"], "median": m, "runs": [r for r in runs if r["codec"] == m["codec"]]}
               for m in meds]

    sys.stderr.flush()
    print()
    print("%s, %d IMIX packets (64/576/1500 B, 7:4:1), median of %d run(s), %s"
          % (version, args.packets, args.repeat, machine()["cpu"] or platform.machine()))
    print()
    print(benchlib.table(COLUMNS, meds))
    out = benchlib.write_results("offline", {
        "benchmark": "offline",
        "version": version,
        "binary": args.bin,
        "packets": args.packets,
        "packet_bytes": args.packet_bytes,
        "input_file_bytes": input_size,
        "repeat": args.repeat,
        "warmup": args.warmup,
        "machine": machine(),
        "results": results,
    }, args.results)
    print()
    print("results: %s" % out)
    return 0


if __name__ == "__main__":
    benchlib.main(main, "offline.py")
