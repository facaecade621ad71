"""Delivery you can trust, live: receiver crashes, pauses and a cut link
during a capture lose nothing and duplicate nothing, and the sensor's
account balances (docs/reliability.md).

A generator in pod "pa" sends UDP datagrams with unique payloads to pod
"pb" at a fixed rate; the sensor captures vethpa live. Every datagram the
generator sent must be in the receiver's files exactly once.
"""
import re
import signal
import subprocess
import time
from collections import Counter

from conftest import PY, by_iface, l4_ports, output_files, run
from test_live import finish

GEN_PORT = 7301
CONFIG = ("gatherMaxWaitMs: 100\ncompressBlockSize: 64\ncapture:\n  interfaces: [vethpa]\n"
          "  statsIntervalSec: 1\nsensor:\n  connectTimeoutSec: 120\n")


def start_generator(cluster, seconds, rate, tag):
    """Sends rate datagrams/s for seconds from pa to pb; returns the Popen."""
    dst = cluster.pods["pb"][2]
    n = seconds * rate
    code = ("import socket,time\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            "t0=time.monotonic()\n"
            "for i in range(%d):\n"
            "    d=t0+i/%d-time.monotonic()\n"
            "    time.sleep(d) if d>0 else None\n"
            "    s.sendto(b'%s-%%07d-' %% i + b'p' * 200, (%r, %d))\n"
            "print('sent', %d, flush=True)\n" % (n, rate, tag, dst, GEN_PORT, n))
    p = subprocess.Popen(["ip", "netns", "exec", cluster.pods["pa"][0], PY, "-c", code],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.expected = n
    return p


def wait_generator(p, timeout):
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0 and ("sent %d" % p.expected) in out, err


def generated(frames, tag):
    """The generator's datagrams (UDP to GEN_PORT), as their unique ids."""
    ids = []
    marker = tag.encode() + b"-"
    for f in frames:
        ports = l4_ports(f)
        if ports and ports[0] == 17 and ports[2] == GEN_PORT:
            i = f.find(marker)
            assert i >= 0, f
            ids.append(int(f[i + len(marker):i + len(marker) + 7]))
    return ids


def check_exactly_once(out, tag, expected):
    frames = by_iface(output_files(out)).get("node1/vethpa", [])
    ids = generated(frames, tag)
    dup = [k for k, v in Counter(ids).items() if v > 1]
    missing = sorted(set(range(expected)) - set(ids))
    assert not dup, "duplicated: %d datagrams, e.g. %s" % (len(dup), dup[:5])
    assert not missing, "missing: %d datagrams, e.g. %s" % (len(missing), missing[:5])
    assert ids == sorted(ids), "datagrams out of order"


def check_account(text):
    """captured = batched + sensor drops; batched = acknowledged + unacknowledged."""
    cap = dict(re.findall(r"(\w+)=(\d+)", re.findall(r"capture: .*", text)[-1]))
    done = dict(re.findall(r"(\w+)=(\d+)", re.findall(r"done: .*", text)[-1]))
    assert int(cap["captured"]) == int(done["packets"]) + int(cap["sensor_drops"]), (cap, done)
    assert int(done["packets"]) == int(done["acked"]) + int(done["unacked"]), done
    assert done["unacked"] == "0" and cap["sensor_drops"] == "0", (cap, done)
    assert cap["kernel_drops"] == "0", cap
    return cap, done


def test_receiver_killed_three_times_during_a_30s_stream(cluster, tmp_path):
    out = tmp_path / "out"
    rx = cluster.receiver(out)
    s = cluster.sensor(CONFIG)
    s.wait_log(r"capturing on vethpa ")
    s.wait_log("connected to receiver")
    gen = start_generator(cluster, 30, 400, "KILL")
    for k in range(3):
        time.sleep(7)
        rx.kill()
        rx = cluster.receiver(out, name="receiver-%d" % (k + 2))
    wait_generator(gen, 60)
    time.sleep(1.5)
    text = finish(cluster, s, rx)
    check_exactly_once(out, "KILL", gen.expected)
    cap, done = check_account(text)
    assert int(done["reconnects"]) >= 3, done
    logs = "".join((tmp_path / ("receiver-%d.log" % k)).read_text() for k in (2, 3, 4))
    assert "resuming" in logs


def outage_during_stream(cluster, tmp_path, tag, outage, recover, settle):
    """A 14 s stream with a 10 s outage starting 2 s in (outage() starts it,
    recover() ends it); every datagram must arrive exactly once and the
    account must balance with no kernel drops."""
    out = tmp_path / "out"
    rx = cluster.receiver(out)
    s = cluster.sensor(CONFIG)
    s.wait_log(r"capturing on vethpa ")
    s.wait_log("connected to receiver")
    gen = start_generator(cluster, 14, 400, tag)
    time.sleep(2)
    outage(rx)
    time.sleep(10)
    recover(rx)
    wait_generator(gen, 30)
    time.sleep(settle)
    text = finish(cluster, s, rx)
    check_exactly_once(out, tag, gen.expected)
    check_account(text)  # kernel drops stay 0: the outage filled the spool, not the ring


def test_receiver_paused_for_10s(cluster, tmp_path):
    outage_during_stream(cluster, tmp_path, "STOP",
                         lambda rx: rx.p.send_signal(signal.SIGSTOP),
                         lambda rx: rx.p.send_signal(signal.SIGCONT), settle=2)


def test_link_to_receiver_down_for_10s(cluster, tmp_path):
    # TCP retransmits (or the sensor reconnects) once the link is back; the
    # SIGTERM in finish() then waits up to sensor.shutdownDeadlineSec (20 s)
    # for the last acknowledgements.
    outage_during_stream(cluster, tmp_path, "LINK",
                         lambda rx: run("ip", "-n", "pslc-node", "link", "set", "eth0", "down"),
                         lambda rx: run("ip", "-n", "pslc-node", "link", "set", "eth0", "up"),
                         settle=3)


def flood_through_frozen_receiver(cluster, tmp_path, policy, n=6000):
    # Small TCP buffers between node and receiver, so that what a frozen
    # receiver's socket can absorb is small next to the 1 MiB spool.
    for ns in ("pslc-node", "pslc-rx"):
        for key in ("net.ipv4.tcp_wmem", "net.ipv4.tcp_rmem"):
            run("ip", "netns", "exec", ns, "sysctl", "-qw", "%s=4096 16384 65536" % key)
    out = tmp_path / "out"
    rx = cluster.receiver(out)
    s = cluster.sensor("gatherMaxWaitMs: 50\ncompressBlockSize: 64\nspool:\n  size: 1\n"
                       "  dropPolicy: %s\ncompression:\n  codec: none\n"
                       "capture:\n  interfaces: [vethpa]\n  statsIntervalSec: 1\n"
                       "  filter: udp port %d\n" % (policy, GEN_PORT))
    s.wait_log(r"capturing on vethpa ")
    s.wait_log("connected to receiver")
    rx.p.send_signal(signal.SIGSTOP)
    code = ("import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            "for i in range(%d):\n    s.sendto(b'FLOOD-%%07d-' %% i + b'x' * 1000, (%r, %d))\n"
            "    time.sleep(0.0005) if i %% 20 == 0 else None\n" % (n, cluster.pods["pb"][2],
                                                                   GEN_PORT))
    run("ip", "netns", "exec", cluster.pods["pa"][0], PY, "-c", code)
    time.sleep(0.5)
    rx.p.send_signal(signal.SIGCONT)
    time.sleep(1.5)
    text = finish(cluster, s, rx)
    files = output_files(out)
    ids = generated(by_iface(files).get("node1/vethpa", []), "FLOOD")
    ifs, _ = __import__("pcaplib").read(str(files[0]))
    st = [i for i in ifs if i.name == "node1/vethpa"][0].stats[-1]
    cap, done = (dict(re.findall(r"(\w+)=(\d+)", re.findall(r"%s: .*" % k, text)[-1]))
                 for k in ("capture", "done"))
    return ids, st, cap, done, rx


def test_spool_full_oldest_policy_keeps_the_newest_and_counts_exactly(cluster, tmp_path):
    n = 6000
    ids, st, cap, done, rx = flood_through_frozen_receiver(cluster, tmp_path, "oldest", n)
    assert len(ids) == len(set(ids)) and ids == sorted(ids)
    assert int(done["evicted"]) > 0, done
    assert n - 1 in ids, "the newest datagram must survive with dropPolicy oldest"
    # Exact (the filter lets only the flood through): every datagram is in
    # the file or counted as dropped, never both.
    assert cap["kernel_drops"] == "0" and st["ifdrop"] == 0, (cap, st)
    assert len(ids) + st["osdrop"] == n, (len(ids), st)
    assert st["osdrop"] == int(cap["sensor_drops"])
    # captured = acknowledged + evicted + dropped before batching
    assert int(cap["captured"]) == int(done["acked"]) + int(done["evicted"]) + \
        (int(cap["sensor_drops"]) - int(done["evicted"])), (cap, done)
    assert "never arrived" in rx.text()  # the receiver saw the gap


def test_spool_full_newest_policy_keeps_the_oldest_and_counts_exactly(cluster, tmp_path):
    n = 6000
    ids, st, cap, done, _ = flood_through_frozen_receiver(cluster, tmp_path, "newest", n)
    assert done["evicted"] == "0"
    assert 0 in ids and len(ids) < n
    assert cap["kernel_drops"] == "0" and st["ifdrop"] == 0, (cap, st)
    assert len(ids) + st["osdrop"] == n, (len(ids), st)


def test_ring_backlog_larger_than_the_spool_is_delivered_not_dropped(cluster, tmp_path):
    """A sensor that could not run for a moment (CPU contention, a node
    under pressure; here SIGSTOP) finds more in its kernel ring than its
    spool holds. It must leave what does not fit in the ring while the spool
    is full and read on as acknowledgements free room, not fill the spool in
    one go and drop the rest as spool_full while the receiver, idle, could
    have taken it."""
    n = 7000  # ~7.4 MB of frames: under the 16 MiB ring, over the 4 MiB spool
    out = tmp_path / "out"
    rx = cluster.receiver(out)
    s = cluster.sensor("gatherMaxWaitMs: 50\nspool:\n  size: 4\ncompression:\n  codec: none\n"
                       "capture:\n  interfaces: [vethpa]\n  bufferSizeMB: 16\n"
                       "  statsIntervalSec: 1\n  filter: udp port %d\n" % GEN_PORT)
    s.wait_log(r"capturing on vethpa ")
    s.wait_log("connected to receiver")
    s.p.send_signal(signal.SIGSTOP)
    try:
        code = ("import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                "for i in range(%d):\n    s.sendto(b'BACK-%%07d-' %% i + b'x' * 1000, (%r, %d))\n"
                "    time.sleep(0.0005) if i %% 50 == 0 else None\n"
                % (n, cluster.pods["pb"][2], GEN_PORT))
        run("ip", "netns", "exec", cluster.pods["pa"][0], PY, "-c", code)
        time.sleep(0.5)  # the ring's blocks retire (their timeout) while it is stopped
    finally:
        s.p.send_signal(signal.SIGCONT)
    time.sleep(2)
    text = finish(cluster, s, rx)
    check_exactly_once(out, "BACK", n)
    cap, _ = check_account(text)
    assert int(cap["spool_waits"]) > 0, cap  # the spool did fill: the ring held the rest
