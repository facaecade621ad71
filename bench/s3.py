#!/usr/bin/python3
"""S3 upload benchmark: the receiver's uploader against curl --aws-sigv4,
uploading the same files to the same local s3rver, in one run.

    bench/s3.py [--bin build/packetstreamer] [--cases 10x64,2x512]
                [--part-mb 128] [--repeat 3] [--dir /dev/shm] [--keep]

Inputs (made once, in --dir, tmpfs): for each case NxM, N pcapng files of
about M MiB (one section, one interface, 1500-byte frames of random bytes:
nothing compresses, and the receiver's start-up sees valid captures), named
as the writer names them (packetstreamer-STAMP-COUNTER.pcapng), so a
receiver started over the directory queues them all for upload, as it does
with what an earlier run left (docs/storage.md). Their side indexes are
built once beforehand by an untimed receiver run, so the timed runs measure
the upload, not the index builder.

Per case, --repeat times, the two tools in turn (interleaved, so a slow
period of the shared machine hits both alike), each against a fresh s3rver
(s3rver from `make deps`, its data directory in --dir) on loopback:

  receiver  `packetstreamer receiver` with output.s3 on (pathStyle, prefix
            rx/, partSizeMB --part-mb: files above it go up as multipart
            uploads of --part-mb parts) over a directory of hard links to the
            inputs. What it does per file: HEAD (queued at start: maybe
            uploaded by an earlier run), PUT with Content-MD5 and the payload's
            SHA-256 in the SigV4 signature (or Create/UploadPart.../Complete),
            HEAD to confirm size and ETag, journal line fsynced. Wall = from
            its start until its log has an "uploaded NAME" line for every
            file (start-up, a few ms, included).
  curl      `curl -sSf --aws-sigv4 aws:amz:us-east-1:s3 --user KEY:SECRET -H
            "x-amz-content-sha256: UNSIGNED-PAYLOAD" -T FILE URL` once per
            file, one after the other: one PUT per file however large (curl
            does no multipart), no Content-MD5, no HEAD, and no SHA-256 of
            the body (curl 7.88 sends no x-amz-content-sha256 for -T, which
            s3rver refuses, so the header is given; UNSIGNED-PAYLOAD is what
            curl's own S3 signing uses for uploads in later versions). curl
            does strictly less work per byte than the receiver.
            Wall = first start to last exit.

Each run is checked: every object in the bucket has its file's size and an
ETag that is the file's MD5 (or, after a multipart upload, S3's MD5 of the
parts' MD5s with -N), else the benchmark fails. Columns: MB/s (10^6 bytes
of files / wall s), CPU seconds of the uploading process(es) (user+system,
wait4) and of s3rver (from /proc/PID/stat, over the run), and the ratio
receiver MB/s / curl MB/s of each case (medians of --repeat). Prints a
markdown table and writes bench/results/s3-<UTC>.json.

s3rver is a Node.js server writing every object to its data directory
(and computing its MD5): on loopback it, not the client, is likely the
bottleneck, so the ratio says whether the receiver keeps up with a plain
client against the same server, not what either reaches against AWS.
"""

import hashlib
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402
from benchlib import MB, REPO  # noqa: E402

MiB = 1024 * 1024
BUCKET = "bench"
KEY = "S3RVER"  # s3rver's built-in access key and secret
S3RVER = Path(os.environ.get("PS_CACHE", "/var/tmp/packetstreamer-cache")) / "s3rver" / \
    "node_modules" / ".bin" / "s3rver"
FRAME = 1500
TICK = os.sysconf("SC_CLK_TCK")


