#!/usr/bin/python3
"""Peers benchmark: packetstreamer (sensor -> receiver over TCP) against
`tcpdump -w file`, `tcpdump -U -w - | nc` (into a file) and netsniff-ng,
under the same generator in the same run: loss %, CPU seconds per million
packets, peak RSS.

    bench/peers.py [--bin build/packetstreamer]
                   [--cases 64:100000,64:top,1400:100000,1400:200000,1400:top]
                   [--tools ps,tcpdump-file,tcpdump-nc,netsniff] [--tls] [--seconds 6]
                   [--repeat 1] [--codec CODEC] [--no-pin] [--quiet-pct 15]
                   [--no-memory-probe]

Needs root, a Release build (`make build`), tcpreplay, netcat-openbsd,
netsniff-ng and tcpdump (`make bench-peers` installs them and runs this).
Standard library only. It reproduces the method of the performance issue's
baseline table (shared/peers-bench):

  - topology (created here, prefix "pspf-", always deleted):
        pspf-gen eth0 --veth-- vethb0 pspf-node
    IPv6 off, GRO/GSO/TSO off; generated frames go to a MAC nobody owns, so
    the node answers nothing and every frame on vethb0 is a generated one;
  - generator: tcpreplay in pspf-gen pinned to CPU 0, replaying
    Ethernet/IPv4/UDP frames of the case's size with incompressible
    (pseudo-random) payloads tagged with a magic and a sequence number;
    fixed rates last --seconds (6), top speed sends 3,000,000 frames of
    64 B or 2,400,000 of 1400 B (--top-packets-64, --top-packets-1400);
  - capturers run in pspf-node pinned to CPU 1, outputs in tmpfs:
      ps            packetstreamer receiver (127.0.0.1, pcapng) and sensor
                    --interface vethb0, default settings (codec lz4);
      ps-tls        the same over mutual TLS as the chart deploys it (one CA,
                    a server and a client certificate made with openssl);
                    --tls adds this column beside the plain one;
      tcpdump-file  tcpdump -i vethb0 -n -w FILE;
      tcpdump-nc    tcpdump -i vethb0 -n -U -w - | nc -N 127.0.0.1 PORT,
                    nc -l 127.0.0.1 PORT > FILE;
      netsniff      netsniff-ng --in vethb0 --out FILE -s -A -Q
                    -T 0xa1b2c3d4 -S 32MiB (the issue's settings);
  - order: each case runs --repeat times, the tools interleaved; repeat k
    starts at tool k mod n of --tools and wraps (repeat 0 in --tools order),
    so over n repeats each tool runs once in each position. A run leaves
    its output's tmpfs pages freed behind (~1.7 GB at 1400 B / 200 k pps);
    on a VM that hands memory freed for ~2 s back to its host (free page
    reporting), the next run's first touch of memory costs much more kernel
    time when that memory went back first, so a fixed order would favour
    whichever tool follows a short gap;
  - per run: start the capturers, wait until they are ready, wait until the
    machine is quiet (--quiet-pct, at most --max-wait s), read vethb0's rx
    counter, replay, wait --drain s, read the counter again (on wire =
    the difference), stop the capturers (SIGINT for tcpdump and netsniff-ng
    as the issue's scripts do, SIGTERM for packetstreamer; nc exits at EOF)
    and reap each with wait4;
  - written = tagged frames in the output file(s); loss % = (on wire -
    written) / on wire; CPU = user + system seconds of each capturing
    process over its whole life (wait4 rusage, threads included) per million
    packets written: packetstreamer sensor, receiver, and both; baselines:
    all their processes (tcpdump + both nc); sys % = the system share of
    that CPU (user and system seconds of each process are in the JSON);
    peak RSS = VmHWM of each process;
  - memory probe (on unless --no-memory-probe, ~5 s before the runs and
    ~5 s after): after 3 s idle, dd writes 1 GiB into the work directory's
    tmpfs, rm, the same again at once, rm: MB/s on fresh memory and on the
    memory just freed. Alike where memory is not handed back to a host; on
    the 2-core test VM ~0.6 against 3-5.7 GB/s, i.e. a capturer's kernel
    time there depends on what ran before it.

Prints per-run lines, the tool order of each repeat, the memory probe, a
detailed markdown table and the issue-style matrix (loss % . CPU s/M per
cell: the median over --repeat runs, with the range in brackets), and
writes bench/results/peers-<UTC>.json (the probe under "memory_probe", the
orders under "orders", each run's "position" in its repeat).
"""

