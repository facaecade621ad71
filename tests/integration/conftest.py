"""Fixtures for the integration tests: real processes on loopback, offline input.

The binary is $PS_TEST_BIN (the Makefile sets it),
default <repo>/build-asan/packetstreamer. Every PACKETSTREAMER_* variable of
the test runner's environment is removed from the children's environment, so a stray variable
in the runner's shell cannot change what a test means; tests pass the ones
they mean explicitly.

Helpers checked on every process: exit code, and stderr free of sanitizer
reports; receivers must also log no ERROR line in the ordinary tests.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lib"))

import pcaplib  # noqa: E402

# Multiplies every timeout (e.g. PS_TEST_TIMEOUT_SCALE=3 on a slow machine).
SCALE = float(os.environ.get("PS_TEST_TIMEOUT_SCALE", "1"))

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                     "ThreadSanitizer", "MemorySanitizer", "runtime error:")
ERROR_LINE = re.compile(r"\bERROR\b|\"level\"\s*:\s*\"error\"")

OUTPUT_NAME = re.compile(
    r"^packetstreamer-(?:(?P<sensor>.+)-)?(?P<ts>\d{8}T\d{6}Z)-(?P<seq>\d{6})\.(?P<ext>pcapng|pcap)$")


def find_binary():
    for var in ("PS_TEST_BIN",):
        if os.environ.get(var):
            return Path(os.environ[var]).resolve()
    return REPO / "build-asan" / "packetstreamer"


def quiet_http(args):
    """["--http", "127.0.0.1:0"] unless args choose an HTTP address or ask for
    help. The defaults (0.0.0.0:8080/8082) are shared by every process on the
    machine, and an HTTP address that cannot be bound stops the process."""
    args = [str(a) for a in args]
    if "--http" in args or "--help" in args:
        return []
    return ["--http", "127.0.0.1:0"]


def child_env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACKETSTREAMER_")}
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    env["LC_ALL"] = "C"
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def sanitizer_report(text):
    """The first sanitizer marker found in text, or None."""
    for m in SANITIZER_MARKERS:
        if m in text:
            return m
    return None


def assert_no_sanitizer(text, who):
    m = sanitizer_report(text)
    assert m is None, "%s: sanitizer report (%s):\n%s" % (who, m, tail(text))


def assert_clean_stderr(text, who):
    assert_no_sanitizer(text, who)
    bad = [line for line in text.splitlines() if ERROR_LINE.search(line)]
    assert not bad, "%s logged errors:\n%s" % (who, "\n".join(bad[:20]))


def tail(text, n=40):
    lines = text.splitlines()
    return "\n".join(lines[-n:])


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_listening(port):
    """True if some socket listens on TCP port (any address), from /proc/net/tcp*.
    Used instead of a probe connection so the receiver sees no stray session."""
    found_table = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                found_table = True
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            continue
    if not found_table:  # no procfs: fall back to connecting
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False
    return False


def output_files(outdir, ext=None):
    """Final (renamed) capture files in outdir, oldest first."""
    found = []
    for p in Path(outdir).iterdir():
        m = OUTPUT_NAME.match(p.name)
        if m and (ext is None or m.group("ext") == ext):
            found.append((m.group("sensor") or "", m.group("ts"), int(m.group("seq")), p))
    return [p for *_, p in sorted(found)]


def part_files(outdir):
    return sorted(p for p in Path(outdir).iterdir() if p.name.endswith(".part"))


def read_outputs(files):
    """read_named() over files, concatenated."""
    out = []
    for f in files:
        out.extend(pcaplib.read_named(str(f)))
    return out


def parse_kv(stderr_text):
    """key=value pairs of the last stderr line that has packets=."""
    for line in reversed(stderr_text.splitlines()):
        if "packets=" in line:
            return dict(m.groups() for m in re.finditer(r"([A-Za-z_][\w.]*)=(\S+)", line))
    return {}


def assert_records_equal(got, expected, ifname=None, ts_div=1, who="output"):
    """got: read_named() tuples; expected: pcaplib.Record list. Compares in order
    data, caplen, origlen, ts (// ts_div) and, if given, the interface name."""
    msgs = []
    if len(got) != len(expected):
        msgs.append("%s: %d records, expected %d" % (who, len(got), len(expected)))
    for i, (g, e) in enumerate(zip(got, expected)):
        name, ts, caplen, origlen, data = g
        if ifname is not None and name != ifname:
            msgs.append("%s record %d: interface %r, expected %r" % (who, i, name, ifname))
        if (ts // ts_div, caplen, origlen) != (e.ts_ns // ts_div, e.caplen, e.origlen):
            msgs.append("%s record %d: (ts, caplen, origlen) = %r, expected %r" % (
                who, i, (ts, caplen, origlen), (e.ts_ns, e.caplen, e.origlen)))
        elif data != e.data:
            msgs.append("%s record %d: data differs (len %d vs %d)" % (who, i, len(data), len(e.data)))
        if len(msgs) >= 5:
            break
    assert not msgs, "\n".join(msgs)


class Receiver:
    """A receiver process. stop() sends SIGTERM and checks a clean exit."""

    def __init__(self, binary, workdir, port, outdir, fmt=None, config=None, args=(), env=None,
                 listen=None, stdout_path=None):
        self.port = port
        self.outdir = outdir
        self.cmd = [str(binary), "receiver"] + quiet_http(args)
        if config is not None:
            self.cmd += ["--config", str(config)]
        if listen is not False:
            self.cmd += ["--listen", listen or "127.0.0.1:%d" % port]
        if outdir not in (None, False):  # False: no --output (config file or default)
            self.cmd += ["--output", str(outdir)]
        if fmt is not None:
            self.cmd += ["--format", fmt]
        self.cmd += list(args)
        self.stderr_path = Path(workdir) / ("receiver-%d.stderr" % port)
        self.stdout_path = stdout_path
        self._err = open(self.stderr_path, "wb")
        if stdout_path == "PIPE":  # the test reads self.proc.stdout
            self._out = subprocess.PIPE
        else:
            self._out = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._err, env=child_env(env), cwd=str(workdir))
        self.returncode = None

    @property
    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self, timeout=20):
        deadline = time.monotonic() + timeout * SCALE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail("receiver exited with %s before listening on %d:\n%s\ncommand: %s" % (
                    self.proc.returncode, self.port, tail(self.stderr), " ".join(self.cmd)))
            if port_listening(self.port):
                return self
            time.sleep(0.02)
        pytest.fail("receiver not listening on %d after %ss:\n%s" % (self.port, timeout, tail(self.stderr)))

    def stop(self, sig=signal.SIGTERM, timeout=30, check=True):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout * SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._close()
                pytest.fail("receiver did not exit within %ss of %s:\n%s" % (
                    timeout, signal.Signals(sig).name, tail(self.stderr)))
        self._close()
        self.returncode = self.proc.returncode
        if check:
            assert self.returncode == 0, "receiver exit code %s after %s:\n%s" % (
                self.returncode, signal.Signals(sig).name, tail(self.stderr))
            assert_clean_stderr(self.stderr, "receiver")
            if self.outdir not in (None, False, "-") and Path(self.outdir).is_dir():
                parts = part_files(self.outdir)
                assert not parts, "receiver left .part files: %s" % parts
        return self.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()

    def _close(self):
        for f in (self._err, self._out):
            if f not in (subprocess.DEVNULL, subprocess.PIPE) and not f.closed:
                f.close()

    def files(self, ext=None):
        return output_files(self.outdir, ext)


