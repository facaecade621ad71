"""check-config, configuration layering (file < flags < environment) and the
command line itself."""

import re
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import (REPO, assert_no_sanitizer, child_env, free_port, pcaplib,
                      port_listening)

# Deepfence PacketStreamer's example configurations, as its users have them.
ORIGINAL_EXAMPLES = {
    "receiver.yaml": """\
input:
  address: 0.0.0.0
  port: 8081
output:
  file:
    path: /tmp/dump_file
""",
    "receiver-stdout.yaml": """\
input:
  address: 0.0.0.0
  port: 8081
output:
  file:
    path: stdout
""",
    "sensor-local.yaml": """\
output:
  server:
    address: 127.0.0.1
    port: 8081
pcapMode: all
""",
    "sensor-full.yaml": """\
output:
  server:
    address: 127.0.0.1
    port: 8081
tls:
  enable: false
auth:
  enable: false
compressBlockSize: 65
inputPacketLen: 65535
gatherMaxWaitSec: 5
pcapMode: allow
capturePorts: [80, 443, 8080]
ignorePorts: [22]
""",
}

TYPO = """\
input:
  address: 127.0.0.1
  port: 8081
output:
  file:
    path: /tmp/x
    rotateSizeMb: 10
"""

DATA_CONFIGS = REPO / "tests" / "data" / "configs"


def shipped(valid):
    """Sample configs in tests/data/configs: invalid-* and typo* are invalid."""
    if not DATA_CONFIGS.is_dir():
        return ["(none shipped)"]
    names = sorted(p.name for p in DATA_CONFIGS.glob("*.yaml")
                   if p.name.startswith(("invalid", "typo")) != valid)
    return names or ["(none shipped)"]


def write(env, name, text):
    p = env.workdir / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", sorted(ORIGINAL_EXAMPLES))
def test_check_config_accepts_original_examples(env, name):
    path = write(env, name, ORIGINAL_EXAMPLES[name])
    rc, err = env.run(["check-config", "--config", str(path)])
    assert rc == 0, "%s rejected:\n%s" % (name, err)


@pytest.mark.parametrize("name", shipped(valid=True))
def test_check_config_accepts_shipped_samples(env, name):
    path = DATA_CONFIGS / name
    if not path.exists():
        pytest.skip("no sample configs shipped in %s" % DATA_CONFIGS)
    rc, err = env.run(["check-config", "--config", str(path)])
    assert rc == 0, "%s rejected:\n%s" % (name, err)


def test_check_config_rejects_typo(env):
    path = write(env, "typo.yaml", TYPO)
    rc, err = env.run(["check-config", "--config", str(path)])
    assert rc == 1, "typo accepted (rc %d):\n%s" % (rc, err)
    assert "typo.yaml:7" in err, "no FILE:LINE in:\n" + err
    assert "rotateSizeMb" in err
    assert re.search(r"did you mean.*rotateSizeMB", err), err


@pytest.mark.parametrize("name", shipped(valid=False))
def test_check_config_rejects_shipped_invalid(env, name):
    # each file may state the message it must produce in a first line
    # "# expect-error: :LINE: message" (FILE is prepended here)
    path = DATA_CONFIGS / name
    if not path.exists():
        pytest.skip("no invalid sample configs shipped in %s" % DATA_CONFIGS)
    rc, err = env.run(["check-config", "--config", str(path)])
    assert rc == 1, "%s accepted (rc %d):\n%s" % (name, rc, err)
    assert re.search(re.escape(name) + r":\d+", err), "message does not name FILE:LINE:\n" + err
    m = re.match(r"#\s*expect-error:\s*(.*\S)", path.read_text())
    if m:
        assert name + m.group(1) in err, "expected %r in:\n%s" % (name + m.group(1), err)
    if name.startswith("typo"):
        assert "did you mean" in err, err


@pytest.mark.parametrize("text,line,key", [
    ("input:\n  port: 8081\nbogusKey: 1\n", 3, "bogusKey"),
    ("output:\n  file:\n    path: /tmp/x\n    colour: red\n", 4, "colour"),
    ("input:\n  port: notaport\n", 2, "port"),
    ("input:\n  port: 99999\n", 2, "port"),
    ("pcapMode: sometimes\n", 1, "pcapMode"),
    ("output:\n  file:\n    rotateSizeMB: -1\n", 3, "rotateSizeMB"),
])
def test_check_config_rejects_bad_keys_and_values(env, text, line, key):
    path = write(env, "bad.yaml", text)
    rc, err = env.run(["check-config", "--config", str(path)])
    assert rc == 1, "accepted (rc %d):\n%s" % (rc, err)
    assert "bad.yaml:%d" % line in err, "no FILE:LINE in:\n" + err
    assert key in err, err


