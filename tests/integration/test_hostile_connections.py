"""What one peer can cost the receiver: the registry, connection slots and
stream ownership (issue 13, items 2, 5 and 7; docs/security.md).

Each test performs the attack as a hostile client would, on loopback, and
shows both the bound holding and honest traffic arriving byte-identical at
the same time.
"""
import os
import re
import socket
import struct
import threading
import time

import psclient as P
import rxcounters
from conftest import assert_records_equal, pcaplib, read_outputs
from goodtraffic import GoodTraffic
from http_helpers import get, http_args, wait_http_up


def metric(http_port, name):
    text = get(http_port, "/metrics")[2].decode()
    m = re.search(r"^%s (\d+)" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hello_rtt(port, sensor_id):
    c = P.Client("127.0.0.1", port)
    t0 = time.monotonic()
    kind, _ = c.hello(sensor_id)
    dt = time.monotonic() - t0
    c.close()
    assert kind == "ACCEPT", kind
    return dt


def test_hello_flood_leaves_registry_and_metrics_bounded(env, captures):
    """Item 2: 8000 HELLOs with new ids, each then gone."""
    hport, hargs = http_args()
    rx = env.receiver(args=hargs, env={"PACKETSTREAMER_LIMITS_MAX_SENSORS": "1000",
                                       "PACKETSTREAMER_LIMITS_MAX_SENSOR_SERIES": "50"})
    wait_http_up(hport)
    good = GoodTraffic(env, rx, captures)
    before = sorted(hello_rtt(rx.port, "probe-before") for _ in range(5))[2]

    def flood(first, count):
        for i in range(first, first + count):
            c = P.Client("127.0.0.1", rx.port)
            c.hello("flood-%d" % i)
            c.close()
    threads = [threading.Thread(target=flood, args=(k * 4000, 4000)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    # The registry stays at its cap; /metrics at its series cap.
    known = metric(hport, "packetstreamer_receiver_sensors_known")
    assert known is not None and known <= 1000, known
    size = len(get(hport, "/metrics")[2])
    assert size < 100_000, size
    # An honest HELLO is as quick as before the flood, and the receiver idles.
    after = sorted(hello_rtt(rx.port, "probe-after") for _ in range(5))[2]
    assert after < max(0.05, 5 * before), (before, after)
    time.sleep(0.5)
    c0 = cpu_seconds(rx.proc.pid)
    time.sleep(2)
    assert cpu_seconds(rx.proc.pid) - c0 < 0.3, "receiver busy after the flood"
    good.finish()
    # The honest sensors are still listed (they were connected throughout).
    sensors = get(hport, "/api/sensors")[2].decode()
    assert "good-slow" in sensors
    rx.stop()
    good.check()


def _nofile(n):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))


def test_idle_sockets_from_one_address_do_not_lock_out_a_sensor(env, captures):
    """Item 5: 1024 unauthenticated sockets that never say HELLO."""
    _nofile(4096)
    key = env.workdir / "key"
    key.write_text("s3cret\n")
    os.chmod(key, 0o600)
    rx = env.receiver(args=["--auth-key-file", str(key)],
                      env={"PACKETSTREAMER_LIMITS_HANDSHAKE_TIMEOUT_SEC": "3"})
    held = []
    try:
        for _ in range(1024):
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            s.settimeout(5)
            s.connect(("127.0.0.1", rx.port))
            held.append(s)
        # An honest sensor with the token, from another address, gets in and
        # delivers everything while the sockets are held.
        path, expected = captures.varied(2000, seed=55)
        rc, err = env.run_sensor(path, rx.port, sensor_id="honest",
                                 args=["--auth-key-file", str(key)])
        assert rc == 0, err
    finally:
        for s in held:
            s.close()
    rx.stop()
    got = read_outputs(rx.files())
    assert_records_equal([g for g in got if g[0] == "honest/" + path.name], expected,
                         who="honest sensor")
    c = rxcounters.counters(rx)
    # All but the per-source budget (16) were refused at accept...
    assert c.get("rejected_max_pending_per_source", 0) >= 1024 - 16, c
    assert c.get("rejected_max_connections", 0) == 0, c
    # ...with a bounded number of log lines.
    lines = rx.stderr.count("closing connection from 127.0.0.2")
    assert 1 <= lines <= 40, lines
    assert "log lines skipped" in rx.stderr


def test_takeover_of_a_session_is_refused(env, captures):
    """Item 7: a hijacker reuses an honest sensor's (id, session) and sends
    sequence 2^62; the honest sensor's later batches all land."""
    rx = env.receiver()
    good = GoodTraffic(env, rx, captures)
    session = int.from_bytes(os.urandom(8), "big")
    recs = pcaplib.gen_varied(100, 9)
    victim = P.Client("127.0.0.1", rx.port)
    assert victim.hello("victim", session=session)[0] == "ACCEPT"
    victim.iface(0, "eth0")
    for i in range(5):
        victim.batch(i + 1, recs[i * 10:i * 10 + 10])
    victim.wait_ack(5)

    # While the victim is connected: refused, busy.
    h = P.Client("127.0.0.1", rx.port)
    kind, (code, why) = h.hello("victim", session=session)
    assert kind == "REJECT" and code == 5 and "connected already" in why, (kind, code, why)
    h.close()
    victim.batch(6, recs[50:60])
    victim.wait_ack(6)

    # While it is away: the jump is refused and nothing of it is written.
    victim.close()
    deadline = time.monotonic() + 10
    while True:
        h = P.Client("127.0.0.1", rx.port)
        kind, info = h.hello("victim", session=session)
        if kind == "ACCEPT":
            break
        h.close()
        assert time.monotonic() < deadline, info
        time.sleep(0.05)
    assert info[4] == 6, info
    h.iface(0, "eth0")
    h.send_frame(P.T_BATCH, P.batch_payload(1 << 62, P.records_bytes(recs[60:61]), 1))
    assert h.closed_by_peer()
    h.close()

    deadline = time.monotonic() + 10
    while True:
        victim = P.Client("127.0.0.1", rx.port)
        kind, info = victim.hello("victim", session=session)
        if kind == "ACCEPT":
            break
        victim.close()
        assert time.monotonic() < deadline, info
        time.sleep(0.05)
    assert info[4] == 6, info  # last_seq untouched by the hijacker
    victim.iface(0, "eth0")
    for i in range(6, 10):
        victim.batch(i + 1, recs[i * 10:i * 10 + 10])
    victim.wait_ack(10)
    victim.bye(10)
    victim.close()
    good.finish()
    rx.stop()
    got = read_outputs(rx.files())
    assert_records_equal([g for g in got if g[0] == "victim/eth0"], recs, who="victim")
    c = rxcounters.counters(rx)
    assert c.get("rejected_session_in_use") == 1, c
    assert c.get("rejected_sequence_jump") == 1, c
    good.check()
