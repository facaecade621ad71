"""Writes the seed corpus under fuzz/corpus/<target>/ (committed; rerun only
to regenerate): valid frames, handshakes, batches in each codec, the sample
configs, and small pcap/pcapng files. Standard library plus tests/lib."""
import ipaddress
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
# v2: capture jobs (fuzz_frame decodes IFACE both ways).
put("frame", "jobs-v2", P.frame(P.T_HELLO, P.hello_payload("n2", version=(1, 2), session=5))
    + P.frame(P.T_IFACE, P.iface_payload(1, "eth0", desc=b"pod", job=7))
    + P.frame(P.T_JOB_START, P.job_start_payload(7, "web-1", start_ns=1 << 60, end_ns=(1 << 60) + 5,
                                                 max_packets=10, preroll=10, namespaces="a,b",
                                                 pods="a/p", label_selector="app=x",
                                                 interfaces="eth*", filter="tcp port 80"))
    + P.frame(P.T_JOB_STOP, struct.pack(">Q", 7))
    + P.frame(P.T_JOB_STATUS, P.job_status_payload(7, P.JOB_FAILED, 1, 2, 3, b"bad filter")))

for f in sorted((ROOT / "tests" / "data" / "configs").glob("*.yaml")):
    shutil.copy(f, C / "config" / f.name) if (C / "config").is_dir() else (
        (C / "config").mkdir(parents=True), shutil.copy(f, C / "config" / f.name))

small = pcaplib.gen_varied(8, 9)
for fmt in ("pcap", "pcap-ns", "pcapng"):
    tmp = C / ("tmp." + fmt)
    pcaplib.write_records(str(tmp), small, fmt)
    put("pcap", "varied-" + fmt, tmp.read_bytes())
    tmp.unlink()


