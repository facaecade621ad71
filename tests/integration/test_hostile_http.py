"""Issue 13, items 6 and 11: the HTTP server under a slowloris and a DNS
rebinding attack (docs/security.md, "What one peer can cost the receiver").

Slow clients (tests/lib/hostile.py) hold connections while the probes and an
honest capture download keep answering; a rebound page's foreign Host and a
cross-origin request are refused while an IP-literal Host works."""

import os
import socket
import sys
import threading
import time
from pathlib import Path

from conftest import SCALE, free_port
from http_helpers import get, http_args, metrics, parse_metrics, wait_http_up

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
import hostile  # noqa: E402

N = 1500


def rejected(port, reason):
    m = parse_metrics(metrics(port))
    return m.get('packetstreamer_http_rejected_connections_total{reason="%s"}' % reason, 0)


def completed_file(env, captures, rargs, renv=None):
    """A receiver with one completed capture file; (receiver, path)."""
    path, _ = captures.varied(N, seed=113, fmt="pcap-ns", name="hostile-http.pcap")
    e = {"PACKETSTREAMER_OUTPUT_FILE_ROTATE_SECONDS": "1"}
    e.update(renv or {})
    rx = env.receiver(args=rargs, env=e)
    rc, err = env.run_sensor(path, rx.port, sensor_id="node-h")
    assert rc == 0, err
    deadline = time.monotonic() + 15 * SCALE
    while not rx.files() and time.monotonic() < deadline:
        time.sleep(0.1)
    files = rx.files()
    assert len(files) == 1, files
    return rx, files[0]


def slow_clients(port, count, sources=None):
    """count sockets that send a request line and then a byte now and then,
    never finishing their headers; from 127.0.0.1, or from each of sources
    in turn. Returns (stop event, thread, list of sockets still open)."""
    held, stop = [], threading.Event()
    for i in range(count):
        s = socket.socket()
        if sources:
            s.bind((sources[i % len(sources)], 0))
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", port))
            s.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            held.append(s)
        except OSError:
            s.close()

    def drip():
        while not stop.wait(0.3):
            for s in list(held):
                try:
                    s.send(b"X")
                except OSError:
                    held.remove(s)
                    s.close()
        for s in held:
            s.close()

    t = threading.Thread(target=drip, daemon=True)
    t.start()
    return stop, t, held


