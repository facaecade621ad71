"""Capture jobs on the receiver (docs/http.md "Capture jobs", docs/protocol.md
section 12): the HTTP API and its validation, JOB_START to protocol v2
sensors (connected and connecting later, never to v1 ones), job records in
their own job-NAME-*.pcapng file set byte for byte and not in the main
files, the packet limit, resuming after a receiver restart, the
Alertmanager webhook, and hostile JOB_STATUS frames. The sensors here are
tests/lib/psclient.py speaking v2; the sensor side (real captures, preroll)
is tested in e2e/."""

import http.client
import json
import re
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

from conftest import SCALE, pcaplib, read_outputs
from http_helpers import http_args, wait_http_up, wait_metric

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import psclient  # noqa: E402

T0 = 1_700_000_000_000_000_000


def req(port, method, path, body=None):
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    headers = {"Content-Type": "application/json"} if data is not None else {}
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10 * SCALE)
    try:
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        raw = r.read()
        try:
            return r.status, json.loads(raw)
        except ValueError:
            return r.status, raw
    finally:
        c.close()


def recs(n, seed, iface=0, size=80):
    return [pcaplib.Record(iface, T0 + seed * 1_000_000 + i, size, size + 4,
                           bytes([(seed + i) & 0xFF]) * size) for i in range(n)]


def batch_mixed(seq, parts):
    """One BATCH of (iface, records) parts, interleaved in order given."""
    raw = b"".join(psclient.records_bytes([r], iface) for iface, rr in parts for r in rr)
    n = sum(len(rr) for _, rr in parts)
    return psclient.frame(psclient.T_BATCH, psclient.batch_payload(seq, raw, n))


def job_files(outdir, name):
    return sorted(p for p in Path(outdir).iterdir()
                  if p.name.startswith("job-%s-" % name) and p.name.endswith(".pcapng"))


def main_files(outdir):
    return sorted(p for p in Path(outdir).iterdir()
                  if p.name.startswith("packetstreamer") and p.name.endswith(".pcapng"))


def start_rx(env, outdir=None, extra_env=None, port=None):
    rport, rargs = http_args(port)
    rx = env.receiver(outdir=outdir, args=rargs, env=extra_env)
    wait_http_up(rport)
    return rx, rport


def v2(rx, sid, session=None):
    c = psclient.Client("127.0.0.1", rx.port)
    kind, fields = c.hello(sid, version=(1, 2), session=session)
    assert kind == "ACCEPT", (kind, fields, rx.stderr)
    assert fields[0] == 2, fields
    return c


def wait_job(port, jid, pred, timeout=10):
    deadline = time.monotonic() + timeout * SCALE
    j = None
    while time.monotonic() < deadline:
        st, j = req(port, "GET", "/api/jobs/%d" % jid)
        assert st == 200, j
        if pred(j):
            return j
        time.sleep(0.1)
    raise AssertionError("job never got there: %r" % (j,))


