"""Capture files are created with restrictive permissions (output.file.mode)."""
import os
import stat


def _mode_of_outputs(rx):
    files = rx.files()
    assert files
    return {stat.S_IMODE(os.stat(f).st_mode) for f in files}


def test_capture_files_are_not_world_readable(env, captures):
    path, _ = captures.varied(50, seed=2)
    old = os.umask(0o022)
    try:
        rx = env.receiver(outdir=env.workdir / "new" / "captures")  # created by the receiver
        rc, err = env.run_sensor(path, rx.port, sensor_id="a")
        assert rc == 0, err
        rx.stop()
        assert _mode_of_outputs(rx) == {0o640}
        assert stat.S_IMODE(os.stat(rx.outdir).st_mode) & 0o007 == 0

        rx = env.receiver(env={"PACKETSTREAMER_OUTPUT_FILE_MODE": "0600"})
        rc, err = env.run_sensor(path, rx.port, sensor_id="b")
        assert rc == 0, err
        rx.stop()
        assert _mode_of_outputs(rx) == {0o600}
    finally:
        os.umask(old)


def test_file_mode_is_validated(env):
    rc, err = env.run(["check-config", "--role", "receiver", "--config", "/dev/null"],
                      env={"PACKETSTREAMER_OUTPUT_FILE_MODE": "0777"})
    assert rc == 1 and "output.file.mode" in err, err
