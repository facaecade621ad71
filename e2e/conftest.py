"""e2e fixtures: a small Kubernetes-like cluster made of network namespaces.

    pslc-rx (receiver)          192.168.50.2/24  eth0
        |  veth
    pslc-node (sensor)          192.168.50.1/24  eth0   (the node's uplink)
        cni0 bridge 10.244.1.1/24 fd00:1::1/64
          vethpa -- pslc-pa eth0 10.244.1.10  fd00:1::10     (bridge CNI)
          vethpb -- pslc-pb eth0 10.244.1.11  fd00:1::11     (bridge CNI)
        calipc  (routed, Calico-style: /32 and /128 routes, 169.254.1.1 / fe80::1 gateway)
                -- pslc-pc eth0 10.244.2.10/32 fd00:2::10/128

Everything created is named with the "pslc-" prefix (namespaces) and lives
inside those namespaces, so deleting the namespaces deletes it all. Leftovers
of an interrupted run are removed before each test, and every fixture removes
what it made. Traffic only flows inside these namespaces.
"""

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "lib"))

import pcaplib  # noqa: E402

PREFIX = "pslc-"
NODE, RX = PREFIX + "node", PREFIX + "rx"
RX_ADDR, RX_PORT = "192.168.50.2", 18555
UDP_PORT, TCP_PORT = 7001, 7002
TRAFFIC = str(Path(__file__).resolve().parent / "traffic.py")
PY = "/usr/bin/python3"
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                     "runtime error:")


def binary():
    if os.environ.get("PS_TEST_BIN"):
        return str(Path(os.environ["PS_TEST_BIN"]).resolve())
    return str(REPO / "build-asan" / "packetstreamer")


def run(*args, check=True):
    r = subprocess.run([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(map(str, args)), r.returncode,
                                                r.stderr.strip()))
    return r


def ns_exec(ns):
    return ["ip", "netns", "exec", ns]


