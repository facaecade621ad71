"""Live capture in a namespace cluster (see conftest.py for the topology)."""

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (NODE, RX, RX_PORT, TCP_PORT, UDP_PORT, assert_no_sanitizer, by_iface, l4_ports,
                      output_files, pcaplib, port_frames, ref_frames, run, same_frames)

FAST = "gatherMaxWaitMs: 100\ncapture:\n  statsIntervalSec: 1\n"
FAST_ENV = {"PACKETSTREAMER_GATHER_MAX_WAIT_MS": "100",
            "PACKETSTREAMER_CAPTURE_STATS_INTERVAL_SEC": "1"}
ONLY_NET_RAW = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                "--inh-caps=-all,+net_raw", "--ambient-caps=-all,+net_raw",
                "--bounding-set=-all,+net_raw"]
NO_CAPS = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all",
           "--bounding-set=-all"]


def finish(cluster, sensor, receiver):
    """Stops the sensor (must exit 0 with everything acknowledged) then the receiver."""
    rc = sensor.stop()
    text = sensor.text()
    assert rc == 0, "sensor exit %d:\n%s" % (rc, text[-4000:])
    assert_no_sanitizer(text, "sensor")
    assert " ERROR " not in text, text[-4000:]
    assert receiver.stop() == 0, receiver.text()[-3000:]
    assert_no_sanitizer(receiver.text(), "receiver")
    return text


def test_pods_traffic_captured_exactly(cluster, tmp_path):
    """Pod mode + the node uplink named explicitly: every pod frame on the
    test ports appears byte for byte on the pod's node-side interface; the
    sensor's own stream never appears, though the uplink is captured."""
    out = tmp_path / "out"
    rx = cluster.receiver(out)
    cluster.servers(["pa", "pb", "pc"])
    refs = {p: cluster.tcpdump(p) for p in ("pa", "pb", "pc")}
    s = cluster.sensor(FAST + "  podInterfaces: true\n  interfaces: [eth0]\n")
    for ifname in ("vethpa", "vethpb", "calipc", "eth0"):
        s.wait_log(r"capturing on %s " % ifname)
    s.wait_log("connected to receiver")
    time.sleep(0.3)
    pa, pb, pc = (cluster.pods[n] for n in ("pa", "pb", "pc"))
    sent = []
    sent += cluster.send("pa", pb[2], "A2B4")  # bridge, IPv4
    sent += cluster.send("pa", pb[3], "A2B6")  # bridge, IPv6
    sent += cluster.send("pa", pc[2], "A2C4")  # routed, IPv4
    sent += cluster.send("pc", pa[3], "C2A6")  # routed, IPv6
    sent += cluster.send("pb", pc[3], "B2C6")
    # node -> receiver on the uplink, to show eth0 really is captured
    r = run("ip", "netns", "exec", NODE, "/usr/bin/python3", "-c",
            "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
            "[s.sendto(b'UPLINK-%d'%i,('192.168.50.2',7009)) for i in range(3)]")
    assert r.returncode == 0
    time.sleep(0.5)
    for p in refs.values():
        p.stop()
    text = finish(cluster, s, rx)
    files = output_files(out)
    assert files, "no output"
    got = by_iface(files)
    names = set(got)
    assert {"node1/vethpa", "node1/vethpb", "node1/calipc"} <= names, names
    for pod, veth in (("pa", "vethpa"), ("pb", "vethpb"), ("pc", "calipc")):
        want = ref_frames(refs[pod].ref)
        assert len(want) > 40, "%s: reference capture too small (%d)" % (pod, len(want))
        have = port_frames(got.get("node1/" + veth, []))
        assert sorted(have) == sorted(want), "%s: %s" % (veth, same_frames(have, want))
    # every payload sent is in the output, on the sender's interface
    for payload in sent:
        src = {"A": "vethpa", "B": "vethpb", "C": "calipc"}[payload[0:1].decode()]
        assert any(payload in f for f in got["node1/" + src]), payload[:20]
    # the uplink is captured (the node's datagrams), the sensor's stream is not
    up = got.get("node1/eth0", [])
    # (the receiver namespace answers ICMP port unreachable, quoting them: not counted)
    assert sum(b"UPLINK-" in f and (l4_ports(f) or (0,))[0] == 17 for f in up) == 3
    for ifname, frames in got.items():
        for f in frames:
            p = l4_ports(f)
            assert not (p and p[0] == 6 and RX_PORT in (p[1], p[2])), \
                "the sensor's own stream was captured on %s" % ifname
    # final counters of every interface reached the file as ISBs
    ifs, _ = pcaplib.read(str(files[0]))
    for itf in ifs:
        assert itf.stats, "no ISB for %s" % itf.name
        assert itf.stats[-1]["ifrecv"] == len(got.get(itf.name, [])), itf
    assert "capture: interfaces_opened=4" in text