@pytest.mark.parametrize("text,want", [
    ('capture:\n  pods:\n    labelSelector: "app in (web"\n',
     'capture.pods.labelSelector: label selector "app in (web": \',\' or \')\' expected at 11'),
    ('capture:\n  pods:\n    labelSelector: "tier=front,=x"\n', "a label key expected at 11"),
    ('kubernetes:\n  enabled: false\ncapture:\n  pods:\n    namespaces: [shop]\n',
     "kubernetes.enabled is false"),
    ('kubernetes:\n  enabled: sometimes\n', "'sometimes' is not one of auto, true, false"),
])
def test_check_config_rejects_bad_pod_selection(env, text, want):
    path = write(env, "pods.yaml", "output:\n  server:\n    address: rx.example\n" + text)
    rc, err = env.run(["check-config", "--config", str(path)])
    assert rc == 1, "accepted (rc %d):\n%s" % (rc, err)
    assert want in err, err


def test_check_config_accepts_pod_selection(env):
    path = write(env, "pods.yaml", "output:\n  server:\n    address: rx.example\n"
                 "kubernetes:\n  enabled: true\n  nodeName: node-1\n"
                 "capture:\n  pods:\n    namespaces: [shop, pay]\n"
                 "    excludeNamespaces: []\n"
                 "    labelSelector: \"app=web, tier in (a,b), !canary, example.com/team\"\n")
    rc, err = env.run(["check-config", "--config", str(path)])
    assert rc == 0, err


def test_check_config_missing_file(env):
    rc, err = env.run(["check-config", "--config", str(env.workdir / "nope.yaml")])
    assert rc == 1
    assert "nope.yaml" in err


def test_check_config_invalid_yaml(env):
    path = write(env, "broken.yaml", "input:\n  port: [8081\n  address: x\n")
    rc, err = env.run(["check-config", "--config", str(path)])
    assert rc == 1
    assert "broken.yaml:" in err


def test_receiver_rejects_unknown_key_at_start(env):
    path = write(env, "bad.yaml", "output:\n  file:\n    rotateSizeMb: 1\n")
    rc, err = env.run(["receiver", "--config", str(path), "--listen", "127.0.0.1:%d" % free_port(),
                       "--output", str(env.mkdir("o"))], timeout=20)
    assert rc != 0
    assert "bad.yaml:3" in err and "rotateSizeMb" in err, err


def test_flags_override_file(env, captures):
    file_port, flag_port = free_port(), free_port()
    file_dir = env.mkdir("from-file")
    cfg = write(env, "rx.yaml", "input:\n  address: 127.0.0.1\n  port: %d\noutput:\n  file:\n"
                "    path: %s\n" % (file_port, file_dir))
    outdir = env.mkdir("from-flag")
    rx = env.receiver(config=cfg, port=flag_port, outdir=outdir)
    assert port_listening(flag_port)
    assert not port_listening(file_port), "listens on the config file's port despite --listen"
    path, _ = captures.varied(200, seed=50)
    rc, err = env.run_sensor(path, flag_port, sensor_id="f")
    assert rc == 0, err
    rx.stop()
    assert len(rx.files()) == 1
    assert not list(file_dir.iterdir()), "wrote into the config file's path despite --output"


def test_file_alone_is_used(env, captures):
    file_port = free_port()
    outdir = env.mkdir("from-file")
    cfg = write(env, "rx.yaml", "input:\n  address: 127.0.0.1\n  port: %d\noutput:\n  file:\n"
                "    path: %s\n" % (file_port, outdir))
    rx = env.receiver(config=cfg, port=file_port, listen=False, outdir=False)
    rx.outdir = outdir
    path, _ = captures.varied(200, seed=50)
    rc, err = env.run_sensor(path, file_port, sensor_id="f")
    assert rc == 0, err
    rx.stop()
    assert len(rx.files()) == 1


def test_env_overrides_flags(env, captures):
    flag_port, env_port = free_port(), free_port()
    outdir = env.mkdir("o")
    rx = env.receiver(port=env_port, listen="127.0.0.1:%d" % flag_port, outdir=outdir,
                      env={"PACKETSTREAMER_INPUT_PORT": env_port})
    assert not port_listening(flag_port), "--listen port used despite PACKETSTREAMER_INPUT_PORT"
    path, expected = captures.varied(200, seed=51)
    rc, err = env.run_sensor(path, env_port, sensor_id="e")
    assert rc == 0, err
    rx.stop()
    assert len(rx.files()) == 1