def test_validation_and_crud(env):
    rx, port = start_rx(env, extra_env={"PACKETSTREAMER_JOBS_MAX_DURATION_SEC": "600"})
    bad = [
        ({"name": "x", "duration": "abc"}, "duration"),
        ({"name": "x", "duration": 0}, "duration"),
        ({"name": "x", "duration": -5}, "duration"),
        ({"name": "x", "duration": "601s"}, "duration"),
        ({"name": "x", "duration": "11m"}, "duration"),
        ({"name": "Bad_Name"}, "name"),
        ({"name": "x" * 64}, "name"),
        ({"duration": 5}, "name"),
        ({"name": "x", "filter": "tcp port"}, "filter"),
        ({"name": "x", "filter": "nosuchkeyword 7"}, "filter"),
        ({"name": "x", "colour": "red"}, "colour"),
        ({"name": "x", "selector": {"pod": ["a/b"]}}, "selector.pod"),
        ({"name": "x", "selector": {"pods": ["nopod"]}}, "selector.pods"),
        ({"name": "x", "selector": {"namespaces": "shop"}}, "selector.namespaces"),
        ({"name": "x", "packets": -1}, "packets"),
        ({"name": "x", "preroll": 3601}, "preroll"),
    ]
    for body, field in bad:
        st, j = req(port, "POST", "/api/jobs", body)
        assert st == 400, (body, st, j)
        assert j["field"] == field, (body, j)
    # libpcap's own message is passed on
    st, j = req(port, "POST", "/api/jobs", {"name": "x", "filter": "tcp port"})
    assert "syntax error" in j["error"], j
    st, j = req(port, "POST", "/api/jobs", {"name": "x", "duration": "11m"})
    assert "600" in j["error"], j
    st, j = req(port, "POST", "/api/jobs", b"{not json")
    assert st == 400
    assert req(port, "GET", "/api/jobs")[1] == []

    st, j = req(port, "POST", "/api/jobs", {
        "name": "web-1", "selector": {"sensors": ["node-*"], "namespaces": ["shop", "pay"],
                                      "pods": ["shop/api-1"], "labelSelector": "app=web",
                                      "interfaces": ["eth*"]},
        "filter": "tcp port 443", "duration": "2m", "packets": 100, "bytes": 10000, "preroll": 10})
    assert st == 201, j
    jid = j["id"]
    assert j["state"] == "running" and j["duration"] == 120 and j["preroll"] == 10
    assert j["selector"]["pods"] == ["shop/api-1"] and j["selector"]["namespaces"] == ["shop", "pay"]
    # a second job by the same name while it runs: 409
    st, j2 = req(port, "POST", "/api/jobs", {"name": "web-1"})
    assert st == 409 and j2["field"] == "name"
    st, lst = req(port, "GET", "/api/jobs")
    assert [x["id"] for x in lst] == [jid]
    assert (Path(rx.outdir) / ".jobs" / ("%d.json" % jid)).is_file()
    st, j = req(port, "DELETE", "/api/jobs/%d" % jid)
    assert st == 200 and j["state"] == "stopped" and j["reason"] == "deleted"
    assert req(port, "GET", "/api/jobs/%d" % jid)[1]["state"] == "stopped"
    assert req(port, "GET", "/api/jobs/999")[0] == 404
    assert req(port, "DELETE", "/api/jobs/abc")[0] == 404
    # the name is free again; ids are never reused
    st, j = req(port, "POST", "/api/jobs", {"name": "web-1"})
    assert st == 201 and j["id"] > jid and j["duration"] == 60
    # other methods and paths
    assert req(port, "PUT", "/api/jobs", {"name": "y"})[0] == 405
    assert req(port, "POST", "/api/nothing", {})[0] == 404
    wait_metric(port, 'packetstreamer_receiver_jobs{state="running"}', 1)
    wait_metric(port, 'packetstreamer_receiver_jobs{state="stopped"}', 1)
    rx.stop()


