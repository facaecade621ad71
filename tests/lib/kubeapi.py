#!/usr/bin/python3
"""A stand-in Kubernetes API server for tests: the pods resource only, over
HTTPS with a bearer token, speaking the real list/watch protocol.

    GET /api/v1/pods?fieldSelector=spec.nodeName=N&limit=L&continue=C
        -> PodList (paged; continue tokens expire with the history: 410)
    GET /api/v1/pods?...&watch=1&resourceVersion=RV&allowWatchBookmarks=true
        &timeoutSeconds=T
        -> 200, Transfer-Encoding: chunked, one JSON watch event per line:
           ADDED, MODIFIED, DELETED (the pod's last state), BOOKMARK (every
           bookmark_interval seconds when asked for), ERROR with a Status of
           code 410 when RV is older than the bounded history (or an HTTP 410,
           gone_as="http"); the stream ends cleanly after T seconds.
    401 for a wrong token, 403 in deny mode, 429 with Retry-After when
    throttling: real Status objects.

Faults: slow (each line dribbled in small pieces), stall (streams go
silent), drop (streams cut mid-line, no final chunk), stop/start (the same
port), rotate (a new token in the file; the old one refused), compact
(history forgotten: old resourceVersions and continue tokens get 410),
inject (any line, as is, into the watch streams).

Objects are full Pods as the API serves them; tests check them with the
project's strict schema validator (tests/integration/test_kubeapi_standin.py).

Use as a class (KubeAPI(dir).start()) or as a process driven by JSON lines:
    kubeapi.py --dir D --node node1
prints {"url", "ca", "token_file", "port", "node"}, then answers each stdin
line {"cmd": "add"|"modify"|"delete"|"stop"|"start"|"rotate"|"drop"|
"set"|"compact"|"inject"|"pods"|"requests"|"quit", ...} with one JSON line.
Standard library only (and tests/lib/certs.py).
"""
import argparse
import base64
import datetime
import json
import os
import socket
import socketserver
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from certs import Certs  # noqa: E402

SA = "system:serviceaccount:ps:sensor"


def now_ts():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code, reason, message, details=None):
    s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
         "message": message, "reason": reason, "code": code}
    if details is not None:
        s["details"] = details
    return s


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True