import os
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
from benchlib import REPO  # noqa: E402

PREFIX = "pspf"
PORT = 18601
TOOLS = ("ps", "ps-tls", "tcpdump-file", "tcpdump-nc", "netsniff")
DEFAULT_TOOLS = ("ps", "tcpdump-file", "tcpdump-nc", "netsniff")
LABEL = {"ps": "packetstreamer", "ps-tls": "packetstreamer (mTLS)",
         "tcpdump-file": "tcpdump -w file",
         "tcpdump-nc": "tcpdump -U -w - | nc", "netsniff": "netsniff-ng"}


def start(a, ns, tool, d):
    """Starts the capture side of `tool`; returns (procs dict, stop order,
    output files). stop order: (name, signal or None = exits on its own)."""
    node = ns.exec_node("1" if a.pin else None)
    IF = ns.node_if
    procs = {}
    log = lambda n: log_file(d, n)  # noqa: E731
    try:
        if tool in ("ps", "ps-tls"):
            tls = tool == "ps-tls"
            procs["receiver"] = subprocess.Popen(
                node + [a.bin, "receiver", "--listen", "127.0.0.1:%d" % PORT, "--output",
                        str(d / "out"), "--http", "127.0.0.1:0"] + tls_args(a, "receiver", tls),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log("receiver"),
                env=benchlib.child_env())
            benchlib.wait_log(d / "receiver.log", "listening on", procs["receiver"])
            procs["sensor"] = subprocess.Popen(
                node + [a.bin, "sensor", "--receiver", "127.0.0.1:%d" % PORT, "--interface", IF,
                        "--id", "bench", "--http", "127.0.0.1:0"]
                + (["--codec", a.codec] if a.codec else []) + tls_args(a, "sensor", tls),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log("sensor"),
                env=dict(benchlib.child_env(), **a.sensor_env))
            benchlib.wait_log(d / "sensor.log", "connected to receiver", procs["sensor"])
            benchlib.wait_log(d / "sensor.log", "capturing on %s" % IF, procs["sensor"])
            return procs, [("sensor", signal.SIGTERM), ("receiver", signal.SIGTERM)], \
                lambda: sorted((d / "out").glob("*.pcapng"))
        out = d / "out.pcap"
        if tool == "tcpdump-file":
            procs["tcpdump"] = subprocess.Popen(node + ["tcpdump", "-i", IF, "-n", "-w", str(out)],
                                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                stderr=log("tcpdump"))
            benchlib.wait_log(d / "tcpdump.log", "listening on", procs["tcpdump"])
            return procs, [("tcpdump", signal.SIGINT)], lambda: [out]
        if tool == "tcpdump-nc":
            with open(out, "wb") as f:
                procs["nc-server"] = subprocess.Popen(node + ["nc", "-l", "127.0.0.1", str(PORT)],
                                                      stdin=subprocess.DEVNULL, stdout=f,
                                                      stderr=log("nc-server"))
            end = time.time() + 10
            while not listening_in(ns, PORT):
                if time.time() > end or procs["nc-server"].poll() is not None:
                    raise RuntimeError("nc -l did not start")
                time.sleep(0.05)
            r, w = os.pipe()
            try:
                procs["nc-client"] = subprocess.Popen(node + ["nc", "-N", "127.0.0.1", str(PORT)],
                                                      stdin=r, stdout=subprocess.DEVNULL,
                                                      stderr=log("nc-client"))
                procs["tcpdump"] = subprocess.Popen(
                    node + ["tcpdump", "-i", IF, "-n", "-U", "-w", "-"], stdin=subprocess.DEVNULL,
                    stdout=w, stderr=log("tcpdump"))
            finally:
                os.close(r)
                os.close(w)
            benchlib.wait_log(d / "tcpdump.log", "listening on", procs["tcpdump"])
            return procs, [("tcpdump", signal.SIGINT), ("nc-client", None), ("nc-server", None)], \
                lambda: [out]
        if tool == "netsniff":
            procs["netsniff-ng"] = subprocess.Popen(
                node + ["netsniff-ng", "--in", IF, "--out", str(out), "-s", "-A", "-Q",
                        "-T", "0xa1b2c3d4", "-S", a.netsniff_ring],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log("netsniff-ng"))
            # netsniff-ng -s prints nothing when ready: give it the 2 s and check the
            # output file's header is there
            end = time.time() + 10
            time.sleep(2)
            while not (out.exists() and out.stat().st_size >= 24):
                if time.time() > end or procs["netsniff-ng"].poll() is not None:
                    raise RuntimeError("netsniff-ng did not start: %s"
                                       % (d / "netsniff-ng.log").read_text()[-1000:])
                time.sleep(0.05)
            return procs, [("netsniff-ng", signal.SIGINT)], lambda: [out]
    except BaseException:
        benchlib.kill_all(procs.values())
        raise
    raise ValueError("unknown tool %s" % tool)