def test_job_pushed_written_and_limited(env):
    rx, port = start_rx(env)
    a = v2(rx, "node-a")
    old = psclient.Client("127.0.0.1", rx.port)  # a v1 sensor: never sees job frames
    assert old.hello("node-old")[0] == "ACCEPT"
    other = v2(rx, "edge-1")  # does not match the sensor selector
    st, j = req(port, "POST", "/api/jobs", {"name": "lim", "selector": {"sensors": ["node-*"]},
                                            "filter": "tcp", "packets": 5, "duration": 60,
                                            "preroll": 7})
    assert st == 201, j
    jid = j["id"]
    kind, js = a.read_job_frame()
    assert kind == "START", (kind, js)
    assert js["job"] == jid and js["name"] == "lim" and js["filter"] == "tcp"
    assert js["max_packets"] == 5 and js["preroll_sec"] == 7 and js["reserved"] == 0
    assert js["end_ns"] - js["start_ns"] == 60 * 10**9 and js["trailing"] == 0

    cont = recs(3, 1)
    jobr = recs(8, 50, size=100)
    a.iface(0, "eth0", job=0)
    a.iface(1, "eth0", job=jid)
    a.send(batch_mixed(1, [(0, cont[:2]), (1, jobr[:3]), (0, cont[2:])]))
    a.wait_ack(1)
    a.send(batch_mixed(2, [(1, jobr[3:])]))
    a.wait_ack(2)
    # the limit stops the job everywhere it runs
    kind, stopped = a.read_job_frame()
    assert (kind, stopped) == ("STOP", jid)
    a.job_status(jid, psclient.JOB_STOPPED, packets=8, nbytes=800, drops=1)
    j = wait_job(port, jid, lambda j: j["sensors"].get("node-a", {}).get("state") == "stopped")
    assert j["state"] == "finished" and j["reason"] == "packets", j
    assert j["packets_written"] == 5 and j["packets_over_limit"] == 3
    assert j["sensors"]["node-a"]["packets"] == 8 and j["sensors"]["node-a"]["drops"] == 1
    assert j["sensors"]["node-a"]["packets_written"] == 5

    # a sensor that was away when the job stopped is told on its return
    back = v2(rx, "node-back")
    assert back.read_job_frame() == ("STOP", jid)
    back.close()
    # a sensor that connects while a job runs gets it at once
    st, j2 = req(port, "POST", "/api/jobs", {"name": "later", "duration": 60})
    kind, js2 = a.read_job_frame()
    assert kind == "START" and js2["job"] == j2["id"]
    late = v2(rx, "node-late")
    kind, js3 = late.read_job_frame()
    assert kind == "START" and js3["job"] == j2["id"] and js3["name"] == "later"
    # edge-1 got only "later" (no sensor selector), never "lim"
    kind, e1 = other.read_job_frame()
    assert kind == "START" and e1["job"] == j2["id"]

    # the v1 sensor: its session works and no job frame ever arrived
    old.iface(0, "eth0")
    old.batch(1, recs(2, 90))
    old.wait_ack(1)
    assert old.jobs == [] and old.read_job_frame(timeout=1) is None

    for c, last in ((a, 2), (old, 1)):
        c.bye(last)
        c.close()
    late.close()
    other.close()
    st, _ = req(port, "DELETE", "/api/jobs/%d" % j2["id"])
    time.sleep(0.5)
    rx.stop()
    got = read_outputs(job_files(rx.outdir, "lim"))
    assert [(g[0], g[4]) for g in got] == [("node-a/eth0", r.data) for r in jobr[:5]]
    assert [(g[1], g[2], g[3]) for g in got] == [(r.ts_ns, r.caplen, r.origlen) for r in jobr[:5]]
    mains = read_outputs(main_files(rx.outdir))
    assert sorted(g[4] for g in mains) == sorted(r.data for r in cont + recs(2, 90))
    st = json.loads((Path(rx.outdir) / ".jobs" / ("%d.json" % jid)).read_text())
    assert st["files"] == [p.name for p in job_files(rx.outdir, "lim")]


def test_restart_resumes_job(env):
    rx, port = start_rx(env)
    st, j = req(port, "POST", "/api/jobs", {"name": "resume", "duration": 120})
    jid = j["id"]
    a = v2(rx, "node-r", session=77)
    kind, js = a.read_job_frame()
    assert kind == "START" and js["job"] == jid
    first = recs(4, 5)
    a.iface(3, "eth1", job=jid)
    a.send(batch_mixed(1, [(3, first)]))
    a.wait_ack(1)
    a.close()
    outdir = rx.outdir
    rx.stop()
    rx2, port2 = start_rx(env, outdir=outdir)
    st, j = req(port2, "GET", "/api/jobs/%d" % jid)
    assert st == 200 and j["state"] == "running" and j["packets_written"] == 4, j
    b = v2(rx2, "node-r", session=77)
    kind, js = b.read_job_frame()
    assert kind == "START"
    assert js["job"] == jid and js["name"] == "resume"
    second = recs(3, 9)
    b.iface(3, "eth1", job=jid)
    b.send(batch_mixed(2, [(3, second)]))
    b.wait_ack(2)
    b.bye(2)
    b.close()
    wait_job(port2, jid, lambda j: j["packets_written"] == 7)
    req(port2, "DELETE", "/api/jobs/%d" % jid)
    time.sleep(0.5)
    rx2.stop()
    got = read_outputs(job_files(outdir, "resume"))
    assert [g[4] for g in got] == [r.data for r in first + second]
    assert all(g[0] == "node-r/eth1" for g in got)


def test_job_ended_while_down_is_finished(env):
    rx, port = start_rx(env)
    st, j = req(port, "POST", "/api/jobs", {"name": "short", "duration": 1})
    rx.stop()
    time.sleep(1.5)
    rx2, port2 = start_rx(env, outdir=rx.outdir)
    st, j2 = req(port2, "GET", "/api/jobs/%d" % j["id"])
    assert j2["state"] == "finished" and j2["reason"] == "duration", j2
    a = v2(rx2, "node-z")
    assert a.read_job_frame(timeout=1) is None
    a.close()
    rx2.stop()


