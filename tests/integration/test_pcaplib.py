"""The test tooling itself: tests/lib/pcaplib.py checked against tshark and
capinfos. Needs no packetstreamer binary."""

import struct
import subprocess
import sys

import pytest

from conftest import REPO, pcaplib, tool_check

PCAPLIB = str(REPO / "tests" / "lib" / "pcaplib.py")


def tshark_fields(path):
    p = subprocess.run(["tshark", "-n", "-r", str(path), "-T", "fields", "-e", "frame.len",
                        "-e", "frame.cap_len", "-e", "frame.time_epoch", "-e", "frame.interface_name"],
                       capture_output=True, text=True, check=True)
    rows = []
    for line in p.stdout.splitlines():
        length, cap, epoch, ifname = (line.split("\t") + [""])[:4]
        sec, _, frac = epoch.partition(".")
        rows.append((int(length), int(cap), int(sec) * 10**9 + int(frac.ljust(9, "0")), ifname))
    return rows


@pytest.mark.parametrize("fmt", ["pcap", "pcap-ns", "pcapng", "pcapng-us"])
def test_varied_agrees_with_tshark(tmp_path, fmt):
    path = tmp_path / ("v." + fmt)
    recs = pcaplib.gen_varied(3000, seed=11)
    pcaplib.write_records(str(path), recs, fmt)
    interfaces, got = pcaplib.read(str(path))
    assert len(interfaces) == 1 and interfaces[0].linktype == 1
    div = 1000 if fmt in ("pcap", "pcapng-us") else 1
    assert pcaplib.compare_records(got, recs, ts_div=div) is None
    rows = tshark_fields(path)
    assert [(r.origlen, r.caplen, r.ts_ns) for r in got] == [row[:3] for row in rows]
    assert tool_check(path) == len(recs)


def test_varied_mix_has_required_shapes():
    recs = pcaplib.gen_varied(400, seed=5)
    assert recs == pcaplib.gen_varied(400, seed=5), "not deterministic"
    assert recs != pcaplib.gen_varied(400, seed=6)
    assert any(r.caplen == 14 == r.origlen for r in recs), "no runt"
    assert any(r.caplen == 9000 for r in recs), "no jumbo"
    assert any(r.caplen < r.origlen for r in recs), "no truncated capture"
    assert any(r.data[12:14] == b"\x81\x00" for r in recs), "no 802.1Q tag"
    assert any(r.data[12:14] == b"\x86\xdd" and r.data[20] == 17 for r in recs), "no IPv6/UDP"
    assert any(r.data[12:14] == b"\x08\x00" and r.data[23] == 6 for r in recs), "no IPv4/TCP"
    assert any(r.data[12:14] == b"\x08\x00" and r.data[23] == 17 for r in recs), "no IPv4/UDP"
    assert all(a.ts_ns < b.ts_ns for a, b in zip(recs, recs[1:])), "timestamps not increasing"
    assert sum(r.ts_ns % 1000 != 0 for r in recs) == len(recs)
    assert all(len(r.data) == r.caplen <= r.origlen for r in recs)
    assert len({r.data for r in recs}) == len(recs), "payloads not unique"
    # the first 8 records hold every kind even for tiny n
    small = pcaplib.gen_varied(8, seed=1)
    assert {r.caplen for r in small} >= {14, 9000}


def test_varied_no_malformed_dissection(tmp_path):
    path = tmp_path / "v.pcapng"
    pcaplib.write_records(str(path), pcaplib.gen_varied(2000, seed=2), "pcapng")
    p = subprocess.run(["tshark", "-n", "-r", str(path), "-Y", "_ws.malformed"],
                       capture_output=True, text=True)
    assert p.stdout.strip() == ""


