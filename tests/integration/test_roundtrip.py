"""A capture file goes sensor -> receiver and comes out identical."""

import struct

import pytest

from conftest import (assert_clean_stderr, assert_records_equal, parse_kv, pcaplib, tool_check)

N = 10_000


def roundtrip(env, path, expected, sensor_id, codec=None, fmt=None, ts_div=1, linktype=1):
    rx = env.receiver(fmt=fmt)
    rc, err = env.run_sensor(path, rx.port, codec=codec, sensor_id=sensor_id)
    assert rc == 0, "sensor exit %d:\n%s" % (rc, err)
    assert_clean_stderr(err, "sensor")
    kv = parse_kv(err)
    assert kv.get("packets") == str(len(expected)), "sensor's last line: %r" % kv
    rx.stop()
    files = rx.files()
    assert len(files) == 1, "expected one output file, found %s" % files
    ext = "pcapng" if fmt in (None, "pcapng") else "pcap"
    assert files[0].name.endswith("." + ext)
    got = pcaplib.read_named(str(files[0]))
    ifname = "%s/%s" % (sensor_id, path.name) if ext == "pcapng" else None
    assert_records_equal(got, expected, ifname=ifname, ts_div=ts_div)
    interfaces, _ = pcaplib.read(str(files[0]))
    assert [i.linktype for i in interfaces] == [linktype]
    assert tool_check(files[0]) == len(expected)
    return files[0], kv


@pytest.mark.parametrize("codec", ["none", "zlib", "lz4"])
def test_roundtrip_each_codec(env, captures, codec):
    path, expected = captures.varied(N, seed=1, fmt="pcap-ns")
    _, kv = roundtrip(env, path, expected, "rt-" + codec, codec=codec)
    raw, wire = int(kv["raw_bytes"]), int(kv["wire_bytes"])
    assert raw >= sum(r.caplen for r in expected)
    assert wire > 0


@pytest.mark.parametrize("fmt", ["pcapng", "pcapng-us", "pcap"])
def test_roundtrip_input_formats(env, captures, fmt):
    # pcapng with ns and us resolution, classic pcap with us: the output holds
    # exactly what a reader of the input sees (us timestamps stay multiples of 1000)
    path, expected = captures.varied(N, seed=2, fmt=fmt)
    roundtrip(env, path, expected, "in-" + fmt)


def test_roundtrip_output_pcap_microseconds(env, captures):
    path, expected = captures.varied(N, seed=3, fmt="pcap-ns")
    out, _ = roundtrip(env, path, expected, "out-pcap", fmt="pcap", ts_div=1000)
    interfaces, recs = pcaplib.read(str(out))
    assert out.read_bytes()[:4] == b"\xd4\xc3\xb2\xa1"  # microsecond magic (little endian)
    assert interfaces[0].linktype == 1
    assert all(r.ts_ns % 1000 == 0 for r in recs)


def test_roundtrip_output_pcap_nanoseconds(env, captures):
    path, expected = captures.varied(N, seed=4, fmt="pcap-ns")
    out, _ = roundtrip(env, path, expected, "out-pcap-ns", fmt="pcap-ns")
    assert out.read_bytes()[:4] == b"\x4d\x3c\xb2\xa1"  # nanosecond magic (little endian)


@pytest.mark.parametrize("fmt", ["pcapng", "pcap"])
def test_roundtrip_raw_ip_linktype(env, tmp_path, fmt):
    # LINKTYPE_RAW (101): the link type travels with the interface
    recs = [r for r in pcaplib.gen_varied(800, seed=6)
            if r.data[12:14] == b"\x08\x00" and r.caplen == r.origlen]
    raw = [r._replace(caplen=r.caplen - 14, origlen=r.origlen - 14, data=r.data[14:]) for r in recs]
    path = tmp_path / "raw-ip.pcap"
    pcaplib.write_pcap(str(path), raw, linktype=101, nanosecond=True)
    roundtrip(env, path, raw, "raw", fmt=fmt, linktype=101, ts_div=1000 if fmt == "pcap" else 1)


@pytest.mark.parametrize("codec", ["zlib", "lz4"])
def test_compression_reduces_wire_bytes(env, tmp_path, codec):
    # IMIX frames repeat a few templates: any real codec must shrink them a lot
    path = tmp_path / "imix.pcap"
    pcaplib.write_imix(str(path), 20_000, seed=1, fmt="pcap")
    rx = env.receiver()
    rc, err = env.run_sensor(path, rx.port, codec=codec, sensor_id="cmp")
    assert rc == 0, err
    kv = parse_kv(err)
    rx.stop()
    raw, wire = int(kv["raw_bytes"]), int(kv["wire_bytes"])
    assert wire * 2 < raw, "codec %s: raw_bytes=%d wire_bytes=%d" % (codec, raw, wire)
    assert sum(pcaplib.count_packets(str(f)) for f in rx.files()) == 20_000


def test_sequential_sessions_append_to_one_interface(env, captures):
    # the same sensor id and file twice: both sessions land, under one IDB name
    path, expected = captures.varied(1500, seed=5, fmt="pcap-ns")
    rx = env.receiver()
    for _ in range(2):
        rc, err = env.run_sensor(path, rx.port, sensor_id="again")
        assert rc == 0, err
    rx.stop()
    files = rx.files()
    assert len(files) == 1
    interfaces, _ = pcaplib.read(str(files[0]))
    assert [i.name for i in interfaces] == ["again/" + path.name]
    assert_records_equal(pcaplib.read_named(str(files[0])), expected + expected,
                         ifname="again/" + path.name)


# Classic pcap stores seconds and fraction as unsigned 32-bit fields, so its
# timestamps run to 2106; libpcap returns them sign-extended, which would put
# every record after 2038-01-19 in 1901.
Y2038 = 2 ** 31


@pytest.mark.parametrize("nanosecond", [False, True], ids=["us", "ns"])
def test_roundtrip_classic_pcap_after_2038(env, tmp_path, nanosecond):
    secs = [Y2038 - 1, Y2038, Y2038 + 86_400 * 365 * 30, 2 ** 32 - 1]
    frac_ns = 999_999_000 if not nanosecond else 999_999_999
    expected = [pcaplib.Record(0, s * 1_000_000_000 + f, 60, 60, bytes([i]) * 60)
                for i, s in enumerate(secs) for f in (0, frac_ns)]
    path = tmp_path / ("late-%s.pcap" % ("ns" if nanosecond else "us"))
    pcaplib.write_pcap(path, expected, nanosecond=nanosecond)
    roundtrip(env, path, expected, "y2038-" + ("ns" if nanosecond else "us"))


@pytest.mark.parametrize("nanosecond", [False, True], ids=["us", "ns"])
def test_roundtrip_classic_pcap_fraction_out_of_range(env, tmp_path, nanosecond):
    # A fraction of a second or more (a broken writer) carries into the
    # seconds, as Wireshark shows it, instead of wrapping into the past.
    unit = 1 if nanosecond else 1000
    fracs = [1_000_000_000 // unit, 1_500_000_000 // unit, 2 ** 31, 2 ** 32 - 1]
    raw = pcaplib.pcap_bytes([], nanosecond=nanosecond)
    expected = []
    for i, frac in enumerate(fracs):
        data = bytes([0x40 + i]) * 60
        raw += struct.pack("<IIII", 100, frac, 60, 60) + data
        expected.append(pcaplib.Record(0, 100 * 1_000_000_000 + frac * unit, 60, 60, data))
    path = tmp_path / "frac.pcap"
    path.write_bytes(raw)
    roundtrip(env, path, expected, "frac-" + ("ns" if nanosecond else "us"))