def test_pod_added_and_deleted(cluster, tmp_path):
    """A pod created during the capture is captured from one second after
    its interface came up; a deleted pod's interface closes cleanly with its
    statistics in the file; the uplink is left alone in pod mode."""
    out = tmp_path / "out"
    rx = cluster.receiver(out)
    cluster.servers(["pa", "pb"])
    s = cluster.sensor(FAST + "  podInterfaces: true\n")
    for ifname in ("vethpa", "vethpb", "calipc"):
        s.wait_log(r"capturing on %s " % ifname)
    cluster.send("pb", cluster.pods["pa"][2], "B2A4", count=3)

    # a new pod: its interface comes up at t_up
    veth = cluster.add_bridge_pod("pd", 20, up=False)
    t_up = time.time()
    cluster.ip(NODE, "link", "set", veth, "up")
    s.wait_log(r"capturing on vethpd ", timeout=1.0)
    # the reference capture inside the pod (ready well before t_up + 1 s)
    ref = cluster.tcpdump("pd")
    assert time.time() < t_up + 1.0
    time.sleep(max(0.0, t_up + 1.0 - time.time()))
    sent = cluster.send("pd", cluster.pods["pa"][2], "D2A4")
    sent += cluster.send("pd", cluster.pods["pa"][3], "D2A6")

    # a pod goes away
    cluster.delete_pod("pb")
    s.wait_log(r"stopped capturing on vethpb \(#\d+, interface (removed|down)\)", timeout=2)
    time.sleep(0.3)
    ref.stop()
    text = finish(cluster, s, rx)
    got = by_iface(output_files(out))
    assert "node1/eth0" not in got, "pod mode captured the node uplink"
    want = ref_frames(ref.ref)
    have = port_frames(got.get("node1/vethpd", []))
    assert sorted(have) == sorted(want), same_frames(have, want)
    for payload in sent:
        assert any(payload in f for f in have), payload[:20]
    ifs, _ = pcaplib.read(str(output_files(out)[0]))
    gone = [i for i in ifs if i.name == "node1/vethpb"]
    assert gone and gone[0].stats, "no ISB for the deleted pod's interface"
    assert gone[0].stats[-1]["ifrecv"] == len(got["node1/vethpb"])
    assert "WARN" not in "".join(l for l in text.splitlines() if "vethpb" in l), text


def test_sensor_runs_with_only_cap_net_raw(cluster, tmp_path):
    out = tmp_path / "out"
    rx = cluster.receiver(out)
    cluster.servers(["pb"])
    s = cluster.sensor(None, prefix=ONLY_NET_RAW, extra=["--interface", "vethpa"], env=FAST_ENV)
    s.wait_log(r"capturing on vethpa ")
    s.wait_log("connected to receiver")
    sent = cluster.send("pa", cluster.pods["pb"][2], "NOBODY")
    time.sleep(0.3)
    finish(cluster, s, rx)
    got = by_iface(output_files(out))
    for payload in sent:
        assert any(payload in f for f in got["node1/vethpa"])


def test_sensor_without_cap_net_raw_says_so(cluster, tmp_path):
    s = cluster.sensor(None, prefix=NO_CAPS, extra=["--interface", "vethpa"], env=FAST_ENV)
    rc = s.p.wait(20)
    text = s.text()
    assert rc == 1, text
    assert_no_sanitizer(text, "sensor")
    assert "CAP_NET_RAW" in text and "vethpa" in text, text


def test_promiscuous_with_only_cap_net_raw(cluster, tmp_path):
    """On Linux libpcap asks for promiscuous mode through the packet socket
    (PACKET_MR_PROMISC), which CAP_NET_RAW covers: no CAP_NET_ADMIN needed.
    The interface's promiscuity count goes up by one while captured."""
    def promiscuity():
        out = cluster.ip(NODE, "-d", "link", "show", "vethpa").stdout
        return int(re.search(r"promiscuity (\d+)", out).group(1))

    before = promiscuity()
    rx = cluster.receiver(tmp_path / "out")
    env = dict(FAST_ENV, PACKETSTREAMER_CAPTURE_PROMISCUOUS="true")
    s = cluster.sensor(None, prefix=ONLY_NET_RAW, extra=["--interface", "vethpa"], env=env)
    s.wait_log(r"capturing on vethpa ")
    assert promiscuity() == before + 1
    finish(cluster, s, rx)
    assert promiscuity() == before


