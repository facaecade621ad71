"""What the receiver writes: stdout stream, rotation, retention, per-sensor
files, clean shutdown, and files that the usual tools open without a word."""

import signal
import threading
import time

import pytest

from conftest import (SCALE, assert_clean_stderr, assert_records_equal, output_files, part_files,
                      pcaplib, read_outputs, tool_check)

MiB = 1024 * 1024


def write_config(path, text):
    path.write_text(text)
    return path


def stream(env, rx, path, sensor_id, **kw):
    rc, err = env.run_sensor(path, rx.port, sensor_id=sensor_id, **kw)
    assert rc == 0, "sensor %s exit %d:\n%s" % (sensor_id, rc, err)
    assert_clean_stderr(err, "sensor " + sensor_id)


def test_stdout_stream(env, captures):
    path, expected = captures.varied(5000, seed=31, fmt="pcap-ns")
    out = env.workdir / "stdout.pcapng"
    rx = env.receiver(outdir="-", stdout_path=out)
    stream(env, rx, path, "so")
    rx.stop()
    data = out.read_bytes()
    assert data[:4] == b"\x0a\x0d\x0d\x0a", "stdout does not start with a pcapng section header"
    assert_records_equal(pcaplib.read_named(data), expected, ifname="so/" + path.name)
    assert tool_check(out) == len(expected)
    assert not (env.workdir / "captures").exists(), "--output - also created ./captures"
    assert not output_files(env.workdir)


def test_stdout_to_a_slow_pipe(env, captures):
    # like `packetstreamer receiver --output - | wireshark -k -i -`: a pipe whose
    # reader is slower than the stream; nothing may be lost or reordered
    path, expected = captures.varied(4000, seed=29, fmt="pcap-ns")
    rx = env.receiver(outdir="-", stdout_path="PIPE")
    data = bytearray()

    def reader():
        while True:
            chunk = rx.proc.stdout.read1(16384)
            if not chunk:
                return
            data.extend(chunk)
            time.sleep(0.002)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    stream(env, rx, path, "pipe")
    rx.stop(timeout=60)
    t.join(timeout=60)
    assert not t.is_alive()
    assert_records_equal(pcaplib.read_named(bytes(data)), expected, ifname="pipe/" + path.name)


def test_stdout_from_original_config(env, captures):
    # Deepfence PacketStreamer's receiver-stdout.yaml: output.file.path "stdout"
    cfg = write_config(env.workdir / "receiver-stdout.yaml",
                       "input:\n  address: 0.0.0.0\n  port: 8081\noutput:\n  file:\n"
                       "    path: stdout\n")
    path, expected = captures.varied(1000, seed=30, fmt="pcap-ns")
    out = env.workdir / "stdout.pcapng"
    rx = env.receiver(outdir=False, config=cfg, stdout_path=out)
    stream(env, rx, path, "so")
    rx.stop()
    assert_records_equal(pcaplib.read_named(out.read_bytes()), expected, ifname="so/" + path.name)
    assert not (env.workdir / "stdout").exists()


def test_stdout_stream_pcap(env, captures):
    path, expected = captures.varied(3000, seed=32, fmt="pcap-ns")
    out = env.workdir / "stdout.pcap"
    rx = env.receiver(outdir="-", fmt="pcap-ns", stdout_path=out)
    stream(env, rx, path, "so")
    rx.stop()
    assert_records_equal(pcaplib.read_named(out.read_bytes()), expected)
    assert tool_check(out) == len(expected)


def rotation_config(env, **keys):
    lines = ["output:", "  file:"] + ["    %s: %s" % kv for kv in keys.items()]
    return write_config(env.workdir / "rotate.yaml", "\n".join(lines) + "\n")


def check_self_contained(files, ifname):
    for f in files:
        interfaces, recs = pcaplib.read(str(f))  # raises if a packet names an unknown IDB
        assert recs, "%s is empty" % f
        assert [i.name for i in interfaces] == [ifname], f
        assert tool_check(f) == len(recs)


def test_rotation_by_size(env, captures):
    path, expected = captures.varied(11_000, seed=33, fmt="pcap-ns")
    assert sum(r.caplen for r in expected) > 9 * MiB
    rx = env.receiver(config=rotation_config(env, rotateSizeMB=1))
    stream(env, rx, path, "rot")
    rx.stop()
    files = rx.files()
    assert 5 <= len(files) <= 20, "rotateSizeMB 1 with ~10 MiB gave %d files" % len(files)
    for f in files:
        assert f.stat().st_size <= MiB + MiB // 2, "%s is %d bytes" % (f.name, f.stat().st_size)
    for f in files[:-1]:
        assert f.stat().st_size >= MiB // 2, "%s is only %d bytes" % (f.name, f.stat().st_size)
    ifname = "rot/" + path.name
    assert_records_equal(read_outputs(files), expected, ifname=ifname)
    check_self_contained(files, ifname)


