"""The receiver shrugs off bad input (issue: secure by default, part 5).

One test per class of bad input. Each asserts the receiver's one log line
(naming the peer and the reason), the counter for that reason, and that a
well-behaved slow client and a real sensor streaming at the same time arrive
complete and byte-identical (goodtraffic.py).
"""
import re
import socket
import ssl
import struct
import time
import zlib

import pytest

import certs as certlib
import psclient
import rxcounters
from goodtraffic import GoodTraffic

P = psclient


def line_re(reason, text=""):
    return re.compile(r"WARN .*(closing connection from|rejecting) 127\.0\.0\.\d+:\d+ .*%s.*"
                      r"\[reason=%s\]" % (text, reason))


def attack(env, captures, reason, bad, rx_env=None, rx_args=(), log_text="", tls=None):
    """Runs bad(rx) while good traffic flows; checks the log line and counter."""
    rx = env.receiver(env=rx_env, args=list(rx_args))
    good = GoodTraffic(env, rx, captures, tls=tls)
    bad(rx)
    good.finish()
    rx.stop()
    assert line_re(reason, log_text).search(rx.stderr), rx.stderr
    counters = rxcounters.counters(rx)
    assert counters.get("rejected_" + reason, 0) >= 1, counters
    good.check()
    return rx, counters


def raw(rx, src="127.0.0.1"):
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", rx.port))
    return s


def closed(s, timeout=10):
    s.settimeout(timeout)
    try:
        while True:
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_garbage_bytes(env, captures):
    def bad(rx):
        s = raw(rx)
        s.sendall(bytes(range(256)) * 4)
        assert closed(s)
    attack(env, captures, "garbage", bad, log_text="bad frame header")


def test_wrong_magic(env, captures):
    def bad(rx):
        c = psclient.Client("127.0.0.1", rx.port)
        kind, (code, why) = c.hello("m", magic=b"HTTP")
        assert kind == "REJECT" and "magic" in why
    attack(env, captures, "bad_magic", bad)


def test_unsupported_version(env, captures):
    def bad(rx):
        c = psclient.Client("127.0.0.1", rx.port)
        kind, (code, why) = c.hello("v", version=(7, 9))
        assert kind == "REJECT" and "version" in why
    attack(env, captures, "unsupported_version", bad, log_text="protocol version 7..9")


def test_frame_longer_than_negotiated(env, captures):
    def bad(rx):
        c = psclient.Client("127.0.0.1", rx.port)
        assert c.hello("big", max_frame=1 << 16)[0] == "ACCEPT"  # negotiates 64 KiB
        c.send(struct.pack(">IBBH", (1 << 16) + 1, P.T_BATCH, 0, 0) + b"x" * 100)
        assert c.closed_by_peer()
    attack(env, captures, "frame_too_long", bad, log_text="exceeds the negotiated maximum of 65536 bytes")


def test_frame_too_long_before_handshake(env, captures):
    def bad(rx):
        s = raw(rx)
        s.sendall(struct.pack(">IBBH", 5000, P.T_HELLO, 0, 0) + b"x" * 10)
        assert closed(s)
    attack(env, captures, "frame_too_long", bad)


def test_decompression_bomb(env, captures):
    def bad(rx):
        c = psclient.Client("127.0.0.1", rx.port)
        assert c.hello("bomb", codec=P.CODEC_ZLIB)[0] == "ACCEPT"
        c.iface(0, "eth0")
        bomb = zlib.compress(b"\0" * (16 << 20), 9)  # 16 MiB of zeros in ~16 KiB
        payload = struct.pack(">QB3xII", 1, P.CODEC_ZLIB, 1, 1 << 16) + bomb
        c.send_frame(P.T_BATCH, payload)
        assert c.closed_by_peer()
    attack(env, captures, "decompression_bomb", bad, log_text="batch 1")


