"""HTTP probes and Prometheus metrics of both processes."""

import threading
import subprocess
import time

from conftest import assert_clean_stderr, free_port, parse_kv
from http_helpers import (FakeSensor, get, http_args, metrics, parse_metrics, promtool_check,
                          wait_http_up, wait_metric, wait_status)

N = 3000


def test_probes_and_metrics_after_traffic(env, captures):
    """promtool accepts both /metrics after traffic; counters equal the packets
    sent. The receiver's stdout is a pipe nobody reads at first, so the sensor
    stays alive (no ACK yet) and its counters can be read too."""
    path, expected = captures.varied(N, seed=61, fmt="pcap-ns", name="metrics.pcap")
    rport, rargs = http_args()
    rx = env.receiver(outdir="-", stdout_path="PIPE", args=rargs)
    wait_http_up(rport)
    sport, sargs = http_args()
    sensor = env.start_sensor(path, rx.port, codec="lz4", sensor_id="node-m",
                              args=sargs + ["--codec", "none"])
    wait_http_up(sport)
    wait_metric(sport, "packetstreamer_sensor_packets_total", N)
    wait_metric(sport, "packetstreamer_sensor_receiver_connected", 1)
    text = metrics(sport)
    promtool_check(text, "sensor")
    m = parse_metrics(text)
    assert m["packetstreamer_sensor_packet_bytes_total"] == sum(r.caplen for r in expected)
    assert m['packetstreamer_build_info{version="0.1.0"}'] == 1
    assert m["process_cpu_seconds_total"] >= 0  # clock ticks: may still read 0
    for k in ("process_resident_memory_bytes", "process_start_time_seconds", "process_open_fds"):
        assert m[k] > 0, k
    assert abs(m["process_start_time_seconds"] - time.time()) < 120
    assert get(sport, "/readyz")[0] == 200
    assert get(sport, "/healthz")[0] == 200
    # the receiver's loop is stuck on its stdout pipe; its HTTP thread is not
    assert get(rport, "/healthz")[0] == 200

    # now drain the receiver's output: everything is written and acknowledged
    out = bytearray()
    reader = threading.Thread(target=lambda: out.extend(rx.proc.stdout.read()))
    reader.start()
    rc, err = env.wait_sensor(sensor)
    assert rc == 0, err
    assert parse_kv(err)["acked"] == str(N)
    wait_metric(rport, 'packetstreamer_receiver_packets_total{sensor="node-m"}', N)
    text = metrics(rport)
    promtool_check(text, "receiver")
    m = parse_metrics(text)
    assert m['packetstreamer_receiver_packet_bytes_total{sensor="node-m"}'] == sum(
        r.caplen for r in expected)
    assert m["packetstreamer_receiver_connections_total"] == 1
    assert m['packetstreamer_receiver_rejected_connections_total{reason="auth"}'] == 0
    assert m["packetstreamer_receiver_ack_latency_seconds_count"] >= 1
    assert m['packetstreamer_receiver_ack_latency_seconds_bucket{le="+Inf"}'] == \
        m["packetstreamer_receiver_ack_latency_seconds_count"]
    rx.stop()
    reader.join(10)
    assert len(out) > sum(r.caplen for r in expected)


def test_sensor_readiness_follows_the_receiver(env, captures):
    """Not ready while the receiver is down; ready once connected; not ready
    after it dies; ready again after the sensor reconnects. Receivers write to
    an unread pipe so the sensor cannot finish and exit in between."""
    path, _ = captures.varied(6000, seed=62, fmt="pcap-ns", name="ready.pcap")
    port = free_port()
    sport, sargs = http_args()
    sensor = env.start_sensor(path, port, sensor_id="node-r",
                              args=sargs + ["--codec", "none"],
                              env={"PACKETSTREAMER_SENSOR_CONNECT_TIMEOUT_SEC": "60"})
    wait_http_up(sport)
    body = wait_status(sport, "/readyz", 503)
    assert b"not connected to receiver 127.0.0.1:%d" % port in body
    rx1 = env.receiver(outdir="-", stdout_path="PIPE", port=port)
    wait_status(sport, "/readyz", 200)
    rx1.kill()
    wait_status(sport, "/readyz", 503)
    rx2 = env.receiver(outdir="-", stdout_path="PIPE", port=port)
    wait_status(sport, "/readyz", 200, timeout=20)
    m = parse_metrics(metrics(sport))
    assert m["packetstreamer_sensor_reconnects_total"] == 1
    reader = threading.Thread(target=lambda: rx2.proc.stdout.read())
    reader.start()
    rc, err = env.wait_sensor(sensor)
    assert rc == 0, err
    rx2.stop()
    reader.join(10)


