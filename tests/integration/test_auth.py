"""Token authentication (auth.enable / auth.key / auth.keyFile) in the handshake."""
import os

from conftest import pcaplib


def _keyfile(env, name, text):
    p = env.workdir / name
    p.write_text(text)
    os.chmod(p, 0o600)
    return str(p)


def test_token_required_and_checked(env, captures):
    path, expected = captures.varied(500, seed=7)
    key = _keyfile(env, "key", "s3cret-token\n")
    rx = env.receiver(args=["--auth-key-file", key])
    # The right token, from a file ending in a newline as mounted Secrets do.
    rc, err = env.run_sensor(path, rx.port, sensor_id="good", args=["--auth-key-file", key])
    assert rc == 0, err
    # A wrong token, and none at all: refused, the reason on the sensor's side.
    bad = _keyfile(env, "bad", "wrong-token")
    for args in (["--auth-key-file", bad], []):
        rc, err = env.run_sensor(path, rx.port, sensor_id="intruder", args=args)
        assert rc == 1, err
        assert "rejected" in err and "authentication failed" in err, err
    rx.stop(check=False)
    assert rx.returncode == 0
    assert "rejecting" in rx.stderr and "authentication failed" in rx.stderr
    # Only the good sensor's packets are in the file, all of them.
    got = pcaplib.read_named(str(rx.files()[0]))
    assert {g[0] for g in got} == {"good/" + path.name}
    assert len(got) == len(expected)


def test_key_file_errors_name_the_file(env):
    missing = str(env.workdir / "nope")
    rc, err = env.run(["receiver", "--listen", "127.0.0.1:1", "--output",
                       str(env.workdir / "o"), "--auth-key-file", missing])
    assert rc == 1 and missing in err and "auth.keyFile" in err, err
    empty = _keyfile(env, "empty", "\n")
    rc, err = env.run(["receiver", "--listen", "127.0.0.1:1", "--output",
                       str(env.workdir / "o"), "--auth-key-file", empty])
    assert rc == 1 and "must hold a token" in err, err
