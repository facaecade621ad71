#!/usr/bin/python3
"""pcaplib: read, write and generate pcap and pcapng files (standard library only).

Used by the integration tests, the demo and the benchmark; also a small CLI:

    pcaplib.py gen --kind varied|imix --count N --out F [--format pcap|pcap-ns|pcapng] [--seed S]
    pcaplib.py summary F        one line: packets, bytes, interfaces, first/last time
    pcaplib.py compare A B      exit 0 if the records are identical, else print the first
                                difference and exit 1
    pcaplib.py count F          number of packets (fast path for big files)

Data model
    Record(iface, ts_ns, caplen, origlen, data)  -- len(data) == caplen
    Interface(name, linktype, snaplen, tsresol, section, stats, description)
        tsresol is the number of timestamp units per second (10**9 for ns);
        stats is a list of dicts, one per Interface Statistics Block seen for it.

read(path) returns (interfaces, records). For a file with one section (every
classic pcap file and almost every pcapng file) record.iface indexes the IDB
list of that section, which is the interfaces list. With several sections the
interfaces of all sections are concatenated in file order and record.iface is
the index into that concatenated list (section-local index + number of
interfaces of the earlier sections); Interface.section tells which section an
interface belongs to. read_sections(path) gives the per-section view with
section-local indexes. read_named(path) gives (ifname, ts_ns, caplen,
origlen, data) tuples across all sections.

Corruption (bad magic, a block or record running past the end of the file,
inconsistent lengths, a packet naming an interface that was not described)
raises ValueError with the byte offset.
"""

import argparse
import collections
import datetime
import random
import struct
import sys

__all__ = [
    "Record", "Interface", "LINKTYPE_ETHERNET",
    "write_pcap", "write_pcapng", "pcap_bytes", "pcapng_bytes",
    "read", "read_bytes", "read_sections", "read_named", "count_packets",
    "gen_varied", "gen_imix", "write_imix", "write_records",
    "compare_records", "summary_line",
]

Record = collections.namedtuple("Record", "iface ts_ns caplen origlen data")
Interface = collections.namedtuple(
    "Interface", "name linktype snaplen tsresol section stats description")

LINKTYPE_ETHERNET = 1

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAP_MAGIC_MODIFIED = 0xA1B2CD34  # Kuznetzov's patched libpcap: 24-byte record headers

BT_SHB = 0x0A0D0D0A
BT_IDB = 0x00000001
BT_PB = 0x00000002  # obsolete Packet Block
BT_SPB = 0x00000003
BT_NRB = 0x00000004
BT_ISB = 0x00000005
BT_EPB = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D

MAX_CAPLEN = 262144  # libpcap's MAXIMUM_SNAPLEN; larger is treated as corruption

# ----------------------------------------------------------------------------
# writing


def _pad4(n):
    return (4 - (n & 3)) & 3


