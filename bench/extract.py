#!/usr/bin/python3
"""Extraction benchmark: GET /api/packets over a receiver's capture directory.

    bench/extract.py [--bin build/packetstreamer] [--gb 2] [--file-mb 256]
                     [--minutes 20] [--dir /var/tmp] [--repeat 3] [--keep]
                     [--data DIR] [--cases pod/index/warm,all/index/warm,...]

Writes a capture directory the way the receiver would have (pcapng files
named PREFIX-STAMP-COUNTER.pcapng, one shared file set: 3 sensors, each
with 10 pod interfaces SENSOR/shop/web-N and eth0, batches of 64 packets of
one sensor after the other, IMIX sizes 64/576/1500 in the ratio 7:4:1)
spanning --minutes of packet time, --gb in all, --file-mb per file. Then
starts a receiver on it (HTTP on loopback), measures how long the index
thread takes to index the files it finds without an index, and runs, each
--repeat times:

  pod/index/warm     one pod, a 1-minute window in the middle, indexes present,
                     files in the page cache
  pod/noindex/warm   the same with DIR/.index removed before each run (every
                     file is scanned at request time)
  pod/index/cold     indexes present, the capture files dropped from the page
                     cache first (posix_fadvise DONTNEED on each file)
  pod/noindex/cold   neither
  all/index/warm     every interface (33), same window
  sensor5/index/warm the 11 interfaces of one sensor (sensor=node-1), a
                     5-minute window from the middle: a large answer (a third
                     of 5 minutes of traffic, >= 100 MB with the defaults of
                     docs/performance.md) whose MB/s is the streaming rate

--client curl fetches with curl into /dev/null instead (then without the
first-packet time and the packet count): on 2 cores shared with other work,
the Python client's own reading caps the wall-clock rate well below what the
receiver sends.

--data DIR keeps the generated files in DIR (reused by the next run with the
same --gb, --file-mb and --minutes); --cases runs only the named cases.
The client is a plain socket speaking HTTP/1.0 that parses blocks only
until the first packet and counts packets after the clock stops
(http.client's chunked decoding and a Python parse of every block would be
the bottleneck at these rates).

Columns: time to the first body byte (the Section Header Block, sent once
the files are selected) and to the first packet, total s, packets, output
MB and MB/s, the receiver's CPU time over the request (user + system, from
/proc/PID/stat, 10 ms ticks) and output MB per CPU second, files
read/skipped/scanned (response headers). The receiver is the Release
build; the machine's other load is not controlled: the wall-clock MB/s
depends on it, the MB per CPU second much less.
"""

import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

SENSORS = 3
PODS = 10
BATCH = 64
SIZES = [64] * 7 + [576] * 4 + [1500]


def pad4(n):
    return (4 - n % 4) % 4


def opt(code, val):
    return struct.pack("<HH", code, len(val)) + val + b"\0" * pad4(len(val))


def block(btype, body):
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


def shb():
    return block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) +
                 opt(4, b"bench/extract.py") + opt(0, b""))


def idb(name, desc):
    opts = opt(2, name.encode()) + (opt(3, desc.encode()) if desc else b"") + opt(9, b"\x09") + opt(0, b"")
    return block(1, struct.pack("<HHI", 1, 0, 262144) + opts)


def interfaces():
    out = []
    for s in range(SENSORS):
        for p in range(PODS):
            out.append(("node-%d/shop/web-%d" % (s, p), "iface=cali%d%d uid=u labels=app=web" % (s, p)))
        out.append(("node-%d/eth0" % s, ""))
    return out


def frames(rng):
    """A few thousand distinct frames per size to draw from (payload varies)."""
    out = {}
    for size in set(SIZES):
        lst = []
        for i in range(256):
            eth = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
            body = bytes(rng.getrandbits(8) for _ in range(size - len(eth)))
            lst.append(eth + body)
        out[size] = lst
    return out