ALERT = {
    "version": "4", "groupKey": "{}:{alertname=\"HighLatency\"}", "truncatedAlerts": 0,
    "status": "firing", "receiver": "packetstreamer",
    "groupLabels": {"alertname": "HighLatency"},
    "commonLabels": {"alertname": "HighLatency", "namespace": "shop"},
    "commonAnnotations": {"summary": "p99 above 1s"},
    "externalURL": "http://alertmanager:9093",
    "alerts": [
        {"status": "firing",
         "labels": {"alertname": "HighLatency", "namespace": "shop", "pod": "api-7d4b9",
                    "severity": "page"},
         "annotations": {"summary": "p99 above 1s"},
         "startsAt": "2026-12-05T07:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
         "generatorURL": "http://prometheus/graph", "fingerprint": "c6a1c0ffee12ab34"},
        {"status": "resolved",
         "labels": {"alertname": "HighLatency", "namespace": "shop", "pod": "web-1"},
         "annotations": {}, "startsAt": "2026-12-05T06:00:00Z",
         "endsAt": "2026-12-05T06:30:00Z", "generatorURL": "", "fingerprint": "0000aaaa1111bbbb"},
    ],
}


def test_alertmanager_webhook(env):
    rx, port = start_rx(env, extra_env={"PACKETSTREAMER_JOBS_ALERTMANAGER_DURATION_SEC": "90",
                                        "PACKETSTREAMER_JOBS_ALERTMANAGER_PREROLL_SEC": "20"})
    a = v2(rx, "node-1")
    st, r = req(port, "POST", "/api/alertmanager", ALERT)
    assert st == 200, r
    assert len(r["started"]) == 1 and r["skipped"] == ["0000aaaa1111bbbb"], r
    j = r["started"][0]
    assert j["name"] == "highlatency-c6a1c0ffee12ab34"
    assert j["selector"]["namespaces"] == ["shop"] and j["selector"]["pods"] == ["shop/api-7d4b9"]
    assert j["duration"] == 90 and j["preroll"] == 20 and j["filter"] == ""
    assert j["fingerprint"] == "c6a1c0ffee12ab34"
    kind, js = a.read_job_frame()
    assert kind == "START" and js["pods"] == "shop/api-7d4b9" and js["namespaces"] == "shop"
    assert js["preroll_sec"] == 20
    # Alertmanager repeats notifications: the same alert does not start twice
    st, r = req(port, "POST", "/api/alertmanager", ALERT)
    assert r["started"] == [] and "c6a1c0ffee12ab34" in r["skipped"]
    st, lst = req(port, "GET", "/api/jobs")
    assert len(lst) == 1
    assert req(port, "POST", "/api/alertmanager", {"version": "4"})[0] == 400
    a.close()
    rx.stop()


def test_hostile_job_status(env):
    rx, port = start_rx(env)
    a = v2(rx, "node-h")
    a.job_status(4242, psclient.JOB_RUNNING, packets=1)  # unknown job: counted, ignored
    a.iface(0, "eth0", job=0)
    a.iface(1, "eth0", job=999)  # an unknown job's interface: records dropped
    good = recs(3, 3)
    a.send(batch_mixed(1, [(0, good), (1, recs(2, 7))]))
    a.wait_ack(1)
    wait_metric(port, "packetstreamer_receiver_job_status_unknown_total", 1)
    wait_metric(port, 'packetstreamer_receiver_job_packets_dropped_total{reason="unknown_job"}', 2)
    # an oversized message is a protocol error: this connection only
    b = v2(rx, "node-bad")
    b.send_frame(psclient.T_JOB_STATUS,
                 struct.pack(">QIIQQQH", 1, 1, 0, 0, 0, 0, 2000) + b"x" * 2000)
    assert b.closed_by_peer()
    # JOB_STATUS in a v1 session is an unknown type there
    c = psclient.Client("127.0.0.1", rx.port)
    assert c.hello("node-v1")[0] == "ACCEPT"
    c.send_frame(psclient.T_JOB_STATUS, psclient.job_status_payload(1, 1))
    assert c.closed_by_peer()
    a.batch(2, recs(2, 11))
    a.wait_ack(2)
    a.bye(2)
    a.close()
    rx.stop()
    assert "bad_type" in rx.stderr or "job_status frame in a protocol v1" in rx.stderr
    mains = read_outputs(main_files(rx.outdir))
    assert [g[4] for g in mains] == [r.data for r in good + recs(2, 11)]