@pytest.mark.parametrize("fmt", ["pcap", "pcap-ns", "pcapng"])
def test_imix_fast_writer_matches_records(tmp_path, fmt):
    path = tmp_path / ("i." + fmt)
    for n in (0, 1, 11, 12, 13, 24581):
        pcaplib.write_imix(str(path), n, seed=3, fmt=fmt)
        _, got = pcaplib.read(str(path))
        assert pcaplib.compare_records(got, pcaplib.gen_imix(n, seed=3)) is None
        assert pcaplib.count_packets(str(path)) == n
    sizes = [r.caplen for r in got[:1200]]
    assert (sizes.count(64), sizes.count(576), sizes.count(1500)) == (700, 400, 100)
    assert tool_check(path) == 24581


def test_big_endian_pcap(tmp_path):
    recs = pcaplib.gen_varied(50, seed=4)
    for ns in (False, True):
        path = tmp_path / ("be-%d.pcap" % ns)
        with open(path, "wb") as f:
            f.write(pcaplib.pcap_bytes(recs, nanosecond=ns, endian=">"))
        _, got = pcaplib.read(str(path))
        assert pcaplib.compare_records(got, recs, 1 if ns else 1000) is None
        assert [(r.origlen, r.caplen, r.ts_ns) for r in got] == [x[:3] for x in tshark_fields(path)]