def test_rotation_size_from_env(env, captures):
    path, expected = captures.varied(11_000, seed=33, fmt="pcap-ns")
    rx = env.receiver(env={"PACKETSTREAMER_OUTPUT_FILE_ROTATE_SIZE_MB": "1"})
    stream(env, rx, path, "envrot")
    rx.stop()
    files = rx.files()
    assert len(files) >= 5, files
    assert_records_equal(read_outputs(files), expected)


def test_retention_max_files(env, captures):
    path, expected = captures.varied(11_000, seed=34, fmt="pcap-ns")
    rx = env.receiver(config=rotation_config(env, rotateSizeMB=1, maxFiles=2))
    stream(env, rx, path, "ret")
    rx.stop()
    files = rx.files()
    assert len(files) == 2, "maxFiles 2 left %s" % [f.name for f in files]
    got = read_outputs(files)
    # the newest files remain: their records are the tail of the input
    assert 0 < len(got) < len(expected)
    assert_records_equal(got, expected[-len(got):], ifname="ret/" + path.name)


def test_retention_max_total_size(env, captures):
    path, expected = captures.varied(11_000, seed=35, fmt="pcap-ns")
    rx = env.receiver(config=rotation_config(env, rotateSizeMB=1, maxTotalSizeMB=3))
    stream(env, rx, path, "tot")
    rx.stop()
    files = rx.files()
    total = sum(f.stat().st_size for f in files)
    assert total <= 3 * MiB + MiB // 2, "maxTotalSizeMB 3 left %d bytes in %d files" % (total, len(files))
    assert 2 <= len(files) < 8, [f.name for f in files]
    got = read_outputs(files)
    assert_records_equal(got, expected[-len(got):])


def test_per_sensor_files(env, captures):
    cfg = rotation_config(env, perSensor="true")
    rx = env.receiver(config=cfg)
    inputs = {}
    for sid, seed in (("alpha", 36), ("beta", 37)):
        path, expected = captures.varied(2000, seed=seed, fmt="pcap-ns")
        inputs[sid] = (path, expected)
        stream(env, rx, path, sid)
    rx.stop()
    files = rx.files()
    names = sorted(f.name for f in files)
    assert len(files) == 2, names
    for sid, (path, expected) in inputs.items():
        mine = [f for f in files if f.name.startswith("packetstreamer-%s-" % sid)]
        assert len(mine) == 1, "no file set for %s in %s" % (sid, names)
        assert_records_equal(pcaplib.read_named(str(mine[0])), expected,
                             ifname="%s/%s" % (sid, path.name))
        tool_check(mine[0])


@pytest.mark.parametrize("fmt", ["pcapng", "pcap", "pcap-ns"])
def test_tools_open_outputs(env, captures, fmt):
    rx = env.receiver(fmt=fmt)
    total = 0
    for i in range(2):
        path, expected = captures.varied(2000, seed=40 + i, fmt="pcap-ns")
        stream(env, rx, path, "tools%d" % i)
        total += len(expected)
    rx.stop()
    files = rx.files()
    assert files
    assert sum(tool_check(f) for f in files) == total


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_stream_leaves_complete_files(env, tmp_path, sig):
    # a big capture; stop the receiver while the sensor is still sending
    n = 200_000
    path = tmp_path / "big.pcap"
    pcaplib.write_imix(str(path), n, seed=2, fmt="pcap-ns")
    rx = env.receiver()
    sensor = env.start_sensor(path, rx.port, sensor_id="big",
                              env={"PACKETSTREAMER_SENSOR_CONNECT_TIMEOUT_SEC": "2"})
    deadline = time.monotonic() + 30 * SCALE
    while not part_files(rx.outdir) and not rx.files() and time.monotonic() < deadline:
        if sensor.poll() is not None:
            break
        time.sleep(0.002)
    rx.stop(sig=sig)  # exit 0, no ERROR, no sanitizer, no .part left
    rc, err = env.wait_sensor(sensor, timeout=60)
    assert rc in (0, 1), "sensor exit %d after losing its receiver:\n%s" % (rc, err)
    files = rx.files()
    assert files, "no output after %s" % signal.Signals(sig).name
    got = read_outputs(files)
    # what was written is an in-order prefix of the input, nothing twice
    assert len(got) <= n
    assert_records_equal(got, pcaplib.gen_imix(len(got), seed=2))
    print("%s: %d of %d packets written, sensor rc %d" % (signal.Signals(sig).name, len(got), n, rc))
    for f in files:
        tool_check(f)
