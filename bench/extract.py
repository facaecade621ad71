#!/usr/bin/python3
"""Extraction benchmark: GET /api/packets over a receiver's capture directory.

    bench/extract.py [--bin build/packetstreamer] [--gb 2] [--file-mb 256]
                     [--minutes 20] [--dir /var/tmp] [--repeat 3] [--keep]

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

Columns: time to the first body byte (the Section Header Block, sent once
the files are selected) and to the first packet, total s, packets, output
MB and MB/s, files read/skipped/scanned (response headers). The receiver
is the Release build; the machine's other load is not controlled.
"""

import http.client
import os
import random
import shutil
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


def query(port, params):
    """Streams one request; times the first byte and the first packet."""
    path = "/api/packets?" + urllib.parse.urlencode(params)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.monotonic()
    c.request("GET", path)
    r = c.getresponse()
    if r.status != 200:
        raise SystemExit("HTTP %d: %s" % (r.status, r.read()[:300]))
    body = bytearray()
    ttfb = ttfp = None
    off = pk = nbytes = 0
    while True:
        chunk = r.read1(1 << 20)
        if not chunk:
            break
        if ttfb is None:
            ttfb = time.monotonic() - t0
        nbytes += len(chunk)
        body += chunk
        while off + 8 <= len(body):  # count EPBs as whole blocks arrive
            bt, bl = struct.unpack_from("<II", body, off)
            if off + bl > len(body):
                break
            if bt == 6:
                pk += 1
                if ttfp is None:
                    ttfp = time.monotonic() - t0
            off += bl
        if off > 1 << 20:
            del body[:off]
            off = 0
    total = time.monotonic() - t0
    h = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return dict(ttfb=ttfb, ttfp=ttfp, total=total, out_mb=nbytes / 1e6,
                mbps=nbytes / 1e6 / total, packets=pk,
                read=int(h.get("x-packetstreamer-files-read", 0)),
                skipped=int(h.get("x-packetstreamer-files-skipped", 0)),
                scanned=int(h.get("x-packetstreamer-files-scanned", 0)))


def main():
    ap = benchlib.driver_args(__doc__, default_bin=str(benchlib.REPO / "build" / "packetstreamer"))
    ap.set_defaults(dir="/var/tmp", repeat=3)
    ap.add_argument("--gb", type=float, default=2.0, help="GB of capture files to generate")
    ap.add_argument("--file-mb", type=int, default=256, help="MiB per file")
    ap.add_argument("--minutes", type=int, default=20, help="packet time the files span")
    a = ap.parse_args()
    version = benchlib.prepare_bin(a)
    work = Path(tempfile.mkdtemp(prefix="ps-bench-extract-", dir=a.dir))
    out = work / "out"
    out.mkdir()
    rx = None
    try:
        t0 = time.monotonic()
        start, end, files, pkts, nbytes = generate(out, a.gb, a.file_mb, a.minutes)
        gen_s = time.monotonic() - t0
        sizes = {p.name: p.stat().st_size for p in files}
        print("generated %d files, %.2f GB, %d packets, %d min of packet time in %.0f s" %
              (len(files), nbytes / 1e9, pkts, a.minutes, gen_s), file=sys.stderr)
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
        ]
        runs = []
        for name, params, use_index, cold in cases:
            for rep in range(a.repeat):
                if not use_index:
                    shutil.rmtree(out / ".index", ignore_errors=True)
                if cold:
                    drop_cache(files)
                else:
                    warm(files)
                r = query(hport, params)
                r["case"] = name
                runs.append(r)
                print("%-18s rep %d: ttfb %.3f s, first packet %.3f s, total %.3f s, %d packets, "
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