@pytest.mark.parametrize("expr,words", [
    ("tcp port", ["invalid capture filter \"", "tcp port"]),
    ("tcp) or (udp", ["unbalanced parentheses"]),
])
def test_bad_filter_is_refused_at_start(tmp_path, expr, words):
    """A filter that cannot compile stops the sensor at start, quoting the
    expression and libpcap's message, before any interface is opened."""
    from conftest import binary, child_env
    r = subprocess.run([binary(), "sensor", "--receiver", "127.0.0.1:9", "--filter", expr],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30,
                       env=child_env())
    assert r.returncode == 1, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr
    assert "capturing on" not in r.stderr


def test_down_up_and_rename(cluster, tmp_path):
    """An interface that goes down and up keeps its number and its counters
    keep counting; renamed, it is a new interface with a new number."""
    out = tmp_path / "out"
    rx = cluster.receiver(out)
    cluster.servers(["pb"])
    s = cluster.sensor(FAST + "  podInterfaces: true\n")
    s.wait_log(r"capturing on vethpa \(#(\d+),")
    first = re.search(r"capturing on vethpa \(#(\d+),", s.text()).group(1)
    dst = cluster.pods["pb"][2]
    cluster.send("pa", dst, "ROUND1", count=3)
    cluster.ip(NODE, "link", "set", "vethpa", "down")
    s.wait_log(r"stopped capturing on vethpa \(#%s, interface down\)" % first, timeout=2)
    cluster.ip(NODE, "link", "set", "vethpa", "up")
    s.wait_log(r"capturing on vethpa \(#%s,.*\n(.*\n)*.*capturing on vethpa \(#%s," % (first, first),
               timeout=2)
    time.sleep(1.0)  # the veth peer, and the pod's routes, need a moment after the flap
    cluster.send("pa", dst, "ROUND2", count=3)
    cluster.ip(NODE, "link", "set", "vethpa", "down")
    cluster.ip(NODE, "link", "set", "vethpa", "name", "vethpx")
    cluster.ip(NODE, "link", "set", "vethpx", "up")
    s.wait_log(r"capturing on vethpx \(#(\d+),", timeout=2)
    renamed = re.search(r"capturing on vethpx \(#(\d+),", s.text()).group(1)
    assert renamed != first
    time.sleep(1.0)
    cluster.send("pa", dst, "ROUND3", count=3)
    time.sleep(0.3)
    finish(cluster, s, rx)
    files = output_files(out)
    got = by_iface(files)
    a, x = got["node1/vethpa"], got["node1/vethpx"]
    assert any(b"ROUND1" in f for f in a) and any(b"ROUND2" in f for f in a)
    assert any(b"ROUND3" in f for f in x) and not any(b"ROUND3" in f for f in a)
    ifs, _ = pcaplib.read(str(files[0]))
    stats = {i.name: i.stats for i in ifs}
    # cumulative over both openings of vethpa, never going down
    recv = [st["ifrecv"] for st in stats["node1/vethpa"]]
    assert recv == sorted(recv) and recv[-1] == len(a), recv
    assert stats["node1/vethpx"][-1]["ifrecv"] == len(x)


def test_spool_full_drops_are_counted(cluster, tmp_path):
    """With the receiver frozen the spool fills: live packets are then dropped
    (not the capture stalled) and every one is counted, per interface, in the
    ISB's osdrop; nothing is lost without a count."""
    out = tmp_path / "out"
    rx = cluster.receiver(out)
    s = cluster.sensor("gatherMaxWaitMs: 50\ncompressBlockSize: 64\nspool:\n  size: 1\n"
                       "compression:\n  codec: none\ncapture:\n  interfaces: [vethpa]\n"
                       "  statsIntervalSec: 1\n")
    s.wait_log(r"capturing on vethpa ")
    s.wait_log("connected to receiver")
    rx.p.send_signal(signal.SIGSTOP)
    n = 4000
    code = ("import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            "for i in range(%d):\n    s.sendto(b'FLOOD-%%06d-' %% i + b'x' * 1000, (%r, 7201))\n"
            "    time.sleep(0.0002) if i %% 50 == 0 else None\n" % (n, cluster.pods["pb"][2]))
    run("ip", "netns", "exec", cluster.pods["pa"][0], "/usr/bin/python3", "-c", code)
    time.sleep(0.5)
    rx.p.send_signal(signal.SIGCONT)
    time.sleep(0.5)
    text = finish(cluster, s, rx)
    files = output_files(out)
    got = by_iface(files)
    frames = got["node1/vethpa"]
    flood = sum(b"FLOOD-" in f and (l4_ports(f) or (0,))[0] == 17 for f in frames)
    ifs, _ = pcaplib.read(str(files[0]))
    st = [i for i in ifs if i.name == "node1/vethpa"][0].stats[-1]
    assert st["ifrecv"] == len(frames)
    assert st["osdrop"] > 0, st
    assert flood < n
    # every flood datagram is either in the file or counted as dropped
    assert flood + st["osdrop"] + st["ifdrop"] >= n, (flood, st)
    m = re.search(r"capture: .* sensor_drops=(\d+)", text)
    assert m and int(m.group(1)) == st["osdrop"], text[-2000:]