def cli(env, args):
    """(rc, stderr, stdout) of a packetstreamer command."""
    rc, err = env.run(args)
    return rc, err, env.last_stdout


def test_cli_job_start_list_stop(env):
    rx, port = start_rx(env, extra_env={"PACKETSTREAMER_JOBS_MAX_DURATION_SEC": "600"})
    url = ["--receiver", "http://127.0.0.1:%d" % port]
    a = v2(rx, "node-c")
    rc, err, out = cli(env, [str(env.binary), "job", "start", "cli-1", "--pod", "shop/api-1",
                            "--namespace", "shop", "--sensor", "node-*", "--iface", "eth*",
                            "--label-selector", "app=web", "--filter", "udp port 53",
                            "--duration", "90s", "--packets", "10", "--preroll", "5",
                            "--json"] + url)
    assert rc == 0, err
    j = json.loads(out)
    assert j["name"] == "cli-1" and j["duration"] == 90 and j["packets"] == 10
    assert j["selector"] == {"sensors": ["node-*"], "namespaces": ["shop"], "pods": ["shop/api-1"],
                             "labelSelector": "app=web", "interfaces": ["eth*"]}
    kind, js = a.read_job_frame()
    assert kind == "START" and js["filter"] == "udp port 53" and js["interfaces"] == "eth*"
    rc, err, out = cli(env, [str(env.binary), "job", "list"] + url)
    assert rc == 0 and "cli-1" in out and "running" in out, (out, err)
    # the receiver's refusal, naming the field, exit 1
    rc, err, out = cli(env, [str(env.binary), "job", "start", "cli-2", "--duration", "1h"] + url)
    assert rc == 1 and "[duration]" in err and "600" in err, err
    rc, err, out = cli(env, [str(env.binary), "job", "start", "cli-2", "--filter", "tcp port"] + url)
    assert rc == 1 and "[filter]" in err and "syntax error" in err, err
    rc, err, out = cli(env, [str(env.binary), "job", "stop", str(j["id"])] + url)
    assert rc == 0 and "stopped" in out, (out, err)
    kind, stop = a.read_job_frame()
    assert (kind, stop) == ("STOP", j["id"])
    rc, err, out = cli(env, [str(env.binary), "job", "list", str(j["id"])] + url)
    assert rc == 0 and json.loads(out)["state"] == "stopped"
    # usage errors: 2
    assert cli(env, [str(env.binary), "job", "start"] + url)[0] == 2
    assert cli(env, [str(env.binary), "job", "frob"] + url)[0] == 2
    assert cli(env, [str(env.binary), "job", "stop", "abc"] + url)[0] == 2
    assert cli(env, [str(env.binary), "job", "start", "x", "--pod", "nopod"] + url)[0] == 2
    a.close()
    rx.stop()


def test_kubectl_plugin_job_verbs(env):
    """The plugin's job verbs, with --receiver (no port-forward): TARGET becomes
    the job's selector; get/live/status keep their parsing."""
    rx, port = start_rx(env)
    plugin = str(Path(__file__).resolve().parents[2] / "scripts" / "kubectl-packetstreamer")
    penv = {"PACKETSTREAMER_BIN": str(env.binary), "KUBECTL": "/bin/false"}
    url = ["--receiver", "http://127.0.0.1:%d" % port]

    def run(*args):
        p = subprocess.run([plugin] + list(args), capture_output=True, text=True,
                           env=dict(os.environ, **penv), timeout=60 * SCALE)
        return p.returncode, p.stdout, p.stderr

    rc, out, err = run("job", "start", "pl-1", "pod/api-7d4b9", "-n", "shop", "--filter", "tcp",
                       "--duration", "45s", "--preroll", "3", "--json", *url)
    assert rc == 0, err
    j = json.loads(out)
    assert j["selector"]["pods"] == ["shop/api-7d4b9"] and j["filter"] == "tcp"
    assert j["duration"] == 45 and j["preroll"] == 3
    rc, out, err = run("job", "start", "pl-2", "node/node-9", *url)
    assert rc == 0, err
    rc, out, err = run("job", "list", *url)
    assert rc == 0 and "pl-1" in out and "pl-2" in out, (out, err)
    rc, out, err = run("job", "list", str(j["id"]), *url)
    assert rc == 0 and json.loads(out)["name"] == "pl-1"
    rc, out, err = run("job", "stop", str(j["id"]), *url)
    assert rc == 0 and "stopped" in out, (out, err)
    st, j2 = req(port, "GET", "/api/jobs/%d" % (j["id"] + 1))
    assert j2["selector"]["sensors"] == ["node-9"]
    assert run("job", *url)[0] == 2
    assert run("job", "frob", *url)[0] == 2
    assert run("job", "stop", *url)[0] == 2
    assert run("job", "list", "1", "pod/x", *url)[0] == 2
    assert run("get", "--duration", "5s", "all", *url)[0] == 2  # job options stay job's
    rc, out, err = run("status", *url)
    assert rc == 0 and json.loads(out) == []
    rx.stop()