def test_big_endian_pcapng_and_multiple_sections(tmp_path):
    a = pcaplib.gen_varied(30, seed=1)
    b = pcaplib.gen_varied(20, seed=2)
    s1 = pcaplib.pcapng_bytes([("a0", 1, 65535), ("a1", 1, 65535, 6)],
                              [r._replace(iface=i % 2) for i, r in enumerate(a)], endian=">")
    s2 = pcaplib.pcapng_bytes([("b0", 1, 262144)], b)
    path = tmp_path / "multi.pcapng"
    path.write_bytes(s1 + s2)
    sections = pcaplib.read_sections(str(path))
    assert [len(s[0]) for s in sections] == [2, 1]
    assert [r.iface for r in sections[1][1]] == [0] * 20
    interfaces, recs = pcaplib.read(str(path))
    assert [i.name for i in interfaces] == ["a0", "a1", "b0"]
    assert [i.section for i in interfaces] == [0, 0, 1]
    assert [r.iface for r in recs[30:]] == [2] * 20
    named = pcaplib.read_named(str(path))
    assert [n[0] for n in named] == ["a0", "a1"] * 15 + ["b0"] * 20
    # the us interface a1 truncates
    exp = [r.ts_ns if i % 2 == 0 else r.ts_ns // 1000 * 1000 for i, r in enumerate(a)] + \
        [r.ts_ns for r in b]
    assert [n[1] for n in named] == exp
    rows = tshark_fields(path)
    # (names not compared: tshark 4.0 maps interface ids of later sections to the
    # first section's IDBs, whereas the spec makes them section-local)
    assert [(n[3], n[2], n[1]) for n in named] == [row[:3] for row in rows]


def test_power_of_two_resolution_and_isb(tmp_path):
    recs = pcaplib.gen_varied(10, seed=9)
    stats = [(0, recs[-1].ts_ns, {"ifrecv": 100, "ifdrop": 3, "osdrop": 2, "usrdeliv": 95,
                                  "starttime": recs[0].ts_ns, "endtime": recs[-1].ts_ns})]
    path = tmp_path / "p2.pcapng"
    pcaplib.write_pcapng(str(path), [("eth0", 1, 262144, 0x80 | 30)], recs, stats=stats)
    interfaces, got = pcaplib.read(str(path))
    assert interfaces[0].tsresol == 1 << 30
    for g, r in zip(got, recs):
        assert abs(g.ts_ns - r.ts_ns) <= 1
    st = interfaces[0].stats
    assert len(st) == 1
    assert (st[0]["ifrecv"], st[0]["ifdrop"], st[0]["osdrop"], st[0]["usrdeliv"]) == (100, 3, 2, 95)
    assert abs(st[0]["starttime"] - recs[0].ts_ns) <= 1
    tool_check(path)


def test_simple_packet_block_and_unknown_blocks(tmp_path):
    recs = pcaplib.gen_varied(3, seed=1)
    buf = pcaplib.pcapng_bytes([("eth0", 1, 100)], recs)
    # an SPB (origlen 200, data cut to the snaplen 100) and an unknown block type
    spb_body = struct.pack("<I", 200) + bytes(range(100))
    buf += struct.pack("<II", 3, 12 + len(spb_body)) + spb_body + struct.pack("<I", 12 + len(spb_body))
    buf += struct.pack("<II", 0x0BAD, 16) + b"abcd" + struct.pack("<I", 16)
    _, got = pcaplib.read_bytes(buf)
    assert len(got) == 4
    assert got[3].ts_ns is None and got[3].caplen == 100 and got[3].origlen == 200


def corruptions():
    recs = pcaplib.gen_varied(5, seed=1)
    ng = pcaplib.pcapng_bytes([("eth0", 1, 262144)], recs)
    pc = pcaplib.pcap_bytes(recs, nanosecond=True)
    shb_len = struct.unpack_from("<I", ng, 4)[0]
    idb_len = struct.unpack_from("<I", ng, shb_len + 4)[0]
    epb = shb_len + idb_len
    bad_trailer = bytearray(ng)
    struct.pack_into("<I", bad_trailer, epb + struct.unpack_from("<I", ng, epb + 4)[0] - 4, 12345)
    bad_iface = bytearray(ng)
    struct.pack_into("<I", bad_iface, epb + 8, 7)
    bad_caplen = bytearray(ng)
    struct.pack_into("<I", bad_caplen, epb + 20, 60000)
    odd_len = bytearray(ng)
    struct.pack_into("<I", odd_len, epb + 4, 33)
    bad_pcap_caplen = bytearray(pc)
    struct.pack_into("<I", bad_pcap_caplen, 24 + 8, 10**6)
    return {
        "pcapng-truncated": ng[:-3],
        "pcapng-truncated-header": ng[:len(ng) - 1] [:epb + 6],
        "pcapng-bad-trailer": bytes(bad_trailer),
        "pcapng-bad-iface": bytes(bad_iface),
        "pcapng-caplen-past-block": bytes(bad_caplen),
        "pcapng-length-not-aligned": bytes(odd_len),
        "pcapng-bad-bom": ng[:8] + b"\x00\x01\x02\x03" + ng[12:],
        "pcap-truncated-record": pc[:-1],
        "pcap-truncated-header": pc[:30],
        "pcap-huge-caplen": bytes(bad_pcap_caplen),
        "not-a-capture": b"hello world, this is not a capture file\n",
        "empty": b"",
    }


@pytest.mark.parametrize("name", sorted(corruptions()))
def test_corruption_raises_valueerror(name):
    with pytest.raises(ValueError):
        pcaplib.read_bytes(corruptions()[name])


def test_cli(tmp_path):
    py = sys.executable
    a, b, c = tmp_path / "a.pcapng", tmp_path / "b.pcap", tmp_path / "c.pcap"
    run = lambda *args: subprocess.run([py, PCAPLIB] + [str(x) for x in args],  # noqa: E731
                                       capture_output=True, text=True)
    assert run("gen", "--kind", "varied", "--count", 100, "--out", a, "--format", "pcapng",
               "--seed", 7).returncode == 0
    assert run("gen", "--kind", "varied", "--count", 100, "--out", b, "--format", "pcap-ns",
               "--seed", 7).returncode == 0
    assert run("gen", "--kind", "varied", "--count", 100, "--out", c, "--format", "pcap-ns",
               "--seed", 8).returncode == 0
    p = run("summary", a)
    assert p.returncode == 0 and "packets=100" in p.stdout and len(p.stdout.splitlines()) == 1
    assert run("compare", a, b).returncode == 0
    p = run("compare", a, c)
    assert p.returncode == 1 and "record 0" in p.stdout
    assert run("gen", "--kind", "imix", "--count", 1000, "--out", c, "--format", "pcap").returncode == 0
    p = run("count", c)
    assert p.returncode == 0 and p.stdout.split()[-1] == "1000"