def test_receiver_readiness_follows_the_output_directory(env):
    """Not ready while its output directory is immutable (chattr +i: as root,
    permissions alone would not stop writes)."""
    rport, rargs = http_args()
    outdir = env.mkdir("out-ro")
    rx = env.receiver(outdir=outdir, args=rargs)
    wait_status(rport, "/readyz", 200)
    # chattr +i where the file system supports it, else a read-only bind mount
    if subprocess.run(["chattr", "+i", str(outdir)], capture_output=True).returncode == 0:
        undo = [["chattr", "-i", str(outdir)]]
    else:
        subprocess.run(["mount", "--bind", str(outdir), str(outdir)], check=True)
        undo = [["umount", str(outdir)]]
        subprocess.run(["mount", "-o", "remount,ro,bind", str(outdir)], check=True)
    try:
        body = wait_status(rport, "/readyz", 503)
        assert b"output directory is not writable" in body
        assert get(rport, "/healthz")[0] == 200  # alive all the same
    finally:
        for cmd in undo:
            subprocess.run(cmd, check=True)
    wait_status(rport, "/readyz", 200)
    rx.stop()


def test_receiver_counts_connected_sensors_and_auth_failures(env, tmp_path):
    key = tmp_path / "key"
    key.write_text("right-token\n")
    rport, rargs = http_args()
    rx = env.receiver(args=rargs + ["--auth-key-file", str(key)])
    wait_http_up(rport)
    good = FakeSensor(rx.port, "fake-1", token=b"right-token")
    assert good.accepted
    bad = FakeSensor(rx.port, "fake-2", token=b"wrong")
    assert not bad.accepted
    bad.close()
    broken = FakeSensor(rx.port, "fake-3", token=b"right-token")
    assert broken.accepted
    broken.send_frame(0x11, b"\x00\x01\x02")  # a BATCH far too short for its header
    wait_metric(rport, 'packetstreamer_receiver_decode_errors_total{reason="truncated"}', 1)
    broken.close()
    wait_metric(rport, "packetstreamer_receiver_sensors_connected", 1)
    wait_metric(rport, "packetstreamer_receiver_auth_failures_total", 1)
    wait_metric(rport, 'packetstreamer_receiver_rejected_connections_total{reason="auth"}', 1)
    promtool_check(metrics(rport), "receiver")
    good.close()
    wait_metric(rport, "packetstreamer_receiver_sensors_connected", 0)
    rx.stop(check=False)
    assert rx.returncode == 0
    # the refused handshake is logged as a warning, never as an error
    assert_clean_stderr(rx.stderr, "receiver")


def test_http_disabled_and_bad_address(env):
    port = free_port()
    rx = env.receiver(args=["--http", "127.0.0.1:%d" % port],
                      env={"PACKETSTREAMER_HTTP_ENABLE": "false"})
    time.sleep(0.5)
    try:
        get(port, "/healthz", timeout=1)
        raise AssertionError("HTTP answered with http.enable=false")
    except OSError:
        pass
    rx.stop()
    rc, err = env.run(["receiver", "--http", "nonsense"])
    assert rc == 1 and "http.listen" in err, err


def test_only_get_and_head(env):
    rport, rargs = http_args()
    rx = env.receiver(args=rargs)
    wait_http_up(rport)
    st, hdr, _ = get(rport, "/metrics", method="POST")
    assert st == 405 and hdr.get("allow") == "GET, HEAD"
    st, _, body = get(rport, "/metrics", method="HEAD")
    assert st == 200 and body == b""
    assert get(rport, "/nope")[0] == 404
    rx.stop()
