"""TLS and mutual TLS between sensor and receiver (docs/security.md).

Certificates are generated at run time with the openssl CLI (tests/lib/certs.py):
a CA, another CA, a server certificate for localhost/127.0.0.1, client
certificates that are valid, from the other CA, expired, or of a disallowed
identity.
"""
import os
import re
import ssl

import pytest

import certs as certlib
import psclient
import rxcounters
from conftest import assert_records_equal, pcaplib, read_outputs
from goodtraffic import GoodTraffic

NO_RETRY = {"PACKETSTREAMER_SENSOR_CONNECT_TIMEOUT_SEC": "0"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    c = certlib.Certs(tmp_path_factory.mktemp("pki"))
    c.leaf("ca", "server", dns=["localhost"], ips=["127.0.0.1"])
    c.leaf("ca", "node-1", dns=["node-1"])
    c.leaf("ca", "good", dns=["good-sensor", "good-slow"])
    c.leaf("ca", "intruder")
    c.leaf("ca", "expired", expired=True)
    c.leaf("other-ca", "stranger")
    c.leaf("ca", "elsewhere", dns=["receiver.example"])
    return c


def rx_args(pki, server="server", ca="ca"):
    return ["--tls-cert", str(pki.p(server + ".crt")), "--tls-key", str(pki.p(server + ".key")),
            "--tls-ca", str(pki.p(ca + ".crt"))]


def sensor_args(pki, name=None, ca="ca"):
    args = ["--tls-ca", str(pki.p(ca + ".crt"))]
    if name:
        args = ["--tls-cert", str(pki.p(name + ".crt")), "--tls-key", str(pki.p(name + ".key"))] + args
    return args


def client_ctx(pki, name="good", ca="ca"):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(pki.p(ca + ".crt")))
    if name:
        ctx.load_cert_chain(str(pki.p(name + ".crt")), str(pki.p(name + ".key")))
    return ctx


def good_tls(pki):
    return (client_ctx(pki, "good"), sensor_args(pki, "good"))


def test_mtls_streams_byte_identical(env, captures, pki):
    path, expected = captures.varied(5000, seed=31)
    rx = env.receiver(args=rx_args(pki))
    rc, err = env.run_sensor(path, rx.port, sensor_id="node-1", args=sensor_args(pki, "node-1"))
    assert rc == 0, err
    rx.stop()
    assert "TLS, client certificates verified" in rx.stderr
    got = read_outputs(rx.files())
    assert_records_equal(got, expected, ifname="node-1/" + path.name)


