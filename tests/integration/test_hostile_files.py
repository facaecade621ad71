"""What one peer can cost the receiver in files and descriptors (issue 13,
items 8 and 9; docs/security.md).

Item 8: with perSensor, every sensor has its own file. Sensors that come and
go must not leave their files open (idleCloseSeconds), the number open at once
is bounded (maxOpenFiles, least recently used completed first), and when the
process does run out of descriptors a sensor is told to retry (REJECT code 6,
internal), never to give up (code 7, unsupported).

Item 9: the restart checkpoint has no size limit: with 3000 (id, session)
pairs a restarted receiver still knows every one, so resent batches are
dropped as duplicates instead of being written twice.

All attacks come from tests/lib/hostile.py, as in the soak benchmark.
"""
import os
import re
import resource
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import SCALE, assert_records_equal, pcaplib, read_outputs

import hostile
import psclient as P

PER_SENSOR = {"PACKETSTREAMER_OUTPUT_FILE_PER_SENSOR": "true"}
REJECT_INTERNAL, REJECT_UNSUPPORTED = 6, 7


def open_parts(pid):
    """Capture files (NAME.part) the process has open now."""
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).endswith(".part"):
                n += 1
        except OSError:
            pass  # closed meanwhile
    return n


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def files_of(rx, sensor):
    return [p for p in rx.files() if re.match(r"packetstreamer-%s-\d{8}T" % re.escape(sensor),
                                              p.name)]


def wait_until(cond, seconds):
    deadline = time.monotonic() + seconds * SCALE
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def check_honest(env, rx, p, sid, expected):
    rc, err = env.wait_sensor(p, timeout=60)
    assert rc == 0, "%s exit %d:\n%s" % (sid, rc, err)
    assert "rejected this sensor" not in err, err
    return lambda: assert_records_equal(
        read_outputs(files_of(rx, sid)), expected, who=sid)


def test_departed_sensors_files_are_completed(env, captures):
    rx = env.receiver(env=dict(PER_SENSOR, PACKETSTREAMER_OUTPUT_FILE_IDLE_CLOSE_SECONDS="1"))
    pid = rx.proc.pid
    path, expected = captures.varied(400, seed=31, fmt="pcap-ns", name="honest-idle.pcap")
    honest = env.start_sensor(path, rx.port, sensor_id="honest")
    done = hostile.sensor_churn(port=rx.port, stop=threading.Event(), seconds=20 * SCALE,
                                count=40, records=5)
    assert done["delivered"] == 40, done
    verify = check_honest(env, rx, honest, "honest", expected)
    # Without the idle close all 40 departed sensors' files stay open.
    assert wait_until(lambda: open_parts(pid) == 0, 5), "files still open: %d" % open_parts(pid)
    assert not list(rx.outdir.glob("*.part"))
    rx.stop()
    verify()
    for i in range(40):
        got = read_outputs(files_of(rx, "churn-%d" % i))
        assert len(got) == 5, ("churn-%d" % i, len(got))


def test_open_files_are_bounded(env, captures):
    rx = env.receiver(env=dict(PER_SENSOR, PACKETSTREAMER_OUTPUT_FILE_MAX_OPEN_FILES="4",
                               PACKETSTREAMER_OUTPUT_FILE_IDLE_CLOSE_SECONDS="0"))
    pid = rx.proc.pid
    path, expected = captures.varied(400, seed=33, fmt="pcap-ns", name="honest-lru.pcap")
    honest = env.start_sensor(path, rx.port, sensor_id="honest")
    first, second = pcaplib.gen_varied(3, 34), pcaplib.gen_varied(4, 35)
    clients, peak = [], 0
    for i in range(20):  # they stay connected, each with a file of its own
        c = P.Client("127.0.0.1", rx.port)
        assert c.hello("held-%d" % i, session=i + 1)[0] == "ACCEPT"
        c.iface(0, "eth0")
        c.batch(1, first)
        c.wait_ack(1)
        clients.append(c)
        peak = max(peak, open_parts(pid))
    for c in clients:  # every file comes back once more
        c.batch(2, second)
        c.wait_ack(2)
        peak = max(peak, open_parts(pid))
    assert peak == 4, peak  # the limit, reached and held
    verify = check_honest(env, rx, honest, "honest", expected)
    for c in clients:
        c.close()
    rx.stop()
    verify()
    for i in range(20):  # each sensor's packets once, in order, across its files
        got = read_outputs(files_of(rx, "held-%d" % i))
        assert_records_equal(got, first + second, who="held-%d" % i)


