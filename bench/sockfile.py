#!/usr/bin/python3
"""What moving a TCP stream into a tmpfs file costs, by method.

Standard library and a C compiler. Builds bench/sockfile.c (see its top
comment for the methods), then for each repeat runs every method once, the
order rotated, on --bytes of incompressible data: a sender on CPU 0 streams
them over loopback TCP, a receiver on CPU 1 writes them into a file in --dir,
and the receiver's user and system CPU are recorded. The file is deleted
after each run. Then the same with the sender on CPU 1 too ("together"), as
sensor and receiver are in bench/peers.py: the receiver then also pays its
share of loopback's TCP work, which "apart" leaves on CPU 0.

It measures the floor under the receiver's write path: `write` is what the
receiver's kernel work is today, `copy-write` adds its pcapng encode, the
others are what a different writer (or a wire format that already is the
file's) could do. CPU is given per million 1400-byte packets (1.4 GB), the
unit of bench/peers.py's tables.

Prints each run and a table of medians [range]; writes
bench/results/sockfile-<UTC>.json.
"""
import argparse
import statistics
import tempfile
from pathlib import Path

import benchlib

MODES = ("write", "copy-write", "splice", "copy-mmap", "recv-mmap", "copy-mmap-pop",
         "recv-mmap-pop")
PER_M = 1400 * 1000000  # bytes in a million 1400-byte packets


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="runs per method (default 3)")
    ap.add_argument("--dir", default="/dev/shm", help="tmpfs directory for the file")
    ap.add_argument("--bytes", type=int, default=PER_M, help="bytes per run (default 1.4 GB)")
    ap.add_argument("--layouts", default="apart,together",
                    help="apart: sender on CPU 0; together: on CPU 1 with the receiver")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated, run in this order")
    a = ap.parse_args()
    modes = [m for m in a.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            raise SystemExit("sockfile: unknown mode %r (one of %s)" % (m, ", ".join(MODES)))
    for lay in a.layouts.split(","):
        if lay not in ("apart", "together"):
            raise SystemExit("sockfile: unknown layout %r (apart or together)" % lay)
    benchlib.need_tools(["cc"], "apt-get install gcc")
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "sockfile"
        benchlib.run("cc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(exe),
                     str(benchlib.REPO / "bench" / "sockfile.c"))
        out = Path(a.dir) / "sockfile.out"

        def one(layout, mode, rep):
            try:
                p = benchlib.run(str(exe), mode, str(a.bytes), str(out),
                                 "1" if layout == "together" else "0", timeout=600)
            finally:
                out.unlink(missing_ok=True)
            _, _, user, sys_, wall = p.stdout.split()
            r = {"layout": layout, "mode": mode, "user_s": float(user), "sys_s": float(sys_), "wall_s": float(wall)}
            r["cpu_s_per_M"] = (r["user_s"] + r["sys_s"]) * PER_M / a.bytes
            return r

        runs = benchlib.run_cases(a.layouts.split(","), modes, a.repeat, one, rotate=True,
                                  report=lambda r: print("%-8s %-14s rep %d: user %.3f sys %.3f s, "
                                                         "%.3f s/M" % (r["layout"], r["mode"], r["rep"],
                                                                       r["user_s"], r["sys_s"],
                                                                       r["cpu_s_per_M"])))
    layouts = a.layouts.split(",")
    rows = []
    for m in modes:
        row = {"mode": m}
        for lay in layouts:
            rs = [r for r in runs if r["mode"] == m and r["layout"] == lay]
            v = sorted(r["cpu_s_per_M"] for r in rs)
            u = statistics.median(r["user_s"] for r in rs) * PER_M / a.bytes
            row[lay] = "%.2f [%.2f-%.2f] (user %.2f)" % (statistics.median(v), v[0], v[-1], u)
        rows.append(row)
    print()
    print("receiver CPU s per million 1400-byte packets, median [range] of %d" % a.repeat)
    print(benchlib.table([("method", "mode", None)] + [(lay, lay, None) for lay in layouts], rows))
    res = benchlib.write_results("sockfile", {"benchmark": "sockfile", "machine": benchlib.machine(),
                                              "bytes": a.bytes, "runs": runs})
    print("results: %s" % res)
    return 0


if __name__ == "__main__":
    benchlib.main(main, "sockfile")