def probes_answer(port, seconds, extra=None):
    """Polls /healthz and /readyz (and extra(), if given) for seconds; every
    answer must come within a second."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        for path in ("/healthz", "/readyz"):
            t0 = time.monotonic()
            st, _, _ = get(port, path, timeout=2)
            assert st == 200, (path, st)
            assert time.monotonic() - t0 < 1 * SCALE, path
        if extra:
            extra()
        n += 1
        time.sleep(0.2)
    return n


def test_slowloris_from_one_address_keeps_probes_and_downloads(env, captures):
    rport, rargs = http_args()
    rx, f = completed_file(env, captures, rargs)
    wait_http_up(rport)
    want = f.read_bytes()
    stop = threading.Event()
    t, out = hostile.run_in_thread(hostile.slowloris, http_port=rport, stop=stop, seconds=30,
                                   count=80)
    try:
        time.sleep(1)

        def download():
            st, _, body = get(rport, "/captures/" + f.name)
            assert st == 200 and body == want

        assert probes_answer(rport, 3, download) >= 5
    finally:
        stop.set()
        t.join()
    assert out.get("connections") == 80, out
    # 80 slow clients from one address, 16 allowed: the oldest were closed.
    assert rejected(rport, "source_limit") >= 64
    assert "reason=source_limit" in rx.stderr
    rx.stop()


def test_slowloris_from_many_addresses_keeps_probes(env):
    rport, rargs = http_args()
    rx = env.receiver(args=rargs)
    wait_http_up(rport)
    # 96 sources, one connection each: over http.maxConnections (64), not
    # over any source's budget.
    stop, t, _ = slow_clients(rport, 96, sources=["127.0.1.%d" % i for i in range(1, 97)])
    try:
        probes_answer(rport, 2)
        st, _, _ = get(rport, "/api/captures")
        assert st == 200
    finally:
        stop.set()
        t.join()
    assert rejected(rport, "connection_limit") >= 32
    rx.stop()


def test_slowloris_on_the_sensor_keeps_its_probes(env, captures, receiver):
    path, _ = captures.varied(400, seed=114, fmt="pcap-ns", name="hostile-http-sensor.pcap")
    sport = free_port()
    p = env.start_sensor(path, receiver.port, sensor_id="node-s",
                         args=["--http", "127.0.0.1:%d" % sport],
                         env={"PACKETSTREAMER_SENSOR_READ_PACKETS_PER_SEC": "100"})
    wait_http_up(sport)
    stop = threading.Event()
    t, _ = hostile.run_in_thread(hostile.slowloris, http_port=sport, stop=stop, seconds=30,
                                 count=80)
    try:
        time.sleep(1)
        end = time.monotonic() + 2
        while time.monotonic() < end:
            st, _, _ = get(sport, "/healthz", timeout=2)
            assert st == 200
            time.sleep(0.2)
    finally:
        stop.set()
        t.join()
    assert rejected(sport, "source_limit") >= 64
    rc, err = env.wait_sensor(p)
    assert rc == 0, err


def test_header_deadline_closes_a_trickling_client(env):
    rport, rargs = http_args()
    rx = env.receiver(args=rargs, env={"PACKETSTREAMER_HTTP_HEADER_TIMEOUT_SEC": "1"})
    wait_http_up(rport)
    s = socket.create_connection(("127.0.0.1", rport), timeout=5)
    s.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    t0 = time.monotonic()
    closed = False
    while time.monotonic() - t0 < 6 * SCALE:
        try:
            s.send(b"X")  # a byte every 0.2 s: MHD's inactivity timeout never fires
            time.sleep(0.2)
        except OSError:
            closed = True
            break
    s.close()
    assert closed, "a client trickling its headers was never cut"
    assert time.monotonic() - t0 < 4 * SCALE
    assert rejected(rport, "header_timeout") >= 1
    rx.stop()


def raw_get(port, path, headers):
    """Status of a GET with exactly these headers (Host included)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        req = "GET %s HTTP/1.1\r\n%sConnection: close\r\n\r\n" % (
            path, "".join("%s: %s\r\n" % kv for kv in headers.items()))
        s.sendall(req.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return int(data.split(b" ")[1]), data
    finally:
        s.close()


def test_rebinding_host_is_refused_ip_literal_works(env):
    rport, rargs = http_args()
    rx = env.receiver(args=rargs, env={"PACKETSTREAMER_HTTP_ALLOWED_HOSTS": "capture.internal"})
    wait_http_up(rport)
    out = hostile.rebinding(http_port=rport, stop=threading.Event())
    assert out["status"] == "421", out
    st, data = raw_get(rport, "/api/captures", {"Host": "attacker.example:%d" % rport})
    assert st == 421 and b"http.allowedHosts" in data
    for host in ("127.0.0.1:%d" % rport, "127.0.0.1", "[::1]:%d" % rport, "localhost:%d" % rport,
                 "LOCALHOST", "capture.internal:%d" % rport):
        st, _ = raw_get(rport, "/api/captures", {"Host": host})
        assert st == 200, host
    # Probes and /metrics stay open whatever the Host.
    st, _ = raw_get(rport, "/healthz", {"Host": "attacker.example"})
    assert st == 200
    assert rejected(rport, "host") == 2
    rx.stop()


def test_cross_origin_requests_are_refused(env):
    rport, rargs = http_args()
    rx = env.receiver(args=rargs)
    wait_http_up(rport)
    host = "127.0.0.1:%d" % rport
    for hdr in ({"Origin": "http://attacker.example"}, {"Origin": "null"},
                {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}):
        hdr["Host"] = host
        st, data = raw_get(rport, "/api/sensors", hdr)
        assert st == 403 and b"cross-origin" in data, hdr
    for hdr in ({"Origin": "http://" + host}, {"Sec-Fetch-Site": "same-origin"},
                {"Sec-Fetch-Site": "none"}):
        hdr["Host"] = host
        st, _ = raw_get(rport, "/api/sensors", hdr)
        assert st == 200, hdr
    assert rejected(rport, "cross_origin") == 4
    rx.stop()


def test_loopback_trust_off_needs_the_token(env):
    rport, rargs = http_args()
    rx = env.receiver(args=rargs, env={"PACKETSTREAMER_HTTP_TRUST_LOOPBACK": "false",
                                       "PACKETSTREAMER_HTTP_TOKEN": "s3cret-token"})
    wait_http_up(rport)
    st, _, _ = get(rport, "/api/captures")
    assert st == 401
    st, _, _ = get(rport, "/api/captures", headers={"Authorization": "Bearer s3cret-token"})
    assert st == 200
    # A token holder may use any name (no rebound page has the token).
    st, _ = raw_get(rport, "/api/captures", {"Host": "receiver.example",
                                             "Authorization": "Bearer s3cret-token"})
    assert st == 200
    st, _, _ = get(rport, "/healthz")
    assert st == 200
    rx.stop()
