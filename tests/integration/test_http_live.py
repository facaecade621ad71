"""/live: a pcapng stream of what arrives, read by tshark; slow clients are
cut off without costing the files a packet."""

import socket
import subprocess
import time

from conftest import SCALE, pcaplib, read_outputs
from http_helpers import get, http_args, metrics, parse_metrics, wait_http_up, wait_metric


def live_clients(port):
    return parse_metrics(metrics(port)).get("packetstreamer_live_clients", 0)


def wait_live_clients(port, n, timeout=10):
    deadline = time.monotonic() + timeout * SCALE
    while live_clients(port) != n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_clients(port) == n


def test_live_stream_read_by_tshark(env, captures):
    path, expected = captures.varied(1500, seed=81, fmt="pcap-ns", name="live.pcap")
    rport, rargs = http_args()
    rx = env.receiver(args=rargs)
    wait_http_up(rport)
    url = "http://127.0.0.1:%d/live" % rport
    # curl ends the never-ending stream after a few seconds; tshark reads the pipe
    pipeline = subprocess.Popen(
        "curl -sS -N --max-time %d '%s' | tshark -n -r - -T fields -e frame.interface_name "
        "-e frame.time_epoch -e frame.len" % (int(6 * SCALE), url),
        shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_live_clients(rport, 1)
    # a filtered client that must see nothing of this sensor
    other = subprocess.Popen(["curl", "-sS", "-N", "--max-time", str(int(6 * SCALE)),
                              url + "?sensor=someone-else"], stdout=subprocess.PIPE)
    both = subprocess.Popen(["curl", "-sS", "-N", "--max-time", str(int(6 * SCALE)),
                             url + "?sensor=node-l&interface=node-l/live.pcap"],
                            stdout=subprocess.PIPE)
    wait_live_clients(rport, 3)
    rc, err = env.run_sensor(path, rx.port, sensor_id="node-l")
    assert rc == 0, err
    out, terr = pipeline.communicate(timeout=30 * SCALE)
    lines = [ln.split("\t") for ln in out.decode().splitlines() if ln.strip()]
    assert len(lines) == len(expected), (len(lines), terr.decode()[-500:])
    assert {ln[0] for ln in lines} == {"node-l/live.pcap"}
    assert [int(ln[2]) for ln in lines] == [r.origlen for r in expected]
    filtered, _ = other.communicate(timeout=30 * SCALE)
    assert filtered[:4] == b"\x0a\x0d\x0d\x0a"  # a section header...
    assert pcaplib.read_named(filtered) == []  # ...and nothing else
    matched, _ = both.communicate(timeout=30 * SCALE)
    got = pcaplib.read_named(matched)
    assert len(got) == len(expected)
    assert [g[4] for g in got] == [r.data for r in expected]
    assert {g[0] for g in got} == {"node-l/live.pcap"}
    wait_metric(rport, "packetstreamer_live_packets_total", 2 * len(expected))  # two matched
    rx.stop()
    assert len(read_outputs(rx.files())) == len(expected)


def test_slow_live_client_is_cut_off(env, captures):
    """A client that reads nothing is cut off; the files keep every packet."""
    path, expected = captures.varied(12000, seed=82, fmt="pcap-ns", name="flood.pcap")
    rport, rargs = http_args()
    rx = env.receiver(args=rargs)
    wait_http_up(rport)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", rport))
    s.sendall(b"GET /live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    wait_live_clients(rport, 1)
    rc, err = env.run_sensor(path, rx.port, sensor_id="node-f", args=["--codec", "none"])
    assert rc == 0, err
    wait_metric(rport, "packetstreamer_live_clients_cut_total", 1)
    wait_metric(rport, 'packetstreamer_receiver_packets_total{sensor="node-f"}', len(expected))
    assert parse_metrics(metrics(rport))["packetstreamer_live_dropped_packets_total"] > 0
    # other clients are unaffected: the status routes still answer
    assert get(rport, "/api/sensors")[0] == 200
    s.close()
    rx.stop()
    got = read_outputs(rx.files())
    assert len(got) == len(expected)
    assert [g[4] for g in got] == [r.data for r in expected]