def tls_args(a, who, tls):
    """Mutual TLS as the Helm chart deploys it (one CA, a server and a client
    certificate) for the ps-tls tool, or nothing."""
    if not tls:
        return []
    c = a.tls
    if who == "receiver":
        return ["--tls-cert", str(c.p("receiver.crt")), "--tls-key", str(c.p("receiver.key")),
                "--tls-ca", str(c.p("ca.crt"))]
    return ["--tls-cert", str(c.p("bench.crt")), "--tls-key", str(c.p("bench.key")),
            "--tls-ca", str(c.p("ca.crt"))]


def make_certs(work):
    sys.path.insert(0, str(REPO / "tests" / "lib"))
    import certs  # noqa: E402 (the test suite's openssl helper)
    c = certs.Certs(work / "pki")
    c.leaf("ca", "receiver", ips=["127.0.0.1"])
    c.leaf("ca", "bench", dns=["bench"])
    return c


def listening_in(ns, port):
    r = benchlib.run("ip", "netns", "exec", ns.node, "cat", "/proc/net/tcp", check=False)
    for line in r.stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) > 3 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
            return True
    return False


def one_run(a, ns, tool, size, rate, count, pcap, work):
    d = Path(tempfile.mkdtemp(prefix="%s-%d-%s-" % (tool, size, rate), dir=work))
    procs, stop, outputs = start(a, ns, tool, d)
    try:
        time.sleep(0.5)
        busy, waited = benchlib.wait_quiet(a.quiet_pct, a.max_wait)
        load = benchlib.load()[0]
        rx0 = ns.rx_packets()
        prof = None
        if a.perf:
            # every sample on the capture CPU, kernel included: the capturers'
            # system calls and the loopback TCP path run there too
            prof = subprocess.Popen(["perf", "record", "-q", "-g", "-F", "999", "-C", "1" if a.pin else "0,1",
                                     "-o", str(d / "perf.data")],
                                    stdout=subprocess.DEVNULL, stderr=log_file(d, "perf"))
            time.sleep(0.5)
        sent, secs, _ = benchlib.tcpreplay(ns, pcap, count, rate, "0" if a.pin else None,
                                           timeout=max(120, 4 * count / 50000))
        if prof:
            prof.send_signal(signal.SIGINT)
            prof.wait(timeout=60)
        time.sleep(a.drain)
        rx1 = ns.rx_packets()
        hwm = {n: benchlib.vm_hwm_kib(p.pid) for n, p in procs.items()}
        cpu, user, system, rc, killed = {}, {}, {}, {}, []
        for n, sig in stop:
            ru, k, h = benchlib.reap(procs[n], sig, timeout=30)
            cpu[n] = benchlib.cpu(ru)
            user[n], system[n] = benchlib.cpu_split(ru)
            rc[n] = procs[n].returncode
            if h is not None:
                hwm[n] = max(hwm[n] or 0, h)
            if k:
                killed.append(n)
    finally:
        benchlib.kill_all(procs.values())
    on_wire = rx1 - rx0
    written = sum(benchlib.count_records(f, tagged_only=True) for f in outputs()
                  if f.exists())
    res = {"tool": tool, "size": size, "rate": rate, "offered": sent,
           "offered_pps": round(sent / secs) if secs else None,
           "on_wire": on_wire, "on_wire_pps": round(on_wire / secs) if secs else None,
           "written": written,
           "loss_pct": round(100.0 * (on_wire - written) / on_wire, 3) if on_wire else None,
           "cpu_s": {k: round(v, 3) for k, v in cpu.items()},
           "total_cpu_s": round(sum(cpu.values()), 3),
           "user_s": {k: round(v, 3) for k, v in user.items()},
           "sys_s": {k: round(v, 3) for k, v in system.items()},
           "total_user_s": round(sum(user.values()), 3),
           "total_sys_s": round(sum(system.values()), 3),
           "sys_pct": sys_pct(sum(system.values()), sum(cpu.values())),
           "peak_rss_kib": hwm, "exit": rc, "killed": killed,
           "pre_busy_pct": round(busy, 1), "waited_s": round(waited, 1), "load1": load}
    per_m = lambda s: round(s / (written / 1e6), 3) if written else None  # noqa: E731
    res["total_cpu_s_per_M"] = per_m(res["total_cpu_s"])
    res["cpu_s_per_M"] = {k: per_m(v) for k, v in cpu.items()}
    if tool in ("ps", "ps-tls"):
        text = (d / "sensor.log").read_text(errors="replace")
        m = re.search(r"capture: .*captured=(\d+) .*kernel_drops=(\d+) if_drops=(\d+) "
                      r"sensor_drops=(\d+)", text)
        if m:
            res.update(captured=int(m.group(1)), kernel_drops=int(m.group(2)),
                       if_drops=int(m.group(3)), sensor_drops=int(m.group(4)))
        m = re.search(r" acked=(\d+)", text)
        res["delivered"] = int(m.group(1)) if m else None
        res["sensor_tail"] = text.strip().splitlines()[-3:]
    elif tool.startswith("tcpdump"):
        text = (d / "tcpdump.log").read_text(errors="replace")
        m1 = re.search(r"(\d+) packets captured", text)
        m2 = re.search(r"(\d+) packets dropped by kernel", text)
        res["captured"] = int(m1.group(1)) if m1 else None
        res["kernel_drops"] = int(m2.group(1)) if m2 else None
    if a.perf:
        res["perf_report"] = perf_report(a, d, tool, size, rate,
                                         {n: p.pid for n, p in procs.items()})
    if not a.keep:
        shutil.rmtree(d, ignore_errors=True)
    return res