def test_env_sensor_id(env, captures):
    rx = env.receiver()
    path, expected = captures.varied(200, seed=52)
    rc, err = env.run_sensor(path, rx.port, sensor_id="from-flag",
                             env={"PACKETSTREAMER_SENSOR_ID": "from-env"})
    assert rc == 0, err
    rx.stop()
    names = {r[0] for r in pcaplib.read_named(str(rx.files()[0]))}
    assert names == {"from-env/" + path.name}


def test_kubernetes_service_link_variables_are_ignored(env, captures):
    # Kubernetes injects <SERVICE>_* variables for a Service named
    # "packetstreamer": they are not configuration and must not stop the process
    links = {
        "PACKETSTREAMER_SERVICE_HOST": "10.96.0.10",
        "PACKETSTREAMER_SERVICE_PORT": "8081",
        "PACKETSTREAMER_PORT": "tcp://10.96.0.10:8081",
        "PACKETSTREAMER_PORT_8081_TCP": "tcp://10.96.0.10:8081",
        "PACKETSTREAMER_PORT_8081_TCP_PROTO": "tcp",
        "PACKETSTREAMER_PORT_8081_TCP_PORT": "8081",
        "PACKETSTREAMER_PORT_8081_TCP_ADDR": "10.96.0.10",
    }
    rx = env.receiver(env=links)
    path, expected = captures.varied(200, seed=53)
    rc, err = env.run_sensor(path, rx.port, sensor_id="k8s", env=links)
    assert rc == 0, err
    rx.stop()
    assert len(pcaplib.read_named(str(rx.files()[0]))) == len(expected)


def test_env_variable_with_bad_value_is_an_error(env):
    rc, err = env.run(["receiver", "--listen", "127.0.0.1:%d" % free_port(),
                       "--output", str(env.mkdir("o"))],
                      env={"PACKETSTREAMER_OUTPUT_FILE_ROTATE_SIZE_MB": "lots"}, timeout=10)
    assert rc != 0
    assert "PACKETSTREAMER_OUTPUT_FILE_ROTATE_SIZE_MB" in err, err


def test_version(env):
    rc, err = env.run(["--version"])
    assert rc == 0, err
    assert re.fullmatch(r"packetstreamer \d+\.\d+\.\d+\S*\n?", env.last_stdout), env.last_stdout


@pytest.mark.parametrize("args", [["--help"], ["receiver", "--help"], ["sensor", "--help"]])
def test_help(env, args):
    rc, err = env.run(args)
    assert rc == 0, err
    out = env.last_stdout
    assert "usage" in out.lower() or "Usage" in out, out
    if args == ["--help"]:
        for word in ("sensor", "receiver", "check-config"):
            assert word in out


@pytest.mark.parametrize("args", [["frobnicate"], ["receiver", "--no-such-flag"], []])
def test_usage_errors_exit_2(env, args):
    rc, err = env.run(args, timeout=20)
    assert rc == 2, "rc %d for %r:\n%s" % (rc, args, err)
    assert "usage" in err.lower(), err
    assert env.last_stdout == ""


def test_bad_flag_value(env):
    rc, err = env.run(["sensor", "--codec", "brotli", "--receiver", "127.0.0.1:1",
                       "--read-file", "/dev/null"], timeout=20)
    assert rc in (1, 2), "rc %d:\n%s" % (rc, err)
    assert "brotli" in err, err


def test_receiver_unwritable_output(env):
    blocker = env.workdir / "regular-file"
    blocker.write_text("not a directory\n")
    target = blocker / "captures"
    rc, err = env.run(["receiver", "--listen", "127.0.0.1:%d" % free_port(),
                       "--output", str(target)], timeout=20)
    assert rc != 0, "receiver started with output under a regular file"
    assert str(target) in err or str(blocker) in err, err
    assert_no_sanitizer(err, "receiver")


def test_receiver_port_in_use(env):
    rx = env.receiver()
    rc, err = env.run(["receiver", "--listen", "127.0.0.1:%d" % rx.port,
                       "--output", str(env.mkdir("o2"))], timeout=20)
    assert rc != 0
    assert str(rx.port) in err, err
    rx.stop()


# ---- http.listen: check-config and startup agree (issue 12) ----

def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def check_http_value(env, role, value):
    """check-config's verdict on http.listen VALUE for role: (rc, stderr)."""
    lines = ["http:", "  listen: '%s'" % value]
    if role == "sensor":
        lines += ["output:", "  server:", "    address: 127.0.0.1", "    port: 1",
                  "sensor:", "  readPacketsPerSec: 4"]
    path = write(env, "http-%s.yaml" % role, "\n".join(lines) + "\n")
    rc, err = env.run(["check-config", "--config", str(path), "--role", role], timeout=20)
    return rc, err, path


