"""Writes the seed corpus under fuzz/corpus/<target>/ (committed; rerun only
to regenerate): valid frames, handshakes, batches in each codec, the sample
configs, and small pcap/pcapng files. Standard library plus tests/lib."""
import os
import shutil
import struct
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "lib"))
import pcaplib  # noqa: E402
import psclient as P  # noqa: E402

C = ROOT / "fuzz" / "corpus"


def put(target, name, data):
    d = C / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def lz4_literals(raw):
    """An LZ4 block holding only literals (valid, if not compressed)."""
    n = len(raw)
    out = bytearray()
    if n < 15:
        out.append(n << 4)
    else:
        out.append(0xF0)
        rest = n - 15
        while rest >= 255:
            out.append(255)
            rest -= 255
        out.append(rest)
    return bytes(out) + raw


recs = pcaplib.gen_varied(12, 5)
raw = P.records_bytes(recs)
hello = P.hello_payload("node-1", token=b"tok", session=1)
put("hello", "plain", hello)
put("hello", "zlib", P.hello_payload("n", codec=P.CODEC_ZLIB, session=2))
put("hello", "lz4-token", P.hello_payload("node.example-1", token=b"x" * 64, codec=P.CODEC_LZ4,
                                          session=3))
put("hello", "version-range", P.hello_payload("v", version=(1, 9), session=4))

batches = {
    "none": struct.pack(">QB3xII", 1, 0, len(recs), len(raw)) + raw,
    "zlib": struct.pack(">QB3xII", 2, 1, len(recs), len(raw)) + zlib.compress(raw),
    "lz4": struct.pack(">QB3xII", 3, 2, len(recs), len(raw)) + lz4_literals(raw),
    "empty": struct.pack(">QB3xII", 4, 0, 0, 0),
}
for name, b in batches.items():
    put("batch", name, b)

stream = (P.frame(P.T_HELLO, hello) + P.frame(P.T_IFACE, P.iface_payload(0, "eth0", desc=b"pod"))
          + P.frame(P.T_BATCH, batches["zlib"]) + P.frame(P.T_STATS, bytes(52))
          + P.frame(P.T_HEARTBEAT, struct.pack(">Q", 7)) + P.frame(P.T_ACK, struct.pack(">Q", 2))
          + P.frame(P.T_ACCEPT, struct.pack(">HBxIIQ", 1, 2, 1 << 20, 1 << 20, 0))
          + P.frame(P.T_REJECT, struct.pack(">HH", 4, 6) + b"denied")
          + P.frame(P.T_BYE, struct.pack(">Q", 2)))
put("frame", "session", stream)
put("frame", "hello-only", P.frame(P.T_HELLO, hello))
put("frame", "batch-lz4", P.frame(P.T_BATCH, batches["lz4"]))

for f in sorted((ROOT / "tests" / "data" / "configs").glob("*.yaml")):
    shutil.copy(f, C / "config" / f.name) if (C / "config").is_dir() else (
        (C / "config").mkdir(parents=True), shutil.copy(f, C / "config" / f.name))

small = pcaplib.gen_varied(8, 9)
for fmt in ("pcap", "pcap-ns", "pcapng"):
    tmp = C / ("tmp." + fmt)
    pcaplib.write_records(str(tmp), small, fmt)
    put("pcap", "varied-" + fmt, tmp.read_bytes())
    tmp.unlink()
print("corpus written to", C)
