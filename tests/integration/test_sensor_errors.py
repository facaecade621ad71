"""The sensor's failures are clear, bounded in time, and never crashes; the
receiver shrugs off clients that are not sensors."""

import re
import signal
import socket
import time

from conftest import SCALE, assert_no_sanitizer, assert_records_equal, free_port, pcaplib

SHORT = {"PACKETSTREAMER_SENSOR_CONNECT_TIMEOUT_SEC": "2"}


def test_unreachable_receiver(env, captures):
    path, _ = captures.varied(100, seed=61)
    port = free_port()  # nothing listens there
    t0 = time.monotonic()
    rc, err = env.run_sensor(path, port, env=SHORT, timeout=30)
    elapsed = time.monotonic() - t0
    assert rc != 0, "sensor exited 0 without a receiver"
    assert "127.0.0.1:%d" % port in err, "address not named:\n" + err
    assert re.search(r"connection refused|refused", err, re.I), "reason not given:\n" + err
    assert elapsed < 20 * SCALE, "took %.1fs with connectTimeoutSec 2" % elapsed


def test_connect_timeout_from_config(env, captures):
    path, _ = captures.varied(100, seed=61)
    port = free_port()
    cfg = env.workdir / "s.yaml"
    cfg.write_text("sensor:\n  connectTimeoutSec: 1\n")
    t0 = time.monotonic()
    rc, err = env.run_sensor(path, port, args=["--config", str(cfg)], timeout=30)
    assert rc != 0
    assert time.monotonic() - t0 < 15 * SCALE
    assert "127.0.0.1:%d" % port in err


def test_missing_read_file(env):
    rx = env.receiver()
    missing = env.workdir / "no-such-capture.pcap"
    rc, err = env.run_sensor(missing, rx.port, env=SHORT, timeout=30)
    assert rc != 0
    assert str(missing) in err or missing.name in err, "file not named:\n" + err
    assert re.search(r"no such file|not found|cannot open|can't open", err, re.I), err
    rx.stop()


def test_not_a_capture_file(env):
    rx = env.receiver()
    junk = env.workdir / "junk.pcap"
    junk.write_bytes(b"this is not a capture file at all\n" * 100)
    rc, err = env.run_sensor(junk, rx.port, env=SHORT, timeout=30)
    assert rc != 0
    assert junk.name in err, "file not named:\n" + err
    rx.stop()
    assert rx.files() == [] or all(pcaplib.read(str(f))[1] == [] for f in rx.files())


def test_empty_file(env):
    rx = env.receiver()
    empty = env.workdir / "empty.pcap"
    empty.write_bytes(b"")
    rc, err = env.run_sensor(empty, rx.port, env=SHORT, timeout=30)
    assert rc != 0
    assert empty.name in err, err
    rx.stop()


def test_truncated_capture(env, captures, tmp_path):
    # a valid file cut in the middle of a record: no crash; what was whole is
    # delivered or the error names the file
    path, expected = captures.varied(500, seed=62, fmt="pcap-ns")
    cut = tmp_path / "cut.pcap"
    data = path.read_bytes()
    cut.write_bytes(data[:len(data) - 100])
    rx = env.receiver()
    rc, err = env.run_sensor(cut, rx.port, sensor_id="cut", env=SHORT, timeout=60)
    assert rc in (0, 1), "rc %d:\n%s" % (rc, err)
    if rc != 0:
        assert "cut.pcap" in err, err
    rx.stop()
    got = [r for f in rx.files() for r in pcaplib.read_named(str(f))]
    assert len(got) <= len(expected) - 1
    assert_records_equal(got, expected[:len(got)])


def test_sensor_sigterm_mid_stream(env, tmp_path):
    path = tmp_path / "big.pcap"
    pcaplib.write_imix(str(path), 200_000, seed=3, fmt="pcap")
    rx = env.receiver()
    p = env.start_sensor(path, rx.port, sensor_id="term", env=SHORT)
    deadline = time.monotonic() + 20 * SCALE
    while time.monotonic() < deadline and p.poll() is None:
        # a capture file (.part included); the receiver's own hidden
        # directories (.index, .jobs) exist from its start
        if rx.files() or [e for e in rx.outdir.iterdir() if not e.name.startswith(".")]:
            break
        time.sleep(0.002)
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    rc, err = env.wait_sensor(p, timeout=30)
    assert rc in (0, 1), "sensor rc %d after SIGTERM:\n%s" % (rc, err)
    rx.stop()  # the receiver survives a sensor going away mid-stream
    got = [r for f in rx.files() for r in pcaplib.read_named(str(f))]
    assert_records_equal(got, pcaplib.gen_imix(len(got), seed=3), ts_div=1000)
    print("sensor SIGTERM: %d of 200000 packets written, rc %d" % (len(got), rc))


def test_receiver_survives_probes_and_garbage(env, captures):
    rx = env.receiver()
    # a TCP probe (connect + close), like a Kubernetes tcpSocket probe
    with socket.create_connection(("127.0.0.1", rx.port), timeout=5):
        pass
    # garbage instead of a handshake
    with socket.create_connection(("127.0.0.1", rx.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n" + bytes(range(256)) * 64)
        s.settimeout(5)
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
    # a huge announced length
    with socket.create_connection(("127.0.0.1", rx.port), timeout=5) as s:
        s.sendall(b"\xff\xff\xff\xff\x01\x00\x00\x00")
        s.settimeout(5)
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
    path, expected = captures.varied(1000, seed=63)
    rc, err = env.run_sensor(path, rx.port, sensor_id="after")
    assert rc == 0, err
    rx.stop(check=False)
    assert rx.returncode == 0, rx.stderr
    assert_no_sanitizer(rx.stderr, "receiver")
    got = [r for f in rx.files() for r in pcaplib.read_named(str(f))]
    assert_records_equal(got, expected, ifname="after/" + path.name)


def test_read_file_with_unsafe_bytes_in_its_name(env, tmp_path):
    # A DEL byte (or a control byte) in the file name used to make an
    # interface name the wire check refused: reported as out of memory, and
    # the sensor reconnected in a tight loop. Names are made safe in one place.
    records = pcaplib.gen_varied(50, seed=62)
    path = tmp_path / "del\x7fname\tx.pcap"
    pcaplib.write_pcap(path, records, nanosecond=True)
    rx = env.receiver()
    rc, err = env.run_sensor(path, rx.port, sensor_id="odd", timeout=30)
    assert rc == 0, "sensor exit %d:\n%s" % (rc, err)
    assert "memory" not in err, err
    assert err.count("connected to receiver") == 1, "reconnected:\n" + err
    rx.stop()
    files = rx.files()
    got = pcaplib.read_named(str(files[0]))
    assert_records_equal(got, records, ifname="odd/del_name_x.pcap")
