"""The status page, rendered by headless Chromium: connected sensors and the
capture files with download links. The screenshot is kept in the test's tmp
directory and its path printed (pytest -s shows it)."""

import re
import shutil
import subprocess
import time

import pytest

from conftest import SCALE
from http_helpers import FakeSensor, get, http_args, wait_capture_listed, wait_http_up

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--virtual-time-budget=5000"]


def chromium(tmp_path, *args):
    exe = shutil.which("chromium")
    if not exe:
        pytest.fail("chromium is not installed (make deps installs it)")
    p = subprocess.run([exe] + CHROMIUM_FLAGS + ["--user-data-dir=%s" % (tmp_path / "chromium")]
                       + list(args), capture_output=True, timeout=90 * SCALE)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    return p.stdout.decode()


def test_status_page_in_chromium(env, captures, tmp_path):
    path, _ = captures.varied(500, seed=91, fmt="pcap-ns", name="page.pcap")
    rport, rargs = http_args()
    rx = env.receiver(args=rargs, env={"PACKETSTREAMER_OUTPUT_FILE_ROTATE_SECONDS": "1"})
    wait_http_up(rport)
    rc, err = env.run_sensor(path, rx.port, sensor_id="node-page")
    assert rc == 0, err
    deadline = time.monotonic() + 15 * SCALE
    while not rx.files() and time.monotonic() < deadline:
        time.sleep(0.1)
    files = rx.files()
    assert files
    for f in files:
        wait_capture_listed(rport, f.name)
    live = FakeSensor(rx.port, "pod-sensor-live")  # stays connected
    assert live.accepted
    deadline = time.monotonic() + 10 * SCALE
    while b"pod-sensor-live" not in get(rport, "/api/sensors")[2]:
        assert time.monotonic() < deadline, "the connected sensor never showed up"
        time.sleep(0.1)

    url = "http://127.0.0.1:%d/" % rport
    st, hdr, body = get(rport, "/")
    assert st == 200 and hdr["content-type"].startswith("text/html")
    assert b"http://" not in body and b"https://" not in body  # no external assets
    assert "connect-src 'self'" in hdr["content-security-policy"]

    dom = chromium(tmp_path, "--dump-dom", url)
    sensors = re.search(r'<table id="sensors">.*?</table>', dom, re.S).group(0)
    files_tbl = re.search(r'<table id="files">.*?</table>', dom, re.S).group(0)
    assert re.search(r"<td>pod-sensor-live</td><td class=\"up\">connected</td>", sensors), sensors
    assert re.search(r"<td>node-page</td><td class=\"down\">disconnected</td>", sensors), sensors
    for f in files:
        assert 'href="/captures/%s"' % f.name in files_tbl, files_tbl
    assert "<td>node-page</td><td>complete</td>" in files_tbl, files_tbl

    shot = tmp_path / "status-page.png"
    chromium(tmp_path, "--screenshot=%s" % shot, "--window-size=1280,900", url)
    assert shot.stat().st_size > 5000
    print("status page screenshot: %s" % shot)
    live.close()
    rx.stop()