class Env:
    """What the tests use: the binary, a work dir, and process helpers."""

    def __init__(self, binary, workdir):
        self.binary = binary
        self.workdir = Path(workdir)
        self.receivers = []
        self.sensors = []
        self._n = 0

    def mkdir(self, name):
        p = self.workdir / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def receiver(self, outdir=None, fmt=None, config=None, args=(), env=None, port=None,
                 listen=None, stdout_path=None, ready=True):
        """Starts a receiver (and waits until it listens unless ready=False).
        outdir: None for a new directory, "-" for stdout, False for no --output."""
        port = port or free_port()
        if outdir is None:
            self._n += 1
            outdir = self.mkdir("out%d" % self._n)
        r = Receiver(self.binary, self.workdir, port, outdir, fmt, config, args, env, listen,
                     stdout_path)
        self.receivers.append(r)
        if ready:
            r.wait_ready()
        return r

    def sensor_cmd(self, read_file, port, codec=None, sensor_id=None, args=()):
        cmd = [str(self.binary), "sensor"] + quiet_http(args) + [
            "--read-file", str(read_file), "--receiver", "127.0.0.1:%d" % port]
        if codec:
            cmd += ["--codec", codec]
        if sensor_id:
            cmd += ["--id", sensor_id]
        return cmd + list(args)

    def run_sensor(self, read_file, port, codec=None, sensor_id=None, args=(), env=None,
                   timeout=120):
        """Runs a sensor to completion; returns (rc, stderr)."""
        cmd = self.sensor_cmd(read_file, port, codec, sensor_id, args)
        return self.run(cmd, env=env, timeout=timeout)

    def start_sensor(self, read_file, port, codec=None, sensor_id=None, args=(), env=None):
        """Starts a sensor; returns its Popen. Its stderr goes to a file: use
        wait_sensor(p) for (rc, stderr)."""
        cmd = self.sensor_cmd(read_file, port, codec, sensor_id, args)
        self._n += 1
        err_path = self.workdir / ("sensor-%d.stderr" % self._n)
        with open(err_path, "wb") as err:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=err, env=child_env(env), cwd=str(self.workdir))
        p.stderr_path = err_path
        self.sensors.append(p)
        return p

    def wait_sensor(self, p, timeout=120):
        """Waits for a started sensor; returns (rc, stderr), checked for sanitizer reports."""
        try:
            p.wait(timeout=timeout * SCALE)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            pytest.fail("sensor did not exit within %ss:\n%s" % (
                timeout, tail(p.stderr_path.read_text(errors="replace"))))
        err = p.stderr_path.read_text(errors="replace")
        assert_no_sanitizer(err, "sensor")
        return p.returncode, err

    def run(self, args, env=None, timeout=60, input=None):
        """Runs the binary with args (a list; the binary is prepended unless
        args[0] is it). Returns (rc, stderr); stdout is in self.last_stdout."""
        if not args or args[0] != str(self.binary):
            args = [str(self.binary)] + list(args)
        if len(args) > 1 and args[1] in ("sensor", "receiver"):
            args = args[:2] + quiet_http(args) + args[2:]
        try:
            p = subprocess.run(args, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=child_env(env), cwd=str(self.workdir), timeout=timeout * SCALE)
        except subprocess.TimeoutExpired as e:
            pytest.fail("%s did not exit within %ss; stderr:\n%s" % (
                " ".join(args[:3]), timeout, tail((e.stderr or b"").decode(errors="replace"))))
        self.last_stdout = p.stdout.decode(errors="replace")
        stderr = p.stderr.decode(errors="replace")
        assert_no_sanitizer(stderr, " ".join(args[:2]))
        return p.returncode, stderr

    def cleanup(self):
        for p in self.sensors:
            if p.poll() is None:
                p.kill()
                p.wait()
        for r in self.receivers:
            r.kill()