def pcap_bytes(records, linktype=LINKTYPE_ETHERNET, nanosecond=False, snaplen=MAX_CAPLEN,
               endian="<"):
    """The bytes of a classic pcap file holding records (endian "<" or ">")."""
    out = bytearray(struct.pack(endian + "IHHiIII", PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US,
                                2, 4, 0, 0, snaplen, linktype))
    hdr = struct.Struct(endian + "IIII")
    div = 1 if nanosecond else 1000
    for r in records:
        data = bytes(r.data)
        if len(data) != r.caplen:
            raise ValueError("record caplen %d != len(data) %d" % (r.caplen, len(data)))
        sec, frac = divmod(r.ts_ns, 1_000_000_000)
        out += hdr.pack(sec, frac // div, r.caplen, r.origlen)
        out += data
    return bytes(out)


def write_pcap(path, records, linktype=LINKTYPE_ETHERNET, nanosecond=False, snaplen=MAX_CAPLEN,
               endian="<"):
    """Writes a classic pcap file (microsecond magic, or nanosecond magic when
    nanosecond=True; microsecond files truncate ts_ns)."""
    with open(path, "wb") as f:
        f.write(pcap_bytes(records, linktype, nanosecond, snaplen, endian))


def _opt(code, value, e="<"):
    return struct.pack(e + "HH", code, len(value)) + value + b"\0" * _pad4(len(value))


def _block(btype, body, e="<"):
    body = bytes(body) + b"\0" * _pad4(len(body))
    total = len(body) + 12
    return struct.pack(e + "II", btype, total) + body + struct.pack(e + "I", total)


def _shb(app="pcaplib.py", e="<"):
    opts = _opt(4, app.encode(), e) + _opt(0, b"", e)
    return _block(BT_SHB, struct.pack(e + "IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + opts, e)


def _idb(name, linktype, snaplen, tsresol_code=9, e="<"):
    opts = b""
    if name is not None:
        opts += _opt(2, name.encode(), e)
    opts += _opt(9, bytes([tsresol_code]), e)
    opts += _opt(0, b"", e)
    return _block(BT_IDB, struct.pack(e + "HHI", linktype, 0, snaplen) + opts, e)


def _tsres_units(code):
    if code & 0x80:
        return 1 << (code & 0x7F)
    return 10 ** code


def pcapng_bytes(interfaces, records, app="pcaplib.py", stats=None, endian="<"):
    """The bytes of a one-section pcapng file.

    interfaces: list of (name, linktype, snaplen) or (name, linktype, snaplen,
    tsresol_code) where tsresol_code is the if_tsresol option byte (9 = ns,
    the default here; 6 = us). records: Record with iface indexing interfaces.
    stats: optional list of (iface, ts_ns, {"ifrecv": n, "ifdrop": n, ...})
    written as ISBs at the end. endian: "<" or ">" (byte order of the section).
    """
    e = endian
    out = bytearray(_shb(app, e))
    units = []
    for itf in interfaces:
        name, linktype, snaplen = itf[0], itf[1], itf[2]
        code = itf[3] if len(itf) > 3 else 9
        out += _idb(name, linktype, snaplen, code, e)
        units.append(_tsres_units(code))
    for r in records:
        if not 0 <= r.iface < len(interfaces):
            raise ValueError("record names interface %d, only %d described" % (r.iface, len(interfaces)))
        data = bytes(r.data)
        if len(data) != r.caplen:
            raise ValueError("record caplen %d != len(data) %d" % (r.caplen, len(data)))
        ts = r.ts_ns * units[r.iface] // 1_000_000_000
        pad = _pad4(r.caplen)
        total = 32 + r.caplen + pad
        out += struct.pack(e + "IIIIIII", BT_EPB, total, r.iface, ts >> 32, ts & 0xFFFFFFFF,
                           r.caplen, r.origlen)
        out += data
        out += b"\0" * pad
        out += struct.pack(e + "I", total)
    codes = {"starttime": 2, "endtime": 3, "ifrecv": 4, "ifdrop": 5, "filteraccept": 6,
             "osdrop": 7, "usrdeliv": 8}
    for iface, ts_ns, counters in stats or ():
        ts = ts_ns * units[iface] // 1_000_000_000
        opts = b""
        for key, val in counters.items():
            if key in ("starttime", "endtime"):
                val = val * units[iface] // 1_000_000_000
                opts += _opt(codes[key], struct.pack(e + "II", val >> 32, val & 0xFFFFFFFF), e)
            else:
                opts += _opt(codes[key], struct.pack(e + "Q", val), e)
        opts += _opt(0, b"", e)
        out += _block(BT_ISB, struct.pack(e + "III", iface, ts >> 32, ts & 0xFFFFFFFF) + opts, e)
    return bytes(out)


def write_pcapng(path, interfaces, records, app="pcaplib.py", stats=None, endian="<"):
    """Writes a one-section pcapng file; see pcapng_bytes()."""
    with open(path, "wb") as f:
        f.write(pcapng_bytes(interfaces, records, app, stats, endian))


def write_records(path, records, fmt="pcap-ns", ifname="eth0", snaplen=MAX_CAPLEN):
    """Writes records of one Ethernet interface as fmt: pcap | pcap-ns | pcapng
    (pcapng-us: pcapng with if_tsresol 6)."""
    if fmt == "pcap":
        write_pcap(path, records, nanosecond=False, snaplen=snaplen)
    elif fmt == "pcap-ns":
        write_pcap(path, records, nanosecond=True, snaplen=snaplen)
    elif fmt in ("pcapng", "pcapng-us"):
        code = 6 if fmt == "pcapng-us" else 9
        recs = (r._replace(iface=0) for r in records)
        write_pcapng(path, [(ifname, LINKTYPE_ETHERNET, snaplen, code)], recs)
    else:
        raise ValueError("unknown format %r" % fmt)


# ----------------------------------------------------------------------------
# reading


def _ts_to_ns(ts, units):
    if units == 1_000_000_000:
        return ts
    if 1_000_000_000 % units == 0:
        return ts * (1_000_000_000 // units)
    return ts * 1_000_000_000 // units


def _read_pcap(buf):
    magic_le = struct.unpack_from("<I", buf, 0)[0]
    magic_be = struct.unpack_from(">I", buf, 0)[0]
    for endian, magic in (("<", magic_le), (">", magic_be)):
        if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS, PCAP_MAGIC_MODIFIED):
            break
    else:
        raise ValueError("not a pcap file (magic %08x)" % magic_le)
    if len(buf) < 24:
        raise ValueError("truncated pcap file header (%d bytes)" % len(buf))
    _, vmaj, vmin, _, _, snaplen, linktype = struct.unpack_from(endian + "IHHiIII", buf, 0)
    if vmaj != 2:
        raise ValueError("unsupported pcap version %d.%d" % (vmaj, vmin))
    units = 1_000_000_000 if magic == PCAP_MAGIC_NS else 1_000_000
    hdrlen = 24 if magic == PCAP_MAGIC_MODIFIED else 16
    iface = Interface(None, linktype & 0x03FFFFFF, snaplen, units, 0, [], None)
    records = []
    hdr = struct.Struct(endian + "IIII")
    off, n = 24, len(buf)
    mul = 1 if units == 1_000_000_000 else 1000
    while off < n:
        if off + hdrlen > n:
            raise ValueError("truncated pcap record header at offset %d" % off)
        sec, frac, caplen, origlen = hdr.unpack_from(buf, off)
        if caplen > MAX_CAPLEN:
            raise ValueError("pcap record at offset %d: caplen %d too large" % (off, caplen))
        if frac >= units:
            raise ValueError("pcap record at offset %d: sub-second field %d out of range" % (off, frac))
        start = off + hdrlen
        if start + caplen > n:
            raise ValueError("truncated pcap record at offset %d (caplen %d, %d bytes left)"
                             % (off, caplen, n - start))
        records.append(Record(0, sec * 1_000_000_000 + frac * mul, caplen, origlen,
                              bytes(buf[start:start + caplen])))
        off = start + caplen
    return [[iface], records]


def _parse_options(buf, off, end, endian, where):
    """Yields (code, value) until opt_endofopt or end."""
    while off + 4 <= end:
        code, length = struct.unpack_from(endian + "HH", buf, off)
        off += 4
        if code == 0:
            return
        if off + length > end:
            raise ValueError("%s: option %d length %d runs past the block" % (where, code, length))
        yield code, bytes(buf[off:off + length])
        off += length + _pad4(length)
    if off < end:
        raise ValueError("%s: %d stray bytes in the options" % (where, end - off))


def _read_pcapng(buf):
    """Returns a list of sections, each [interfaces, records] with local iface indexes."""
    sections = []
    n = len(buf)
    off = 0
    endian = None
    ifaces = records = tsoff = None
    while off < n:
        if off + 12 > n:
            raise ValueError("truncated block header at offset %d" % off)
        btype_le = struct.unpack_from("<I", buf, off)[0]
        if btype_le == BT_SHB:
            bom = buf[off + 8:off + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                endian = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                endian = ">"
            else:
                raise ValueError("section header at offset %d: bad byte-order magic %s"
                                 % (off, bom.hex()))
        elif endian is None:
            raise ValueError("offset %d: block before the first section header" % off)
        btype, total = struct.unpack_from(endian + "II", buf, off)
        if total < 12 or total % 4:
            raise ValueError("block type 0x%x at offset %d: bad total length %d" % (btype, off, total))
        if off + total > n:
            raise ValueError("block type 0x%x at offset %d: length %d runs past end of file (%d)"
                             % (btype, off, total, n))
        trailer = struct.unpack_from(endian + "I", buf, off + total - 4)[0]
        if trailer != total:
            raise ValueError("block type 0x%x at offset %d: trailing length %d != %d"
                             % (btype, off, trailer, total))
        body, end = off + 8, off + total - 4
        where = "offset %d" % off
        if btype == BT_SHB:
            if total < 28:
                raise ValueError("%s: section header too short (%d)" % (where, total))
            vmaj, vmin = struct.unpack_from(endian + "HH", buf, body + 4)
            if vmaj != 1:
                raise ValueError("%s: unsupported pcapng version %d.%d" % (where, vmaj, vmin))
            ifaces, records, tsoff = [], [], []
            sections.append([ifaces, records])
        elif btype == BT_IDB:
            if end - body < 8:
                raise ValueError("%s: interface description too short" % where)
            linktype, _, snaplen = struct.unpack_from(endian + "HHI", buf, body)
            name = desc = None
            units = 1_000_000
            offset_s = 0
            for code, val in _parse_options(buf, body + 8, end, endian, where):
                if code == 2:
                    name = val.rstrip(b"\0").decode("utf-8", "replace")
                elif code == 3:
                    desc = val.rstrip(b"\0").decode("utf-8", "replace")
                elif code == 9:
                    if len(val) != 1:
                        raise ValueError("%s: if_tsresol length %d" % (where, len(val)))
                    units = _tsres_units(val[0])
                elif code == 14:
                    if len(val) != 8:
                        raise ValueError("%s: if_tsoffset length %d" % (where, len(val)))
                    offset_s = struct.unpack(endian + "q", val)[0]
            ifaces.append(Interface(name, linktype, snaplen, units, len(sections) - 1, [], desc))
            tsoff.append(offset_s * 1_000_000_000)
        elif btype in (BT_EPB, BT_PB):
            if end - body < 20:
                raise ValueError("%s: packet block too short" % where)
            if btype == BT_EPB:
                iface, hi, lo, caplen, origlen = struct.unpack_from(endian + "IIIII", buf, body)
            else:
                iface, _drops, hi, lo, caplen, origlen = struct.unpack_from(endian + "HHIIII", buf, body)
            if iface >= len(ifaces):
                raise ValueError("%s: packet names interface %d, only %d described in this section"
                                 % (where, iface, len(ifaces)))
            if caplen > MAX_CAPLEN:
                raise ValueError("%s: caplen %d too large" % (where, caplen))
            dstart = body + 20
            if dstart + caplen + _pad4(caplen) > end:
                raise ValueError("%s: caplen %d runs past the block (total %d)" % (where, caplen, total))
            itf = ifaces[iface]
            ts_ns = _ts_to_ns((hi << 32) | lo, itf.tsresol) + tsoff[iface]
            records.append(Record(iface, ts_ns, caplen, origlen, bytes(buf[dstart:dstart + caplen])))
            # options after the data are ignored (but must fit: checked by the bound above)
        elif btype == BT_SPB:
            if end - body < 4:
                raise ValueError("%s: simple packet block too short" % where)
            if not ifaces:
                raise ValueError("%s: simple packet block without an interface" % where)
            origlen = struct.unpack_from(endian + "I", buf, body)[0]
            snap = ifaces[0].snaplen or MAX_CAPLEN
            caplen = min(origlen, snap, end - body - 4)
            records.append(Record(0, None, caplen, origlen, bytes(buf[body + 4:body + 4 + caplen])))
        elif btype == BT_ISB:
            if end - body < 12:
                raise ValueError("%s: interface statistics too short" % where)
            iface, hi, lo = struct.unpack_from(endian + "III", buf, body)
            if iface >= len(ifaces):
                raise ValueError("%s: statistics name interface %d, only %d described"
                                 % (where, iface, len(ifaces)))
            itf = ifaces[iface]
            st = {"ts_ns": _ts_to_ns((hi << 32) | lo, itf.tsresol) + tsoff[iface]}
            names = {2: "starttime", 3: "endtime", 4: "ifrecv", 5: "ifdrop", 6: "filteraccept",
                     7: "osdrop", 8: "usrdeliv"}
            for code, val in _parse_options(buf, body + 12, end, endian, where):
                if code in names:
                    if len(val) != 8:
                        raise ValueError("%s: ISB option %d length %d" % (where, code, len(val)))
                    v = struct.unpack(endian + "Q", val)[0]
                    if code in (2, 3):  # timestamps: high 32 bits first
                        hi2, lo2 = struct.unpack(endian + "II", val)
                        v = _ts_to_ns((hi2 << 32) | lo2, itf.tsresol) + tsoff[iface]
                    st[names[code]] = v
                elif code == 1:
                    st["comment"] = val.decode("utf-8", "replace")
            itf.stats.append(st)
        # NRB, custom, DSB, unknown: skipped
        off += total
    if not sections:
        raise ValueError("empty pcapng file")
    return sections


def _sections_of(buf):
    buf = memoryview(buf) if not isinstance(buf, (bytes, bytearray, memoryview)) else buf
    if len(buf) < 4:
        raise ValueError("file too short (%d bytes) for any capture format" % len(buf))
    if struct.unpack_from("<I", buf, 0)[0] == BT_SHB:
        return _read_pcapng(buf)
    return [_read_pcap(buf)]


def read_bytes(buf):
    """Like read(), from bytes."""
    return _flatten(_sections_of(buf))


def _flatten(sections):
    if len(sections) == 1:
        return sections[0][0], sections[0][1]
    interfaces, records = [], []
    for ifs, recs in sections:
        base = len(interfaces)
        interfaces.extend(ifs)
        records.extend(r._replace(iface=r.iface + base) for r in recs)
    return interfaces, records


def _load(path):
    with open(path, "rb") as f:
        return f.read()


def read_sections(path):
    """List of (interfaces, records) per section, record.iface section-local."""
    return [tuple(s) for s in _sections_of(_load(path))]


def read(path):
    """Reads pcap (us/ns magic, either byte order) or pcapng; returns
    (interfaces, records). See the module doc for multi-section files."""
    return _flatten(_sections_of(_load(path)))


def read_named(path_or_bytes):
    """List of (ifname, ts_ns, caplen, origlen, data) across all sections."""
    buf = path_or_bytes if isinstance(path_or_bytes, (bytes, bytearray)) else _load(path_or_bytes)
    out = []
    for ifs, recs in _sections_of(buf):
        for r in recs:
            out.append((ifs[r.iface].name, r.ts_ns, r.caplen, r.origlen, r.data))
    return out


def count_packets(path):
    """Counts packet records quickly (walks headers only; checks lengths)."""
    with open(path, "rb") as f:
        buf = f.read()
    mv = memoryview(buf)
    n = len(buf)
    if n < 4:
        raise ValueError("file too short")
    count = 0
    if struct.unpack_from("<I", buf, 0)[0] == BT_SHB:
        off = 0
        endian = "<"
        unpack = struct.Struct("<II").unpack_from
        while off < n:
            if off + 12 > n:
                raise ValueError("truncated block header at offset %d" % off)
            if struct.unpack_from("<I", mv, off)[0] == BT_SHB:
                endian = "<" if bytes(mv[off + 8:off + 12]) == b"\x4d\x3c\x2b\x1a" else ">"
                unpack = struct.Struct(endian + "II").unpack_from
            btype, total = unpack(mv, off)
            if total < 12 or total % 4 or off + total > n:
                raise ValueError("bad block length %d at offset %d" % (total, off))
            if btype in (BT_EPB, BT_SPB, BT_PB):
                count += 1
            off += total
        return count
    magic = struct.unpack_from("<I", buf, 0)[0]
    endian = "<" if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS, PCAP_MAGIC_MODIFIED) else ">"
    hdrlen = 24 if struct.unpack_from(endian + "I", buf, 0)[0] == PCAP_MAGIC_MODIFIED else 16
    if struct.unpack_from(endian + "I", buf, 0)[0] not in (PCAP_MAGIC_US, PCAP_MAGIC_NS,
                                                          PCAP_MAGIC_MODIFIED):
        raise ValueError("not a pcap or pcapng file")
    capat = struct.Struct(endian + "I").unpack_from
    off = 24
    while off < n:
        if off + hdrlen > n:
            raise ValueError("truncated record header at offset %d" % off)
        caplen = capat(mv, off + 8)[0]
        off += hdrlen + caplen
        if off > n:
            raise ValueError("truncated record at end of file")
        count += 1
    return count


# ----------------------------------------------------------------------------
# generating


def _csum(data):
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def _eth(dst, src, ethertype, vlan=None):
    if vlan is not None:
        return dst + src + struct.pack("!HHH", 0x8100, vlan, ethertype)
    return dst + src + struct.pack("!H", ethertype)


def _ipv4(src, dst, proto, payload, ident, ttl=64):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000,
                      ttl, proto, 0, src, dst)
    return hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:] + payload


def _udp4(src, dst, sport, dport, payload):
    length = 8 + len(payload)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, length)
    seg = struct.pack("!HHHH", sport, dport, length, 0) + payload
    c = _csum(pseudo + seg) or 0xFFFF
    return seg[:6] + struct.pack("!H", c) + seg[8:]


