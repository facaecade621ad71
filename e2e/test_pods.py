"""Pods, not interfaces: the sensor learns the node's pods from a Kubernetes
API (the project's stand-in, tests/lib/kubeapi.py, speaking the real
list/watch protocol over HTTPS in the node's namespace), finds each pod's
host interface through rtnetlink (bridge and routed CNI shapes, see
conftest.py), captures only the pods a label selector picks, and names each
pcapng interface SENSOR/NAMESPACE/POD."""

import json
import subprocess
import time

from conftest import (NODE, PY, REPO, assert_no_sanitizer, by_iface, ns_exec, output_files,
                      pcaplib, port_frames, ref_frames, same_frames)

FAST = "gatherMaxWaitMs: 100\n"


class StandIn:
    """tests/lib/kubeapi.py as a process in the node's namespace, driven by
    JSON lines on its stdin."""

    def __init__(self, tmp):
        d = tmp / "kubeapi"
        d.mkdir()
        self.log = open(tmp / "kubeapi.log", "w")
        self.p = subprocess.Popen(ns_exec(NODE) + [PY, str(REPO / "tests" / "lib" / "kubeapi.py"),
                                                   "--dir", str(d), "--node", "node1"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                  text=True, bufsize=1)
        self.info = json.loads(self.p.stdout.readline())

    def cmd(self, **kw):
        self.p.stdin.write(json.dumps(kw) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        assert line, "kubeapi stand-in exited"
        return json.loads(line)

    def add(self, name, ns, labels, ips):
        return self.cmd(cmd="add", name=name, ns=ns, node="node1", labels=labels, ips=ips,
                        hostNetwork=False, phase="Running")

    def close(self):
        if self.p.poll() is None:
            try:
                self.cmd(cmd="quit")
            except (BrokenPipeError, AssertionError, ValueError):
                pass
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
        self.log.close()


def config(api, selector):
    return (FAST + "capture:\n  statsIntervalSec: 1\n  podInterfaces: true\n"
            "  pods:\n    labelSelector: \"%s\"\n"
            "kubernetes:\n  enabled: true\n  apiServer: %s\n  tokenFile: %s\n  caFile: %s\n"
            "  nodeName: node1\n" % (selector, api.info["url"], api.info["token_file"],
                                     api.info["ca"]))


def gateway_ping(cluster, pod):
    """What a pod does first on any real node (DNS, its gateway): the node
    learns its neighbour entry and the bridge its MAC."""
    ns = cluster.pods[pod][0]
    subprocess.run(ns_exec(ns) + [PY, "-c", "import socket; socket.socket(socket.AF_INET, "
                                  "socket.SOCK_DGRAM).sendto(b'hello', ('10.244.1.1', 9))"],
                   check=True, capture_output=True)
    time.sleep(0.2)


def test_pods_by_selector_named_and_followed(cluster, tmp_path):
    api = StandIn(tmp_path)
    try:
        run_scenario(cluster, tmp_path, api)
    finally:
        api.close()


def run_scenario(cluster, tmp_path, api):
    pa, pb, pc = (cluster.pods[n] for n in ("pa", "pb", "pc"))
    api.add("pa", "shop", {"app": "web", "tier": "front"}, [pa[2], pa[3]])
    api.add("pb", "shop", {"app": "db"}, [pb[2], pb[3]])
    api.add("pc", "pay", {"app": "web"}, [pc[2], pc[3]])
    # a hostNetwork pod (kube-proxy): attributed to the node, no interface
    api.cmd(cmd="add", name="kube-proxy-x", ns="kube-system", node="node1",
            labels={"app": "web"}, ips=["192.168.50.1"], hostNetwork=True, phase="Running")
    for p in ("pa", "pb"):
        gateway_ping(cluster, p)

    out = tmp_path / "out"
    rx = cluster.receiver(out)
    cluster.servers(["pa", "pb", "pc"])
    refs = {p: cluster.tcpdump(p) for p in ("pa", "pb", "pc")}
    s = cluster.sensor(config(api, "app=web"))
    s.wait_log(r"capturing on vethpa as pod shop/pa ", timeout=10)
    s.wait_log(r"capturing on calipc as pod pay/pc ", timeout=10)
    s.wait_log("connected to receiver")

    sent = cluster.send("pb", pa[2], "B2A4")   # bridge: into a selected pod
    sent += cluster.send("pa", pc[3], "A2C6")  # bridge -> routed, IPv6
    sent += cluster.send("pc", pb[2], "C2B4")  # routed -> the unselected pod

    # the API server goes away: capture goes on with the pods it knew
    api.cmd(cmd="stop")
    s.wait_log(r"kubernetes: .*keeping the \d+ pods known", timeout=15)
    sent += cluster.send("pb", pc[2], "B2C4")
    api.cmd(cmd="start")
    s.wait_log(r"kubernetes: connected to the API server", timeout=30)

    # pa is deleted, pd is created (selected), while the capture runs
    refs["pa"].stop()
    api.cmd(cmd="delete", ns="shop", name="pa")
    cluster.delete_pod("pa")
    s.wait_log(r"stopped capturing on vethpa", timeout=5)
    veth = cluster.add_bridge_pod("pd", 12)
    pd = cluster.pods["pd"]
    cluster.servers(["pd"])
    gateway_ping(cluster, "pd")
    refs["pd"] = cluster.tcpdump("pd")
    t_event = time.time()
    api.add("pd", "pay", {"app": "web"}, [pd[2], pd[3]])
    s.wait_log(r"capturing on %s as pod pay/pd " % veth, timeout=10)
    assert time.time() - t_event < 2.0, "pod captured more than 2 s after its watch event"
    sent += cluster.send("pd", pc[2], "D2C4")
    sent += cluster.send("pb", pd[3], "B2D6")
    time.sleep(0.5)
    for p in refs.values():
        p.stop()

    rc = s.stop()
    text = s.text()
    assert rc == 0, text[-4000:]
    assert_no_sanitizer(text, "sensor")
    assert rx.stop() == 0
    files = output_files(out)
    got = by_iface(files)
    # every interface is a selected pod, named by it; nothing of pb
    assert set(got) <= {"node1/shop/pa", "node1/pay/pc", "node1/pay/pd"}, set(got)
    for pod, name in (("pa", "node1/shop/pa"), ("pc", "node1/pay/pc"), ("pd", "node1/pay/pd")):
        want = ref_frames(refs[pod].ref)
        assert len(want) > 20, "%s: reference capture too small" % pod
        have = port_frames(got.get(name, []))
        assert sorted(have) == sorted(want), "%s: %s" % (name, same_frames(have, want))
    for payload in sent:
        src = payload[0:1].decode()
        if src == "B" and payload[2:3] == b"C":
            # pb -> pc: seen on pc's interface only
            assert any(payload in f for f in got["node1/pay/pc"]), payload[:20]
    # the pod's identity in the interface description
    ifs, _ = pcaplib.read(str(files[0]))
    descs = {i.name: i.description for i in ifs}
    pa_desc = descs.get("node1/shop/pa", "")
    assert pa_desc.startswith("iface=vethpa uid=") and pa_desc.endswith(
        "labels=app=web,tier=front"), pa_desc


def sensor_metrics(port=8082):
    out = subprocess.run(ns_exec(NODE) + ["curl", "-sf", "http://127.0.0.1:%d/metrics" % port],
                         capture_output=True, text=True, timeout=10)
    return out.stdout


def test_pods_rbac_denied_then_granted(cluster, tmp_path):
    """The API refuses (403): the sensor names the missing permission,
    captures by interface rules meanwhile and says so; once the binding is
    fixed it switches to pods without a restart."""
    api = StandIn(tmp_path)
    try:
        pa, pc = cluster.pods["pa"], cluster.pods["pc"]
        api.add("pa", "shop", {"app": "web"}, [pa[2], pa[3]])
        api.add("pc", "pay", {"app": "db"}, [pc[2], pc[3]])
        gateway_ping(cluster, "pa")
        api.cmd(cmd="set", deny=True)
        rx = cluster.receiver(tmp_path / "out")
        s = cluster.sensor(config(api, "app=web"))
        s.wait_log(r"kubernetes: .*(list|watch).*pods.*capturing by interface rules", timeout=15)
        text = s.text()
        assert "forbidden" in text and "get, list, watch" in text, text[-3000:]
        # interface rules meanwhile: every pod interface, under its own name
        s.wait_log(r"capturing on vethpb \(", timeout=10)
        s.wait_log(r"capturing on calipc \(", timeout=10)
        m = sensor_metrics()
        assert "packetstreamer_sensor_kubernetes_connected 0" in m, m
        api.cmd(cmd="set", deny=False)
        s.wait_log(r"kubernetes: connected to the API server", timeout=40)
        s.wait_log(r"capturing on vethpa as pod shop/pa ", timeout=10)
        s.wait_log(r"stopped capturing on calipc .*no longer selected", timeout=10)
        s.wait_log(r"stopped capturing on vethpb .*no longer selected", timeout=10)
        deadline = time.time() + 5
        while time.time() < deadline:
            m = sensor_metrics()
            if 'packetstreamer_sensor_pods{state="selected"} 1' in m:
                break
            time.sleep(0.2)
        assert "packetstreamer_sensor_kubernetes_connected 1" in m, m
        assert 'packetstreamer_sensor_pods{state="known"} 2' in m, m
        assert 'packetstreamer_sensor_pods{state="selected"} 1' in m, m
        assert 'packetstreamer_sensor_pods{state="mapped"} 2' in m, m
        assert s.stop() == 0
        assert_no_sanitizer(s.text(), "sensor")
        assert rx.stop() == 0
    finally:
        api.close()
