"""Delivery across receiver failures: SIGKILL and restart, SIGSTOP and resume.

The sensor replays a capture at a fixed pace (sensor.readPacketsPerSec) so
the failures land mid-stream. Whatever happens to the receiver, the files
must end up holding every packet exactly once, in order: the sensor resends
what was not acknowledged, and a restarted receiver repairs the file the
crash left (cut back to its last whole batch) and drops what it already has.
"""
import signal
import time

from conftest import assert_records_equal, parse_kv, pcaplib

PACE = {
    "PACKETSTREAMER_SENSOR_READ_PACKETS_PER_SEC": "4000",
    "PACKETSTREAMER_GATHER_MAX_WAIT_MS": "50",
    "PACKETSTREAMER_COMPRESS_BLOCK_SIZE": "64",
}


def all_records(rx):
    got = []
    for f in rx.files():
        got += pcaplib.read_named(str(f))
    return got


def test_receiver_killed_three_times(env, captures):
    path, expected = captures.varied(16000, seed=21)
    outdir = env.mkdir("crash")
    rx = env.receiver(outdir=outdir)
    port = rx.port
    sensor = env.start_sensor(path, port, codec="lz4", sensor_id="crashy", env=PACE)
    repaired = 0
    for _ in range(3):
        time.sleep(0.9)
        assert sensor.poll() is None, "the stream ended before the receiver was killed"
        rx.kill()
        rx = env.receiver(outdir=outdir, port=port)
        repaired += rx.stderr.count("repaired")
    rc, err = env.wait_sensor(sensor, timeout=120)
    assert rc == 0, err
    kv = parse_kv(err)
    assert int(kv["reconnects"]) >= 3, kv
    assert kv["unacked"] == "0" and kv["dropped"] == "0", kv
    rx.stop()
    # Each kill left a .part behind; the next receiver repaired and renamed it,
    # and learned from the files where the sensor's stream stood.
    assert repaired >= 1
    assert any("resuming" in r.stderr for r in env.receivers[1:])
    assert_records_equal(all_records(rx), expected, ifname="crashy/" + path.name)
    for f in rx.files():
        assert pcaplib.read(str(f))  # every file, repaired ones included, parses


def test_receiver_paused_then_resumed(env, captures):
    path, expected = captures.varied(8000, seed=22)
    rx = env.receiver()
    sensor = env.start_sensor(path, rx.port, sensor_id="patient", env=PACE)
    time.sleep(0.5)
    rx.proc.send_signal(signal.SIGSTOP)
    time.sleep(2.0)  # the sensor keeps reading into its spool meanwhile
    rx.proc.send_signal(signal.SIGCONT)
    rc, err = env.wait_sensor(sensor, timeout=120)
    assert rc == 0, err
    rx.stop()
    assert_records_equal(all_records(rx), expected, ifname="patient/" + path.name)


def test_output_disk_fills_then_space_returns(env, captures, tmp_path):
    """A full disk holds acknowledgements (the sensor spools) instead of
    losing or corrupting anything; writing resumes once space returns."""
    import shutil
    import subprocess

    path, expected = captures.varied(6000, seed=23)
    small = env.mkdir("small")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(small)], check=True)
    saved = env.mkdir("saved")
    try:
        from http_helpers import get, http_args, wait_status
        cfg = env.workdir / "rx.yaml"
        cfg.write_text("output:\n  file:\n    rotateSizeMB: 1\n")
        hport, hargs = http_args()
        rx = env.receiver(outdir=small, config=cfg, args=hargs)
        sensor = env.start_sensor(path, rx.port, sensor_id="full", env=PACE)
        episodes = 0
        deadline = time.monotonic() + 90
        while sensor.poll() is None and time.monotonic() < deadline:
            held = rx.stderr.count("holding acknowledgements")
            if held > episodes:
                episodes = held
                if episodes == 1:  # a receiver that cannot write is not ready
                    deadline_ready = time.monotonic() + 5
                    while get(hport, "/readyz")[0] != 503 and time.monotonic() < deadline_ready:
                        time.sleep(0.1)
                    not_ready = get(hport, "/readyz")
                    assert not_ready[0] == 503, not_ready
                time.sleep(0.3)
                for f in rx.files():  # an operator frees space: completed files only
                    shutil.move(str(f), str(saved / f.name))
            time.sleep(0.1)
        rc, err = env.wait_sensor(sensor, timeout=60)
        assert rc == 0, err
        wait_status(hport, "/readyz", 200)  # ready again once writes work
        rx.stop(check=False)
        assert rx.returncode == 0
        assert episodes >= 1, "the disk never filled:\n" + rx.stderr
        assert "works again" in rx.stderr
        files = sorted(list(saved.iterdir()) + rx.files(),
                       key=lambda p: int(p.name.split("-")[-1].split(".")[0]))
        got = []
        for f in files:
            got += pcaplib.read_named(str(f))  # each file parses: none corrupted
        assert_records_equal(got, expected, ifname="full/" + path.name)
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_sensor_sigterm_delivers_its_spool(env, captures):
    """SIGTERM: the sensor stops reading, delivers everything it read, exits 0."""
    path, expected = captures.varied(12000, seed=24)
    rx = env.receiver()
    sensor = env.start_sensor(path, rx.port, sensor_id="term", env=PACE)
    time.sleep(1.0)
    sensor.send_signal(signal.SIGTERM)
    rc, err = env.wait_sensor(sensor, timeout=60)
    assert rc == 0, err
    kv = parse_kv(err)
    n = int(kv["packets"])
    assert 0 < n < len(expected), kv
    assert kv["acked"] == kv["packets"] and kv["unacked"] == "0", kv
    rx.stop()
    assert_records_equal(all_records(rx), expected[:n], ifname="term/" + path.name)


def test_sensor_sigterm_deadline_reports_the_loss(env, captures):
    """A receiver that stopped answering: after the deadline the sensor exits 1
    and says how many packets it could not get acknowledged, and why."""
    path, expected = captures.varied(12000, seed=25)
    rx = env.receiver()
    pace = dict(PACE, PACKETSTREAMER_SENSOR_SHUTDOWN_DEADLINE_SEC="1")
    sensor = env.start_sensor(path, rx.port, sensor_id="late", env=pace)
    time.sleep(0.8)
    rx.proc.send_signal(signal.SIGSTOP)
    time.sleep(0.5)
    sensor.send_signal(signal.SIGTERM)
    rc, err = env.wait_sensor(sensor, timeout=30)
    rx.proc.send_signal(signal.SIGCONT)
    assert rc == 1, err
    kv = parse_kv(err)
    read, acked = int(kv["packets"]), int(kv["acked"])
    assert int(kv["unacked"]) == read - acked > 0, kv
    assert "shutdown deadline" in err and "reason shutdown_deadline" in err
    assert "%d packets not delivered" % (read - acked) in err
    rx.stop()
    # Not acknowledged is not necessarily lost: what the receiver still had in
    # its socket is written; never more than was read, never out of order.
    got = all_records(rx)
    assert acked <= len(got) <= read
    assert_records_equal(got, expected[:len(got)], ifname="late/" + path.name)