# recovery: first byte 0 = a pcapng .part, 1 = a classic pcap .part, 2 = a
# completed pcapng whose trailing checkpoint is read (fuzz_recovery.c).
def nrb_custom(data):
    body = struct.pack("<I", 0)  # nrb_record_end
    body += struct.pack("<HHI", 19373, 4 + len(data), 32473) + data + bytes(-len(data) % 4)
    body += struct.pack("<HH", 0, 0)
    return struct.pack("<II", 4, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def entry(sid, session, seq):
    return struct.pack(">QQH", session, seq, len(sid)) + sid


ifs = [("n1/eth0", 1, 262144)]
recs4 = pcaplib.gen_varied(4, 11)
head = pcaplib.pcapng_bytes(ifs, [])
full = pcaplib.pcapng_bytes(ifs, recs4)
epbs = full[len(head):]
marker = lambda seq: nrb_custom(b"PSB1" + entry(b"node-1", 7, seq))  # noqa: E731
checkpoint = nrb_custom(b"PSC1" + struct.pack(">I", 2) + entry(b"node-1", 7, 2)
                        + entry(b"node-2", 9, 5))
put("recovery", "pcapng-part-torn", b"\0" + full + marker(1) + epbs + marker(2)
    + epbs[:len(epbs) // 2])
put("recovery", "pcapng-part-whole", b"\0" + full + marker(1))
put("recovery", "pcap-part-torn", b"\1" + pcaplib.pcap_bytes(recs4)[:-25])
put("recovery", "pcapng-checkpoint", b"\2" + full + marker(1) + checkpoint)
# A checkpoint in two parts (PSC2: part, parts, n, entries), as one past 64 KiB.
parts = [nrb_custom(b"PSC2" + struct.pack(">III", k, 2, 1) + entry(b"node-%d" % k, k, 3 + k))
         for k in range(2)]
put("recovery", "pcapng-checkpoint-parts", b"\2" + full + marker(1) + parts[0] + parts[1])

# session: byte 0 = setup (1 perSensor, 2 token "tok", 4 classic pcap), then
# chunks u8 op | u16 len | bytes; op 1 = second connection, 2 = close it
# after, 4 = tick (fuzz_session.c).
def chunk(op, data):
    return struct.pack(">BH", op, len(data)) + data


def sess_hello(sid, session, token=b"", codec=P.CODEC_NONE):
    return P.frame(P.T_HELLO, P.hello_payload(sid, token=token, codec=codec, session=session))


def sess_batch(seq, codec=P.CODEC_NONE, recs=recs, iface=0):
    r = P.records_bytes(recs, iface)
    body = r if codec == P.CODEC_NONE else zlib.compress(r)
    return P.frame(P.T_BATCH, struct.pack(">QB3xII", seq, codec, len(recs), len(r)) + body)


small_recs = pcaplib.gen_varied(3, 21)
eth = P.frame(P.T_IFACE, P.iface_payload(0, "eth0", desc=b"pod"))
stats = P.frame(P.T_STATS, struct.pack(">IQQQQQQ", 0, 10, 1000, 1, 2, 3, 1 << 60))
hb = P.frame(P.T_HEARTBEAT, struct.pack(">Q", 1))
bye = lambda seq: P.frame(P.T_BYE, struct.pack(">Q", seq))  # noqa: E731
put("session", "honest", b"\0" + chunk(2, sess_hello("n1", 1) + eth + sess_batch(1)
                                         + sess_batch(2) + stats + hb + bye(2)))
put("session", "zlib-token", b"\2" + chunk(0, sess_hello("n1", 2, b"tok", P.CODEC_ZLIB) + eth
                                            + sess_batch(1, P.CODEC_ZLIB) + bye(1)))
put("session", "bad-token", b"\2" + chunk(0, sess_hello("n1", 2, b"nope") + eth + sess_batch(1)))
put("session", "reconnect-resend", b"\0"
    + chunk(2, sess_hello("n1", 5) + eth + sess_batch(1) + sess_batch(2))
    + chunk(0, sess_hello("n1", 5) + eth + sess_batch(2) + sess_batch(3) + sess_batch(5)))
put("session", "two-connections-one-sensor", b"\1"
    + chunk(0, sess_hello("n1", 6) + eth + sess_batch(1))
    + chunk(1, sess_hello("n1", 6) + eth + sess_batch(1 << 62))
    + chunk(0, sess_batch(2)) + chunk(5, sess_batch(3)))
many = b"\1"
for i in range(5):
    many += chunk(2 | (i & 1), sess_hello("node-%d" % i, 100 + i) + eth
                  + sess_batch(1, recs=small_recs))
    if i == 2:
        many += chunk(4, sess_hello("node-0", 100) + eth + sess_batch(2, recs=small_recs))
put("session", "per-sensor-many", many)
put("session", "pcap-linktype-mismatch", b"\4" + chunk(0, sess_hello("n1", 7) + eth
    + P.frame(P.T_IFACE, P.iface_payload(1, "wlan0", linktype=105)) + sess_batch(1)))
put("session", "data-before-hello", b"\0" + chunk(0, eth + sess_batch(1)))
put("session", "batch-unknown-iface", b"\0" + chunk(0, sess_hello("n1", 8) + sess_batch(1)
                                                     + sess_batch(2, iface=3)))
# v2: a job interface, its records, JOB_STATUS (known and unknown job).
put("session", "v2-job", b"\0" + chunk(0, P.frame(P.T_HELLO, P.hello_payload(
    "n1", version=(1, 2), session=10)) + P.frame(P.T_IFACE, P.iface_payload(0, "eth0", job=0))
    + P.frame(P.T_IFACE, P.iface_payload(1, "eth0", job=1)) + sess_batch(1, iface=1)
    + P.frame(P.T_JOB_STATUS, P.job_status_payload(1, P.JOB_RUNNING, 3, 300))
    + P.frame(P.T_JOB_STATUS, P.job_status_payload(99, P.JOB_FINISHED, 3, 300, msg=b"x" * 100))
    + sess_batch(2) + bye(2)))
put("session", "v1-job-frame", b"\0" + chunk(0, sess_hello("n1", 11) + eth
    + P.frame(P.T_JOB_STATUS, P.job_status_payload(1, P.JOB_RUNNING))))
put("session", "split-frames", b"\0" + chunk(0, sess_hello("n1", 9)[:5])
    + chunk(0, sess_hello("n1", 9)[5:] + eth) + chunk(4, sess_batch(1)))

# netlink: RTM_NEWLINK / RTM_DELLINK messages with an IFLA_IFNAME, then DONE.
def rtattr(t, payload):
    n = 4 + len(payload)
    return struct.pack("=HH", n, t) + payload + bytes(-n % 4)


def nlmsg(t, payload, flags=0, seq=1):
    return struct.pack("=IHHII", 16 + len(payload), t, flags, seq, 0) + payload


def link(t, index, name, flags=1):
    ifi = struct.pack("=BxHiII", 0, 1, index, flags, 0xFFFFFFFF)
    return nlmsg(t, ifi + rtattr(1, struct.pack("=I", 1500)) + rtattr(3, name + b"\0"))


dump = link(16, 1, b"lo", 9) + link(16, 2, b"eth0") + link(16, 7, b"veth3f2a91@if2")
put("netlink", "dump", dump + nlmsg(3, struct.pack("=i", 0)))
put("netlink", "del", link(17, 7, b"veth3f2a91"))
put("netlink", "error", nlmsg(2, struct.pack("=i", -105) + bytes(16)))

# podmap: first byte picks a dump around the datagram (0 none, 1 routes,
# 2 neighbours, 3 FDB); then route, neighbour, FDB and link messages.
def route(t, dst, oif, plen=None, table=254, rtype=1, flags=0, prio=None):
    v6 = ":" in dst
    a = ipaddress.ip_address(dst).packed
    rtm = struct.pack("=BBBBBBBBI", 10 if v6 else 2, plen if plen is not None else len(a) * 8,
                      0, 0, table, 3, 253, rtype, 0)
    body = rtm + rtattr(15, struct.pack("=I", table)) + rtattr(1, a)
    if prio is not None:
        body += rtattr(6, struct.pack("=I", prio))
    if oif:
        body += rtattr(4, struct.pack("=I", oif))
    return nlmsg(t, body, flags=flags, seq=0)


def neigh(t, ip, dev, mac, state=2, family=None):
    a = ipaddress.ip_address(ip).packed
    fam = family or (10 if len(a) == 16 else 2)
    ndm = struct.pack("=BxxxiHBB", fam, dev, state, 0, 1)
    return nlmsg(t, ndm + rtattr(1, a) + (rtattr(2, mac) if mac else b""), seq=0)


def fdb(t, port, mac, master, vlan=1):
    ndm = struct.pack("=BxxxiHBB", 7, port, 2, 4, 0)
    body = ndm + rtattr(2, mac)
    if master:
        body += rtattr(9, struct.pack("=I", master))
    if vlan is not None:
        body += rtattr(5, struct.pack("=H", vlan))
    return nlmsg(t, body, seq=0)


def ifi(t, index, flags, family=0):
    return nlmsg(t, struct.pack("=BxHiII", family, 1, index, flags, 0), seq=0)


DONE = nlmsg(3, struct.pack("=i", 0), flags=2)
M1, M2 = bytes.fromhex("0a580a580005"), bytes.fromhex("0a580a580006")
put("podmap", "routes-dump", b"\1" + route(24, "10.77.0.5", 5) + route(24, "fd77::5", 5, prio=1024)
    + route(24, "10.77.1.0", 5, plen=24) + route(24, "10.0.0.1", 2, table=255, rtype=2)
    + route(24, "10.77.0.6", 0) + DONE)
put("podmap", "neigh-dump", b"\2" + neigh(28, "10.88.0.5", 3, M1) + neigh(28, "fd88::5", 3, M1, 4)
    + neigh(28, "10.88.0.6", 3, None, 1) + neigh(28, "192.168.1.1", 2, M2) + DONE)
put("podmap", "fdb-dump", b"\3" + fdb(28, 9, M1, 3) + fdb(28, 3, M2, 3) + fdb(28, 2, M2, 0, None)
    + DONE)
put("podmap", "bridge-events", b"\0" + neigh(28, "10.88.0.5", 3, M1) + fdb(28, 9, M1, 3)
    + route(24, "10.88.0.5", 12) + route(25, "10.88.0.5", 12) + fdb(28, 10, M1, 3)
    + neigh(29, "10.88.0.5", 3, M1) + fdb(29, 10, M1, 3))
put("podmap", "links", b"\0" + route(24, "10.77.0.5", 5) + fdb(28, 9, M1, 3)
    + neigh(28, "10.88.0.5", 3, M1) + ifi(16, 5, 0) + ifi(17, 9, 1, family=7) + ifi(17, 3, 0))
put("podmap", "replace", b"\0" + route(24, "10.77.0.7", 6, prio=100) + route(24, "10.77.0.7", 7, prio=50)
    + route(24, "10.77.0.7", 8, prio=100, flags=0x100) + route(25, "10.77.0.7", 7, prio=50))
put("podmap", "interrupted", b"\1" + nlmsg(24, route(24, "10.77.0.5", 5)[16:], flags=0x12)
    + DONE)
put("podmap", "error", b"\0" + route(24, "10.77.0.8", 5)
    + nlmsg(2, struct.pack("=i", -16) + bytes(16)))

# http: '\n'-separated fields: Range, URL to unescape, capture name, prefix,
# Authorization, token, Host, allowed name / Sec-Fetch-Site, Origin.
def http_fields(*f):
    return "\n".join(f).encode()


put("http", "typical", http_fields("bytes=0-99", "/captures/ps-1.pcapng%2e", "ps-1.pcapng", "ps",
                                   "Bearer s3cret", "s3cret", "127.0.0.1:8080", "same-origin",
                                   "http://127.0.0.1:8080"))
put("http", "suffix-v6", http_fields("bytes=-500", "%00%2F..%2f", "ps-2.pcap.part", "ps",
                                     "bearer  tok ", "tok", "[::1]:8080", "cross-site",
                                     "null"))
put("http", "rebinding", http_fields("bytes=5-", "a%zz%4", "../ps-3.pcapng", "ps", "Basic x",
                                     "", "attacker.example:8080", "capture.internal",
                                     "https://attacker.example"))
put("http", "odd-ranges", http_fields("bytes=18446744073709551615-", "%41%42", ".ps-x.pcapng",
                                      "ps", "Bearer", "t", "localhost.", "none",
                                      "http://localhost"))

# env: first byte 0 sensor / 1 receiver; then '\n'-separated items: flags
# ("--http=...") or PACKETSTREAMER_ variables without the prefix.
put("env", "receiver", b"\1" + b"\n".join([
    b"--http=127.0.0.1:0", b"--listen", b"127.0.0.1:8081", b"--output=/tmp/x",
    b"HTTP_MAX_CONNECTIONS=64", b"HTTP_ALLOWED_HOSTS=a.example,b.example",
    b"HTTP_TRUST_LOOPBACK=false", b"LIMITS_MAX_CONNECTIONS=10", b"OUTPUT_FILE_FORMAT=pcap"]))
put("env", "sensor", b"\0" + b"\n".join([
    b"--receiver=127.0.0.1:8081", b"--id=node-1", b"--interface=eth0", b"--interface=veth*",
    b"COMPRESS_BLOCK_SIZE=65536", b"CAPTURE_PORTS=80,443", b"SPOOL_DROP_POLICY=oldest",
    b"HTTP_HEADER_TIMEOUT_SEC=5", b"TLS_ENABLE=true"]))
put("env", "bad-values", b"\1" + b"\n".join([
    b"--format", b"pcapx", b"HTTP_MAX_CONNECTIONS=99999999999", b"LOG_LEVEL=loud",
    b"INPUT_PORT=-1", b"=", b"HTTP_LISTEN=[::1:80"]))
# kube: watch lines as the stand-in API server sends them (full Pods), and
# the shapes a broken or hostile one might.
import json  # noqa: E402
import tempfile  # noqa: E402

from kubeapi import KubeAPI, status  # noqa: E402

with tempfile.TemporaryDirectory() as d:
    api = KubeAPI(d)
    pod = api.make_pod("web-1", "shop", labels={"app": "web", "app.kubernetes.io/name": "web"},
                       ips=["10.244.1.5", "fd00:10:244:1::5"])
    pod["metadata"]["resourceVersion"] = "4711"
    host = api.make_pod("kube-proxy-x", "kube-system", hostNetwork=True, phase="Pending")
    host["metadata"]["resourceVersion"] = "4712"
for t, o in (("ADDED", pod), ("MODIFIED", host), ("DELETED", pod)):
    put("kube", t.lower(), json.dumps({"type": t, "object": o}).encode())
put("kube", "bookmark", json.dumps({"type": "BOOKMARK", "object": {
    "kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "5000"}}}).encode())
put("kube", "error-410", json.dumps({"type": "ERROR", "object": status(
    410, "Expired", "too old resource version: 1 (4000)")}).encode())
many = json.loads(json.dumps(pod))
many["metadata"]["labels"] = {"k%d" % i: "v%d" % i for i in range(70)}
many["status"]["podIPs"] = [{"ip": "10.0.0.%d" % i} for i in range(9)]
put("kube", "many", json.dumps({"type": "ADDED", "object": many}).encode())
put("kube", "odd", b'{"type":"ADDED","object":{"metadata":{"name":"p","namespace":"n",'
    b'"uid":"u","resourceVersion":"1","labels":{"a/b":""}},"status":{"podIP":"::1"},'
    b'"spec":{"hostNetwork":true}}}')
# s3xml: S3's and STS's answers, as AWS sends them, and shapes a broken or
# hostile server might.
S3NS = b' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
put("s3xml", "list-page", b'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult' + S3NS +
    b'><Name>caps</Name><Prefix>cap/</Prefix><ContinuationToken>1ueGcxLPRx1Tr=</ContinuationToken>'
    b'<NextContinuationToken>1ZvQ4ggz&amp;W2Uq=</NextContinuationToken><KeyCount>2</KeyCount>'
    b'<MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated><Contents><Key>cap/n1/a.pcapng</Key>'
    b'<LastModified>2026-12-05T10:05:01.000Z</LastModified><ETag>&quot;9b2c&quot;</ETag>'
    b'<Size>16777216</Size><StorageClass>STANDARD</StorageClass></Contents><Contents>'
    b'<Key>cap/a&amp;b &lt;c&gt; &#x4E2D;.pcapng</Key><Size>0</Size></Contents>'
    b'<CommonPrefixes><Prefix>cap/old/</Prefix></CommonPrefixes></ListBucketResult>')
put("s3xml", "list-last", b'<ListBucketResult' + S3NS + b'>\n  <Name>caps</Name>\n  '
    b'<IsTruncated>false</IsTruncated>\n</ListBucketResult>\n')
put("s3xml", "error", b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
    b'<Message>The specified key does not exist.</Message><Key>k</Key>'
    b'<RequestId>4442587FB7D0A2F9</RequestId></Error>')
put("s3xml", "initiate", b'<InitiateMultipartUploadResult' + S3NS + b'><Bucket>caps</Bucket>'
    b'<Key>k</Key><UploadId>VXBsb2FkIElE</UploadId></InitiateMultipartUploadResult>')
put("s3xml", "complete", b'<CompleteMultipartUploadResult' + S3NS + b'><Location>x</Location>'
    b'<Bucket>caps</Bucket><Key>k</Key><ETag>"3858f62230ac3c915f300c664312c11f-9"</ETag>'
    b'</CompleteMultipartUploadResult>')
put("s3xml", "sts", b'<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/'
    b'2011-06-15/"><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>AK</AccessKeyId>'
    b'<SecretAccessKey>SK</SecretAccessKey><SessionToken>ST</SessionToken>'
    b'<Expiration>2026-12-05T11:00:00Z</Expiration></Credentials>'
    b'</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>')
put("s3xml", "odd", b'<?xml version="1.0" encoding="ISO-8859-1"?><s3:Error xmlns:s3="urn:x" a="1">'
    b'<s3:Code>caf\xe9<![CDATA[<x>]]><!-- c --><?pi x?></s3:Code></s3:Error>')
put("s3xml", "doctype", b'<!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><Error>'
    b'<Code>&b;</Code></Error>')
print("corpus written to", C)