def _tcp4(src, dst, sport, dport, seq, ack, flags, payload):
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0) + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(seg))
    c = _csum(pseudo + seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def _ipv6_udp(src, dst, sport, dport, payload, hlim=64):
    length = 8 + len(payload)
    pseudo = src + dst + struct.pack("!IxxxB", length, 17)
    seg = struct.pack("!HHHH", sport, dport, length, 0) + payload
    c = _csum(pseudo + seg) or 0xFFFF
    seg = seg[:6] + struct.pack("!H", c) + seg[8:]
    return struct.pack("!IHBB16s16s", 6 << 28, length, 17, hlim, src, dst) + seg


def _payload(rng, i, seed, size):
    tag = b"pkt=%010d seed=%d " % (i, seed)
    if size <= len(tag):
        return tag[:max(size, 0)]
    return tag + rng.randbytes(size - len(tag))


_KINDS = (["udp4"] * 5 + ["tcp4"] * 5 + ["udp6"] * 3 + ["vlan"] * 2 +
          ["trunc", "runt", "jumbo", "arp"])


def gen_varied(n, seed=1, start_ns=None):
    """n deterministic Ethernet records (iface 0) of varied shape.

    Mix: IPv4/UDP, IPv4/TCP, IPv6/UDP, 802.1Q-tagged IPv4/UDP, ARP, 14-byte
    runts (a bare Ethernet header), 9000-byte jumbo frames, and truncated
    captures (caplen < origlen). Every IP packet carries "pkt=<index>
    seed=<seed>" so payloads are unique. Timestamps are strictly increasing
    nanoseconds, almost never multiples of 1000. The first 16 records cycle
    through every kind so that even a small n holds each of them.
    """
    rng = random.Random(seed)
    ts = start_ns if start_ns is not None else 1_700_000_000_000_000_000 + seed * 7_919_000_001_337
    mac_a = bytes([0x02, 0, 0, seed & 0xFF, 0, 1])
    mac_b = bytes([0x02, 0, 0, seed & 0xFF, 0, 2])
    ip_a, ip_b = bytes([10, seed & 0xFF, 0, 1]), bytes([10, seed & 0xFF, 0, 2])
    ip6_a = bytes.fromhex("fd00000000000000") + bytes([0, 0, 0, 0, 0, 0, seed & 0xFF, 1])
    ip6_b = bytes.fromhex("fd00000000000000") + bytes([0, 0, 0, 0, 0, 0, seed & 0xFF, 2])
    order = ["udp4", "tcp4", "udp6", "vlan", "trunc", "runt", "jumbo", "arp"]
    seq = rng.getrandbits(32)
    out = []
    for i in range(n):
        kind = order[i] if i < len(order) else rng.choice(_KINDS)
        fwd = rng.random() < 0.5
        sm, dm = (mac_a, mac_b) if fwd else (mac_b, mac_a)
        si, di = (ip_a, ip_b) if fwd else (ip_b, ip_a)
        origlen = None
        if kind == "udp4":
            pl = _payload(rng, i, seed, rng.randint(20, 1400))
            frame = _eth(dm, sm, 0x0800) + _ipv4(si, di, 17, _udp4(si, di, 47011, 47001, pl), i)
        elif kind == "tcp4":
            pl = _payload(rng, i, seed, rng.choice((0, 0, rng.randint(20, 1400))))
            seq = (seq + 1 + len(pl)) & 0xFFFFFFFF
            frame = _eth(dm, sm, 0x0800) + _ipv4(
                si, di, 6, _tcp4(si, di, 47002, 47012, seq, 12345, 0x18 if pl else 0x10, pl), i)
        elif kind == "udp6":
            pl = _payload(rng, i, seed, rng.randint(20, 1200))
            s6, d6 = (ip6_a, ip6_b) if fwd else (ip6_b, ip6_a)
            frame = _eth(dm, sm, 0x86DD) + _ipv6_udp(s6, d6, 47003, 47013, pl)
        elif kind == "vlan":
            pl = _payload(rng, i, seed, rng.randint(20, 1400))
            frame = _eth(dm, sm, 0x0800, vlan=(rng.randint(0, 7) << 13) | rng.randint(1, 4094)) + \
                _ipv4(si, di, 17, _udp4(si, di, 47004, 47004, pl), i)
        elif kind == "trunc":
            pl = _payload(rng, i, seed, rng.randint(200, 1400))
            full = _eth(dm, sm, 0x0800) + _ipv4(si, di, 17, _udp4(si, di, 47005, 47005, pl), i)
            origlen = len(full)
            frame = full[:rng.choice((54, 64, 96, 128))]
        elif kind == "runt":
            # a bare 14-byte Ethernet header (local experimental ethertype); the
            # source MAC carries the index so that runts stay unique
            frame = dm + struct.pack("!IH", i, seed & 0xFFFF) + struct.pack("!H", 0x88B5)
        elif kind == "jumbo":
            pl = _payload(rng, i, seed, 9000 - 14 - 20 - 8)
            frame = _eth(dm, sm, 0x0800) + _ipv4(si, di, 17, _udp4(si, di, 47006, 47006, pl), i)
        else:  # arp request
            frame = _eth(b"\xff" * 6, sm, 0x0806) + struct.pack(
                "!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, sm, si, b"\0" * 6, di) + \
                struct.pack("!I", i) + b"\0" * 14
        ts += rng.randint(1, 3_000_000) if rng.random() < 0.9 else rng.randint(3_000_000, 900_000_000)
        if ts % 1000 == 0:
            ts += 1
        out.append(Record(0, ts, len(frame), origlen if origlen is not None else len(frame), frame))
    return out


IMIX_SIZES = (64, 64, 576, 64, 64, 576, 64, 1500, 64, 576, 64, 576)  # 7:4:1


def _imix_templates(seed):
    src, dst = bytes([10, 1, (seed >> 8) & 0xFF, seed & 0xFF]), bytes([10, 2, 0, 1])
    tmpls = []
    for k, size in enumerate(IMIX_SIZES):
        pl_len = size - 14 - 20 - 8
        pl = bytes((j * 7 + k) & 0xFF for j in range(pl_len))
        udp = struct.pack("!HHHH", 10000 + k, 20000, 8 + pl_len, 0) + pl  # UDP checksum 0 (none)
        frame = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00" + _ipv4(src, dst, 17, udp, k)
        assert len(frame) == size
        tmpls.append(frame)
    return tmpls


IMIX_COUNTER_OFFSET = 14 + 20 + 8  # first 8 bytes of the UDP payload: packet index


def gen_imix(n, seed=1, start_ns=1_700_000_000_000_000_000, step_ns=1000):
    """n Ethernet/IPv4/UDP records of 64/576/1500 bytes in ratio 7:4:1; the
    UDP payload starts with the packet index (8 bytes, big endian)."""
    tmpls = _imix_templates(seed)
    out = []
    for i in range(n):
        t = bytearray(tmpls[i % 12])
        struct.pack_into("!Q", t, IMIX_COUNTER_OFFSET, i)
        out.append(Record(0, start_ns + i * step_ns, len(t), len(t), bytes(t)))
    return out


def write_imix(path, n, seed=1, fmt="pcap", start_ns=1_700_000_000_000_000_000, step_ns=1000):
    """Writes gen_imix(n, seed) straight to a file, fast (about 1 s per million
    packets): one pre-built cycle of 12 records is copied and patched with
    struct.pack_into. fmt: pcap | pcap-ns | pcapng. Returns bytes written."""
    tmpls = _imix_templates(seed)
    ns = fmt in ("pcap-ns", "pcapng")
    div = 1 if ns else 1000
    if fmt == "pcapng":
        head = _shb() + _idb("imix0", LINKTYPE_ETHERNET, MAX_CAPLEN, 9)
    elif fmt in ("pcap", "pcap-ns"):
        head = struct.pack("<IHHiIII", PCAP_MAGIC_NS if ns else PCAP_MAGIC_US, 2, 4, 0, 0,
                           MAX_CAPLEN, LINKTYPE_ETHERNET)
    else:
        raise ValueError("unknown format %r" % fmt)
    # one cycle of 12 records, with the offsets of the fields to patch
    cycle = bytearray()
    patch = []  # (record start, ts offset, counter offset) within the cycle
    for t in tmpls:
        size = len(t)
        start = len(cycle)
        if fmt == "pcapng":
            total = 32 + size + _pad4(size)
            cycle += struct.pack("<IIIIIII", BT_EPB, total, 0, 0, 0, size, size)
            cycle += t + b"\0" * _pad4(size) + struct.pack("<I", total)
            patch.append((start, start + 12, start + 28 + IMIX_COUNTER_OFFSET))
        else:
            cycle += struct.pack("<IIII", 0, 0, size, size) + t
            patch.append((start, start, start + 16 + IMIX_COUNTER_OFFSET))
    cyc_len = len(cycle)
    cycles_per_chunk = 2048
    chunk_tmpl = bytes(cycle) * cycles_per_chunk
    counter = struct.Struct("!Q").pack_into
    ts_pack = struct.Struct("<II").pack_into
    written = 0
    with open(path, "wb") as f:
        f.write(head)
        written += len(head)
        i = 0
        while i < n:
            m = min(n - i, 12 * cycles_per_chunk)  # records in this chunk
            ncyc = (m + 11) // 12
            buf = bytearray(chunk_tmpl[:ncyc * cyc_len])
            for j in range(m):
                c, k = divmod(j, 12)
                base = c * cyc_len
                _, tso, cno = patch[k]
                ts = start_ns + (i + j) * step_ns
                if fmt == "pcapng":
                    ts_pack(buf, base + tso, ts >> 32, ts & 0xFFFFFFFF)
                else:
                    sec, frac = divmod(ts, 1_000_000_000)
                    ts_pack(buf, base + tso, sec, frac // div)
                counter(buf, base + cno, i + j)
            if m % 12:
                del buf[(ncyc - 1) * cyc_len + patch[m % 12][0]:]
            f.write(buf)
            written += len(buf)
            i += m
    return written


# ----------------------------------------------------------------------------
# comparing and summarising


def _fmt_ts(ts_ns):
    if ts_ns is None:
        return "-"
    sec, frac = divmod(ts_ns, 1_000_000_000)
    d = datetime.datetime.fromtimestamp(sec, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + ".%09dZ" % frac


def compare_records(a, b, ts_div=1):
    """First difference between two record lists as a string, or None.
    Compares ts_ns (// ts_div), caplen, origlen and data; not interfaces."""
    for i, (ra, rb) in enumerate(zip(a, b)):
        for field in ("ts_ns", "caplen", "origlen"):
            va, vb = getattr(ra, field), getattr(rb, field)
            if ts_div != 1 and field == "ts_ns":
                va, vb = va // ts_div, vb // ts_div
            if va != vb:
                return "record %d: %s %r != %r" % (i, field, va, vb)
        if ra.data != rb.data:
            j = next((k for k, (x, y) in enumerate(zip(ra.data, rb.data)) if x != y),
                     min(len(ra.data), len(rb.data)))
            return "record %d: data differs at byte %d (lengths %d, %d)" % (
                i, j, len(ra.data), len(rb.data))
    if len(a) != len(b):
        return "record counts differ: %d != %d" % (len(a), len(b))
    return None


def summary_line(path):
    interfaces, records = read(path)
    nbytes = sum(r.caplen for r in records)
    tss = [r.ts_ns for r in records if r.ts_ns is not None]
    names = ",".join(str(i.name) for i in interfaces if i.name is not None)
    return "%s: packets=%d bytes=%d interfaces=%d%s first=%s last=%s" % (
        path, len(records), nbytes, len(interfaces), (" (%s)" % names) if names else "",
        _fmt_ts(min(tss)) if tss else "-", _fmt_ts(max(tss)) if tss else "-")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="pcaplib.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen", help="generate a capture file")
    g.add_argument("--kind", choices=("varied", "imix"), default="varied")
    g.add_argument("--count", type=int, required=True)
    g.add_argument("--out", required=True)
    g.add_argument("--format", choices=("pcap", "pcap-ns", "pcapng", "pcapng-us"), default="pcap-ns")
    g.add_argument("--seed", type=int, default=1)
    s = sub.add_parser("summary", help="one line about a capture file")
    s.add_argument("files", nargs="+")
    c = sub.add_parser("compare", help="exit 0 if two captures hold the same records")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--ts-us", action="store_true", help="compare timestamps in microseconds")
    n = sub.add_parser("count", help="number of packets")
    n.add_argument("files", nargs="+")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "gen":
            if args.kind == "imix" and args.format != "pcapng-us":
                write_imix(args.out, args.count, args.seed, args.format)
            else:
                recs = gen_varied(args.count, args.seed) if args.kind == "varied" else \
                    gen_imix(args.count, args.seed)
                write_records(args.out, recs, args.format)
            return 0
        if args.cmd == "summary":
            for f in args.files:
                print(summary_line(f))
            return 0
        if args.cmd == "count":
            for f in args.files:
                print("%s %d" % (f, count_packets(f)))
            return 0
        if args.cmd == "compare":
            _, ra = read(args.a)
            _, rb = read(args.b)
            diff = compare_records(ra, rb, 1000 if args.ts_us else 1)
            if diff:
                print("%s vs %s: %s" % (args.a, args.b, diff))
                return 1
            print("%s and %s: %d identical records" % (args.a, args.b, len(ra)))
            return 0
    except (OSError, ValueError) as e:
        print("pcaplib.py: %s" % e, file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