def generate(d, gb, file_mb, minutes, seed=1):
    """Writes the files; returns (start_ns, end_ns, files, packets, bytes)."""
    rng = random.Random(seed)
    ifs = interfaces()
    per_sensor = PODS + 1
    fr = frames(rng)
    avg = sum(SIZES) / len(SIZES) + 32
    total_pkts = int(gb * 1e9 / avg)
    span_ns = minutes * 60 * 10**9
    dt = span_ns / total_pkts
    start = 1_764_900_000_000_000_000
    header = shb() + b"".join(idb(n, ds) for n, ds in ifs)
    t = float(start)
    counter, written, pkts = 0, 0, 0
    files = []
    f = None
    fbytes = 0
    buf = bytearray()
    sizes = SIZES
    while pkts < total_pkts:
        if f is None:
            counter += 1
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(int(t) // 10**9))
            path = d / ("packetstreamer-%s-%06d.pcapng" % (stamp, counter))
            f = open(path, "wb")
            f.write(header)
            fbytes = len(header)
            files.append(path)
        s = (pkts // BATCH) % SENSORS
        for _ in range(BATCH):
            ifc = s * per_sensor + rng.randrange(per_sensor)
            size = sizes[rng.randrange(12)]
            data = fr[size][rng.randrange(256)]
            ts = int(t)
            p = pad4(size)
            tot = 32 + size + p
            buf += struct.pack("<IIIIIII", 6, tot, ifc, ts >> 32, ts & 0xFFFFFFFF, size, size)
            buf += data
            buf += b"\0" * p
            buf += struct.pack("<I", tot)
            t += dt
            pkts += 1
        if len(buf) > 4 << 20:
            f.write(buf)
            fbytes += len(buf)
            written += len(buf)
            buf = bytearray()
            if fbytes >= file_mb << 20:
                f.close()
                f = None
    if f is not None:
        f.write(buf)
        written += len(buf)
        f.close()
    return start, int(t), files, pkts, written


def drop_cache(files):
    for p in files:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def warm(files):
    for p in files:
        with open(p, "rb") as f:
            while f.read(8 << 20):
                pass


def iso(ns):
    s, frac = divmod(ns, 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + ".%09dZ" % frac


def count_epbs(body):
    """Enhanced Packet Blocks in a pcapng byte string (after the clock stops)."""
    off = pk = 0
    n = len(body)
    while off + 8 <= n:
        bt, bl = struct.unpack_from("<II", body, off)
        if bl < 12 or off + bl > n:
            break
        pk += bt == 6
        off += bl
    return pk


def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def query(port, params, pid=None):
    """Streams one request; times the first byte and the first packet.

    A plain socket and HTTP/1.0 (the receiver then sends the body as is,
    closing the connection at its end): http.client's chunked decoding, in
    Python on the same 2 cores, tops out near 150 MB/s and would measure
    itself. Blocks are parsed only until the first Enhanced Packet Block;
    the rest is counted after the clock stops. With pid, the receiver's CPU
    time (user + system) over the request is reported too: unlike the wall
    clock, it does not depend on what else runs on the machine."""
    path = "/api/packets?" + urllib.parse.urlencode(params)
    hz = os.sysconf("SC_CLK_TCK")
    c0 = cpu_ticks(pid) if pid else 0
    t0 = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=600)
    sock.sendall(("GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" % path).encode())
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    chunks = []
    head = bytearray()
    hdr = None
    ttfb = ttfp = None
    off = nbytes = 0
    while True:
        k = sock.recv_into(view)
        if k == 0:
            break
        data = bytes(view[:k])
        if hdr is None:
            head += data
            e = head.find(b"\r\n\r\n")
            if e < 0:
                continue
            hdr = bytes(head[:e]).decode("latin-1")
            data = bytes(head[e + 4:])
            head = bytearray()
            if not data:
                continue
        if ttfb is None:
            ttfb = time.monotonic() - t0
        nbytes += len(data)
        chunks.append(data)
        if ttfp is None:
            head += data
            while off + 8 <= len(head):
                bt, bl = struct.unpack_from("<II", head, off)
                if bt == 6:
                    ttfp = time.monotonic() - t0
                    break
                if bl < 12 or off + bl > len(head):
                    break
                off += bl
    total = time.monotonic() - t0
    cpu = (cpu_ticks(pid) - c0) / hz if pid else None
    sock.close()
    lines = hdr.split("\r\n")
    status = int(lines[0].split()[1])
    if status != 200:
        raise SystemExit("HTTP %d: %s" % (status, b"".join(chunks)[:300]))
    h = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        h[k.strip().lower()] = v.strip()
    pk = count_epbs(b"".join(chunks))
    return dict(ttfb=ttfb, ttfp=ttfp, total=total, out_mb=nbytes / 1e6,
                mbps=nbytes / 1e6 / total, cpu=cpu,
                mb_cpu=nbytes / 1e6 / cpu if cpu else None, packets=pk,
                read=int(h.get("x-packetstreamer-files-read", 0)),
                skipped=int(h.get("x-packetstreamer-files-skipped", 0)),
                scanned=int(h.get("x-packetstreamer-files-scanned", 0)))


def query_curl(port, params, pid=None):
    """The same request through curl into /dev/null: a client that does not
    limit the rate. No first-packet time and no packet count (None)."""
    path = "/api/packets?" + urllib.parse.urlencode(params)
    hz = os.sysconf("SC_CLK_TCK")
    c0 = cpu_ticks(pid) if pid else 0
    with tempfile.NamedTemporaryFile("w+") as hf:
        out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-D", hf.name, "-w",
                              "%{http_code} %{time_starttransfer} %{time_total} %{size_download}",
                              "http://127.0.0.1:%d%s" % (port, path)],
                             check=True, capture_output=True, text=True).stdout.split()
        h = {}
        for ln in open(hf.name).read().splitlines()[1:]:
            k, _, v = ln.partition(":")
            h[k.strip().lower()] = v.strip()
    cpu = (cpu_ticks(pid) - c0) / hz if pid else None
    if out[0] != "200":
        raise SystemExit("HTTP %s" % out[0])
    ttfb, total, nbytes = float(out[1]), float(out[2]), int(out[3])
    return dict(ttfb=ttfb, ttfp=None, total=total, out_mb=nbytes / 1e6,
                mbps=nbytes / 1e6 / total, cpu=cpu,
                mb_cpu=nbytes / 1e6 / cpu if cpu else None, packets=None,
                read=int(h.get("x-packetstreamer-files-read", 0)),
                skipped=int(h.get("x-packetstreamer-files-skipped", 0)),
                scanned=int(h.get("x-packetstreamer-files-scanned", 0)))


