"""The sensor captures under every container runtime's privilege shape.

Each test runs the sensor binary with runc, directly, from an OCI bundle whose
`process` section is what one runtime generates for the Helm chart's sensor
securityContext, in a network namespace ("node") where a veth leads to a
second namespace ("pod") that sends UDP datagrams. A receiver in the node
namespace (loopback only) must get the pod's frames byte for byte, and the
running sensor's /proc/PID/status must show a non-root uid with only NET_RAW
and NET_ADMIN permitted and effective (nothing inheritable or ambient).

Where each runtime's `process.capabilities` shape comes from (the chart's
securityContext: capabilities drop [ALL] + add [...], runAsUser, and
allowPrivilegeEscalation -> noNewPrivileges):

containerd (CRI plugin; also Fargate, which runs containerd): the CRI
    plugin's container spec (pkg/cri/opts/spec_linux.go, WithCapabilities)
    resolves drop/add and calls oci.WithCapabilities, which sets bounding,
    effective and permitted to the resulting list whatever the uid;
    inheritable is no longer set since containerd 1.5.11/1.6.2 (the
    CVE-2022-24769 fix); ambient is never set.
CRI-O: internal/factory/container/container.go, SpecSetupCapabilities,
    clears every set, then adds each capability to bounding, effective and
    permitted (inheritable only with add_inheritable_capabilities, false by
    default since the CVE-2022-27652 fix), ambient stays empty. For a
    non-root runAsUser the effective and permitted sets are emptied, which is
    what leaves a non-root sensor without capabilities under no_new_privs
    (issue 19's reproduction; the same as the setpriv case below).
cri-dockerd / Docker >= 20.10.14: moby's daemon/oci_linux.go WithCapabilities
    -> oci.SetCapabilities sets effective, bounding and permitted to the list
    and, for a non-root user ("if s.Process.User.UID != 0"), empties
    effective and permitted (moby commit 15ff0939, "drop permitted, effective
    caps early"); inheritable is not set since 20.10.14 (moby dd38613d,
    CVE-2022-24769); ambient is never set.

Every runtime gives a uid-0 process its added capabilities in bounding,
permitted and effective; that is why the chart's default (privileges.mode
drop) starts the sensor as root and lets it switch to 65532 itself.

Needs root, runc, ip and setcap; run with `make e2e` (network namespaces
named psrt-*, removed by the fixture that made them).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lib"))
import pcaplib  # noqa: E402

UDP_PORT = 7777
NODE_IP, POD_IP = "10.199.0.1", "10.199.0.2"
NONROOT = 65532
NET_CAPS = ["CAP_NET_RAW", "CAP_NET_ADMIN"]
# The chart's sensor.privileges.mode=drop adds these (charts/packetstreamer).
DROP_CAPS = NET_CAPS + ["CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"]
CAPS_NET_MASK = (1 << 12) | (1 << 13)  # CAP_NET_ADMIN, CAP_NET_RAW
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                     "runtime error:")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("runc") or not shutil.which("setcap"),
    reason="needs root, runc and setcap")


def binary():
    return os.environ.get("PS_TEST_BIN", str(REPO / "build-asan" / "packetstreamer"))


# --------------------------------------------------------------- shapes --
def containerd_process(uid, caps, nnp):
    return {"user": {"uid": uid, "gid": uid, "additionalGids": [NONROOT]},
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": nnp}


def crio_process(uid, caps, nnp):
    nonroot = uid != 0
    return {"user": {"uid": uid, "gid": uid, "additionalGids": [NONROOT]},
            "capabilities": {"bounding": caps,
                             "effective": [] if nonroot else caps,
                             "permitted": [] if nonroot else caps,
                             "inheritable": [], "ambient": []},
            "noNewPrivileges": nnp}


def dockerd_process(uid, caps, nnp):
    nonroot = uid != 0
    return {"user": {"uid": uid, "gid": uid, "additionalGids": [NONROOT]},
            "capabilities": {"bounding": caps,
                             "effective": [] if nonroot else caps,
                             "permitted": [] if nonroot else caps},
            "noNewPrivileges": nnp}


RUNTIMES = {"containerd": containerd_process, "crio": crio_process,
            "cri-dockerd": dockerd_process}

# The chart's modes -> (runAsUser, added capabilities, noNewPrivileges, env).
MODES = {
    # Default: start as root, the sensor switches to 65532 itself.
    "drop": (0, DROP_CAPS, True, {"PACKETSTREAMER_PRIVILEGES_USER": "%d:%d" % (NONROOT, NONROOT)}),
    # sensor.privileges.mode=fileCaps: non-root, allowPrivilegeEscalation: true.
    "fileCaps": (NONROOT, NET_CAPS, False, {}),
}


# ------------------------------------------------------------- fixtures --
def sh(*args, check=True):
    return subprocess.run(list(args), check=check, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=30)


@pytest.fixture
def net(tmp_path):
    """node and pod namespaces joined by a veth; yields names."""
    tag = "%d%d" % (os.getpid() % 10000, int(time.time() * 1000) % 10000)
    node, pod, veth = "psrt-%s-n" % tag, "psrt-%s-p" % tag, "psrtv%s" % tag
    made = []
    try:
        for ns in (node, pod):
            sh("ip", "netns", "add", ns)
            made.append(ns)
        sh("ip", "-n", node, "link", "add", veth, "type", "veth", "peer", "name", "eth0",
           "netns", pod)
        sh("ip", "-n", node, "addr", "add", NODE_IP + "/24", "dev", veth)
        sh("ip", "-n", pod, "addr", "add", POD_IP + "/24", "dev", "eth0")
        for ns, dev in ((node, veth), (node, "lo"), (pod, "eth0"), (pod, "lo")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        yield {"node": node, "pod": pod, "veth": veth}
    finally:
        for ns in made:
            sh("ip", "netns", "del", ns, check=False)


def free_port(ns):
    r = sh("ip", "netns", "exec", ns, sys.executable, "-c",
           "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); "
           "print(s.getsockname()[1])")
    return int(r.stdout)


class Receiver:
    def __init__(self, ns, outdir, log):
        self.port = free_port(ns)
        self.outdir = outdir
        self.log = log
        self.p = subprocess.Popen(
            ["ip", "netns", "exec", ns, binary(), "receiver", "--listen",
             "127.0.0.1:%d" % self.port, "--output", str(outdir)],
            stdout=subprocess.DEVNULL, stderr=open(log, "w"),
            env=dict(os.environ, PACKETSTREAMER_HTTP_ENABLE="false"))

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        rc = self.p.wait(30)
        text = Path(self.log).read_text()
        assert rc == 0, text[-3000:]
        for m in SANITIZER_MARKERS:
            assert m not in text, text[-3000:]

    def frames(self):
        out = []
        # capture files only: the receiver keeps its indexes and jobs in
        # hidden directories beside them
        for f in sorted(p for p in Path(self.outdir).iterdir() if not p.name.startswith(".")):
            _ifs, recs = pcaplib.read(str(f))
            out += [bytes(r.data) for r in recs]
        return out


def make_bundle(tmp, process, netns, args, env):
    """An OCI bundle: `runc spec` as the base, the host's /usr and /etc
    read-only, the sensor binary (with the image's file capabilities) in
    /app, the node namespace as the network namespace."""
    b = tmp / "bundle"
    (b / "rootfs").mkdir(parents=True)
    (b / "app").mkdir()
    app = b / "app" / "packetstreamer"
    shutil.copy2(binary(), app)
    sh("setcap", "cap_net_raw,cap_net_admin+p", str(app))  # as Dockerfile.sensor does
    os.chmod(b, 0o755)
    os.chmod(b / "app", 0o755)
    for d in ("usr", "etc", "app", "proc", "dev", "sys", "tmp"):
        (b / "rootfs" / d).mkdir(exist_ok=True)
    for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"),
                         ("sbin", "usr/sbin")):
        os.symlink(target, b / "rootfs" / link)
    sh("runc", "spec", "--bundle", str(b))
    spec = json.loads((b / "config.json").read_text())
    p = spec["process"]
    p.update(process)
    p["terminal"] = False
    p["args"] = ["/app/packetstreamer"] + args
    p["env"] = ["PATH=/usr/bin:/bin"] + ["%s=%s" % kv for kv in env.items()]
    spec["root"] = {"path": "rootfs", "readonly": True}  # readOnlyRootFilesystem
    spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/sys/fs/cgroup"]
    for src, dst in (("/usr", "/usr"), ("/etc", "/etc"), (str(b / "app"), "/app")):
        # rbind,ro without nosuid: nosuid would disable the file capabilities.
        spec["mounts"].append({"destination": dst, "type": "bind", "source": src,
                               "options": ["rbind", "ro"]})
    spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev", "mode=1777"]})
    spec["linux"]["namespaces"] = [
        {"type": t} for t in ("pid", "ipc", "uts", "mount")] + [
        {"type": "network", "path": "/var/run/netns/" + netns}]
    (b / "config.json").write_text(json.dumps(spec, indent=1))
    return b


class Container:
    def __init__(self, tmp, bundle, name):
        self.root = tmp / "runc-root"
        self.name = name
        self.log = tmp / "sensor.log"
        self.p = subprocess.Popen(
            ["runc", "--root", str(self.root), "run", "--bundle", str(bundle), name],
            stdin=subprocess.DEVNULL, stdout=open(self.log, "w"), stderr=subprocess.STDOUT)

    def text(self):
        return self.log.read_text()

    def wait_log(self, needle, timeout=20):
        end = time.time() + timeout
        while time.time() < end:
            if needle in self.text():
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("no %r in the sensor's log:\n%s" % (needle, self.text()[-4000:]))

    def pid(self):
        r = sh("runc", "--root", str(self.root), "state", self.name)
        return json.loads(r.stdout)["pid"]

    def stop(self):
        if self.p.poll() is None:
            sh("runc", "--root", str(self.root), "kill", self.name, "TERM", check=False)
        try:
            rc = self.p.wait(30)
        finally:
            sh("runc", "--root", str(self.root), "delete", "-f", self.name, check=False)
        return rc


def proc_status(pid):
    out = {}
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


SENDER = r"""
import socket, sys, time
port, dst, tag, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
raw.bind(("eth0", 0))
raw.settimeout(0.5)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(n):
    u.sendto(("%s-%d-" % (tag, i)).encode() * 7, (dst, port))
    time.sleep(0.01)
end = time.time() + 2
while time.time() < end:
    try:
        f, addr = raw.recvfrom(65535)
    except socket.timeout:
        break
    # outgoing IPv4/UDP to the port: the reference copy of what left the pod
    if addr[2] == socket.PACKET_OUTGOING and f[12:14] == b"\x08\x00" and f[23] == 17:
        ihl = (f[14] & 15) * 4
        if int.from_bytes(f[14 + ihl + 2:14 + ihl + 4], "big") == port:
            print(f.hex())
"""


def send_from_pod(net, tag, n=20):
    r = subprocess.run(["ip", "netns", "exec", net["pod"], sys.executable, "-c", SENDER,
                        str(UDP_PORT), NODE_IP, tag, str(n)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    frames = [bytes.fromhex(l) for l in r.stdout.split()]
    assert len(frames) == n, "reference capture saw %d of %d frames" % (len(frames), n)
    return frames


def start_sensor(tmp, net, rx, runtime, uid, caps, nnp, env):
    process = RUNTIMES[runtime](uid, caps, nnp)
    args = ["sensor", "--receiver", "127.0.0.1:%d" % rx.port, "--interface", net["veth"],
            "--filter", "udp port %d" % UDP_PORT, "--id", runtime]
    env = dict(env, PACKETSTREAMER_HTTP_ENABLE="false", PACKETSTREAMER_GATHER_MAX_WAIT_MS="100",
               ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", ""))
    bundle = make_bundle(tmp, process, net["node"], args, env)
    return Container(tmp, bundle, "psrt-%s-%d" % (runtime, os.getpid()))


def assert_clean(text):
    for m in SANITIZER_MARKERS:
        assert m not in text, text[-4000:]
    assert " ERROR " not in text, text[-4000:]


# ---------------------------------------------------------------- tests --
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_sensor_captures_pod_traffic(tmp_path, net, runtime, mode):
    """Under each runtime's shape of each chart mode, the sensor captures the
    pod's frames exactly and runs as 65532 with only NET_RAW+NET_ADMIN."""
    uid, caps, nnp, env = MODES[mode]
    rx = Receiver(net["node"], tmp_path / "out", tmp_path / "receiver.log")
    c = start_sensor(tmp_path, net, rx, runtime, uid, caps, nnp, env)
    try:
        c.wait_log("capturing on %s " % net["veth"])
        c.wait_log("connected to receiver")
        st = proc_status(c.pid())
        sent = send_from_pod(net, "%s-%s" % (runtime, mode))
        time.sleep(0.5)
    finally:
        rc = c.stop()
    text = c.text()
    assert rc == 0, text[-4000:]
    assert_clean(text)
    rx.stop()
    assert st["Uid"].split() == [str(NONROOT)] * 4, st["Uid"]
    assert st["Gid"].split() == [str(NONROOT)] * 4, st["Gid"]
    assert int(st["CapEff"], 16) == CAPS_NET_MASK, st
    assert int(st["CapPrm"], 16) == CAPS_NET_MASK, st
    assert int(st["CapInh"], 16) == 0 and int(st["CapAmb"], 16) == 0, st
    assert int(st["CapBnd"], 16) == CAPS_NET_MASK, st
    assert st["NoNewPrivs"] == ("1" if mode == "drop" or nnp else "0"), st
    got = rx.frames()
    assert sorted(got) == sorted(sent), "receiver has %d frames, pod sent %d" % (len(got),
                                                                                 len(sent))


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_file_capabilities_under_no_new_privs(tmp_path, net, runtime):
    """The chart's previous default (uid 65532, file capabilities,
    allowPrivilegeEscalation: false): containerd hands the process a permitted
    set, so it captures; CRI-O and cri-dockerd do not, and the sensor says
    which runtime condition and which value to change."""
    rx = Receiver(net["node"], tmp_path / "out", tmp_path / "receiver.log")
    c = start_sensor(tmp_path, net, rx, runtime, NONROOT, NET_CAPS, True, {})
    try:
        if runtime == "containerd":
            c.wait_log("capturing on %s " % net["veth"])
            st = proc_status(c.pid())
            assert int(st["CapEff"], 16) == CAPS_NET_MASK, st
        else:
            c.p.wait(30)
    finally:
        rc = c.stop()
    text = c.text()
    rx.stop()
    if runtime == "containerd":
        assert rc == 0, text[-4000:]
        assert_clean(text)
        return
    assert rc == 1, text[-4000:]
    for words in ("empty permitted capability set under no_new_privs",
                  "sensor.privileges.mode=drop", "sensor.privileges.mode=fileCaps",
                  "cannot capture on %s" % net["veth"], "CAP_NET_RAW"):
        assert words in text, text[-4000:]


@pytest.fixture
def public_dir():
    """A directory uid 65532 can reach (pytest's tmp_path is root-only)."""
    d = Path(tempfile.mkdtemp(prefix="psrt-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_setpriv_reproduction_names_the_condition(public_dir):
    """Issue 19's reproduction without any runtime: a non-root shell with an
    empty permitted set under no_new_privs execs the sensor."""
    app = public_dir / "packetstreamer"
    shutil.copy2(binary(), app)
    sh("setcap", "cap_net_raw,cap_net_admin+p", str(app))
    r = subprocess.run(
        ["setpriv", "--reuid=%d" % NONROOT, "--regid=%d" % NONROOT, "--clear-groups",
         "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all,+net_raw,+net_admin",
         "sh", "-c", 'exec "$0" sensor --interface lo --receiver 127.0.0.1:9 --id x', str(app)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30,
        env=dict(os.environ, PACKETSTREAMER_HTTP_ENABLE="false"))
    assert r.returncode == 1, r.stdout
    assert "uid 65532" in r.stdout and "empty permitted capability set under no_new_privs" \
        in r.stdout, r.stdout


def test_drop_without_setuid_refuses_to_run_as_root(tmp_path, net):
    """Asked to switch users but not given CAP_SETUID/CAP_SETGID, the sensor
    stops instead of capturing as root, naming the capabilities to add."""
    rx = Receiver(net["node"], tmp_path / "out", tmp_path / "receiver.log")
    c = start_sensor(tmp_path, net, rx, "containerd", 0, NET_CAPS, True,
                     MODES["drop"][3])
    try:
        c.p.wait(30)
    finally:
        rc = c.stop()
    rx.stop()
    text = c.text()
    assert rc == 1, text
    assert "needs CAP_SETUID and CAP_SETGID" in text and "SETPCAP" in text, text
    assert "capturing on" not in text, text