def start_role(env, role, path, value, via_flag):
    """Starts role with http.listen VALUE (from the file, or as --http);
    returns the Popen and the path of its stderr."""
    args = [str(env.binary), role, "--config", str(path)]
    if via_flag:
        args += ["--http", value]
    if role == "receiver":
        args += ["--listen", "127.0.0.1:%d" % free_port(), "--output", str(env.mkdir("o"))]
    else:
        # paced, so that it still runs while the test fetches /healthz
        recs = [pcaplib.Record(0, 1_700_000_000_000_000_000 + i * 1000, 60, 60, bytes(60))
                for i in range(40)]
        pcap = env.workdir / "slow.pcap"
        pcaplib.write_records(str(pcap), recs, "pcap-ns")
        args += ["--read-file", str(pcap)]
    errp = env.workdir / ("%s-%d.stderr" % (role, free_port()))
    with open(errp, "wb") as f:
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=f,
                             env=child_env(), cwd=str(env.workdir))
    return p, errp


def wait_http_line(p, errp, timeout=20):
    """The "ADDR:PORT" the process logs its HTTP server on, or fails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"HTTP \([^)]*\) on (\S+)", errp.read_text(errors="replace"))
        if m:
            return m.group(1)
        if p.poll() is not None:
            pytest.fail("exited %s before serving HTTP:\n%s" % (p.returncode, errp.read_text()))
        time.sleep(0.05)
    pytest.fail("no HTTP line after %ss:\n%s" % (timeout, errp.read_text()))


@pytest.mark.parametrize("role", ["receiver", "sensor"])
@pytest.mark.parametrize("value", ["127.0.0.1:0", "[::1]:0", "localhost:0"])
@pytest.mark.parametrize("via_flag", [False, True])
def test_http_port0_accepted_by_check_config_and_served(env, role, value, via_flag):
    """A value check-config accepts is one the process serves on: port 0
    picks a free port, which the process logs and answers /healthz on."""
    if value.startswith("[::1]") and not ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    rc, err, path = check_http_value(env, role, value)
    assert rc == 0, err
    if role == "sensor":
        rx = env.receiver()
        path.write_text(path.read_text().replace("port: 1", "port: %d" % rx.port))
    p, errp = start_role(env, role, path, value, via_flag)
    try:
        addr = wait_http_line(p, errp)
        host, port = addr.rsplit(":", 1)
        assert int(port) > 0, addr
        url = "http://%s:%s/healthz" % (host, port)
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
    text = errp.read_text(errors="replace")
    assert_no_sanitizer(text, role)
    assert not [ln for ln in text.splitlines() if "WARN" in ln and "http" in ln.lower()], text


@pytest.mark.parametrize("role", ["receiver", "sensor"])
def test_http_unbindable_address_is_a_startup_error(env, role):
    """check-config accepts a well-formed address (it cannot know what the
    target machine can bind); a process that cannot bind it exits 1 naming
    the address, instead of running on without probes."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        value = "127.0.0.1:%d" % busy.getsockname()[1]
        rc, err, path = check_http_value(env, role, value)
        assert rc == 0, err
        p, errp = start_role(env, role, path, value, via_flag=False)
        try:
            rc = p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            pytest.fail("%s kept running with an unbindable http.listen:\n%s" % (
                role, errp.read_text()))
    text = errp.read_text(errors="replace")
    assert rc == 1, text
    assert value in text and "ERROR" in text, text
    assert_no_sanitizer(text, role)


@pytest.mark.parametrize("role", ["receiver", "sensor"])
@pytest.mark.parametrize("value", ["127.0.0.1", "::1:8080", "[::1]8080", "[::1]:", "host:65536",
                                   "host: 80"])
def test_http_malformed_address_rejected_alike(env, role, value):
    """check-config and startup reject the same values with the same message
    (bare IPv6 used to pass check-config and fail only in the HTTP server)."""
    rc, err, path = check_http_value(env, role, value)
    assert rc == 1, err
    assert "http.listen" in err, err
    for via_flag in (False, True):
        p, errp = start_role(env, role, path, value, via_flag)
        rc2 = p.wait(timeout=60)
        text = errp.read_text(errors="replace")
        assert rc2 == 1, text
        assert err.strip().splitlines()[-1] in text, (err, text)


# ---- docs/configuration.md's key tables are the key table's (issue 12) ----

