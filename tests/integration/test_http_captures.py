"""Capture list, downloads (whole, Range), sensors API, and path tricks."""

import json
import time

from conftest import SCALE, pcaplib
from http_helpers import FakeSensor, get, http_args, wait_capture_listed, wait_http_up

N = 2000


def completed_capture(env, captures, rargs):
    """A receiver (rotating every second) that has one completed file of N
    packets from sensor node-c. Returns (receiver, file path, records)."""
    path, expected = captures.varied(N, seed=71, fmt="pcap-ns", name="dl.pcap")
    rx = env.receiver(args=rargs, env={"PACKETSTREAMER_OUTPUT_FILE_ROTATE_SECONDS": "1"})
    rc, err = env.run_sensor(path, rx.port, sensor_id="node-c")
    assert rc == 0, err
    deadline = time.monotonic() + 15 * SCALE
    while not rx.files() and time.monotonic() < deadline:
        time.sleep(0.1)
    files = rx.files()
    assert len(files) == 1, files
    return rx, files[0], expected


def test_list_and_download(env, captures):
    rport, rargs = http_args()
    rx, f, expected = completed_capture(env, captures, rargs)
    wait_http_up(rport)
    e = wait_capture_listed(rport, f.name)
    st, hdr, body = get(rport, "/api/captures")
    assert st == 200 and hdr["content-type"] == "application/json"
    assert [x["name"] for x in json.loads(body)] == [f.name]
    assert e["size"] == f.stat().st_size
    assert e["complete"] is True
    assert e["packets"] == N
    assert e["sensors"] == ["node-c"]
    assert e["url"] == "/captures/" + f.name
    first = min(r.ts_ns for r in expected)
    sec, ns = divmod(first, 10**9)
    assert e["first_packet"] == time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + \
        ".%09dZ" % ns

    # the whole file, byte for byte
    data = f.read_bytes()
    st, hdr, body = get(rport, e["url"])
    assert st == 200
    assert body == data
    assert hdr["content-type"] == "application/x-pcapng"
    assert hdr["content-disposition"] == 'attachment; filename="%s"' % f.name
    assert hdr["accept-ranges"] == "bytes"
    assert len(pcaplib.read_named(body)) == N

    # ranges: 206 with the right bytes
    for rng, lo, hi in (("bytes=100-199", 100, 199), ("bytes=1000-", 1000, len(data) - 1),
                        ("bytes=-64", len(data) - 64, len(data) - 1),
                        ("bytes=0-%d" % (len(data) + 5), 0, len(data) - 1)):
        st, hdr, body = get(rport, e["url"], headers={"Range": rng})
        assert st == 206, rng
        assert body == data[lo:hi + 1], rng
        assert hdr["content-range"] == "bytes %d-%d/%d" % (lo, hi, len(data)), rng
    st, hdr, body = get(rport, e["url"], headers={"Range": "bytes=%d-" % len(data)})
    assert st == 416 and hdr["content-range"] == "bytes */%d" % len(data)
    # several ranges are not supported: the whole body, as RFC 9110 allows
    st, _, body = get(rport, e["url"], headers={"Range": "bytes=0-1,5-6"})
    assert st == 200 and body == data
    st, hdr, body = get(rport, e["url"], method="HEAD")
    assert st == 200 and body == b"" and int(hdr["content-length"]) == len(data)
    rx.stop()


def test_path_tricks_refused(env, captures):
    rport, rargs = http_args()
    rx, f, _ = completed_capture(env, captures, rargs)
    (rx.outdir / "secret.txt").write_text("SECRET-CONTENT\n")
    (rx.outdir / "packetstreamer-link.pcapng").symlink_to("/etc/passwd")
    tricks = [
        "/captures/../../../../etc/passwd",
        "/captures/..%2f..%2f..%2fetc%2fpasswd",
        "/captures/%2e%2e/%2e%2e/etc/passwd",
        "/captures/%2E%2E%2Fsecret.txt",
        "/captures//etc/passwd",
        "/captures/%2fetc%2fpasswd",
        "/captures/..%5c..%5csecret.txt",
        "/captures/" + f.name + "%00.txt",
        "/captures/" + f.name + "/",
        "/captures/secret.txt",
        "/captures/.",
        "/captures/",
        "/captures/packetstreamer-20990101T000000Z-000001.pcapng",  # no such file
        "/captures/packetstreamer-link.pcapng",  # a symlink is not followed
        "/captures/" + f.name.replace("packetstreamer", "packetstreamer/.."),
    ]
    for t in tricks:
        st, _, body = get(rport, t)
        assert st in (400, 404), "%s: %d %r" % (t, st, body[:100])
        assert b"root:" not in body and b"SECRET-CONTENT" not in body, t
    listing = json.loads(get(rport, "/api/captures")[2])
    assert [e["name"] for e in listing] == [f.name]  # neither secret.txt nor the symlink
    rx.stop()


def test_sensors_api(env):
    rport, rargs = http_args()
    rx = env.receiver(args=rargs)
    wait_http_up(rport)
    fake = FakeSensor(rx.port, "api-sensor")
    assert fake.accepted
    deadline = time.monotonic() + 10 * SCALE
    sensors = []
    while time.monotonic() < deadline:
        sensors = json.loads(get(rport, "/api/sensors")[2])
        if sensors:
            break
        time.sleep(0.1)
    assert len(sensors) == 1, sensors
    s = sensors[0]
    assert s["id"] == "api-sensor" and s["connected"] is True
    assert s["address"].startswith("127.0.0.1:")
    assert s["connected_since"].endswith("Z")
    for k in ("packets", "bytes", "drops", "sequence_gaps", "packets_per_second"):
        assert s[k] == 0, k
    fake.close()
    rx.stop()
