"""Access rules seen from a non-loopback client: a network namespace joined
to this one by a veth pair (both created here, deleted afterwards); the
receiver's HTTP server listens on the host end's address, and curl runs in
the namespace. Traffic goes only to addresses this test created."""

import os
import random
import subprocess

import pytest

from conftest import SCALE, free_port
from http_helpers import wait_status


def sh(*args, check=True):
    return subprocess.run(list(args), capture_output=True, text=True, check=check)


@pytest.fixture
def netns():
    tag = "%d%02d" % (os.getpid() % 10000, random.randrange(100))
    ns, host_if, ns_if = "ps-http-" + tag, "psh%sa" % tag, "psh%sb" % tag
    net = random.randrange(1, 250)
    host_ip, ns_ip = "10.213.%d.1" % net, "10.213.%d.2" % net
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        sh("ip", "link", "set", ns_if, "netns", ns)
        sh("ip", "addr", "add", host_ip + "/30", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", ns_ip + "/30", "dev", ns_if)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
    except subprocess.CalledProcessError as e:
        sh("ip", "link", "del", host_if, check=False)
        sh("ip", "netns", "del", ns, check=False)
        pytest.skip("cannot create a network namespace here: %s" % e.stderr)
    yield ns, host_ip
    sh("ip", "link", "del", host_if, check=False)  # removes both ends
    sh("ip", "netns", "del", ns, check=False)


def curl_from(ns, url, headers=()):
    """(status, response headers text) of a GET made inside the namespace."""
    cmd = ["ip", "netns", "exec", ns, "curl", "-sS", "-o", "/dev/null", "-D", "-",
           "--max-time", str(int(10 * SCALE)), "-w", "%{http_code}"]
    for h in headers:
        cmd += ["-H", h]
    p = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=30 * SCALE)
    assert p.returncode == 0, p.stderr
    return int(p.stdout[-3:]), p.stdout[:-3]


def test_non_loopback_clients_need_the_token(env, netns):
    ns, host_ip = netns
    # without http.token: 403 for everything but probes and metrics
    port = free_port()
    rx = env.receiver(args=["--http", "%s:%d" % (host_ip, port)])
    wait_status(port, "/healthz", 200, host=host_ip)
    base = "http://%s:%d" % (host_ip, port)
    for path in ("/api/captures", "/captures/packetstreamer-x.pcapng", "/live", "/",
                 "/api/sensors"):
        st, _ = curl_from(ns, base + path)
        assert st == 403, path
    for path in ("/healthz", "/readyz", "/metrics"):
        assert curl_from(ns, base + path)[0] == 200, path
    rx.stop()

    # with http.token: 401 + WWW-Authenticate without it or with a wrong one
    port = free_port()
    rx = env.receiver(args=["--http", "%s:%d" % (host_ip, port)],
                      env={"PACKETSTREAMER_HTTP_TOKEN": "sekrit-token"})
    wait_status(port, "/healthz", 200, host=host_ip)
    base = "http://%s:%d" % (host_ip, port)
    st, hdrs = curl_from(ns, base + "/api/captures")
    assert st == 401
    assert 'www-authenticate: bearer realm="packetstreamer"' in hdrs.lower()
    assert curl_from(ns, base + "/api/captures", ["Authorization: Bearer wrong"])[0] == 401
    assert curl_from(ns, base + "/api/captures", ["Authorization: Basic c2Vrcml0LXRva2Vu"])[0] == 401
    assert curl_from(ns, base + "/api/captures",
                     ["Authorization: Bearer sekrit-token"])[0] == 200
    assert curl_from(ns, base + "/", ["Authorization: Bearer sekrit-token"])[0] == 200
    assert curl_from(ns, base + "/metrics")[0] == 200
    rx.stop()
