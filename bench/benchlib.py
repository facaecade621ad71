"""Helpers shared by the benchmark drivers in bench/ (standard library only).

Processes: free_port, listening, child_env, wait_log, wait4 (rusage + peak
RSS while waiting), reap (signal, wait with a deadline, kill), vm_hwm_kib,
parse_kv (the sensor's summary line), cpu, cpu_split.
Network namespaces: Netns (a generator namespace and a node namespace joined
by a veth pair, IPv6 off, offloads off, always deleted), with rx_packets.
Captures: make_udp_pcap (Ethernet/IPv4/UDP frames of one size, tagged with a
magic and a sequence number), count_records (pcap or pcapng; tolerates a
record cut by a stop; can count only frames carrying the tag).
Machine: machine, busy_pct, wait_quiet, load, page_cache_probe (tmpfs
write speed on fresh and on just-freed memory: the first-touch cost).
Drivers: driver_args (the common options), prepare_bin, need_root,
need_tools, Workdir, rate_cases, run_cases (the case loop), medians, table
(markdown), write_results, main (RuntimeError -> exit 1). Each bench/*.py
holds only its own cases: what one run starts, measures and checks.
"""

import json
import os
import platform
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "lib"))

import pcaplib  # noqa: E402

MB = 1_000_000
MAGIC = b"PSBL"  # at UDP payload start (frame offset 42), then a 32-bit sequence number


# ---------------------------------------------------------------------------
# processes