@pytest.fixture(scope="session")
def binary():
    b = find_binary()
    if not (b.is_file() and os.access(b, os.X_OK)):
        pytest.fail("packetstreamer binary not found at %s (build it with `make build-asan`, "
                    "or set PS_TEST_BIN)" % b)
    return b


@pytest.fixture
def env(binary, tmp_path):
    e = Env(binary, tmp_path)
    yield e
    e.cleanup()


@pytest.fixture
def receiver(env):
    """A running pcapng receiver on a free port writing env.workdir/out1."""
    return env.receiver()


class Captures:
    """Input captures generated once per test session, cached by parameters."""

    def __init__(self, root):
        self.root = Path(root)
        self.cache = {}

    def varied(self, n, seed, fmt="pcap-ns", name=None):
        """(path, expected records as a reader sees the file)."""
        key = ("varied", n, seed, fmt, name)
        if key not in self.cache:
            ext = {"pcap": "pcap", "pcap-ns": "pcap", "pcapng": "pcapng", "pcapng-us": "pcapng"}[fmt]
            path = self.root / (name or "varied-%d-s%d-%s.%s" % (n, seed, fmt, ext))
            pcaplib.write_records(str(path), pcaplib.gen_varied(n, seed), fmt)
            self.cache[key] = (path, pcaplib.read(str(path))[1])
        return self.cache[key]


@pytest.fixture(scope="session")
def captures(tmp_path_factory):
    return Captures(tmp_path_factory.mktemp("captures"))


def tool_check(path):
    """capinfos, tshark -r and tcpdump -r must open path with exit 0 and print
    nothing on stderr (apart from the banner lines each prints always).
    Returns the packet count capinfos reports."""
    problems = []
    c = subprocess.run(["capinfos", "-M", "-T", "-r", "-c", str(path)], capture_output=True, text=True)
    if c.returncode != 0 or c.stderr.strip():
        problems.append("capinfos rc=%d stderr=%r" % (c.returncode, c.stderr))
    t = subprocess.run(["tshark", "-n", "-r", str(path)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    t_err = [ln for ln in t.stderr.splitlines() if not ln.startswith("Running as user")]
    if t.returncode != 0 or t_err:
        problems.append("tshark rc=%d stderr=%r" % (t.returncode, "\n".join(t_err)))
    d = subprocess.run(["tcpdump", "-n", "-r", str(path)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    d_err = [ln for ln in d.stderr.splitlines() if not ln.startswith("reading from file")]
    if d.returncode != 0 or d_err:
        problems.append("tcpdump rc=%d stderr=%r" % (d.returncode, "\n".join(d_err)))
    assert not problems, "%s:\n%s" % (path, "\n".join(problems))
    try:
        return int(c.stdout.strip().split("\t")[-1])
    except ValueError:
        return None