RESULTS = REPO / "bench" / "results"


def log_file(d, name):
    return open(d / (name + ".log"), "w")


def perf_report(a, d, tool, size, rate, pids):
    """Writes where the capture CPU's time went (by process, by process and
    symbol, self time) to bench/results/perf-<UTC>-<tool>-<case>.txt."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("perf-%s-%s-%s.txt" % (a.stamp, tool, case_name(size, rate).replace(" ", "")))
    with open(out, "w") as f:
        f.write("# %s, %s; processes: %s\n" % (tool, case_name(size, rate),
                                               ", ".join("%s=%d" % kv for kv in pids.items())))
        for sort in ("pid", "pid,dso,sym"):
            f.write("## perf report --no-children --sort %s\n" % sort)
            f.flush()
            subprocess.run(["perf", "report", "-i", str(d / "perf.data"), "--stdio",
                            "--no-children", "-g", "none", "--percent-limit", "0.5",
                            "--sort", sort], stdout=f, stderr=subprocess.DEVNULL, check=False)
        # inclusive time of the stages every tool shares or adds: the file
        # write, the loopback TCP send and receive, the copy into batches
        f.write("## perf report --children --sort pid,sym, entry points (children %, self %)\n")
        r = subprocess.run(["perf", "report", "-i", str(d / "perf.data"), "--stdio",
                            "--children", "-g", "none", "--sort", "pid,sym"],
                           capture_output=True, text=True, check=False)
        for line in r.stdout.splitlines():
            if line.split() and line.split()[-1] in INCLUSIVE:
                f.write(line + "\n")
    return str(out.relative_to(REPO))


INCLUSIVE = set(["shmem_file_write_iter", "tcp_sendmsg", "tcp_recvmsg", "ps_batcher_add",
                      "pcap_dispatch", "on_packet", "sess_on_frame", "LZ4_compress_fast_extState",
                      "LZ4_decompress_safe", "_IO_fwrite", "schedule", "do_writev", "ksys_read"])


def sys_pct(system, total):
    """Kernel time as a share of a tool's CPU time, %."""
    return round(100.0 * system / total, 1) if total else None