def test_decompression_bomb_declared_too_large(env, captures):
    def bad(rx):
        c = psclient.Client("127.0.0.1", rx.port)
        assert c.hello("bomb2", codec=P.CODEC_ZLIB)[0] == "ACCEPT"
        c.iface(0, "eth0")
        payload = struct.pack(">QB3xII", 1, P.CODEC_ZLIB, 1, 60 << 20) + zlib.compress(b"\0" * 100)
        c.send_frame(P.T_BATCH, payload)
        assert c.closed_by_peer()
    attack(env, captures, "decompression_bomb", bad)


def test_truncated_frame(env, captures):
    def bad(rx):
        c = psclient.Client("127.0.0.1", rx.port)
        assert c.hello("trunc")[0] == "ACCEPT"
        c.send(struct.pack(">IBBH", 1000, P.T_BATCH, 0, 0) + b"y" * 10)
        c.sock.shutdown(socket.SHUT_WR)
        assert c.closed_by_peer()
    attack(env, captures, "truncated", bad, log_text="truncated frame")


def test_data_before_handshake(env, captures):
    def bad(rx):
        c = psclient.Client("127.0.0.1", rx.port)
        c.send_frame(P.T_BATCH, struct.pack(">QB3xII", 1, 0, 0, 0))
        assert c.closed_by_peer()
    attack(env, captures, "data_before_handshake", bad, log_text="batch frame before the handshake")


def test_handshake_timeout_slowloris(env, captures):
    def bad(rx):
        s = raw(rx)
        hello = P.frame(P.T_HELLO, P.hello_payload("slowloris"))
        t0 = time.monotonic()
        for b in hello[:20]:  # one byte at a time, never finishing
            try:
                s.sendall(bytes([b]))
            except OSError:
                break
            if closed(s, 0.2):
                break
        assert closed(s, 10)
        assert time.monotonic() - t0 < 8
    attack(env, captures, "handshake_timeout", bad,
           rx_env={"PACKETSTREAMER_LIMITS_HANDSHAKE_TIMEOUT_SEC": "2"},
           log_text="handshake not completed within 2 s")


def test_idle_session_timeout(env, captures):
    def bad(rx):
        c = psclient.Client("127.0.0.1", rx.port)
        assert c.hello("sleepy")[0] == "ACCEPT"
        assert c.closed_by_peer(timeout=10)
    # The good sensor's heartbeats (every idleTimeout/3) keep it connected.
    attack(env, captures, "idle_timeout", bad,
           rx_env={"PACKETSTREAMER_LIMITS_IDLE_TIMEOUT_SEC": "2"},
           log_text="nothing received for")


def test_max_connections(env, captures):
    held = []

    def bad(rx):
        # The slow good client holds one connection; the real sensor may hold
        # another. Open until the receiver refuses one at accept.
        for _ in range(6):
            s = raw(rx)
            held.append(s)
            if closed(s, 0.3):
                break
        else:
            pytest.fail("no connection was refused")
        for s in held:
            s.close()
    attack(env, captures, "max_connections", bad,
           rx_env={"PACKETSTREAMER_LIMITS_MAX_CONNECTIONS": "4"},
           log_text="connections open")


def test_max_connections_per_source(env, captures):
    held = []

    def bad(rx):
        # Good traffic comes from 127.0.0.1; the flood from 127.0.0.2.
        for _ in range(2):
            held.append(raw(rx, "127.0.0.2"))
        for s in held:
            assert not closed(s, 0.3)
        s = raw(rx, "127.0.0.2")
        assert closed(s, 5)
        for s in held:
            s.close()
    attack(env, captures, "max_connections_per_source", bad,
           rx_env={"PACKETSTREAMER_LIMITS_MAX_CONNECTIONS_PER_SOURCE": "2"},
           log_text="from 127.0.0.2")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    c = certlib.Certs(tmp_path_factory.mktemp("pki-bad"))
    c.leaf("ca", "server", dns=["localhost"], ips=["127.0.0.1"])
    c.leaf("ca", "good", dns=["good-sensor", "good-slow"])
    return c