class KubeAPI:
    def __init__(self, directory, node="node1", node_ip="192.168.50.1", history=1000,
                 page_size=None, bookmark_interval=1.0):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.node = node
        self.node_ip = node_ip
        c = Certs(self.dir / "certs")
        self.ca, _ = c.ca("kube-ca")
        self.cert, self.key = c.leaf("kube-ca", "apiserver", cn="kube-apiserver",
                                     dns=["localhost", "kubernetes.default.svc"],
                                     ips=["127.0.0.1", "::1"])
        self.token_file = self.dir / "token"
        self.token = None
        self._write_token()
        self.lock = threading.Condition()
        self.rv = 100               # the last resourceVersion handed out
        self.pods = {}              # (ns, name) -> Pod
        self.events = []            # (rv, type, Pod), oldest first, bounded
        self.compacted = self.rv    # watches from below this get 410
        self.history = history
        self.page_size = page_size  # caps the client's limit (the API may send fewer)
        self.bookmark_interval = bookmark_interval
        self.deny = False           # 403 for every pod request
        self.throttle = 0           # answer this many pod requests 429 (APF) ...
        self.retry_after = 1        # ... with this Retry-After (seconds)
        self.gone_as = "event"      # or "http"
        self.slow = 0.0             # seconds between pieces of a line
        self.slow_piece = 7
        self.stall = False
        self.drop_gen = 0
        self.requests = []          # what was asked: method, path, query, auth
        self.port = 0
        self.srv = None
        self.thread = None
        self.conns = set()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(self.cert), str(self.key))

    # ---- state ------------------------------------------------------------

    def _write_token(self):
        self.token = base64.urlsafe_b64encode(os.urandom(48)).decode().rstrip("=")
        tmp = self.dir / ".token.tmp"
        tmp.write_text(self.token + "\n")
        os.replace(tmp, self.token_file)  # as the kubelet swaps a projected token

    def rotate(self):
        """A new token in the file; the old one is refused from now on."""
        with self.lock:
            self._write_token()
        return self.token

    def _bump(self, typ, pod):
        self.rv += 1
        pod["metadata"]["resourceVersion"] = str(self.rv)
        self.events.append((self.rv, typ, json.loads(json.dumps(pod))))
        while len(self.events) > self.history:
            self.compacted = self.events.pop(0)[0]
        self.lock.notify_all()

    def make_pod(self, name, ns, node=None, labels=None, ips=(), hostNetwork=False,
                 phase="Running"):
        node = node or self.node
        ts = now_ts()
        ips = list(ips) or ([self.node_ip] if hostNetwork else [])
        running = phase == "Running"
        cond = "True" if running else "False"
        pod = {
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {
                "name": name, "namespace": ns, "uid": str(uuid.uuid4()),
                "resourceVersion": "0", "creationTimestamp": ts,
                "labels": dict(labels or {}),
                "annotations": {"kubernetes.io/psp": "stand-in"},
            },
            "spec": {
                "containers": [{
                    "name": "app", "image": "registry.k8s.io/pause:3.9",
                    "imagePullPolicy": "IfNotPresent", "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                }],
                "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirstWithHostNet" if hostNetwork else "ClusterFirst",
                "serviceAccountName": "default", "nodeName": node,
                "hostNetwork": bool(hostNetwork), "securityContext": {},
                "schedulerName": "default-scheduler", "priority": 0,
                "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority",
                "tolerations": [
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                     "effect": "NoExecute", "tolerationSeconds": 300},
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                     "effect": "NoExecute", "tolerationSeconds": 300}],
            },
            "status": {
                "phase": phase,
                "conditions": [
                    {"type": t, "status": "True" if t == "PodScheduled" else cond,
                     "lastTransitionTime": ts}
                    for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
                "hostIP": self.node_ip, "hostIPs": [{"ip": self.node_ip}],
                "startTime": ts, "qosClass": "BestEffort",
                "containerStatuses": [{
                    "name": "app", "ready": running, "restartCount": 0,
                    "image": "registry.k8s.io/pause:3.9",
                    "imageID": "registry.k8s.io/pause@sha256:" + "7031c1b283388d2c" * 4,
                    "containerID": "containerd://" + uuid.uuid4().hex * 2,
                    "started": running,
                    "state": ({"running": {"startedAt": ts}} if running else
                              {"waiting": {"reason": "ContainerCreating"}}),
                }],
            },
        }
        if ips:
            pod["status"]["podIP"] = ips[0]
            pod["status"]["podIPs"] = [{"ip": ip} for ip in ips]
        return pod

    def add(self, name, ns, node=None, labels=None, ips=(), hostNetwork=False,
            phase="Running"):
        pod = self.make_pod(name, ns, node, labels, ips, hostNetwork, phase)
        with self.lock:
            old = self.pods.get((ns, name))
            if old:  # the same name again: a new pod (new uid) replaces it
                self._delete_locked(ns, name)
            self.pods[(ns, name)] = pod
            self._bump("ADDED", pod)
            return json.loads(json.dumps(pod))

    def modify(self, name, ns, labels=None, phase=None, ips=None):
        with self.lock:
            pod = self.pods[(ns, name)]
            if labels is not None:
                pod["metadata"]["labels"] = dict(labels)
            if phase is not None:
                pod["status"]["phase"] = phase
            if ips is not None:
                pod["status"]["podIP"] = ips[0]
                pod["status"]["podIPs"] = [{"ip": ip} for ip in ips]
            self._bump("MODIFIED", pod)
            return json.loads(json.dumps(pod))

    def _delete_locked(self, ns, name):
        pod = self.pods.pop((ns, name))
        pod["metadata"]["deletionTimestamp"] = now_ts()
        pod["metadata"]["deletionGracePeriodSeconds"] = 0
        self._bump("DELETED", pod)
        return pod

    def delete(self, name, ns):
        with self.lock:
            return json.loads(json.dumps(self._delete_locked(ns, name)))

    def inject(self, line):
        """Sends line (text, as is) to every watch stream: what a broken or
        hostile server might say. It takes a resourceVersion of its own."""
        with self.lock:
            self.rv += 1
            self.events.append((self.rv, "RAW", line))
            self.lock.notify_all()

    def compact(self):
        """Forgets the history: every older resourceVersion is now 410."""
        with self.lock:
            self.events.clear()
            self.compacted = self.rv
            self.lock.notify_all()

    def drop(self):
        """Cuts every open watch stream in the middle of a line."""
        with self.lock:
            self.drop_gen += 1
            self.lock.notify_all()

    def set(self, **kw):
        with self.lock:
            for k, v in kw.items():
                if k not in ("deny", "throttle", "retry_after", "gone_as", "slow", "slow_piece", "stall", "page_size",
                             "bookmark_interval", "history"):
                    raise KeyError(k)
                setattr(self, k, v)
            self.lock.notify_all()

    def pod_list_at(self, node):
        with self.lock:
            return sorted((p for p in self.pods.values()
                           if node is None or p["spec"]["nodeName"] == node),
                          key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"]))

    # ---- server -------------------------------------------------------------

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.port

    def start(self):
        api = self

        class H(Handler):
            pass
        H.api = api
        self.srv = _Server(("127.0.0.1", self.port), H)
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        """Closes the port and every connection (the API server goes away)."""
        if not self.srv:
            return
        self.srv.shutdown()
        self.srv.server_close()
        with self.lock:
            conns = list(self.conns)
            self.drop_gen += 1
            self.lock.notify_all()
        for s in conns:
            try:
                # the plain socket's shutdown: the TLS object stays with its thread
                socket.socket.shutdown(s, socket.SHUT_RDWR)
            except OSError:
                pass
        self.srv = None

    def info(self):
        return {"url": self.url, "ca": str(self.ca), "token_file": str(self.token_file),
                "port": self.port, "node": self.node, "rv": self.rv}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api = None

    def setup(self):
        raw = self.request
        self.raw = raw
        with self.api.lock:
            self.api.conns.add(raw)
        raw.settimeout(30)
        try:
            self.request = self.api.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            self.request = None
            self.connection = None
            return
        finally:
            with self.api.lock:
                self.api.conns.discard(raw)
        self.raw = self.request  # raw is detached now: the TLS socket owns the fd
        with self.api.lock:
            self.api.conns.add(self.raw)
        self.connection = self.request
        super().setup()

    def handle(self):
        if self.request is None:
            return
        try:
            super().handle()
        except (ssl.SSLError, OSError):
            pass

    def finish(self):
        with self.api.lock:
            self.api.conns.discard(self.raw)
        if self.request is not None:
            try:
                super().finish()
            except (ssl.SSLError, OSError):
                pass
            self.request.close()

    def log_message(self, fmt, *args):
        sys.stderr.write("kubeapi: " + (fmt % args) + "\n")

    def send_json(self, code, obj, headers=()):
        body = json.dumps(obj).encode()
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        api = self.api
        u = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(u.query, keep_blank_values=True).items()}
        auth = self.headers.get("Authorization", "")
        ok = auth == "Bearer " + api.token
        with api.lock:
            api.requests.append({"path": u.path, "query": q, "auth_ok": ok,
                                 "t": time.time()})
        if not ok:
            return self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
        if u.path != "/api/v1/pods":
            return self.send_json(404, status(404, "NotFound", "the server could not find "
                                              "the requested resource"))
        watch = q.get("watch") in ("1", "true")
        verb = "watch" if watch else "list"
        with api.lock:
            throttled = api.throttle > 0
            if throttled:
                api.throttle -= 1
            ra = api.retry_after
        if throttled:
            # what API Priority and Fairness answers a client over its share
            return self.send_json(429, status(
                429, "TooManyRequests", "Too many requests, please try again later.",
                {"retryAfterSeconds": ra}), [("Retry-After", str(ra))])
        if api.deny:
            return self.send_json(403, status(
                403, "Forbidden",
                'pods is forbidden: User "%s" cannot %s resource "pods" in API group "" at '
                'the cluster scope' % (SA, verb), {"kind": "pods"}))
        node = None
        fs = q.get("fieldSelector", "")
        if fs:
            if not fs.startswith("spec.nodeName="):
                return self.send_json(400, status(400, "BadRequest",
                                                  "unsupported field selector %s" % fs))
            node = fs[len("spec.nodeName="):]
        if watch:
            return self.watch(node, q)
        return self.list(node, q)

    def list(self, node, q):
        api = self.api
        limit = int(q.get("limit") or 0)
        if api.page_size:
            limit = min(limit or api.page_size, api.page_size)
        start, list_rv = "", None
        if q.get("continue"):
            try:
                c = json.loads(base64.b64decode(q["continue"]))
                start, list_rv = c["start"], int(c["rv"])
            except (ValueError, KeyError, TypeError):
                return self.send_json(400, status(400, "BadRequest",
                                                  "continue key is not valid"))
            with api.lock:
                expired = list_rv < api.compacted
            if expired:
                return self.send_json(410, status(
                    410, "Expired", "The provided continue parameter is too old to display a "
                    "consistent list result. You can start a new list without the continue "
                    "parameter."))
        with api.lock:
            pods = api.pod_list_at(node)
            rv = list_rv if list_rv is not None else api.rv
        pods = [p for p in pods if "%s/%s" % (p["metadata"]["namespace"],
                                              p["metadata"]["name"]) > start]
        md = {"resourceVersion": str(rv)}
        if limit and len(pods) > limit:
            pods = pods[:limit]
            last = pods[-1]["metadata"]
            md["continue"] = base64.b64encode(json.dumps(
                {"v": "meta.k8s.io/v1", "rv": rv,
                 "start": "%s/%s" % (last["namespace"], last["name"])}).encode()).decode()
        self.send_json(200, {"kind": "PodList", "apiVersion": "v1", "metadata": md,
                             "items": pods})

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def line(self, obj, cut=False):
        data = (json.dumps(obj) + "\n").encode()
        if cut:
            self.chunk(data[:len(data) // 2])
            raise ConnectionAbortedError("cut")
        api = self.api
        if api.slow:
            for i in range(0, len(data), api.slow_piece):
                self.chunk(data[i:i + api.slow_piece])
                time.sleep(api.slow)
        else:
            self.chunk(data)

    def watch(self, node, q):
        api = self.api
        rv_s = q.get("resourceVersion", "")
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(q.get("timeoutSeconds") or 1800)
        deadline = time.time() + timeout
        with api.lock:
            gone = rv_s not in ("", "0") and int(rv_s) < api.compacted
            gone_as = api.gone_as
            cur = api.compacted
            gen = api.drop_gen
        if gone and gone_as == "http":
            return self.send_json(410, status(410, "Expired", "too old resource version: %s (%d)"
                                              % (rv_s, cur)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.end_headers()
        self.close_connection = True
        if gone:
            self.line({"type": "ERROR", "object": status(
                410, "Expired", "too old resource version: %s (%d)" % (rv_s, cur))})
            self.chunk(b"")
            return
        pending = []
        with api.lock:
            if rv_s in ("", "0"):  # "from now", with the current state first
                pos = api.rv
                pending = [("ADDED", p) for p in api.pod_list_at(node)]
            else:
                pos = int(rv_s)
        last_bm = time.time()
        while True:
            with api.lock:
                while True:
                    if api.drop_gen != gen:
                        cut = True
                        break
                    cut = False
                    new = [(t, p) for r, t, p in api.events
                           if r > pos and (t == "RAW" or node is None or
                                           p["spec"]["nodeName"] == node)]
                    pos = max(pos, api.rv)  # every event up to api.rv is in pending
                    pending += [(t, json.loads(json.dumps(p))) for t, p in new]
                    t = time.time()
                    if api.stall:
                        api.lock.wait(0.2)
                        continue
                    if pending or t >= deadline:
                        break
                    if bookmarks and t - last_bm >= api.bookmark_interval:
                        break
                    wake = deadline
                    if bookmarks:
                        wake = min(wake, last_bm + api.bookmark_interval)
                    api.lock.wait(max(0.01, wake - t))
                bm_rv = pos
            if cut:
                self.line({"type": "MODIFIED", "object": {"kind": "Pod", "apiVersion": "v1",
                                                          "metadata": {"name": "cut"}}},
                          cut=True)
            for t, p in pending:
                if t == "RAW":
                    self.chunk(p.encode() + b"\n")
                else:
                    self.line({"type": t, "object": p})
            pending = []
            if time.time() >= deadline:
                self.chunk(b"")
                return
            if bookmarks and time.time() - last_bm >= api.bookmark_interval:
                last_bm = time.time()
                self.line({"type": "BOOKMARK", "object": {
                    "kind": "Pod", "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(bm_rv), "annotations": {
                        "k8s.io/initial-events-end": "true"}}}})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--node", default="node1")
    ap.add_argument("--node-ip", default="192.168.50.1")
    ap.add_argument("--page-size", type=int, default=None)
    ap.add_argument("--history", type=int, default=1000)
    ap.add_argument("--bookmark-interval", type=float, default=1.0)
    a = ap.parse_args()
    api = KubeAPI(a.dir, node=a.node, node_ip=a.node_ip, history=a.history,
                  page_size=a.page_size, bookmark_interval=a.bookmark_interval).start()
    print(json.dumps(api.info()), flush=True)
    for raw in sys.stdin:
        try:
            c = json.loads(raw)
            cmd = c.pop("cmd")
            out = {"ok": True}
            if cmd == "add":
                out["pod"] = api.add(c["name"], c["ns"], c.get("node"), c.get("labels"),
                                     c.get("ips", ()), c.get("hostNetwork", False),
                                     c.get("phase", "Running"))
            elif cmd == "modify":
                out["pod"] = api.modify(c["name"], c["ns"], c.get("labels"), c.get("phase"),
                                        c.get("ips"))
            elif cmd == "delete":
                out["pod"] = api.delete(c["name"], c["ns"])
            elif cmd == "stop":
                api.stop()
            elif cmd == "start":
                api.start()
            elif cmd == "rotate":
                api.rotate()
            elif cmd == "drop":
                api.drop()
            elif cmd == "inject":
                api.inject(c["line"])
            elif cmd == "compact":
                api.compact()
            elif cmd == "set":
                api.set(**c)
            elif cmd == "pods":
                out["pods"] = api.pod_list_at(c.get("node"))
            elif cmd == "requests":
                with api.lock:
                    out["requests"] = list(api.requests)
            elif cmd == "info":
                out.update(api.info())
            elif cmd == "quit":
                print(json.dumps(out), flush=True)
                api.stop()
                return
            else:
                out = {"ok": False, "error": "unknown command %s" % cmd}
        except Exception as e:  # answer, do not die: the test reads one line per command
            out = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
        print(json.dumps(out), flush=True)
    api.stop()


if __name__ == "__main__":
    main()