def run(*args, check=True, timeout=60):
    r = subprocess.run([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout)
    if check and r.returncode:
        raise RuntimeError("%s: %s" % (" ".join(map(str, args)), r.stderr.strip()))
    return r


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    """True if something in this network namespace listens on TCP port."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            pass
    return False


def child_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACKETSTREAMER_")}
    env["LC_ALL"] = "C"
    return env


def parse_kv(text, key="packets="):
    """key=value pairs of the last line containing `key` (the sensor's summary)."""
    for line in reversed(text.splitlines()):
        if key in line:
            return dict(re.findall(r"([A-Za-z_][\w.]*)=(\S+)", line))
    return {}


def vm_hwm_kib(pid):
    """Peak RSS (VmHWM, KiB) of pid's current program, or None.

    ru_maxrss of a child on Linux starts at the parent's high-water mark at
    fork (kept across exec), tens of MiB for a Python parent, so VmHWM is read
    from /proc while the process runs instead."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def cpu(ru):
    return ru.ru_utime + ru.ru_stime


def cpu_split(ru):
    """(user, system) CPU seconds of a wait4 rusage."""
    return ru.ru_utime, ru.ru_stime


def wait4(proc, poll_s=0.002, timeout=None, watch=()):
    """Waits for a Popen with os.wait4, sampling VmHWM of it (and of the pids
    in `watch`, a dict name -> Popen, whose peaks go into the returned dict
    under their names). Returns (exit code, rusage, peak RSS KiB, peaks) and
    marks proc reaped. Raises TimeoutError after `timeout` s (proc left running)."""
    hwm, peaks = None, {}
    end = None if timeout is None else time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        h = vm_hwm_kib(proc.pid)
        if h is not None:
            hwm = h
        for name, p in dict(watch).items():
            h = vm_hwm_kib(p.pid)
            if h is not None:
                peaks[name] = max(peaks.get(name, 0), h)
        if end is not None and time.monotonic() > end:
            raise TimeoutError("pid %d still running" % proc.pid)
        time.sleep(poll_s)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, ru, hwm, peaks


def reap(proc, sig, timeout=30):
    """Sends sig (None: none) to proc, waits up to timeout s, then SIGKILLs.
    Returns (rusage, killed, peak RSS KiB sampled while waiting or None) and
    marks proc reaped."""
    if sig is not None and proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
    end = time.time() + timeout
    hwm = None
    while time.time() < end:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return ru, False, hwm
        h = vm_hwm_kib(proc.pid)
        if h is not None:
            hwm = h
        time.sleep(0.01)
    proc.kill()
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ru, True, hwm


def kill_all(procs):
    """SIGKILL and reap every Popen in procs that is still running (cleanup)."""
    for p in procs:
        if p.returncode is None and p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass


def wait_log(path, pattern, proc, timeout=10):
    """Waits until the text of file `path` matches regex `pattern`."""
    rx = re.compile(pattern)
    end = time.time() + timeout
    while time.time() < end:
        try:
            if rx.search(Path(path).read_text(errors="replace")):
                return
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    try:
        tail = Path(path).read_text(errors="replace")[-2000:]
    except FileNotFoundError:
        tail = ""
    raise RuntimeError("no /%s/ in %s:\n%s" % (pattern, path, tail))


# ---------------------------------------------------------------------------
# machine


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model, "cpus": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version()}


def load():
    return os.getloadavg()


def _cpu_ticks():
    with open("/proc/stat") as f:
        v = list(map(int, f.readline().split()[1:]))
    return sum(v) - v[3] - v[4], sum(v)


def busy_pct(interval=1.0):
    """Whole-machine busy % (all CPUs) over `interval` seconds."""
    b0, t0 = _cpu_ticks()
    time.sleep(interval)
    b1, t1 = _cpu_ticks()
    return 100.0 * (b1 - b0) / max(1, t1 - t0)


def _dd_write(path, mib, cpus):
    """Writes mib MiB of zeros to path with dd (1 MiB writes); returns the
    seconds dd reports for the copy (or the wall time of the command)."""
    cmd = (["taskset", "-c", cpus] if cpus else []) + [
        "dd", "if=/dev/zero", "of=%s" % path, "bs=1M", "count=%d" % mib]
    t0 = time.monotonic()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       env=dict(os.environ, LC_ALL="C"), timeout=300)
    wall = time.monotonic() - t0
    if r.returncode:
        raise RuntimeError("%s: %s" % (" ".join(cmd), r.stderr.strip()[-500:]))
    m = re.search(r"(\d+) bytes .* copied, ([\d.e+-]+) s", r.stderr)
    if not m or int(m.group(1)) != mib << 20:
        raise RuntimeError("%s wrote less than %d MiB: %s" % (" ".join(cmd), mib, r.stderr.strip()))
    return float(m.group(2)) or wall


def page_cache_probe(directory, mib=1024, settle=3.0, cpus=None):
    """How much a first touch of guest memory costs on this machine.

    Waits `settle` s (so memory the caller freed just before counts as
    fresh again where the hypervisor takes freed pages back), writes mib MiB
    into a file in `directory` (tmpfs: the page cache) with dd, deletes it,
    writes it again at once (the kernel hands out the pages just freed)
    and deletes it. On a VM with free page reporting (virtio-balloon) the
    first write pays for the host to fault in every page and runs several
    times slower than the second; where freed memory stays in the machine
    both are alike.
    Returns {"mib", "settle_s", "fresh_s", "reused_s", "fresh_mb_s",
    "reused_mb_s", "ratio"} (MB = 10^6 bytes; ratio = reused / fresh)."""
    path = Path(directory) / "page-cache-probe"
    time.sleep(settle)
    secs = []
    try:
        for _ in range(2):
            secs.append(_dd_write(path, mib, cpus))
            path.unlink()
    finally:
        path.unlink(missing_ok=True)
    rate = [(mib << 20) / s / MB for s in secs]
    return {"mib": mib, "settle_s": settle, "fresh_s": round(secs[0], 3),
            "reused_s": round(secs[1], 3), "fresh_mb_s": round(rate[0]),
            "reused_mb_s": round(rate[1]), "ratio": round(rate[1] / rate[0], 2)}


def wait_quiet(pct, max_wait):
    """Waits (at most max_wait s) until the machine is under pct % busy.
    Returns (last busy %, seconds waited)."""
    start = time.time()
    while True:
        b = busy_pct()
        if b < pct or time.time() - start >= max_wait:
            return b, time.time() - start
        time.sleep(1)


# ---------------------------------------------------------------------------
# network namespaces


class Netns:
    """Two namespaces, PREFIX-gen and PREFIX-node, joined by a veth pair
    (gen_if in the first, node_if in the second), IPv6 off, loopback up,
    GRO/GSO/TSO off so one generated frame is one captured frame. Use as a
    context manager: the namespaces (and any process left in them) are
    removed on exit, whatever happened."""

    def __init__(self, prefix, gen_if="eth0", node_if="vethb0"):
        self.gen, self.node = prefix + "-gen", prefix + "-node"
        self.gen_if, self.node_if = gen_if, node_if

    def teardown(self):
        for ns in (self.gen, self.node):
            if ns not in run("ip", "netns", "list", check=False).stdout.split():
                continue
            for p in run("ip", "netns", "pids", ns, check=False).stdout.split():
                try:  # only processes this driver started live in its namespaces
                    os.kill(int(p), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            run("ip", "netns", "del", ns, check=False)

    def setup(self):
        self.teardown()
        for ns in (self.gen, self.node):
            run("ip", "netns", "add", ns)
            run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
            run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", self.gen, "link", "add", self.gen_if, "type", "veth", "peer", "name",
            self.node_if, "netns", self.node)
        for ns, dev in ((self.gen, self.gen_if), (self.node, self.node_if)):
            run("ip", "netns", "exec", ns, "ethtool", "-K", dev, "gro", "off", "gso", "off", "tso",
                "off", check=False)
            run("ip", "-n", ns, "link", "set", dev, "up")
        return self

    def __enter__(self):
        return self.setup()

    def __exit__(self, *exc):
        self.teardown()
        return False

    def exec_node(self, cpus=None):
        return ["ip", "netns", "exec", self.node] + (["taskset", "-c", cpus] if cpus else [])

    def exec_gen(self, cpus=None):
        return ["ip", "netns", "exec", self.gen] + (["taskset", "-c", cpus] if cpus else [])

    def stats(self, ns, dev):
        out = run("ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev).stdout
        return json.loads(out)[0]["stats64"]

    def rx_packets(self):
        return self.stats(self.node, self.node_if)["rx"]["packets"]


def tcpreplay(netns, pcap, count, rate, cpus=None, timeout=300):
    """Replays `count` frames of pcap (looped) from the generator namespace at
    `rate` pps or "top". Returns (sent, seconds, tcpreplay output)."""
    cmd = netns.exec_gen(cpus) + ["tcpreplay", "-i", netns.gen_if, "-K", "--limit=%d" % count,
                                  "--loop=0"] + (
        ["--topspeed"] if rate == "top" else ["--pps=%s" % rate]) + [str(pcap)]
    g = run(*cmd, timeout=timeout)
    m = re.search(r"Actual: (\d+) packets .* in ([\d.]+) seconds", g.stdout)
    sent, secs = (int(m.group(1)), float(m.group(2))) if m else (count, 0.0)
    return sent, secs, g.stdout


# ---------------------------------------------------------------------------
# captures


def make_udp_pcap(path, size, count=50000, payload="random", seed=1):
    """`count` Ethernet/IPv4/UDP frames of `size` bytes (Ethernet header
    included, no FCS) to a MAC nobody owns (02:00:00:00:00:99: the receiving
    kernel drops them after the packet taps, answers nothing). The UDP payload
    starts with MAGIC and a 32-bit sequence number; the rest is pseudo-random
    (incompressible, like TLS traffic; payload="counter" repeats one byte
    instead, which compresses very well)."""
    dst, src = bytes.fromhex("020000000099"), bytes.fromhex("020000000001")
    s_ip, d_ip = bytes([10, 78, 0, 1]), bytes([10, 78, 0, 2])
    pad = size - 14 - 20 - 8 - 8
    if pad < 0:
        raise ValueError("frame size must be at least 50")
    rnd = random.Random(seed)
    recs = []
    for i in range(count):
        body = rnd.randbytes(pad) if payload == "random" else b"\xa5" * pad
        data = MAGIC + struct.pack("!I", i) + body
        frame = pcaplib._eth(dst, src, 0x0800) + pcaplib._ipv4(
            s_ip, d_ip, 17, pcaplib._udp4(s_ip, d_ip, 10000 + i % 256, 9, data), i & 0xFFFF)
        recs.append(pcaplib.Record(0, i * 1000, len(frame), len(frame), frame))
    pcaplib.write_pcap(str(path), recs)


def count_records(path, tagged_only=False):
    """Records in a pcap or pcapng file; a final record cut short (a capture
    stopped mid-write) is not counted. tagged_only: count only frames that
    carry MAGIC at offset 42 (generated by make_udp_pcap or peers' mkpcap)."""
    with open(path, "rb") as f:
        buf = f.read()
    n = len(buf)
    if n < 24:
        return 0
    mv = memoryview(buf)
    count = 0

    def ours(start, incl):
        return incl >= 50 and buf[start + 42:start + 46] == MAGIC

    if struct.unpack_from("<I", buf, 0)[0] == pcaplib.BT_SHB:
        off, endian = 0, "<"
        while off + 12 <= n:
            if struct.unpack_from("<I", mv, off)[0] == pcaplib.BT_SHB:
                endian = "<" if bytes(mv[off + 8:off + 12]) == b"\x4d\x3c\x2b\x1a" else ">"
            btype, total = struct.unpack_from(endian + "II", mv, off)
            if total < 12 or off + total > n:
                break
            if btype == pcaplib.BT_EPB:
                if not tagged_only:
                    count += 1
                else:
                    incl = struct.unpack_from(endian + "I", mv, off + 20)[0]
                    count += ours(off + 28, incl)
            elif btype in (pcaplib.BT_SPB, pcaplib.BT_PB) and not tagged_only:
                count += 1
            off += total
        return count
    magic = struct.unpack_from("<I", buf, 0)[0]
    endian = "<" if magic in (pcaplib.PCAP_MAGIC_US, pcaplib.PCAP_MAGIC_NS,
                              pcaplib.PCAP_MAGIC_MODIFIED) else ">"
    magic = struct.unpack_from(endian + "I", buf, 0)[0]
    if magic not in (pcaplib.PCAP_MAGIC_US, pcaplib.PCAP_MAGIC_NS, pcaplib.PCAP_MAGIC_MODIFIED):
        raise ValueError("%s: not a pcap or pcapng file" % path)
    hdrlen = 24 if magic == pcaplib.PCAP_MAGIC_MODIFIED else 16
    capat = struct.Struct(endian + "I").unpack_from
    off = 24
    while off + hdrlen <= n:
        incl = capat(mv, off + 8)[0]
        start = off + hdrlen
        if start + incl > n:
            break
        count += 1 if not tagged_only else ours(start, incl)
        off = start + incl
    return count


def write_results(kind, payload, resdir=None):
    """Writes RESDIR/KIND-<UTC>.json (default bench/results/, ignored by
    git), with the time in payload["time"]; returns its path."""
    import datetime
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    payload = dict(payload, time=stamp)
    resdir = Path(resdir) if resdir else REPO / "bench" / "results"
    resdir.mkdir(parents=True, exist_ok=True)
    gi = resdir / ".gitignore"
    if not gi.exists():
        gi.write_text("*.json\n")
    out = resdir / ("%s-%s.json" % (kind, stamp))
    out.write_text(json.dumps(payload, indent=1) + "\n")
    return out


# ---------------------------------------------------------------------------
# the driver skeleton every benchmark shares: arguments, binary, work
# directory, the case loop, medians, the markdown table, the exit on error


def driver_args(doc, default_bin=None, repeat=True):
    """An ArgumentParser with the options every driver has: --bin (default
    $BIN or build/packetstreamer, the Release build), --repeat (unless
    repeat is False), --dir (tmpfs for inputs and outputs), --keep (keep the
    work directory)."""
    import argparse
    ap = argparse.ArgumentParser(description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=default_bin or os.environ.get(
        "BIN", str(REPO / "build" / "packetstreamer")),
        help="packetstreamer binary (default build/packetstreamer, the Release build)")
    if repeat:
        ap.add_argument("--repeat", type=int, default=1, help="runs per case")
    ap.add_argument("--dir", default="/dev/shm", help="tmpfs directory for inputs and outputs")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    return ap


def need_tools(tools, hint):
    """Exits with `hint` unless every program in tools is on PATH."""
    import shutil
    missing = [t for t in sorted(set(tools)) if not shutil.which(t)]
    if missing:
        raise SystemExit("missing %s: %s" % (" ".join(missing), hint))


def need_root(name):
    if os.geteuid() != 0:
        raise SystemExit("%s needs root (network namespaces)" % name)


def prepare_bin(a, hint="make build"):
    """Resolves a.bin, exits unless it is executable; returns its --version."""
    a.bin = str(Path(a.bin).resolve())
    if not os.access(a.bin, os.X_OK):
        raise SystemExit("no executable at %s (%s)" % (a.bin, hint))
    return run(a.bin, "--version", check=False).stdout.strip()


class Workdir:
    """A fresh directory under `parent` (tmpfs), removed on exit unless keep."""

    def __init__(self, prefix, parent, keep=False):
        import tempfile
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        self.keep = keep

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        import shutil
        if self.keep:
            print("kept %s" % self.path, file=sys.stderr)
        else:
            shutil.rmtree(self.path, ignore_errors=True)
        return False


def rate_cases(spec, seconds, top_packets):
    """Parses SIZE:RATE,... (RATE in packets/s or "top") into (size, rate,
    count) tuples: a fixed rate sends rate x seconds frames, top speed
    top_packets(size)."""
    out = []
    for case in [c for c in spec.split(",") if c]:
        size, rate = case.split(":")
        size = int(size)
        count = top_packets(size) if rate == "top" else int(float(rate) * seconds)
        out.append((size, rate, count))
    return out


def rotated(variants, rep):
    """The order of repeat `rep` when the order rotates: it starts at
    variant rep mod n and wraps, so over n repeats each variant takes each
    position once (repeat 0 keeps the given order)."""
    k = rep % len(variants) if variants else 0
    return list(variants[k:]) + list(variants[:k])


def run_cases(cases, variants, repeat, one, report=None, rotate=False, announce=None):
    """The case loop: for each case, `repeat` times, each variant in turn
    (tools interleaved, so a slow period of the machine hits them alike),
    r = one(case, variant, rep); r gets "rep" and "position" (its index in
    that repeat's order); report(r) prints progress. rotate: repeat k runs
    the variants in the order rotated(variants, k), so none always runs
    right after the same one (what a run leaves behind, freed memory for
    one, then weighs on every variant alike); announce(case, rep, order) is
    called before each repeat. Returns every r in order."""
    results = []
    for case in cases:
        for rep in range(repeat):
            order = rotated(variants, rep) if rotate else list(variants)
            if announce:
                announce(case, rep, order)
            for pos, v in enumerate(order):
                r = one(case, v, rep)
                r["rep"] = rep
                r["position"] = pos
                results.append(r)
                if report:
                    report(r)
    return results


def medians(runs, key):
    """One row per distinct r[key] (in first-seen order): the median of each
    numeric field over that group's runs, key's value kept."""
    import statistics
    groups = {}
    for r in runs:
        groups.setdefault(r[key], []).append(r)
    rows = []
    for k, rs in groups.items():
        med = {key: k}
        for field, val in rs[0].items():
            if isinstance(val, (int, float)) and not isinstance(val, bool) and \
                    field not in (key, "run", "rep", "position"):
                vals = [r[field] for r in rs if r.get(field) is not None]
                med[field] = statistics.median(vals) if vals else None
        rows.append(med)
    return rows


def table(columns, rows):
    """A markdown table: columns are (header, key or function of the row,
    printf format or None for str); the first column is left-aligned, the
    others right-aligned; None prints as "-", a "|" in a cell as "\\|"."""
    lines = ["| " + " | ".join(c[0] for c in columns) + " |",
             "|" + "|".join("---" if i == 0 else "--:" for i in range(len(columns))) + "|"]
    for r in rows:
        cells = []
        for _, key, f in columns:
            v = key(r) if callable(key) else r.get(key)
            cell = "-" if v is None else (f % v if f else str(v))
            cells.append(cell.replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(fn, name):
    """Runs a driver's main; a RuntimeError (a failed run) exits 1 with
    "name: message" instead of a traceback."""
    try:
        sys.exit(fn())
    except RuntimeError as e:
        raise SystemExit("%s: %s" % (name, e))