def test_status_page_jobs_and_chart(env, tmp_path):
    """The status page in headless Chromium: the jobs table lists the job
    with its state and per-sensor counters, and the throughput chart (inline
    SVG) has a line and a legend entry for the sensor."""
    from test_http_status_page import chromium
    rx, port = start_rx(env)
    a = v2(rx, "node-chart")
    st, j = req(port, "POST", "/api/jobs", {"name": "page-job", "filter": "udp"})
    kind, _ = a.read_job_frame()
    a.iface(0, "eth0", job=0)
    a.iface(1, "eth0", job=j["id"])
    deadline = time.monotonic() + 15 * SCALE
    seq = 0
    while time.monotonic() < deadline:
        seq += 1
        a.send(batch_mixed(seq, [(0, recs(20, seq)), (1, recs(2, seq + 100))]))
        a.wait_ack(seq)
        st, t = req(port, "GET", "/api/throughput")
        if t["sensors"] and max(t["sensors"][0]["bytes_per_second"]) > 0:
            break
        time.sleep(0.3)
    assert t["sensors"][0]["id"] == "node-chart" and t["interval_sec"] == 5, t
    dom = chromium(tmp_path, "--dump-dom", "http://127.0.0.1:%d/" % port)
    jobs = re.search(r'<table id="jobs">.*?</table>', dom, re.S).group(0)
    assert "<td>page-job</td>" in jobs and ">running</td>" in jobs, jobs
    assert "node-chart: %d" % (2 * seq) in jobs, jobs
    chart = re.search(r'<svg id="chart".*?</svg>', dom, re.S).group(0)
    assert chart.count("<polyline") == 1, chart
    assert "node-chart" in re.search(r'<div id="legend">.*?</div>', dom, re.S).group(0)
    a.bye(seq)
    a.close()
    rx.stop()


def test_job_requests_need_the_token(env):
    """POST and DELETE follow the access rule of downloads: without loopback
    trust, no token is 401 before any body is read; the token is enough."""
    rx, port = start_rx(env, extra_env={"PACKETSTREAMER_HTTP_TRUST_LOOPBACK": "false",
                                        "PACKETSTREAMER_HTTP_TOKEN": "s3cret-token"})

    def call(method, path, body=None, token=None):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10 * SCALE)
        h = {"Authorization": "Bearer " + token} if token else {}
        c.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                  headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    assert call("POST", "/api/jobs", {"name": "t"})[0] == 401
    assert call("POST", "/api/jobs", {"name": "t"}, token="wrong")[0] == 401
    assert call("POST", "/api/alertmanager", ALERT)[0] == 401
    st, data = call("POST", "/api/jobs", {"name": "t"}, token="s3cret-token")
    assert st == 201, data
    jid = json.loads(data)["id"]
    assert call("DELETE", "/api/jobs/%d" % jid)[0] == 401
    assert call("GET", "/api/jobs")[0] == 401
    assert call("DELETE", "/api/jobs/%d" % jid, token="s3cret-token")[0] == 200
    # a body over 256 KiB is refused whole
    st, _ = call("POST", "/api/jobs", {"name": "big", "filter": "x" * (300 * 1024)},
                 token="s3cret-token")
    assert st == 413
    rx.stop()
