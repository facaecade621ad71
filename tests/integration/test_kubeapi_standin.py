"""The Kubernetes API stand-in (tests/lib/kubeapi.py) serves what a real API
server serves: every Pod, PodList, Status and watch event it sends over the
wire passes the project's strict schema validator (packaging/k8s-validate:
the Kubernetes models' schemas plus TypeScript's excess-property check), so
the sensor's client is tested against real shapes, not a convenient subset.
"""
import http.client
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import REPO
from kubeapi import KubeAPI

VALIDATOR = REPO / "packaging" / "k8s-validate" / "validate.js"
MODULES = os.environ.get("PS_K8S_VALIDATE_MODULES",
                         "/var/tmp/packetstreamer-cache/k8s-validate/node_modules")

pytestmark = pytest.mark.skipif(
    not shutil.which("node") or not os.path.isdir(MODULES),
    reason="the schema validator's modules are installed by `make packaging-deps`")


def validate(items):
    """Runs the validator over [{source, object[, kind]}]; its problem lines."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(items, f)
    try:
        r = subprocess.run(["node", str(VALIDATOR), f.name], capture_output=True, text=True,
                           env={**os.environ, "PS_K8S_VALIDATE_MODULES": MODULES}, timeout=300)
    finally:
        os.unlink(f.name)
    problems = [ln for ln in r.stdout.splitlines() if not ln.startswith("k8s-validate:")]
    assert r.returncode == (1 if problems else 0), r.stdout + r.stderr
    assert "k8s-validate: %d objects" % len(items) in r.stdout, r.stdout + r.stderr
    return problems


class Client:
    def __init__(self, api):
        self.api = api
        self.ctx = ssl.create_default_context(cafile=str(api.ca))

    def get(self, path, token=None):
        c = http.client.HTTPSConnection("127.0.0.1", self.api.port, context=self.ctx, timeout=20)
        c.request("GET", path, headers={
            "Authorization": "Bearer " + (token or self.api.token_file.read_text().strip()),
            "Accept": "application/json"})
        return c, c.getresponse()

    def json(self, path, token=None):
        c, r = self.get(path, token)
        body = json.loads(r.read())
        c.close()
        return r.status, body

    def watch(self, path, until):
        """The events of one watch stream, read line by line, until until(events)."""
        c, r = self.get(path)
        assert r.status == 200
        assert r.getheader("Transfer-Encoding") == "chunked"
        events = []
        while not until(events):
            line = r.readline()
            if not line:
                break
            assert line.endswith(b"\n")
            events.append(json.loads(line))
        c.close()
        return events


@pytest.fixture
def api(tmp_path):
    a = KubeAPI(tmp_path / "api", node="node1", page_size=2, bookmark_interval=0.2).start()
    yield a
    a.stop()


SEL = "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode1"


def test_objects_pass_the_strict_validator(api):
    cl = Client(api)
    api.add("web-1", "shop", labels={"app": "web", "app.kubernetes.io/name": "web"},
            ips=["10.244.1.5", "fd00:10:244:1::5"])
    api.add("pending", "shop", phase="Pending")
    api.add("kube-proxy-x", "kube-system", labels={"k8s-app": "kube-proxy"}, hostNetwork=True)
    api.add("other", "shop", node="node2", ips=["10.244.2.9"])
    items = []

    # the list, in pages, with its continue tokens
    st, page = cl.json(SEL + "&limit=500")
    assert st == 200 and len(page["items"]) == 2 and page["metadata"]["continue"]
    items.append({"source": "list page 1", "object": page})
    list_rv = page["metadata"]["resourceVersion"]
    st, page2 = cl.json(SEL + "&limit=500&continue=" + page["metadata"]["continue"])
    assert st == 200 and len(page2["items"]) == 1 and "continue" not in page2["metadata"]
    assert page2["metadata"]["resourceVersion"] == list_rv
    items.append({"source": "list page 2", "object": page2})
    names = [p["metadata"]["name"] for p in page["items"] + page2["items"]]
    assert names == ["kube-proxy-x", "pending", "web-1"]  # node2's pod is not there
    for p in page["items"] + page2["items"]:
        items.append({"source": "list item", "object": p})

    # a watch: ADDED, MODIFIED, DELETED and BOOKMARK lines
    def changes():
        time.sleep(0.3)
        api.add("db-0", "shop", labels={"app": "db"}, ips=["10.244.1.6"])
        api.modify("db-0", "shop", labels={"app": "db", "role": "primary"})
        api.delete("db-0", "shop")
    t = threading.Thread(target=changes)
    t.start()
    evs = cl.watch(SEL + "&watch=1&allowWatchBookmarks=true&timeoutSeconds=10&resourceVersion="
                   + list_rv,
                   lambda e: sum(x["type"] == "DELETED" for x in e) and
                   sum(x["type"] == "BOOKMARK" for x in e))
    t.join()
    types = [e["type"] for e in evs if e["type"] != "BOOKMARK"]
    assert types == ["ADDED", "MODIFIED", "DELETED"], types
    for e in evs:
        assert set(e) == {"type", "object"}
        items.append({"source": "watch " + e["type"], "kind": "WatchEvent", "object": e})
        items.append({"source": "watch %s object" % e["type"], "object": e["object"]})
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
    assert rvs == sorted(rvs)

    # refusals: 401, 403, 429 (throttled), 410 (an expired continue token, a watch too far back)
    st, s401 = cl.json(SEL, token="wrong")
    assert st == 401 and s401["code"] == 401 and s401["reason"] == "Unauthorized"
    items.append({"source": "401", "object": s401})
    api.set(deny=True)
    st, s403 = cl.json(SEL + "&limit=500")
    assert st == 403 and s403["reason"] == "Forbidden"
    assert s403["message"] == ('pods is forbidden: User "system:serviceaccount:ps:sensor" cannot '
                               'list resource "pods" in API group "" at the cluster scope')
    items.append({"source": "403", "object": s403})
    api.set(deny=False, throttle=1, retry_after=3)
    c, r = cl.get(SEL + "&limit=500")
    s429 = json.loads(r.read())
    c.close()
    assert r.status == 429 and r.getheader("Retry-After") == "3"
    assert s429["reason"] == "TooManyRequests" and s429["details"]["retryAfterSeconds"] == 3
    items.append({"source": "429", "object": s429})
    api.compact()
    st, s410 = cl.json(SEL + "&limit=500&continue=" + page["metadata"]["continue"])
    assert st == 410 and s410["code"] == 410 and s410["reason"] == "Expired"
    items.append({"source": "410 list", "object": s410})
    err = cl.watch(SEL + "&watch=1&resourceVersion=" + list_rv, lambda e: len(e) == 1)
    assert err[0]["type"] == "ERROR" and err[0]["object"]["code"] == 410
    items.append({"source": "watch ERROR", "kind": "WatchEvent", "object": err[0]})
    items.append({"source": "watch ERROR object", "object": err[0]["object"]})
    api.set(gone_as="http")
    st, s410w = cl.json(SEL + "&watch=1&resourceVersion=" + list_rv)
    assert st == 410 and s410w["code"] == 410
    items.append({"source": "410 watch", "object": s410w})

    assert validate(items) == []


def test_the_validator_catches_what_a_sloppy_stand_in_would_send(api):
    """The check can fail: an unknown field, a wrong type, a missing kind."""
    pod = api.make_pod("web-1", "shop", ips=["10.244.1.5"])
    bad_field = json.loads(json.dumps(pod))
    bad_field["status"]["podIp"] = "10.244.1.5"  # podIP misspelt
    bad_type = json.loads(json.dumps(pod))
    bad_type["spec"]["hostNetwork"] = "false"
    bad_status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "code": "410"}
    problems = validate([{"source": "field", "object": bad_field},
                         {"source": "type", "object": bad_type},
                         {"source": "status", "object": bad_status},
                         {"source": "event", "kind": "WatchEvent",
                          "object": {"type": "ADDED", "object": pod, "extra": 1}}])
    text = "\n".join(problems)
    for src in ("field", "type", "status", "event"):
        assert any(p.startswith(src + ":") for p in problems), text


def test_cli_protocol(tmp_path):
    """The process form e2e/test_pods.py drives: one JSON line per command."""
    p = subprocess.Popen(["/usr/bin/python3", str(REPO / "tests" / "lib" / "kubeapi.py"),
                          "--dir", str(tmp_path / "d"), "--node", "node1"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    try:
        info = json.loads(p.stdout.readline())
        assert info["url"].startswith("https://127.0.0.1:")
        assert os.path.exists(info["ca"]) and os.path.exists(info["token_file"])

        def cmd(**kw):
            p.stdin.write(json.dumps(kw) + "\n")
            p.stdin.flush()
            return json.loads(p.stdout.readline())
        r = cmd(cmd="add", name="pa", ns="shop", node="node1", labels={"app": "web"},
                ips=["10.244.1.2", "fd00::2"], hostNetwork=False, phase="Running")
        assert r["ok"] and r["pod"]["status"]["podIPs"] == [{"ip": "10.244.1.2"},
                                                             {"ip": "fd00::2"}]
        assert cmd(cmd="nonsense")["ok"] is False
        assert cmd(cmd="delete", ns="shop", name="nope")["ok"] is False
        assert cmd(cmd="stop")["ok"]
        assert cmd(cmd="start")["ok"]
        assert cmd(cmd="info")["url"] == info["url"]  # the same port after a restart
        assert [x["metadata"]["name"] for x in cmd(cmd="pods")["pods"]] == ["pa"]
        assert cmd(cmd="delete", ns="shop", name="pa")["ok"]
        assert cmd(cmd="quit")["ok"]
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