def pcapng_file(path, size, seed):
    """A pcapng file of about size bytes: SHB, IDB, then EPBs of FRAME random
    bytes. Returns its MD5 (hex) and the part MD5s for --part-mb later."""
    shb_body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
    out = bytearray()
    out += struct.pack("<II", 0x0A0D0D0A, 12 + len(shb_body)) + shb_body + \
        struct.pack("<I", 12 + len(shb_body))
    idb_body = struct.pack("<HHI", 1, 0, 262144)
    out += struct.pack("<II", 1, 12 + len(idb_body)) + idb_body + struct.pack("<I", 12 + len(idb_body))
    epb_len = 12 + 20 + FRAME
    n = max(1, (size - len(out)) // epb_len)
    rnd = os.urandom(FRAME * 4096)
    ts = 1_700_000_000_000_000 + seed * 10**12
    with open(path, "wb") as f:
        f.write(out)
        chunk = bytearray()
        for i in range(n):
            t = ts + i
            off = (i * 7919 % 4096) * FRAME  # varied, still incompressible frames
            chunk += struct.pack("<IIIIIII", 6, epb_len, 0, t >> 32, t & 0xFFFFFFFF, FRAME, FRAME)
            chunk += rnd[off:off + FRAME]
            chunk += struct.pack("<I", epb_len)
            if len(chunk) >= 8 * MiB:
                f.write(chunk)
                chunk = bytearray()
        f.write(chunk)


def md5s(path, part):
    """(whole-file MD5, S3's multipart ETag for parts of `part` bytes)."""
    whole, parts = hashlib.md5(), []
    with open(path, "rb") as f:
        while True:
            b = f.read(part)
            if not b:
                break
            whole.update(b)
            parts.append(hashlib.md5(b).digest())
    mp = hashlib.md5(b"".join(parts)).hexdigest() + "-%d" % len(parts)
    return whole.hexdigest(), mp


class S3rver:
    def __init__(self, work):
        self.work = work
        self.proc = None

    def start(self):
        self.data = self.work / "s3data"
        shutil.rmtree(self.data, ignore_errors=True)
        self.data.mkdir()
        self.port = benchlib.free_port()
        self.proc = subprocess.Popen(
            [str(S3RVER), "-d", str(self.data), "-a", "127.0.0.1", "-p", str(self.port),
             "--configure-bucket", BUCKET, "--no-vhost-buckets", "--silent"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.work / "s3rver.log", "ab"))
        end = time.monotonic() + 30
        while not benchlib.listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError("s3rver did not start: %s" %
                                   (self.work / "s3rver.log").read_text()[-2000:])
            time.sleep(0.05)

    def cpu_ticks(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    def stop(self):
        benchlib.reap(self.proc, signal.SIGKILL, 10)
        shutil.rmtree(self.data, ignore_errors=True)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def objects(self):
        """{key: (size, etag)} (anonymous ListObjectsV2)."""
        with urllib.request.urlopen("%s/%s?list-type=2&max-keys=1000" % (self.url, BUCKET),
                                    timeout=60) as r:
            body = r.read().decode()
        out = {}
        for c in re.findall(r"<Contents>(.*?)</Contents>", body, re.S):
            key = re.search(r"<Key>(.*?)</Key>", c).group(1)
            size = int(re.search(r"<Size>(\d+)</Size>", c).group(1))
            etag = re.search(r"<ETag>(.*?)</ETag>", c).group(1).replace("&quot;", "").strip('"')
            out[key] = (size, etag)
        return out


def check_bucket(srv, prefix, files, sums):
    objs = srv.objects()
    want = {prefix + f.name for f in files}
    if set(objs) != want:
        raise RuntimeError("bucket has %s, want %s" % (sorted(objs), sorted(want)))
    for f in files:
        size, etag = objs[prefix + f.name]
        if size != f.stat().st_size or etag not in sums[f]:
            raise RuntimeError("%s%s: size %d etag %s, file %d %s" % (
                prefix, f.name, size, etag, f.stat().st_size, sums[f]))


def run_receiver(a, srv, case_dir, files, work):
    out = work / "rx-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    for f in files:
        os.link(f, out / f.name)
    shutil.copytree(case_dir / ".index", out / ".index", copy_function=os.link)
    cfg = work / "rx.yaml"
    cfg.write_text("output:\n  s3:\n    enabled: true\n    endpoint: %s\n    bucket: %s\n"
                   "    pathStyle: true\n    prefix: rx/\n    partSizeMB: %d\n"
                   % (srv.url, BUCKET, a.part_mb))
    log = work / "rx.log"
    env = benchlib.child_env()
    env.update({"PACKETSTREAMER_HTTP_ENABLE": "false", "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": KEY, "HOME": str(work)})
    cpu0 = srv.cpu_ticks()
    t0 = time.monotonic()
    p = subprocess.Popen([a.bin, "receiver", "--config", str(cfg), "--listen",
                          "127.0.0.1:%d" % benchlib.free_port(), "--output", str(out)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=open(log, "wb"), env=env)
    try:
        while True:
            text = log.read_text(errors="replace")
            if sum(text.count("upload: uploaded %s " % f.name) for f in files) == len(files):
                wall = time.monotonic() - t0
                break
            if p.poll() is not None:
                raise RuntimeError("receiver exited %d:\n%s" % (p.returncode, text[-2000:]))
            if "upload of " in text:
                raise RuntimeError("a failed upload:\n%s" % text[-2000:])
            if time.monotonic() - t0 > 600:
                raise RuntimeError("uploads not done after 600 s:\n%s" % text[-2000:])
            time.sleep(0.01)
        srv_cpu = (srv.cpu_ticks() - cpu0) / TICK
    finally:
        ru, killed, _ = benchlib.reap(p, signal.SIGTERM, 30)
    if killed or p.returncode != 0:
        raise RuntimeError("receiver did not stop cleanly (%s)" % p.returncode)
    shutil.rmtree(out, ignore_errors=True)
    return wall, benchlib.cpu(ru), srv_cpu


def run_curl(a, srv, files):
    cpu = 0.0
    cpu0 = srv.cpu_ticks()
    t0 = time.monotonic()
    for f in files:
        p = subprocess.Popen(["curl", "-sSf", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user",
                              "%s:%s" % (KEY, KEY), "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                              "-T", str(f),
                              "%s/%s/curl/%s" % (srv.url, BUCKET, f.name)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        rc, ru, _, _ = benchlib.wait4(p, poll_s=0.005)
        if rc != 0:
            raise RuntimeError("curl exited %d: %s" % (rc, p.stderr.read().decode()[-500:]))
        cpu += benchlib.cpu(ru)
    wall = time.monotonic() - t0
    return wall, cpu, (srv.cpu_ticks() - cpu0) / TICK


def main():
    ap = benchlib.driver_args(__doc__)
    ap.set_defaults(repeat=3)
    ap.add_argument("--cases", default="10x64,2x512",
                    help="NxM,...: N files of about M MiB per case (default 10x64,2x512)")
    ap.add_argument("--part-mb", type=int, default=128,
                    help="the receiver's output.s3.partSizeMB (default 128: 64 MiB files go up "
                         "in one PUT, 512 MiB files in 4 parts)")
    a = ap.parse_args()
    version = benchlib.prepare_bin(a)
    benchlib.need_tools(["curl"], "apt-get install curl")
    if not S3RVER.exists():
        raise SystemExit("s3rver is not installed: make deps (packaging/s3rver.sh)")
    cases = []
    for c in a.cases.split(","):
        n, m = c.lower().split("x")
        cases.append((c, int(n), int(m)))
    runs = []
    with benchlib.Workdir("ps-bench-s3-", a.dir, a.keep) as work:
        inputs, sums = {}, {}
        for name, n, m in cases:
            d = work / ("in-" + name)
            d.mkdir()
            files = []
            for i in range(n):
                f = d / ("packetstreamer-20261205T%06dZ-%06d.pcapng" % (i, i + 1))
                pcapng_file(f, m * MiB, seed=len(inputs) * 100 + i)
                sums[f] = md5s(f, a.part_mb * MiB)
                files.append(f)
            inputs[name] = (d, files)
            # the side indexes, once, untimed: a receiver without S3 over the files
            log = work / "index.log"
            p = subprocess.Popen([a.bin, "receiver", "--listen", "127.0.0.1:%d" %
                                  benchlib.free_port(), "--output", str(d)],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=open(log, "wb"),
                                 env=dict(benchlib.child_env(), PACKETSTREAMER_HTTP_ENABLE="false"))
            end = time.monotonic() + 300
            while len([x for x in (d / ".index").glob("*") if not x.name.startswith(".")]) \
                    < len(files) and time.monotonic() < end:
                time.sleep(0.2)
            benchlib.reap(p, signal.SIGTERM, 30)
            for x in d.glob("*.pcapng"):  # the empty file of that run
                if x not in files:
                    x.unlink()
            print("%s: %d files, %.0f MB" % (name, n, sum(f.stat().st_size for f in files) / MB),
                  file=sys.stderr)
        srv = S3rver(work)

        def one(case, tool, rep):
            name, n, m = case
            d, files = inputs[name]
            total = sum(f.stat().st_size for f in files)
            srv.start()
            try:
                if tool == "receiver":
                    wall, cpu, scpu = run_receiver(a, srv, d, files, work)
                    check_bucket(srv, "rx/", files, sums)
                else:
                    wall, cpu, scpu = run_curl(a, srv, files)
                    check_bucket(srv, "curl/", files, sums)
            finally:
                srv.stop()
            return {"case": name, "tool": tool, "files": n, "bytes": total, "wall_s": wall,
                    "mb_s": total / MB / wall, "cpu_s": cpu, "s3rver_cpu_s": scpu,
                    "key": "%s %s" % (name, tool)}

        def report(r):
            print("%-8s %-8s rep %d: %.2f s, %.1f MB/s, cpu %.2f s, s3rver cpu %.2f s" % (
                r["case"], r["tool"], r["rep"], r["wall_s"], r["mb_s"], r["cpu_s"],
                r["s3rver_cpu_s"]), file=sys.stderr)

        runs = benchlib.run_cases(cases, ["receiver", "curl"], a.repeat, one, report)
    rows = benchlib.medians(runs, "key")
    by = {r["key"]: r for r in rows}
    for r in rows:
        case, tool = r["key"].split(" ")
        r["case"], r["tool"] = case, tool
        curl = by.get(case + " curl")
        r["ratio"] = r["mb_s"] / curl["mb_s"] if tool == "receiver" and curl else None
    cols = [("case", "case", None), ("tool", "tool", None), ("wall s", "wall_s", "%.2f"),
            ("MB/s", "mb_s", "%.1f"), ("client CPU s", "cpu_s", "%.2f"),
            ("s3rver CPU s", "s3rver_cpu_s", "%.2f"), ("receiver/curl", "ratio", "%.2f")]
    print(benchlib.table(cols, rows))
    print("load average at the end: %.2f %.2f %.2f" % benchlib.load())
    out = benchlib.write_results("s3", {
        "binary": a.bin, "version": version, "machine": benchlib.machine(),
        "curl": benchlib.run("curl", "--version").stdout.splitlines()[0],
        "params": {"cases": a.cases, "part_mb": a.part_mb, "repeat": a.repeat, "dir": a.dir},
        "medians": rows, "runs": runs})
    print("results: %s" % out.relative_to(REPO) if out.is_relative_to(REPO) else out)


if __name__ == "__main__":
    benchlib.main(main, "bench/s3.py")