def test_receiver_address_change_rebuilds_filters(cluster, tmp_path):
    """The receiver's name moves to another address (a new Service endpoint):
    the sensor resolves it again when it reconnects, rebuilds its filters,
    and its stream to the new address is not captured either."""
    hosts = Path("/etc/netns") / NODE / "hosts"  # `ip netns exec` mounts it on /etc/hosts
    hosts.parent.mkdir(parents=True, exist_ok=True)
    hosts.write_text("127.0.0.1 localhost\n192.168.50.2 receiver.pslc.test\n")
    cluster.ip(RX, "addr", "add", "192.168.50.3/24", "dev", "eth0")
    out1, out2 = tmp_path / "out1", tmp_path / "out2"
    rx = cluster.receiver(out1)
    s = cluster.sensor(FAST + "  interfaces: [eth0]\n",
                       target="receiver.pslc.test:%d" % RX_PORT,
                       env={"PACKETSTREAMER_SENSOR_CONNECT_TIMEOUT_SEC": "30"})
    s.wait_log(r'capturing on eth0 .*"not \(host 192\.168\.50\.2 and tcp port %d\)"' % RX_PORT)
    s.wait_log("connected to receiver")
    # the Service moves: same name, new address, and the old endpoint goes away
    with open(hosts, "w") as f:  # same inode: the bind mount sees the change
        f.write("127.0.0.1 localhost\n192.168.50.3 receiver.pslc.test\n")
    assert rx.stop() == 0
    rx2 = cluster.receiver(out2, name="receiver2", addr="192.168.50.3")
    s.wait_log(r"receiver address changed \(now 192\.168\.50\.3\); rebuilding capture filters",
               timeout=15)
    s.wait_log(r"connected to receiver.*\n(.*\n)*.*connected to receiver", timeout=15)
    time.sleep(1.5)  # stream some batches and STATS to the new address
    finish(cluster, s, rx2)
    for d in (out1, out2):
        for ifname, frames in by_iface(output_files(d)).items():
            for f in frames:
                p = l4_ports(f)
                assert not (p and p[0] == 6 and RX_PORT in (p[1], p[2])), \
                    "the sensor's own stream was captured on %s" % ifname


def test_burst_of_pods(cluster, tmp_path):
    """Thirty pod interfaces appearing at once are all captured within a
    second of coming up, and all close cleanly when they go at once."""
    n = 30
    rx = cluster.receiver(tmp_path / "out")
    s = cluster.sensor(FAST + "  podInterfaces: true\n")
    s.wait_log(r"capturing on calipc ")
    batch = tmp_path / "links.batch"
    batch.write_text("".join("link add vethz%d type veth peer name zpeer%d\n" % (i, i)
                             for i in range(n)))
    run("ip", "-n", NODE, "-batch", str(batch))
    batch.write_text("".join("link set vethz%d up\nlink set zpeer%d up\n" % (i, i)
                             for i in range(n)))
    t_up = time.time()
    run("ip", "-n", NODE, "-batch", str(batch))
    for i in range(n):
        s.wait_log(r"capturing on vethz%d " % i, timeout=max(0.05, t_up + 1.0 - time.time()))
    batch.write_text("".join("link del vethz%d\n" % i for i in range(n)))
    run("ip", "-n", NODE, "-batch", str(batch))
    for i in range(n):
        s.wait_log(r"stopped capturing on vethz%d \(#\d+, interface (removed|down)\)" % i,
                   timeout=3)
    text = finish(cluster, s, rx)
    assert "WARN" not in text, text[-3000:]
    assert "zpeer" not in text  # not a pod-side name