def our_namespaces():
    out = run("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def kill_ns_processes(ns):
    """Kills the processes running in one of our namespaces (all started by the tests)."""
    pids = run("ip", "netns", "pids", ns, check=False).stdout.split()
    for p in pids:
        try:
            os.kill(int(p), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    deadline = time.time() + 3
    while pids and time.time() < deadline:
        pids = run("ip", "netns", "pids", ns, check=False).stdout.split()
        time.sleep(0.05)


def delete_ns(ns):
    kill_ns_processes(ns)
    run("ip", "netns", "del", ns, check=False)


def cleanup_all():
    for ns in our_namespaces():
        delete_ns(ns)
    # per-namespace files `ip netns exec` mounts over /etc (hosts for a test)
    for d in Path("/etc/netns").glob(PREFIX + "*") if Path("/etc/netns").is_dir() else ():
        for f in d.iterdir():
            f.unlink()
        d.rmdir()


def child_env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACKETSTREAMER_")}
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    env["LC_ALL"] = "C"
    env.update(extra or {})
    return env


class Proc:
    """A background process whose stdout/stderr go to files."""

    def __init__(self, args, log, env=None, stdout=None):
        self.log = Path(log)
        self.out = Path(stdout) if stdout else self.log
        self.args = [str(a) for a in args]
        ferr = open(self.log, "w")
        fout = open(self.out, "w") if stdout else ferr
        self.p = subprocess.Popen(self.args, stdout=fout, stderr=ferr, env=child_env(env))
        ferr.close()
        if stdout:
            fout.close()

    def text(self):
        return self.log.read_text(errors="replace")

    def wait_log(self, pattern, timeout=10):
        rx = re.compile(pattern)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if rx.search(self.text()):
                return True
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("no /%s/ in %s within %ss:\n%s" % (pattern, self.log, timeout,
                                                               self.text()[-4000:]))

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise AssertionError("%s did not exit on signal %d:\n%s" % (self.args[3:6], sig,
                                                                       self.text()[-3000:]))

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def assert_no_sanitizer(text, who):
    for m in SANITIZER_MARKERS:
        assert m not in text, "%s: sanitizer report (%s):\n%s" % (who, m, text[-4000:])


class Cluster:
    def __init__(self, tmp):
        self.tmp = Path(tmp)
        self.procs = []
        self.pods = {}  # name -> (ns, node-side ifname, v4, v6)
        for ns in (NODE, RX):
            run("ip", "netns", "add", ns)
            self.ip(ns, "link", "set", "lo", "up")
        for k, v in (("net.ipv4.ip_forward", 1), ("net.ipv6.conf.all.forwarding", 1),
                     ("net.ipv4.conf.all.rp_filter", 0), ("net.ipv4.conf.default.rp_filter", 0)):
            run(*ns_exec(NODE), "sysctl", "-qw", "%s=%s" % (k, v))
        # the node's uplink, towards the receiver
        self.ip(NODE, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", RX)
        self.ip(NODE, "addr", "add", "192.168.50.1/24", "dev", "eth0")
        self.ip(RX, "addr", "add", RX_ADDR + "/24", "dev", "eth0")
        self.ip(NODE, "link", "set", "eth0", "up")
        self.ip(RX, "link", "set", "eth0", "up")
        # the bridge CNI's bridge
        self.ip(NODE, "link", "add", "cni0", "type", "bridge")
        self.ip(NODE, "addr", "add", "10.244.1.1/24", "dev", "cni0")
        self.ip(NODE, "-6", "addr", "add", "fd00:1::1/64", "dev", "cni0", "nodad")
        self.ip(NODE, "link", "set", "cni0", "up")
        self.add_bridge_pod("pa", 10)
        self.add_bridge_pod("pb", 11)
        self.add_routed_pod("pc", 10)

    def ip(self, ns, *args):
        return run("ip", "-n", ns, *args)

    def add_bridge_pod(self, name, host, up=True):
        ns, veth = PREFIX + name, "veth" + name
        run("ip", "netns", "add", ns)
        self.ip(NODE, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        self.ip(NODE, "link", "set", veth, "master", "cni0")
        v4, v6 = "10.244.1.%d" % host, "fd00:1::%d" % host
        self.ip(ns, "link", "set", "lo", "up")
        self.ip(ns, "addr", "add", v4 + "/24", "dev", "eth0")
        self.ip(ns, "-6", "addr", "add", v6 + "/64", "dev", "eth0", "nodad")
        self.ip(ns, "link", "set", "eth0", "up")
        self.ip(ns, "route", "add", "default", "via", "10.244.1.1")
        self.ip(ns, "-6", "route", "add", "default", "via", "fd00:1::1")
        self.pods[name] = (ns, veth, v4, v6)
        if up:
            self.ip(NODE, "link", "set", veth, "up")
        return veth

    def add_routed_pod(self, name, host):
        ns, veth = PREFIX + name, "cali" + name
        run("ip", "netns", "add", ns)
        self.ip(NODE, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        v4, v6 = "10.244.2.%d" % host, "fd00:2::%d" % host
        self.ip(ns, "link", "set", "lo", "up")
        self.ip(ns, "addr", "add", v4 + "/32", "dev", "eth0")
        self.ip(ns, "-6", "addr", "add", v6 + "/128", "dev", "eth0", "nodad")
        self.ip(ns, "link", "set", "eth0", "up")
        # Calico: the pod's gateway is a link-local address the host side owns
        self.ip(NODE, "addr", "add", "169.254.1.1/32", "dev", veth)
        self.ip(NODE, "-6", "addr", "add", "fe80::1/64", "dev", veth, "nodad")
        self.ip(NODE, "link", "set", veth, "up")
        self.ip(ns, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
        self.ip(ns, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
        self.ip(ns, "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0")
        self.ip(NODE, "route", "add", v4 + "/32", "dev", veth)
        self.ip(NODE, "-6", "route", "add", v6 + "/128", "dev", veth)
        self.pods[name] = (ns, veth, v4, v6)
        return veth

    def delete_pod(self, name):
        ns = self.pods.pop(name)[0]
        delete_ns(ns)

    def start(self, args, log, env=None, stdout=None):
        p = Proc(args, log, env, stdout)
        self.procs.append(p)
        return p

    def receiver(self, out_dir, name="receiver", addr=RX_ADDR):
        p = self.start(ns_exec(RX) + [binary(), "receiver", "--listen", "%s:%d" % (addr, RX_PORT),
                                      "--output", str(out_dir)], self.tmp / (name + ".log"))
        p.wait_log("listening on")
        return p

    def sensor(self, config_text, name="sensor", prefix=(), extra=(), env=None, target=None):
        """config_text None: no file (an unprivileged sensor cannot read pytest's
        0700 directories); pass keys in env as PACKETSTREAMER_* instead."""
        conf = []
        if config_text is not None:
            cfg = self.tmp / (name + ".yaml")
            cfg.write_text(config_text)
            conf = ["--config", str(cfg)]
        args = ns_exec(NODE) + list(prefix) + [binary(), "sensor"] + conf + [
            "--receiver", target or "%s:%d" % (RX_ADDR, RX_PORT), "--id", "node1"] + list(extra)
        return self.start(args, self.tmp / (name + ".log"), env=env)

    def servers(self, pods):
        for name in pods:
            ns = self.pods[name][0]
            p = self.start(ns_exec(ns) + [PY, TRAFFIC, "server", UDP_PORT, TCP_PORT],
                           self.tmp / ("server-%s.log" % name))
            p.wait_log("^ready")

    def tcpdump(self, pod):
        ns = self.pods[pod][0]
        out = self.tmp / ("ref-%s.pcap" % pod)
        p = self.start(ns_exec(ns) + ["tcpdump", "-i", "eth0", "-U", "--immediate-mode", "-n", "-s", "0", "-w",
                                      str(out), "udp port %d or tcp port %d" % (UDP_PORT,
                                                                                TCP_PORT)],
                       self.tmp / ("tcpdump-%s.log" % pod))
        p.wait_log("listening on")
        p.ref = out
        return p

    def send(self, src, dst_addr, marker, count=5, udp=UDP_PORT, tcp=TCP_PORT):
        ns = self.pods[src][0] if src in self.pods else src
        r = run(*ns_exec(ns), PY, TRAFFIC, "client", dst_addr, marker, count, udp, tcp)
        return [bytes.fromhex(line) for line in r.stdout.split()]

    def close(self):
        for p in self.procs:
            p.kill()
        cleanup_all()


@pytest.fixture
def cluster(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("e2e tests need root (network namespaces)")
    cleanup_all()
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


# ---- reading packets ----

def l4_ports(frame):
    """(proto, sport, dport) of an Ethernet frame carrying IPv4/IPv6 TCP/UDP, else None."""
    if len(frame) < 14:
        return None
    et = int.from_bytes(frame[12:14], "big")
    off = 14
    if et == 0x0800 and len(frame) >= off + 20:
        ihl = (frame[off] & 0x0F) * 4
        proto = frame[off + 9]
        frag = int.from_bytes(frame[off + 6:off + 8], "big") & 0x1FFF
        if frag:
            return None
        off += ihl
    elif et == 0x86DD and len(frame) >= off + 40:
        proto = frame[off + 6]
        off += 40
    else:
        return None
    if proto not in (6, 17) or len(frame) < off + 4:
        return None
    return proto, int.from_bytes(frame[off:off + 2], "big"), int.from_bytes(frame[off + 2:off + 4],
                                                                             "big")


def port_frames(frames, ports=(UDP_PORT, TCP_PORT)):
    """The frames whose UDP or TCP source or destination port is one of ports."""
    out = []
    for f in frames:
        p = l4_ports(f)
        if p and (p[1] in ports or p[2] in ports):
            out.append(bytes(f))
    return out


def by_iface(path_list):
    """{ifname: [frame bytes]} over the given capture files."""
    out = {}
    for path in path_list:
        for ifname, _ts, caplen, origlen, data in pcaplib.read_named(str(path)):
            assert caplen == origlen, "%s: truncated record on %s" % (path, ifname)
            out.setdefault(ifname, []).append(bytes(data))
    return out


def ref_frames(path):
    _ifs, recs = pcaplib.read(str(path))
    return [bytes(r.data) for r in recs]


def output_files(d):
    return sorted(Path(d).glob("*.pcapng"))


def same_frames(got, want):
    """Counter difference for a readable assertion message."""
    g, w = Counter(got), Counter(want)
    return {"missing": sum((w - g).values()), "extra": sum((g - w).values()),
            "want": len(want), "got": len(got)}