def test_tls_to_plaintext_port(env, captures, pki):
    def bad(rx):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with pytest.raises((ssl.SSLError, OSError)):
            psclient.Client("127.0.0.1", rx.port, tls=ctx)
        # The real sensor configured for TLS says what is wrong.
        path, _ = captures.varied(10, seed=3)
        rc, err = env.run_sensor(path, rx.port, sensor_id="tlsy",
                                 args=["--tls-ca", str(pki.p("ca.crt"))],
                                 env={"PACKETSTREAMER_SENSOR_CONNECT_TIMEOUT_SEC": "0"})
        assert rc == 1 and "TLS" in err, err
    attack(env, captures, "tls_on_plaintext", bad, log_text="TLS handshake on a plaintext port")


def test_plaintext_to_tls_port(env, captures, pki):
    args = ["--tls-cert", str(pki.p("server.crt")), "--tls-key", str(pki.p("server.key")),
            "--tls-ca", str(pki.p("ca.crt"))]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(pki.p("ca.crt")))
    ctx.load_cert_chain(str(pki.p("good.crt")), str(pki.p("good.key")))
    good_args = ["--tls-cert", str(pki.p("good.crt")), "--tls-key", str(pki.p("good.key")),
                 "--tls-ca", str(pki.p("ca.crt"))]

    def bad(rx):
        c = psclient.Client("127.0.0.1", rx.port)
        kind, (code, why) = c.hello("plain")
        assert kind == "REJECT" and "requires TLS" in why
    rx, counters = attack(env, captures, "plaintext_on_tls", bad, rx_args=args,
                          tls=(ctx, good_args), log_text="plaintext on a TLS port")
    assert counters.get("tls_failures_plaintext") == 1, counters


def test_idle_sensor_sends_heartbeats(env, captures):
    """A sensor with nothing to send (here: waiting for ACKs that a fake
    receiver never sends) sends HEARTBEAT every idleTimeout/3, so a healthy
    idle sensor is not cut by the receiver's idle timeout."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(20)
    port = srv.getsockname()[1]
    path, _ = captures.varied(50, seed=21)
    p = env.start_sensor(path, port, sensor_id="idle",
                         env={"PACKETSTREAMER_LIMITS_IDLE_TIMEOUT_SEC": "1"})
    conn, _ = srv.accept()
    conn.settimeout(10)
    buf = b""

    def frames():
        nonlocal buf
        while True:
            while len(buf) >= 8 and len(buf) >= 8 + struct.unpack(">I", buf[:4])[0]:
                n, t = struct.unpack(">IB", buf[:5])
                yield t
                buf = buf[8 + n:]
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk

    it = frames()
    assert next(it) == P.T_HELLO
    conn.sendall(P.frame(P.T_ACCEPT, struct.pack(">HBxIIQ", 1, 2, 1 << 20, 1 << 26, 0)))
    t0, beats = time.monotonic(), 0
    for t in it:
        if t == P.T_HEARTBEAT:
            beats += 1
            if beats == 3:
                break
    elapsed = time.monotonic() - t0
    assert beats == 3 and 0.5 < elapsed < 5, (beats, elapsed)
    p.terminate()
    rc, err = env.wait_sensor(p)
    conn.close()
    srv.close()


def test_forged_tls_record_after_handshake(env, captures, pki):
    """A record that does not authenticate (a forged or corrupted one, after a
    completed mTLS handshake) closes that connection only."""
    import os
    args = ["--tls-cert", str(pki.p("server.crt")), "--tls-key", str(pki.p("server.key")),
            "--tls-ca", str(pki.p("ca.crt"))]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(pki.p("ca.crt")))
    ctx.load_cert_chain(str(pki.p("good.crt")), str(pki.p("good.key")))
    good_args = ["--tls-cert", str(pki.p("good.crt")), "--tls-key", str(pki.p("good.key")),
                 "--tls-ca", str(pki.p("ca.crt"))]

    def bad(rx):
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
        s = raw(rx)
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                s.sendall(out.read())
                inc.write(s.recv(65536))
        s.sendall(out.read())
        s.sendall(b"\x17\x03\x03\x00\x40" + os.urandom(64))  # application data, forged
        assert closed(s)
    attack(env, captures, "tls_error", bad, rx_args=args, tls=(ctx, good_args),
           log_text="TLS error")
