"""packetstreamer get and the kubectl plugin, against a running receiver:
the window's packets arrive byte for byte, a refused question leaves no file
behind and says why, --follow appends the live stream without a duplicate,
and kubectl-packetstreamer runs (and cleans up) its own port-forward."""

import os
import signal
import stat
import struct
import subprocess
import sys
import threading
import time

from conftest import REPO, SCALE, assert_no_sanitizer, pcaplib
from http_helpers import get, http_args, wait_http_up

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import psclient  # noqa: E402

PLUGIN = REPO / "scripts" / "kubectl-packetstreamer"


def frame(proto, sport, dport, marker):
    """An Ethernet/IPv4 frame, UDP (17) or TCP (6), with a marker payload."""
    payload = marker.ljust(24, b".")
    if proto == 17:
        l4 = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
    else:
        l4 = struct.pack(">HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x18, 512, 0, 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0, 64, proto, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + l4


class Sensor:
    """A sensor speaking the wire protocol, announcing pod interfaces."""

    def __init__(self, port, sid, ifaces):
        self.c = psclient.Client("127.0.0.1", port)
        kind, _ = self.c.hello(sid)
        assert kind == "ACCEPT"
        for i, name in enumerate(ifaces):
            self.c.send_frame(psclient.T_IFACE, psclient.iface_payload(i, name))
        self.seq = 0

    def send(self, recs):
        """One batch; each record on its own interface (record.iface)."""
        self.seq += 1
        raw = b"".join(struct.pack(">IQII", r.iface, r.ts_ns, r.caplen, r.origlen) + r.data
                       for r in recs)
        self.c.send_frame(psclient.T_BATCH, psclient.batch_payload(self.seq, raw, len(recs)))
        self.c.wait_ack(self.seq)

    def close(self):
        self.c.bye(self.seq)
        self.c.close()


def populate(rx):
    """Two sensors, pods interleaved in time; returns {name: [records]}."""
    base = time.time_ns() - 60 * 10**9
    a = Sensor(rx.port, "node-1", ["shop/pa", "eth0"])
    b = Sensor(rx.port, "node-2", ["shop/pb", "pay/pc"])
    want = {"node-1/shop/pa": [], "node-1/eth0": [], "node-2/shop/pb": [], "node-2/pay/pc": []}
    ra, rb = [], []
    for i in range(200):
        proto = 17 if i % 3 else 6
        data = frame(proto, 1000 + i, 53 if proto == 17 else 443, b"A%d" % i)
        ra.append(pcaplib.Record(i % 2, base + i * 1000003, len(data), len(data), data))
        want["node-1/shop/pa" if i % 2 == 0 else "node-1/eth0"].append(ra[-1])
        data = frame(proto, 2000 + i, 53, b"B%d" % i)
        rb.append(pcaplib.Record(i % 2, base + i * 1000003 + 500, len(data), len(data), data))
        want["node-2/shop/pb" if i % 2 == 0 else "node-2/pay/pc"].append(rb[-1])
    a.send(ra)
    b.send(rb)
    return a, b, want


def run_get(env, *args, timeout=60):
    p = subprocess.run([str(env.binary), "get"] + list(args), capture_output=True,
                       timeout=timeout * SCALE)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def named(buf_or_path):
    return [(n, ts, data) for n, ts, _, _, data in pcaplib.read_named(buf_or_path)]


def expect(want, names, pred=lambda d: True):
    recs = sorted(((n, r.ts_ns, r.data) for n in names for r in want[n] if pred(r.data)),
                  key=lambda t: t[1])
    return recs


def test_get_window_to_file_and_stdout(env):
    hport, hargs = http_args()
    rx = env.receiver(args=hargs)
    wait_http_up(hport)
    a, b, want = populate(rx)
    url = "http://127.0.0.1:%d" % hport
    out = env.workdir / "pa.pcapng"
    rc, _, err = run_get(env, "--receiver", url, "--pod", "shop/pa", "--since", "1h", "-w",
                         str(out))
    assert rc == 0, err
    assert err == "", "a progress line or noise on a pipe: %r" % err
    assert not os.path.exists(str(out) + ".part")
    assert named(out) == expect(want, ["node-1/shop/pa"])

    # a namespace across sensors, UDP only, to stdout
    rc, data, err = run_get(env, "--receiver", url, "--namespace", "shop", "--filter", "udp",
                            "--since", "1h", "-w", "-")
    assert rc == 0, err
    is_udp = lambda d: d[23] == 17  # noqa: E731
    assert named(data) == expect(want, ["node-1/shop/pa", "node-2/shop/pb"], is_udp)

    # nothing matched: an empty capture and a word on stderr
    rc, data, err = run_get(env, "--receiver", url, "--pod", "shop/nope", "--since", "1h")
    assert rc == 0, err
    assert named(data) == []
    assert "no packet matched" in err
    a.close()
    b.close()
    rx.stop()
    assert_no_sanitizer(rx.stderr, "receiver")


def test_get_refusals_leave_no_file(env):
    hport, hargs = http_args()
    rx = env.receiver(args=hargs)
    wait_http_up(hport)
    url = "http://127.0.0.1:%d" % hport
    out = env.workdir / "x.pcapng"
    for args, words in ((["--from", "yesterday-ish"], "HTTP 400"),
                        (["--since", "5m", "--filter", "port nonsense"], "HTTP 400"),
                        (["--from", "2026-12-04T14:05:00Z", "--to", "2026-12-04T14:02:00Z"],
                         "HTTP 400")):
        rc, _, err = run_get(env, "--receiver", url, "-w", str(out), *args)
        assert rc == 1, err
        assert "the receiver refused the window" in err and words in err, err
        assert not out.exists() and not os.path.exists(str(out) + ".part"), err
    # nobody there
    rc, _, err = run_get(env, "--receiver", "http://127.0.0.1:1", "--since", "5m", "-w", str(out))
    assert rc == 1 and "cannot fetch the window from http://127.0.0.1:1" in err, err
    assert not out.exists()
    # usage errors are exit 2 and name the problem
    for args, words in ((["--since", "5m", "--from", "-1h"], "--since and --from"),
                        (["--since", "5m", "--to", "-1m", "--follow"], "--follow"),
                        (["--since", "5m", "--pod", "noslash"], "NAMESPACE/NAME"),
                        (["--since", "5m", "--follow", "--filter", "port nonsense"], "--filter")):
        rc, _, err = run_get(env, "--receiver", url, "-w", str(out), *args)
        assert rc == 2 and words in err, (args, err)
    rx.stop()


def test_get_follow_appends_live_without_duplicates(env):
    hport, hargs = http_args()
    rx = env.receiver(args=hargs)
    wait_http_up(hport)
    a, b, want = populate(rx)
    url = "http://127.0.0.1:%d" % hport
    p = subprocess.Popen([str(env.binary), "get", "--receiver", url, "--sensor", "node-1",
                          "--since", "1h", "--follow", "-w", "-"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    chunks = []
    t = threading.Thread(target=lambda: chunks.extend(iter(lambda: p.stdout.read1(65536), b"")))
    t.start()
    window = expect(want, ["node-1/shop/pa", "node-1/eth0"])
    deadline = time.monotonic() + 20 * SCALE

    def have(n):
        try:
            return len(named(b"".join(chunks))) >= n
        except ValueError:
            return False
    while not have(len(window)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert have(len(window)), "window not delivered"
    # now: new packets of node-1 (live), node-2 (not selected), and one of
    # node-1 stamped in the window but arriving late (belongs to neither)
    late = frame(17, 9, 9, b"LATE")
    a.send([pcaplib.Record(0, time.time_ns() - 30 * 10**9, len(late), len(late), late)])
    live = []
    for i in range(20):
        d = frame(17, 3000 + i, 53, b"L%d" % i)
        live.append(pcaplib.Record(i % 2, time.time_ns(), len(d), len(d), d))
    a.send(live)
    other = frame(17, 1, 1, b"OTHER")
    b.send([pcaplib.Record(0, time.time_ns(), len(other), len(other), other)])
    while not have(len(window) + len(live)) and time.monotonic() < deadline:
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    rc = p.wait(10 * SCALE)
    t.join(5)
    err = p.stderr.read().decode(errors="replace")
    assert rc == 0, err
    assert_no_sanitizer(err, "get")
    got = named(b"".join(chunks))
    names = ["node-1/shop/pa", "node-1/eth0"]
    assert got == window + [(names[r.iface], r.ts_ns, r.data) for r in live], err
    a.close()
    b.close()
    rx.stop()


FAKE_KUBECTL = r'''#!/usr/bin/env bash
# A stand-in for kubectl: the verbs the plugin uses. port-forward is real
# forwarding (socat-free: a Python relay) from an ephemeral port to the
# receiver, printing kubectl's own "Forwarding from" line.
echo "$*" >> "$FAKE_LOG"
case "$1" in
config) echo -n shop ;;
get) [ "$2" = service ] && [ "$4" = "$FAKE_NS" ] && echo -n "ps-receiver ps-receiver-headless" ;;
port-forward)
	[ "$3" = "$FAKE_NS" ] && [ "$4" = service/ps-receiver ] && [ "$5" = :http ] || { echo "bad args: $*" >&2; exit 1; }
	echo $$ > "$FAKE_PIDFILE"
	exec /usr/bin/python3 -u -c '
import os, socket, sys, threading
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(16)
print("Forwarding from 127.0.0.1:%d -> 8080" % ls.getsockname()[1], flush=True)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d: break
            b.sendall(d)
    except OSError: pass
    finally:
        try: b.shutdown(socket.SHUT_WR)
        except OSError: pass
while True:
    c, _ = ls.accept()
    s = socket.create_connection(("127.0.0.1", int(os.environ["FAKE_TARGET"])))
    threading.Thread(target=pipe, args=(c, s), daemon=True).start()
    threading.Thread(target=pipe, args=(s, c), daemon=True).start()
' ;;
*) echo "fake kubectl: unexpected $*" >&2; exit 1 ;;
esac
'''


def test_kubectl_plugin_port_forwards_and_cleans_up(env):
    hport, hargs = http_args()
    rx = env.receiver(args=hargs)
    wait_http_up(hport)
    a, b, want = populate(rx)
    bindir = env.mkdir("bin")
    fake = bindir / "kubectl"
    fake.write_text(FAKE_KUBECTL)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    pidfile = env.workdir / "pf.pid"
    envv = dict(os.environ, PATH="%s:%s" % (bindir, os.environ["PATH"]),
                PACKETSTREAMER_BIN=str(env.binary), FAKE_LOG=str(env.workdir / "kubectl.log"),
                FAKE_NS="capture", FAKE_PIDFILE=str(pidfile), FAKE_TARGET=str(hport),
                PACKETSTREAMER_NAMESPACE="capture")
    out = env.workdir / "plugin.pcapng"
    p = subprocess.run([str(PLUGIN), "get", "pod/pa", "--since", "1h", "-w", str(out)],
                       env=envv, capture_output=True, timeout=60 * SCALE)
    assert p.returncode == 0, p.stderr.decode()
    # the current namespace (shop) and the pod name make the selector
    assert named(out) == expect(want, ["node-1/shop/pa"])
    pf = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and os.path.exists("/proc/%d" % pf):
        time.sleep(0.1)
    assert not os.path.exists("/proc/%d" % pf), "port-forward left running"

    p = subprocess.run([str(PLUGIN), "status"], env=envv, capture_output=True,
                       timeout=60 * SCALE)
    assert p.returncode == 0, p.stderr.decode()
    assert b'"node-1"' in p.stdout and b'"shop/pa"' in p.stdout

    # --receiver: no port-forward at all
    log = env.workdir / "kubectl.log"
    log.write_text("")
    p = subprocess.run([str(PLUGIN), "get", "namespace/pay", "--since", "1h", "-w", "-",
                        "--receiver", "http://127.0.0.1:%d" % hport], env=envv,
                       capture_output=True, timeout=60 * SCALE)
    assert p.returncode == 0, p.stderr.decode()
    assert named(p.stdout) == expect(want, ["node-2/pay/pc"])
    assert "port-forward" not in log.read_text()

    # a wrong target kind is a usage error naming it
    p = subprocess.run([str(PLUGIN), "get", "deployment/x", "--since", "1h"], env=envv,
                       capture_output=True, timeout=60 * SCALE)
    assert p.returncode == 2 and b"deployment" in p.stderr
    a.close()
    b.close()
    rx.stop()