def generated_block(text, name):
    begin, end = "<!-- BEGIN GENERATED: %s -->\n" % name, "<!-- END GENERATED: %s -->\n" % name
    assert text.count(begin) == 1 and text.count(end) == 1, \
        "docs/configuration.md must hold one GENERATED: %s block" % name
    return text.split(begin, 1)[1].split(end, 1)[0]


@pytest.mark.parametrize("name,source", [("keys", "src/core/config_keys.c"),
                                         ("flags", "src/cli.c")])
def test_docs_reference_matches_the_tables(env, name, source):
    """Defaults, types, ranges, roles, variables and descriptions of keys,
    and which key each flag sets, are printed in docs/configuration.md from
    the tables in the code; a doc edited by hand (or a table changed without
    `make docs`) fails here with the difference."""
    rc, err = env.run(["check-config", "--print-reference", name], timeout=20)
    assert rc == 0, err
    want = env.last_stdout
    got = generated_block((REPO / "docs" / "configuration.md").read_text(), name)
    if got != want:
        import difflib
        diff = "".join(difflib.unified_diff(
            want.splitlines(True), got.splitlines(True),
            "check-config --print-reference " + name, "docs/configuration.md", n=0))
        pytest.fail("docs/configuration.md's %s block differs from %s; run `make docs` "
                    "(or edit %s):\n%s" % (name, source, source, diff))


def test_reference_defaults_are_the_process_defaults(env):
    """The defaults the reference prints are the ones a process runs with:
    each `default` in the generated table loads through check-config."""
    rc, err = env.run(["check-config", "--print-reference", "keys"], timeout=20)
    assert rc == 0, err
    rows = [r for r in env.last_stdout.splitlines() if r.startswith("| `")]
    assert len(rows) > 50
    checked = 0
    for row in rows:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
        key = re.match(r"`([^`]+)`", cells[0]).group(1)
        m = re.fullmatch(r"`([^`]*)`", cells[2])
        if not m or cells[1].startswith("list"):
            continue
        var = re.fullmatch(r"`(\w+)`", cells[5]).group(1)
        role = "sensor" if cells[4] == "S" else "receiver"
        path = write(env, "empty.yaml", "output:\n  server:\n    address: h\n"
                     if role == "sensor" else "{}\n")
        rc, err = env.run(["check-config", "--config", str(path), "--role", role],
                          env={var: m.group(1)}, timeout=20)
        assert rc == 0, "%s=%s (the documented default of %s): %s" % (var, m.group(1), key, err)
        checked += 1
    assert checked > 30


def test_print_reference_unknown_format(env):
    rc, err = env.run(["check-config", "--print-reference", "troff"], timeout=20)
    assert rc == 2 and "troff" in err, err


@pytest.mark.parametrize("role,own,other", [
    ("sensor", ["--receiver", "--read-file", "--interface", "--codec", "--id"],
     ["--listen", "--output", "--format", "--role"]),
    ("receiver", ["--listen", "--output", "--format"],
     ["--receiver", "--read-file", "--interface", "--codec", "--id", "--role"]),
])
def test_help_lists_only_the_roles_flags(env, role, own, other):
    rc, err = env.run([role, "--help"])
    assert rc == 0, err
    out = env.last_stdout
    for f in own + ["--config", "--http", "--tls-cert", "--log-level"]:
        assert re.search(r"^  %s\b" % re.escape(f), out, re.M), (f, out)
    for f in other:
        assert not re.search(r"^  %s\b" % re.escape(f), out, re.M), (f, out)
        rc, err = env.run([role, f, "x"], timeout=20)
        assert rc == 2 and "unknown option" in err, (f, err)


def test_help_defaults_come_from_the_table(env):
    """--help shows the defaults a process starts with, from the key table."""
    rc, _ = env.run(["receiver", "--help"])
    rx = env.last_stdout
    rc, _ = env.run(["sensor", "--help"])
    sx = env.last_stdout
    rc, _ = env.run(["check-config", "--print-reference", "keys"])
    ref = env.last_stdout
    listen = re.search(r"\| `http.listen` .*?sensor `([^`]+)`, receiver `([^`]+)`", ref)
    assert listen, ref
    assert re.search(r"--http ADDR:PORT.*\n?.*default %s\)" % re.escape(listen.group(2)), rx), rx
    assert re.search(r"--http ADDR:PORT.*\n?.*default %s\)" % re.escape(listen.group(1)), sx), sx
    codec = re.search(r"\| `compression.codec` \| enum \| `(\w+)`", ref).group(1)
    assert "compression.codec, default %s)" % codec in sx, sx
    assert "default 0.0.0.0:8081" in rx, rx