def main():
    ap = benchlib.driver_args(__doc__, default_bin=str(benchlib.REPO / "build" / "packetstreamer"))
    ap.set_defaults(dir="/var/tmp", repeat=3)
    ap.add_argument("--gb", type=float, default=2.0, help="GB of capture files to generate")
    ap.add_argument("--file-mb", type=int, default=256, help="MiB per file")
    ap.add_argument("--minutes", type=int, default=20, help="packet time the files span")
    ap.add_argument("--data", help="keep and reuse the generated files in this directory")
    ap.add_argument("--cases", help="comma-separated case names to run (default: all)")
    ap.add_argument("--client", choices=("python", "curl"), default="python",
                    help="python: times the first packet and counts packets; curl: "
                         "does not limit the rate (curl -o /dev/null)")
    a = ap.parse_args()
    version = benchlib.prepare_bin(a)
    work = Path(tempfile.mkdtemp(prefix="ps-bench-extract-", dir=a.dir))
    out = work / "out"
    rx = None
    try:
        t0 = time.monotonic()
        manifest = None
        if a.data:
            out = Path(a.data)
            out.mkdir(parents=True, exist_ok=True)
            mf = out / ".bench.json"
            want = dict(gb=a.gb, file_mb=a.file_mb, minutes=a.minutes)
            if mf.exists():
                manifest = json.loads(mf.read_text())
                if manifest.get("params") != want:
                    manifest = None
            if manifest is None:
                for x in out.iterdir():
                    if x.is_dir():
                        shutil.rmtree(x)
                    else:
                        x.unlink()
        else:
            out.mkdir()
        if manifest is None:
            start, end, files, pkts, nbytes = generate(out, a.gb, a.file_mb, a.minutes)
            if a.data:
                (out / ".bench.json").write_text(json.dumps(dict(
                    params=want, start=start, end=end, files=[p.name for p in files],
                    packets=pkts, bytes=nbytes)))
        else:
            start, end, pkts, nbytes = (manifest[k] for k in ("start", "end", "packets", "bytes"))
            files = [out / n for n in manifest["files"]]
        gen_s = time.monotonic() - t0
        shutil.rmtree(out / ".index", ignore_errors=True)
        sizes = {p.name: p.stat().st_size for p in files}
        print("%s %d files, %.2f GB, %d packets, %d min of packet time in %.0f s" %
              ("generated" if manifest is None else "reused", len(files), nbytes / 1e9, pkts,
               a.minutes, gen_s), file=sys.stderr)
        hport = benchlib.free_port()
        cmd = [a.bin, "receiver", "--listen", "127.0.0.1:%d" % benchlib.free_port(), "--output",
               str(out), "--http", "127.0.0.1:%d" % hport]
        t0 = time.monotonic()
        rx = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=open(work / "receiver.stderr", "wb"), env=benchlib.child_env())
        while True:
            idx = out / ".index"
            n = len([x for x in os.listdir(idx) if x.endswith(".idx")]) if idx.is_dir() else 0
            if n >= len(files):
                break
            if rx.poll() is not None:
                raise SystemExit("receiver exited: %s" % (work / "receiver.stderr").read_text())
            time.sleep(0.05)
        index_s = time.monotonic() - t0
        idx_bytes = sum(p.stat().st_size for p in (out / ".index").iterdir())
        print("receiver indexed %d files (%.2f GB) at start in %.1f s (%.0f MB/s); indexes %d bytes" %
              (len(files), nbytes / 1e9, index_s, nbytes / 1e6 / index_s, idx_bytes), file=sys.stderr)
        mid = (start + end) // 2
        win = {"from": iso(mid), "to": iso(mid + 60 * 10**9)}
        cases = [
            ("pod/index/warm", dict(win, pod="shop/web-3", sensor="node-1"), True, False),
            ("pod/noindex/warm", dict(win, pod="shop/web-3", sensor="node-1"), False, False),
            ("pod/index/cold", dict(win, pod="shop/web-3", sensor="node-1"), True, True),
            ("pod/noindex/cold", dict(win, pod="shop/web-3", sensor="node-1"), False, True),
            ("all/index/warm", dict(win), True, False),
            ("sensor5/index/warm", {"from": iso(mid), "to": iso(mid + 300 * 10**9),
                                    "sensor": "node-1"}, True, False),
        ]
        if a.cases:
            only = a.cases.split(",")
            cases = [c for c in cases if c[0] in only]
        runs = []
        for name, params, use_index, cold in cases:
            for rep in range(a.repeat):
                if not use_index:
                    shutil.rmtree(out / ".index", ignore_errors=True)
                if cold:
                    drop_cache(files)
                else:
                    warm(files)
                r = (query_curl if a.client == "curl" else query)(hport, params, rx.pid)
                r["case"] = name
                runs.append(r)
                print("%-18s rep %d: ttfb %.3f s, first packet %.3f s, total %.3f s, %s packets, "
                      "%.1f MB, read %d skipped %d scanned %d" % (
                          name, rep, r["ttfb"], r["ttfp"] or 0, r["total"], r["packets"],
                                                 r["out_mb"], r["read"], r["skipped"], r["scanned"]),
                      file=sys.stderr)
                if not use_index:  # put the indexes back for the next case
                    shutil.rmtree(out / ".index", ignore_errors=True)
                    warm(files)
                    query(hport, dict(win, pod="none/none"))
        rows = benchlib.medians(runs, "case")
        print()
        print("%s; %s; %d files of %d MiB, %.2f GB, %d packets over %d min, 33 interfaces; "
              "index at start %.1f s" % (version, benchlib.machine(), len(files), a.file_mb,
                                         nbytes / 1e9, pkts, a.minutes, index_s))
        print()
        print(benchlib.table([
            ("case", "case", None),
            ("ttfb s", "ttfb", "%.3f"),
            ("first packet s", "ttfp", "%.3f"),
            ("total s", "total", "%.3f"),
            ("packets", "packets", "%d"),
            ("out MB", "out_mb", "%.1f"),
            ("out MB/s", "mbps", "%.1f"),
            ("rx CPU s", "cpu", "%.2f"),
            ("MB per CPU s", "mb_cpu", "%.0f"),
            ("files read", "read", "%d"),
            ("skipped", "skipped", "%d"),
            ("scanned", "scanned", "%d"),
        ], rows))
        benchlib.write_results("extract", {"version": version, "runs": runs, "index_s": index_s,
                                           "files": len(files), "bytes": nbytes, "packets": pkts})
    finally:
        if rx is not None:
            benchlib.reap(rx, 15)
        if a.keep:
            print("kept %s" % work, file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
