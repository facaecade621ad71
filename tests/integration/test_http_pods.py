"""/api/sensors lists each sensor's pods (interfaces announced as
NAMESPACE/POD, docs/protocol.md "Pod interfaces") with their counters, and
the capture file names the pod in its interface block."""

import json
import os
import struct
import sys
import time

from conftest import SCALE, pcaplib, read_outputs
from http_helpers import get, http_args, wait_http_up

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import psclient  # noqa: E402


def stats_payload(index, packets, kdrops=0, ifdrops=0, sdrops=0):
    return struct.pack(">IQQQQQQ", index, packets, packets * 100, kdrops, ifdrops, sdrops,
                       time.time_ns())


def test_pods_listed_with_counters(env):
    rport, rargs = http_args()
    rx = env.receiver(args=rargs)
    wait_http_up(rport)
    c = psclient.Client("127.0.0.1", rx.port)
    kind, _ = c.hello("node-7")
    assert kind == "ACCEPT"
    desc = b"iface=cali12ab uid=0b5c3c1e-4a6e-4a8e-9d43-1f0e0f6b7a10 labels=app=web,tier=front"
    c.send_frame(psclient.T_IFACE, psclient.iface_payload(0, "payments/api-7d4b9", desc=desc))
    c.send_frame(psclient.T_IFACE, psclient.iface_payload(1, "eth0"))
    recs = [pcaplib.Record(0, 1_700_000_000_000_000_000 + i, 60, 60, bytes([i]) * 60) for i in range(5)]
    c.batch(1, recs)
    try:
        c.wait_ack(1)
    except EOFError:
        raise AssertionError(rx.stderr)
    c.send_frame(psclient.T_STATS, stats_payload(0, 5, kdrops=2))
    c.send_frame(psclient.T_STATS, stats_payload(1, 9))
    deadline = time.monotonic() + 10 * SCALE
    pods = None
    while time.monotonic() < deadline:
        st, _, body = get(rport, "/api/sensors")
        assert st == 200
        sensors = {s["id"]: s for s in json.loads(body)}
        pods = sensors.get("node-7", {}).get("pods")
        if pods and pods[0]["packets"] == 5:
            break
        time.sleep(0.2)
#eth0 is a plain interface, not a pod
    assert pods == [{"name": "payments/api-7d4b9", "iface": "cali12ab",
                     "uid": "0b5c3c1e-4a6e-4a8e-9d43-1f0e0f6b7a10", "labels": "app=web,tier=front",
                     "packets": 5, "drops": 2}], pods
    c.bye(1)
    c.close()
    rx.stop()
    got = read_outputs(rx.files())
#the file names the pod(Wireshark's interface column), packets intact
    assert [(g[0], g[4]) for g in got] == [("node-7/payments/api-7d4b9", r.data) for r in recs]