def test_out_of_descriptors_is_retryable(env, captures):
    rx = env.receiver(env=PER_SENSOR)
    pid = rx.proc.pid
    limit = fd_count(pid) + 24
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
    held, codes, cut = [], [], 0
    for i in range(60):
        # A HELLO costs no descriptor; the IFACE's new file set reads the
        # output directory, which needs one.
        try:
            c = P.Client("127.0.0.1", rx.port, timeout=5)
            kind, info = c.hello("hold-%d" % i)
        except OSError:
            cut += 1
            continue
        if kind == "REJECT":
            codes.append(info[0])
        if kind != "ACCEPT":
            c.close()
            continue
        c.iface(0, "eth0")
        held.append(c)
    time.sleep(0.5 * SCALE)
    for c in held:
        c.sock.settimeout(0.01)
        try:
            f = c.read_frame()
            if f and f[0] == P.T_REJECT:
                codes.append(int.from_bytes(f[1][:2], "big"))
        except (socket.timeout, OSError):
            pass
    assert codes, "never ran out of descriptors (%d connections cut)" % cut
    assert set(codes) == {REJECT_INTERNAL}, codes
    # An honest sensor arriving now is refused or cut, backs off and retries;
    # once the descriptors are back it delivers everything.
    path, expected = captures.varied(300, seed=36, fmt="pcap-ns", name="honest-emfile.pcap")
    honest = env.start_sensor(path, rx.port, sensor_id="honest")
    time.sleep(1.0)
    assert honest.poll() is None, "the sensor gave up while the receiver was out of descriptors"
    for c in held:
        c.close()
    verify = check_honest(env, rx, honest, "honest", expected)
    rx.stop()
    verify()


def test_checkpoint_of_3000_sensors_survives_restart(env):
    out = env.mkdir("checkpoint")
    rx = env.receiver(outdir=out)
    n = 3000
    rec = pcaplib.gen_varied(1, 41)

    # 3000 pairs of 30 ids (sensors restarted many times; an id of ~40 bytes
    # as a pod name would be): the checkpoint is ~140 KB, three blocks. Few
    # ids keep the receiver's per-id metrics cheap, which this test is not
    # about.
    def sid(i):
        return "node-%02d.cluster.example.internal" % (i % 30)

    def frames(i):  # one send: the receiver takes frames in order
        return (P.frame(P.T_HELLO, P.hello_payload(sid(i), session=i + 1))
                + P.frame(P.T_IFACE, P.iface_payload(0, "eth0"))
                + P.frame(P.T_BATCH, P.batch_payload(1, P.records_bytes(rec), 1))
                + P.frame(P.T_BYE, struct.pack(">Q", 1)))

    def first(i):
        c = P.Client("127.0.0.1", rx.port)
        c.send(frames(i))
        f = c.read_frame()
        assert f and f[0] == P.T_ACCEPT and struct.unpack(">HBxIIQ", f[1])[4] == 0, f
        c.wait_ack(1)
        c.close()

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(first, range(n)))
    rx.stop()

    # The file's checkpoint (many blocks now) tells the new receiver every
    # sensor's last batch: each resumes after it, and a resend is dropped.
    rx = env.receiver(outdir=out)
    assert "%d sequence facts" % n in rx.stderr, rx.stderr[-2000:]

    def again(i):  # as a sensor that never saw the ACK: batch 1 once more
        c = P.Client("127.0.0.1", rx.port)
        c.send(frames(i))
        f = c.read_frame()
        c.close()
        return struct.unpack(">HBxIIQ", f[1])[4] if f and f[0] == P.T_ACCEPT else None

    with ThreadPoolExecutor(8) as ex:
        resumed = list(ex.map(again, range(n)))
    assert resumed == [1] * n, [i for i, s in enumerate(resumed) if s != 1][:10]
    rx.stop()
    assert "%d duplicate batches dropped" % n in rx.stderr
    got = read_outputs(rx.files())
    assert len(got) == n, "%d packets in the files for %d batches" % (len(got), n)