# (client cert, sensor's error, receiver's log, counter)
REFUSED = {
    "no-certificate": (None, "certificate required", "peer did not return a certificate",
                       "tls_failures_no_certificate"),
    "other-ca": ("stranger", "unknown ca", "unable to get local issuer certificate",
                 "tls_failures_unknown_ca"),
    "expired": ("expired", "certificate expired", "certificate has expired",
                "tls_failures_expired_certificate"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_bad_client_certificate_refused(env, captures, pki, case):
    cert, sensor_msg, rx_msg, counter = REFUSED[case]
    rx = env.receiver(args=rx_args(pki))
    good = GoodTraffic(env, rx, captures, tls=good_tls(pki))
    path, _ = captures.varied(200, seed=5)
    rc, err = env.run_sensor(path, rx.port, sensor_id="bad", args=sensor_args(pki, cert),
                             env=NO_RETRY)
    assert rc == 1, err
    assert sensor_msg in err, err
    good.finish()
    rx.stop()
    assert re.search(r"closing connection from 127\.0\.0\.1:\d+ \(sensor \?\): TLS handshake "
                     r"failed: .*%s.* \[reason=tls_handshake\]" % re.escape(rx_msg), rx.stderr), \
        rx.stderr
    c = rxcounters.counters(rx)
    assert c.get(counter) == 1 and c.get("rejected_tls_handshake") == 1, c
    good.check()


def test_disallowed_identity_refused(env, captures, pki):
    rx = env.receiver(args=rx_args(pki),
                      env={"PACKETSTREAMER_TLS_ALLOWED_IDENTITIES": "node-*,good*"})
    good = GoodTraffic(env, rx, captures, tls=good_tls(pki))
    path, expected = captures.varied(200, seed=6)
    rc, err = env.run_sensor(path, rx.port, sensor_id="intruder",
                             args=sensor_args(pki, "intruder"), env=NO_RETRY)
    assert rc == 1, err
    assert "rejected this sensor" in err and "identity is not allowed" in err, err
    rc, err = env.run_sensor(path, rx.port, sensor_id="node-1", args=sensor_args(pki, "node-1"))
    assert rc == 0, err
    good.finish()
    rx.stop()
    assert re.search(r"rejecting 127\.0\.0\.1:\d+ .*certificate identity is not allowed.*"
                     r"'intruder'.*\[reason=identity\]", rx.stderr), rx.stderr
    c = rxcounters.counters(rx)
    assert c.get("rejected_identity") == 1 and c.get("auth_failures") == 1, c
    good.check()


def test_require_id_match(env, captures, pki):
    rx = env.receiver(args=rx_args(pki), env={"PACKETSTREAMER_TLS_REQUIRE_ID_MATCH": "true"})
    path, expected = captures.varied(300, seed=8)
    rc, err = env.run_sensor(path, rx.port, sensor_id="node-2", args=sensor_args(pki, "node-1"),
                             env=NO_RETRY)
    assert rc == 1 and "does not match the certificate" in err, err
    rc, err = env.run_sensor(path, rx.port, sensor_id="node-1", args=sensor_args(pki, "node-1"))
    assert rc == 0, err
    rx.stop()
    assert "sensor id 'node-2'" in rx.stderr
    assert_records_equal(read_outputs(rx.files()), expected, ifname="node-1/" + path.name)


def test_sensor_refuses_receiver_name_not_in_certificate(env, captures, pki):
    path, expected = captures.varied(300, seed=9)
    # The receiver's certificate names only receiver.example.
    rx = env.receiver(args=rx_args(pki, server="elsewhere"))
    rc, err = env.run_sensor(path, rx.port, sensor_id="node-1", args=sensor_args(pki, "node-1"),
                             env=NO_RETRY)
    assert rc == 1, err
    assert "certificate verify failed" in err and "IP address mismatch" in err, err
    # Told which name to expect (tls.serverName), the same sensor connects.
    rc, err = env.run_sensor(path, rx.port, sensor_id="node-1", args=sensor_args(pki, "node-1"),
                             env={"PACKETSTREAMER_TLS_SERVER_NAME": "receiver.example"})
    assert rc == 0, err
    rx.stop()
    assert "tls_failures_bad_certificate=1" in rx.stderr or "tls_failures_" in rx.stderr
    assert_records_equal(read_outputs(rx.files()), expected, ifname="node-1/" + path.name)


def test_sensor_dials_by_dns_name(env, captures, pki):
    path, expected = captures.varied(300, seed=10)
    rx = env.receiver(args=rx_args(pki))
    cmd = env.sensor_cmd(path, rx.port, sensor_id="node-1", args=sensor_args(pki, "node-1"))
    cmd[cmd.index("127.0.0.1:%d" % rx.port)] = "localhost:%d" % rx.port
    rc, err = env.run(cmd)
    assert rc == 0, err
    # A server name that is not in the certificate is refused by the sensor.
    rc, err = env.run(cmd, env=dict(NO_RETRY, PACKETSTREAMER_TLS_SERVER_NAME="wrong.example"))
    assert rc == 1 and "hostname mismatch" in err, err
    rx.stop()


def test_pem_material_from_environment(env, captures, pki):
    path, expected = captures.varied(300, seed=11)
    rx = env.receiver(args=rx_args(pki))
    key_text = pki.p("node-1.key").read_text()
    pem_env = {"PACKETSTREAMER_TLS_ENABLE": "true",
               "PACKETSTREAMER_TLS_CERT_PEM": pki.p("node-1.crt").read_text(),
               "PACKETSTREAMER_TLS_KEY_PEM": key_text,
               "PACKETSTREAMER_TLS_CA_PEM": pki.p("ca.crt").read_text()}
    rc, err = env.run_sensor(path, rx.port, sensor_id="node-1", env=pem_env)
    assert rc == 0, err
    rx.stop()
    body = key_text.splitlines()[1]
    assert body not in err and body not in rx.stderr
    assert_records_equal(read_outputs(rx.files()), expected, ifname="node-1/" + path.name)


def test_insecure_skip_verify_is_explicit_and_warned(env, captures, pki):
    path, _ = captures.varied(100, seed=12)
    rx = env.receiver(args=rx_args(pki))
    # Trusting only the other CA, the sensor cannot verify the receiver...
    rc, err = env.run_sensor(path, rx.port, sensor_id="node-1",
                             args=sensor_args(pki, "node-1", ca="other-ca"), env=NO_RETRY)
    assert rc == 1 and "certificate verify failed" in err, err
    # ...unless verification is switched off explicitly, which it says loudly.
    rc, err = env.run_sensor(path, rx.port, sensor_id="node-1",
                             args=sensor_args(pki, "node-1", ca="other-ca"),
                             env={"PACKETSTREAMER_TLS_INSECURE_SKIP_VERIFY": "true"})
    assert rc == 0, err
    assert re.search(r"WARN .*tls.insecureSkipVerify.*NOT verified", err), err
    rx.stop()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_policy_refuses_old_protocols_and_weak_ciphers(env, pki):
    rx = env.receiver(args=rx_args(pki))
    for setup in ("tls1.1", "rsa-kx"):
        ctx = client_ctx(pki, "good")
        if setup == "tls1.1":
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        else:  # TLS 1.2 without forward secrecy
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers("AES128-GCM-SHA256")
        with pytest.raises((ssl.SSLError, OSError)):
            psclient.Client("127.0.0.1", rx.port, tls=ctx, server_hostname="localhost")
    # TLS 1.2 with ECDHE + AES-GCM works, 1.3 is preferred by default.
    ctx = client_ctx(pki, "good")
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    c = psclient.Client("127.0.0.1", rx.port, tls=ctx, server_hostname="localhost")
    assert c.sock.version() == "TLSv1.2" and "ECDHE" in c.sock.cipher()[0]
    assert c.hello("good-slow")[0] == "ACCEPT"
    c.close()
    c = psclient.Client("127.0.0.1", rx.port, tls=client_ctx(pki, "good"),
                        server_hostname="localhost")
    assert c.sock.version() == "TLSv1.3"
    assert c.hello("good-slow")[0] == "ACCEPT"
    # Stopped with a TLS session open: clean exit, no leak (ASan checks).
    rx.stop()
    assert c.closed_by_peer()
    c.close()
    assert "tls_failures_protocol=2" in rx.stderr, rx.stderr


def test_token_over_plaintext_warns(env, captures, pki):
    key = env.workdir / "key"
    key.write_text("s3cret\n")
    rx = env.receiver(args=["--auth-key-file", str(key)])
    path, _ = captures.varied(100, seed=13)
    rc, err = env.run_sensor(path, rx.port, sensor_id="s", args=["--auth-key-file", str(key)])
    assert rc == 0 and "token crosses the network in plaintext" in err, err
    rx.stop()
    assert "token crosses the network in plaintext" in rx.stderr
    assert "s3cret" not in rx.stderr and "s3cret" not in err
    # Over TLS: no warning.
    rx = env.receiver(args=rx_args(pki) + ["--auth-key-file", str(key)])
    rc, err = env.run_sensor(path, rx.port, sensor_id="node-1",
                             args=sensor_args(pki, "node-1") + ["--auth-key-file", str(key)])
    assert rc == 0 and "crosses the network in plaintext" not in err, err
    rx.stop()
    assert "crosses the network in plaintext" not in rx.stderr


def _install(live, version_dir):
    """Kubernetes-style Secret update: files are links through ..data, which
    is swapped atomically to a new version directory."""
    tmp = live / "..data_tmp"
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(version_dir.name, tmp)
    os.replace(tmp, live / "..data")
    for f in ("tls.crt", "tls.key", "ca.crt"):
        if not (live / f).is_symlink():
            os.symlink("..data/" + f, live / f)


def test_certificate_rotation(env, captures, pki):
    live = env.mkdir("secret")
    v1, v2 = env.mkdir("secret/v1"), env.mkdir("secret/v2")
    for src, dst in (("server.crt", "tls.crt"), ("server.key", "tls.key"), ("ca.crt", "ca.crt")):
        (v1 / dst).write_bytes(pki.p(src).read_bytes())
    new = certlib.Certs(env.workdir / "pki2")
    new.leaf("ca2", "server2", dns=["localhost"], ips=["127.0.0.1"])
    new.leaf("ca2", "node-2", dns=["node-2"])
    for src, dst in (("server2.crt", "tls.crt"), ("server2.key", "tls.key"), ("ca2.crt", "ca.crt")):
        (v2 / dst).write_bytes(new.p(src).read_bytes())
    _install(live, v1)
    rx = env.receiver(args=["--tls-cert", str(live / "tls.crt"), "--tls-key",
                            str(live / "tls.key"), "--tls-ca", str(live / "ca.crt")])

    # A sensor connected under the old material...
    slow = psclient.Client("127.0.0.1", rx.port, tls=client_ctx(pki, "good"),
                           server_hostname="localhost")
    assert slow.hello("good-slow")[0] == "ACCEPT"
    slow.iface(0, "eth0")
    recs = pcaplib.gen_varied(400, 99)
    slow.batch(1, recs[:200])
    slow.wait_ack(1)

    _install(live, v2)
    # ...a new sensor with certificates of the new CA connects...
    path, expected = captures.varied(500, seed=14)
    rc, err = env.run_sensor(path, rx.port, sensor_id="node-2",
                             args=["--tls-cert", str(new.p("node-2.crt")), "--tls-key",
                                   str(new.p("node-2.key")), "--tls-ca", str(new.p("ca2.crt"))])
    assert rc == 0, err
    # ...one with the old CA's certificate no longer does...
    rc, err = env.run_sensor(path, rx.port, sensor_id="node-1", args=sensor_args(pki, "node-1"),
                             env=NO_RETRY)
    assert rc == 1, err
    # ...and the old connection keeps streaming.
    slow.batch(2, recs[200:])
    slow.wait_ack(2)
    slow.bye(2)
    slow.close()
    rx.stop()
    assert "TLS certificate files changed" in rx.stderr
    got = read_outputs(rx.files())
    assert_records_equal([g for g in got if g[0] == "good-slow/eth0"], recs, who="old session")
    assert_records_equal([g for g in got if g[0] == "node-2/" + path.name], expected,
                         who="new sensor")


def test_tcp_probe_is_not_an_attack_but_slow_tls_is(env, pki):
    import socket
    rx = env.receiver(args=rx_args(pki),
                      env={"PACKETSTREAMER_LIMITS_HANDSHAKE_TIMEOUT_SEC": "1"})
    # A TCP probe (connect, close) is not logged or counted.
    socket.create_connection(("127.0.0.1", rx.port)).close()
    # A TLS handshake that never finishes is cut at the deadline.
    s = socket.create_connection(("127.0.0.1", rx.port))
    s.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello
    s.settimeout(10)
    assert s.recv(100) == b""
    s.close()
    rx.stop()
    assert rx.stderr.count("closing connection from") == 1, rx.stderr
    assert re.search(r"handshake not completed within 1 s \(TLS handshake unfinished\) "
                     r"\[reason=handshake_timeout\]", rx.stderr), rx.stderr
    c = rxcounters.counters(rx)
    assert c.get("tls_failures_timeout") == 1 and c.get("rejected_handshake_timeout") == 1, c


def test_sensor_picks_up_rotated_client_certificate(env, captures, pki):
    import time
    new = certlib.Certs(env.workdir / "pki3")
    new.leaf("ca3", "node-3", dns=["node-3"])
    live = env.mkdir("sensor-secret")
    v1, v2 = env.mkdir("sensor-secret/v1"), env.mkdir("sensor-secret/v2")
    (v1 / "tls.crt").write_bytes(pki.p("node-1.crt").read_bytes())  # of the wrong CA
    (v1 / "tls.key").write_bytes(pki.p("node-1.key").read_bytes())
    (v2 / "tls.crt").write_bytes(new.p("node-3.crt").read_bytes())
    (v2 / "tls.key").write_bytes(new.p("node-3.key").read_bytes())
    os.symlink("v1", live / "..data")
    for f in ("tls.crt", "tls.key"):
        os.symlink("..data/" + f, live / f)
    # The receiver accepts only clients of ca3.
    rx = env.receiver(args=["--tls-cert", str(pki.p("server.crt")), "--tls-key",
                            str(pki.p("server.key"))],
                      env={"PACKETSTREAMER_TLS_CLIENT_CA_FILE": str(new.p("ca3.crt"))})
    path, expected = captures.varied(300, seed=15)
    p = env.start_sensor(path, rx.port, sensor_id="node-3",
                         args=["--tls-cert", str(live / "tls.crt"), "--tls-key",
                               str(live / "tls.key"), "--tls-ca", str(pki.p("ca.crt"))])
    deadline = time.monotonic() + 20
    while "retrying" not in p.stderr_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.symlink("v2", live / "..tmp")
    os.replace(live / "..tmp", live / "..data")
    rc, err = env.wait_sensor(p)
    assert rc == 0, err
    assert "TLS certificate files changed" in err
    rx.stop()
    assert_records_equal(read_outputs(rx.files()), expected, ifname="node-3/" + path.name)
