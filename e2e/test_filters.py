"""pcapMode allow / deny / all, port lists, per-interface ports, ignorePorts
and a raw BPF expression select exactly the packets they should: real UDP
datagrams on three ports from pod A to pod B, captured on both pods'
node-side interfaces (vethpa and vethpb)."""

import time

import pytest

from conftest import by_iface, l4_ports, output_files, run, ns_exec

PORTS = (7101, 7102, 7103)
BASE = "gatherMaxWaitMs: 100\ncapture:\n  interfaces: [vethpa, vethpb]\n"

# (id, extra YAML, ports expected on vethpa, on vethpb; None: not captured at all)
CASES = [
    ("all", "pcapMode: all\ncapturePorts: [7101]\n", PORTS, PORTS),
    ("allow", "pcapMode: allow\ncapturePorts: [7101, 7103]\n", (7101, 7103), (7101, 7103)),
    ("deny", "pcapMode: deny\ncapturePorts: [7101]\n", (7102, 7103), (7102, 7103)),
    ("allow-per-iface",
     "pcapMode: allow\ncapturePorts: [7101]\ncaptureInterfacesPorts:\n  vethpa: [7102]\n",
     (7101, 7102), (7101,)),
    ("allow-iface-only",
     "pcapMode: allow\ncaptureInterfacesPorts:\n  vethpb: [7103]\n", None, (7103,)),
    ("allow-iface-whole",
     "pcapMode: allow\ncapturePorts: [7101]\ncaptureInterfacesPorts:\n  vethpa:\n",
     PORTS, (7101,)),
    ("deny-per-iface",
     "pcapMode: deny\ncapturePorts: [7101]\ncaptureInterfacesPorts:\n  vethpb: [7102]\n",
     (7102, 7103), (7103,)),
    ("ignore-wins", "pcapMode: allow\ncapturePorts: [7101, 7102]\nignorePorts: [7102]\n",
     (7101,), (7101,)),
    ("ignore-in-all", "ignorePorts: [7103]\n", (7101, 7102), (7101, 7102)),
    ("user-filter", "capture:\n  filter: \"udp dst port 7102 or udp dst port 7103\"\n"
     "pcapMode: deny\ncapturePorts: [7103]\n", (7102,), (7102,)),
]


def merge(base, extra):
    # a second "capture:" mapping would be a duplicate key: fold it in
    if extra.startswith("capture:\n"):
        head, rest = extra.split("\n", 1)
        lines = rest.split("\n")
        cap = [l for l in lines if l.startswith("  ")]
        other = [l for l in lines if not l.startswith("  ")]
        return base + "\n".join(cap) + "\n" + "\n".join(other)
    return base + extra


@pytest.mark.parametrize("name,extra,want_a,want_b", CASES, ids=[c[0] for c in CASES])
def test_filter_selects(cluster, tmp_path, name, extra, want_a, want_b):
    out = tmp_path / "out"
    rx = cluster.receiver(out)
    s = cluster.sensor(merge(BASE, extra))
    for ifname, want in (("vethpa", want_a), ("vethpb", want_b)):
        if want is not None:
            s.wait_log(r"capturing on %s " % ifname)
    s.wait_log("connected to receiver")
    marker = "FT-%s-" % name
    dst = cluster.pods["pb"][2]
    code = ("import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            "for p in %r:\n    s.sendto(b'%s%%d' %% p, (%r, p))\n" % (PORTS, marker, dst))
    run(*ns_exec(cluster.pods["pa"][0]), "/usr/bin/python3", "-c", code)
    time.sleep(0.4)
    assert s.stop() == 0, s.text()[-3000:]
    assert rx.stop() == 0
    got = by_iface(output_files(out))
    for ifname, want in (("vethpa", want_a), ("vethpb", want_b)):
        frames = got.get("node1/" + ifname)
        if want is None:
            assert frames is None, "%s should not be captured" % ifname
            assert "capturing on %s " % ifname not in s.text()
            continue
        seen = sorted(l4_ports(f)[2] for f in frames or []
                      if marker.encode() in f and l4_ports(f) and l4_ports(f)[0] == 17)
        assert seen == sorted(want), "%s on %s: got ports %s, want %s" % (name, ifname, seen,
                                                                          sorted(want))