def fmt(v, f="%.2f"):
    return "-" if v is None else f % v


def rss(r):
    return ", ".join("%s %.1f" % (n, (r["peak_rss_kib"].get(n) or 0) / 1024)
                     for n in sorted(r["peak_rss_kib"], key=lambda n: n != "sensor"))


def case_name(size, rate):
    return "%d B, %s" % (size, "top" if rate == "top" else "%dk pps" % (int(rate) // 1000))


def spread(vals, f):
    """median, and [min-max] over more than one run"""
    import statistics
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f % vals[0]
    return "%s [%s-%s]" % (f % statistics.median(vals), f % min(vals), f % max(vals))


def cell(rs):
    """A summary cell: loss % · CPU s/M, medians with ranges over repeats."""
    if not rs:
        return "-"
    return "%s · %s" % (spread([r["loss_pct"] for r in rs], "%.1f"),
                        spread([r["total_cpu_s_per_M"] for r in rs], "%.2f"))


def memory_probe(a, work):
    """benchlib.page_cache_probe in the work directory (the capturers' tmpfs),
    on the capture CPU; prints and returns its figures."""
    try:
        p = benchlib.page_cache_probe(work, mib=PROBE_MIB, settle=PROBE_SETTLE_S,
                                      cpus="1" if a.pin else None)
    except RuntimeError as e:
        raise RuntimeError("memory probe: %s (--no-memory-probe skips it)" % e)
    print("memory probe: dd of %d MiB into tmpfs: fresh memory %d MB/s, just freed %d MB/s (%.1fx)"
          % (p["mib"], p["fresh_mb_s"], p["reused_mb_s"], p["ratio"]), file=sys.stderr, flush=True)
    return p


# 1 GiB: ~2 s on fresh memory on the 2-core VM, long enough to time; 3 s of
# settling: there memory freed for ~2 s is back with the host
PROBE_MIB = 1024
PROBE_SETTLE_S = 3.0


def print_probe(probe):
    print("Page-cache write speed (dd into tmpfs, MB/s): on fresh memory, then again on the "
          "memory just freed by rm:")
    for when in ("start", "end"):
        p = probe.get(when)
        if not p:
            continue
        if "error" in p:
            print("- %s: failed: %s" % (when, p["error"]))
            continue
        print("- %s of the runs: %d MiB, fresh %d, reused %d (reused/fresh %.1fx)"
              % (when, p["mib"], p["fresh_mb_s"], p["reused_mb_s"], p["ratio"]))
    print("A ratio well above 1 means memory freed a while ago is slow to touch again (a VM "
          "whose host takes freed pages back): each capturer's CPU then depends on how long "
          "ago the previous run's output was deleted, hence the rotated order.\n")


def print_orders(orders):
    print("Tool order per repeat (rotated): %s\n"
          % "; ".join("%d: %s" % (k, ", ".join(o)) for k, o in enumerate(orders)))


def print_tables(results):
    print("| frame | rate | tool | on wire (pps) | written | loss % | CPU s/M capture | sys % | "
          "CPU s/M sensor | CPU s/M receiver | peak RSS MiB |")
    print("|--:|---|---|--:|--:|--:|--:|--:|--:|--:|---|")
    for r in results:
        ps = r["tool"] in ("ps", "ps-tls")
        print("| %d | %s | %s | %d (%s) | %d | %s | %s | %s | %s | %s | %s |" % (
            r["size"], r["rate"], LABEL[r["tool"]].replace("|", "\\|"), r["on_wire"], fmt(r["on_wire_pps"], "%d"),
            r["written"], fmt(r["loss_pct"], "%.1f"), fmt(r["total_cpu_s_per_M"]),
            fmt(r.get("sys_pct"), "%.0f"),
            fmt(r["cpu_s_per_M"].get("sensor")) if ps else "",
            fmt(r["cpu_s_per_M"].get("receiver")) if ps else "",
            rss(r)))
    print()
    tools = []
    for r in results:
        if r["tool"] not in tools:
            tools.append(r["tool"])
    cases = []
    for r in results:
        if (r["size"], r["rate"]) not in cases:
            cases.append((r["size"], r["rate"]))
    print("| offered | " + " | ".join(LABEL[t].replace("|", "\\|") for t in tools) + " |")
    print("|---|" + "---|" * len(tools))
    for c in cases:
        cells = []
        pps = [r["on_wire_pps"] for r in results if (r["size"], r["rate"]) == c and r["on_wire_pps"]]
        for t in tools:
            rs = [r for r in results if (r["size"], r["rate"]) == c and r["tool"] == t]
            cells.append(cell(rs))
        name = case_name(*c)
        if c[1] == "top" and pps:
            name += " (~%dk pps)" % (sum(pps) / len(pps) // 1000)
        print("| %s | %s |" % (name, " | ".join(cells)))


def main(argv=None):
    ap = benchlib.driver_args(__doc__)
    ap.add_argument("--cases", default="64:100000,64:top,1400:100000,1400:200000,1400:top")
    ap.add_argument("--tools", default=None,
                    help="comma-separated, of %s (default: all but ps-tls; --tls adds it)"
                    % ", ".join(TOOLS))
    ap.add_argument("--seconds", type=float, default=6.0, help="length of fixed-rate cases")
    ap.add_argument("--top-packets-64", type=int, default=3000000)
    ap.add_argument("--top-packets-1400", type=int, default=2400000)
    ap.add_argument("--codec", default=None, help="sensor --codec (default: the sensor's, lz4)")
    ap.add_argument("--tls", action="store_true",
                    help="add packetstreamer over mutual TLS (tool ps-tls) beside the plain one")
    ap.add_argument("--sensor-env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment for the sensor, e.g. PACKETSTREAMER_CAPTURE_BUFFER_SIZE_MB=16 "
                         "(repeatable; default: none, every setting at its default)")
    ap.add_argument("--drain", type=float, default=3.0, help="s to wait after the generator")
    ap.add_argument("--netsniff-ring", default="32MiB")
    ap.add_argument("--quiet-pct", type=float, default=15.0,
                    help="before each replay wait until the machine is under this %% busy")
    ap.add_argument("--max-wait", type=float, default=30.0, help="for --quiet-pct, s")
    ap.add_argument("--no-pin", dest="pin", action="store_false")
    ap.add_argument("--perf", action="store_true",
                    help="record the capture CPU with perf during each replay and write where "
                         "its time went to bench/results/perf-*.txt")
    ap.add_argument("--memory-probe", dest="memory_probe", action="store_true", default=True,
                    help="before the runs and after them, time a 1 GiB dd into the tmpfs directory "
                         "on fresh memory and again at once on the memory just freed (the "
                         "first-touch cost of a VM; ~5 s each; default on)")
    ap.add_argument("--no-memory-probe", dest="memory_probe", action="store_false")
    ap.add_argument("--from-json", metavar="FILE",
                    help="print the tables of an earlier run's results file and exit")
    a = ap.parse_args(argv)
    if a.from_json:
        import json
        with open(a.from_json) as f:
            data = json.load(f)
        if data.get("memory_probe"):
            print_probe(data["memory_probe"])
        if data.get("orders"):
            print_orders(data["orders"])
        print_tables(data["runs"])
        return
    benchlib.need_root("peers.py")
    a.sensor_env = dict(kv.split("=", 1) for kv in a.sensor_env)
    a.stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    if a.perf:
        benchlib.need_tools(("perf",), "--perf needs perf: apt-get install linux-perf")
    if a.sensor_env:
        for t in ("ps", "ps-tls"):
            LABEL[t] += " (%s)" % ", ".join("%s=%s" % kv for kv in a.sensor_env.items())
    tools = [t for t in (a.tools or ",".join(DEFAULT_TOOLS)).split(",") if t]
    if a.tls and "ps-tls" not in tools:
        # the mTLS column beside the plain one
        tools.insert(tools.index("ps") + 1 if "ps" in tools else 0, "ps-tls")
    for t in tools:
        if t not in TOOLS:
            raise SystemExit("unknown tool %s (one of %s)" % (t, ", ".join(TOOLS)))
    need = {"tcpreplay", "ethtool"} | ({"tcpdump"} if any(t.startswith("tcpdump") for t in tools)
                                       else set()) | ({"nc"} if "tcpdump-nc" in tools else set()) \
        | ({"netsniff-ng"} if "netsniff" in tools else set())
    benchlib.need_tools(need, "apt-get install tcpreplay netcat-openbsd netsniff-ng tcpdump "
                        "ethtool (make bench-peers does)")
    version = benchlib.prepare_bin(a) if {"ps", "ps-tls"} & set(tools) else ""
    cases = benchlib.rate_cases(a.cases, a.seconds, lambda size: a.top_packets_64 if size <= 256
                                else a.top_packets_1400)
    t0 = time.time()
    with benchlib.Workdir("pspf-", a.dir, a.keep) as work:
        a.tls = make_certs(work) if "ps-tls" in tools else None
        with benchlib.Netns(PREFIX) as ns:
            pcaps = {}
            for size, _, _ in cases:
                if size not in pcaps:
                    pcaps[size] = work / ("udp%d.pcap" % size)
                    benchlib.make_udp_pcap(pcaps[size], size, 50000)

            def one(case, tool, rep):
                size, rate, count = case
                return one_run(a, ns, tool, size, rate, count, pcaps[size], work)

            def report(r):
                print("%-12s %5d B %-7s on wire %8d (%7s pps) written %8d loss %6s %% "
                      "CPU %s s/M (sys %s %%) %s RSS %s MiB (load %.2f)"
                      % (r["tool"], r["size"], r["rate"], r["on_wire"], r["on_wire_pps"],
                         r["written"], fmt(r["loss_pct"], "%.2f"), fmt(r["total_cpu_s_per_M"]),
                         fmt(r["sys_pct"], "%.0f"), r["cpu_s_per_M"], rss(r), r["load1"]),
                      file=sys.stderr, flush=True)

            orders = {}

            def announce(case, rep, order):
                orders[rep] = order
                print("%s, repeat %d: %s" % (case_name(case[0], case[1]), rep, ", ".join(order)),
                      file=sys.stderr, flush=True)

            probe = {}
            if a.memory_probe:
                probe["start"] = memory_probe(a, work)
            results = benchlib.run_cases(cases, tools, a.repeat, one, report, rotate=True,
                                         announce=announce)
            if a.memory_probe:
                # the last run's output was deleted just before: the probe's
                # settle time lets that memory go back to the host first
                try:
                    probe["end"] = memory_probe(a, work)
                except RuntimeError as e:  # the runs' results are kept all the same
                    print("memory probe after the runs failed: %s" % e, file=sys.stderr)
                    probe["end"] = {"error": str(e)}
    orders = [orders[k] for k in sorted(orders)]
    print("\n%s; %s; %d CPUs; generator on CPU 0, capturers on CPU 1%s; %.0f s\n"
          % (version or "baselines only", benchlib.machine()["cpu"], os.cpu_count(),
             "" if a.pin else " (NOT pinned)", time.time() - t0))
    if probe:
        print_probe(probe)
    print_orders(orders)
    print_tables(results)
    out = benchlib.write_results("peers", {
        "benchmark": "peers", "version": version, "binary": a.bin, "machine": benchlib.machine(),
        "pinned": a.pin, "codec": a.codec, "tls": bool(a.tls), "sensor_env": a.sensor_env,
        "seconds": a.seconds, "drain": a.drain, "netsniff_ring": a.netsniff_ring,
        "memory_probe": probe or None, "orders": orders, "runs": results})
    print("\nresults: %s" % out.relative_to(REPO))


if __name__ == "__main__":
    benchlib.main(main, "peers.py")
