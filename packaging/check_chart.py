#!/usr/bin/python3
"""Machine checks for the Helm chart and the static manifests.

    /usr/bin/python3 packaging/check_chart.py [--selftest-only]

Runs, with helm/kubectl from packaging/tools.sh and the npm validator from
packaging/k8s-validate:
  1. helm lint --strict with the default values and every ci/*.yaml;
  2. helm template with each of them, then on every rendered object:
     - Kubernetes API validation (types, enums, unknown fields);
     - the assertions below (assert_objects): sensor hostNetwork, dnsPolicy,
       capabilities exactly NET_RAW+NET_ADMIN with drop ALL, read-only root,
       non-root, sensor id from the downward API, probes on the HTTP port the
       config listens on, receiver without capabilities, Service ports that
       match container ports, TLS files mounted where the config points,
       generated certificates that chain and name the receiver's Service;
       pod discovery RBAC (a ClusterRole of exactly get/list/watch on pods,
       bound to the sensor's ServiceAccount; none and no token when
       sensor.kubernetes.enabled is false), NODE_NAME from spec.nodeName,
       the values' pod selectors in capture.pods, S3 credentials only from
       the named Secret (never in the config), the IRSA annotation on the
       receiver's own ServiceAccount, a PodDisruptionBudget that selects
       the receiver; a tier (receiver.replicas > 1): a StatefulSet
       (Parallel, a claim per pod) on a headless Service, tier.peers and the
       sensors' address on that Service, a shared http token from a Secret,
       the headless names in the server certificate, receiver -> receiver
       HTTP in the NetworkPolicy;
     - `packetstreamer check-config` on each rendered config file (keys of
       work not merged yet, PENDING_KEYS, dropped only when the binary calls
       them unknown);
  3. bad values files (packaging/chart-tests/bad-values/*.yaml) must be
     refused by helm with the message each one names;
  4. `kubectl kustomize manifests/` gets the same validation and assertions,
     and manifests/ must equal what packaging/gen-manifests.sh generates;
     `--set receiver.replicas=3` is checked object by object (check_tier),
     and NOTES.txt for one receiver and for a tier;
  5. self-tests that break objects on purpose (a wrong field name, a missing
     hostNetwork, an extra capability, a probe on the wrong port, a TLS
     volume that is not mounted, a ClusterRole with one more verb or
     resource, an S3 key as a literal, a tier's headless Service with a
     cluster IP, tier.peers on the wrong port, sensors dialling the
     ClusterIP Service, a certificate without the headless names) and
     require each check to fail with the right message.
Prints "N passed, N failed" and exits 1 on any failure.
"""
import argparse
import base64
import copy
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.environ.get("PS_CHART_DIR", os.path.join(ROOT, "charts", "packetstreamer"))
CACHE = os.environ.get("PS_CACHE", "/var/tmp/packetstreamer-cache")
TOOLS = os.path.join(CACHE, "tools", "bin")
VALIDATOR = os.path.join(ROOT, "packaging", "k8s-validate", "validate.js")
VALIDATOR_MODULES = os.path.join(CACHE, "k8s-validate", "node_modules")
NAMESPACE = "capture"
RELEASE = "ps"

# Config keys the chart renders that this branch's binary does not know yet;
# they land with the issues named. check-config is run with them removed, and
# the check reports which were removed. Delete an entry when its work merges.
#
# Tolerance, and only this: check-config may refuse one of these keys (or a
# key under it) as an *unknown key*; the check then removes it and runs again.
# Any other refusal, including a bad value under a key the binary knows, still
# fails. Every feature the chart renders has merged: nothing is pending.
PENDING_KEYS = {}
# A key stops being pending by itself once the binary's --help shows the
# feature's flag (--http for http.*, --tls-cert for tls.*): from then on
# check-config must accept the key as the chart renders it.
FEATURE_FLAGS = {"http.": "--http", "tls.": "--tls-cert"}


def pending_keys(binary):
    text = run([binary, "sensor", "--help"]).stdout + run([binary, "receiver", "--help"]).stdout
    return {k: v for k, v in PENDING_KEYS.items()
            if not any(k.startswith(prefix) and flag in text for prefix, flag in FEATURE_FLAGS.items())}


# ... and the refusals of features that are not built yet on this branch.
PENDING_REFUSALS = {}

results = {"passed": 0, "failed": 0}


def report(name, problems):
    if problems:
        results["failed"] += 1
        print(f"FAIL {name}")
        for p in problems[:20]:
            print(f"     {p}")
        if len(problems) > 20:
            print(f"     ... {len(problems) - 20} more")
    else:
        results["passed"] += 1
        print(f"ok   {name}")


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def helm(*args):
    return run([os.path.join(TOOLS, "helm"), *args])


def render(values_files=(), sets=(), namespace=NAMESPACE, release=RELEASE):
    cmd = ["template", release, CHART, "--namespace", namespace]
    for f in values_files:
        cmd += ["-f", f]
    for s in sets:
        cmd += ["--set", s]
    r = helm(*cmd)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    return [o for o in yaml.safe_load_all(r.stdout) if o]


# ---------------------------------------------------------------- helpers --
def by_kind(objs, kind):
    return [o for o in objs if o.get("kind") == kind]


def is_headless(o):
    return o.get("kind") == "Service" and dig(o, "spec.clusterIP") == "None"


def one(objs, kind, component):
    """The first object of KIND for COMPONENT; for Services the ordinary one
    (a tier's headless Service is headless_service's)."""
    for o in by_kind(objs, kind):
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component and not is_headless(o):
            return o
    return None


def headless_service(objs):
    for o in by_kind(objs, "Service"):
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "receiver" and is_headless(o):
            return o
    return None


def receiver_workload(objs):
    """The receivers' workload: the Deployment (one receiver) or the
    StatefulSet (a tier)."""
    return one(objs, "Deployment", "receiver") or one(objs, "StatefulSet", "receiver")


def svc_fqdn(svc):
    return f"{svc['metadata']['name']}.{svc['metadata'].get('namespace', NAMESPACE)}.svc.cluster.local"


def selects(selector, labels):
    """Does a LabelSelector (matchLabels, matchExpressions) select LABELS?"""
    if not all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values") or []
        if (op == "In" and labels.get(k) not in vals) or (op == "NotIn" and k in labels and labels[k] in vals) \
                or (op == "Exists" and k not in labels) or (op == "DoesNotExist" and k in labels):
            return False
    return True


def pod_spec(workload):
    return workload["spec"]["template"]["spec"]


def container_env(c, name):
    for e in c.get("env", []) or []:
        if e["name"] == name:
            return e
    return None


def config_of(objs, workload):
    """The YAML config a workload's container reads: follow --config to the
    mount, the volume and the ConfigMap key."""
    c = pod_spec(workload)["containers"][0]
    args = c.get("args", [])
    if "--config" not in args:
        return None, "no --config argument"
    path = args[args.index("--config") + 1]
    for m in c.get("volumeMounts", []):
        if m["mountPath"] == path or path.startswith(m["mountPath"].rstrip("/") + "/"):
            vol = next((v for v in pod_spec(workload).get("volumes", []) if v["name"] == m["name"]), None)
            if not vol or "configMap" not in vol:
                return None, f"--config {path} is not on a ConfigMap volume"
            key = m.get("subPath") or os.path.relpath(path, m["mountPath"])
            cm = next((o for o in by_kind(objs, "ConfigMap")
                       if o["metadata"]["name"] == vol["configMap"]["name"]), None)
            if not cm:
                return None, f"ConfigMap {vol['configMap']['name']} is not rendered"
            if key not in cm.get("data", {}):
                return None, f"ConfigMap {cm['metadata']['name']} has no key {key}"
            return yaml.safe_load(cm["data"][key]) or {}, None
    return None, f"--config {path} is not mounted"


def dig(d, dotted, default=None):
    for k in dotted.split("."):
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def port_number(container, port):
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return None


def mount_for(workload, path):
    """(volume, mount) that holds PATH in the first container, or (None, None)."""
    c = pod_spec(workload)["containers"][0]
    best = None
    for m in c.get("volumeMounts", []):
        mp = m["mountPath"].rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            if not best or len(mp) > len(best["mountPath"]):
                best = m
    if not best:
        return None, None
    vol = next((v for v in pod_spec(workload).get("volumes", []) if v["name"] == best["name"]), None)
    return vol, best


def listen_port(cfg, key="http.listen"):
    v = dig(cfg, key)
    if not v or ":" not in str(v):
        return None
    return int(str(v).rsplit(":", 1)[1])


# ------------------------------------------------------------- assertions --
def assert_sensor(objs, problems, ctx):
    ds = one(objs, "DaemonSet", "sensor")
    if ds is None:
        if ctx.get("sensor", True):
            problems.append("sensor DaemonSet: not rendered")
        return
    spec = pod_spec(ds)
    c = spec["containers"][0]
    if spec.get("hostNetwork") is not True:
        problems.append("sensor DaemonSet: hostNetwork is not true (it would capture only its own pod's traffic)")
    if spec.get("dnsPolicy") != "ClusterFirstWithHostNet":
        problems.append(f"sensor DaemonSet: dnsPolicy is {spec.get('dnsPolicy')!r}, not ClusterFirstWithHostNet")
    sc = c.get("securityContext", {})
    psc = spec.get("securityContext", {})
    caps = sc.get("capabilities", {})
    # The securityContext that tests/runtimes/test_runtimes.py proved on the
    # containerd, CRI-O and cri-dockerd process shapes. drop mode (the
    # default): uid 0 with NET_RAW, NET_ADMIN, SETUID, SETGID, SETPCAP and no
    # privilege escalation, the sensor switching to PACKETSTREAMER_PRIVILEGES_USER.
    # fileCaps mode: non-root with NET_RAW, NET_ADMIN and allowPrivilegeEscalation
    # true (CRI-O and cri-dockerd give a non-root process no permitted set, and
    # under no_new_privs the file capabilities then grant nothing).
    priv_user = container_env(c, "PACKETSTREAMER_PRIVILEGES_USER")
    uid = sc.get("runAsUser", psc.get("runAsUser"))
    if priv_user is not None:
        want = ["NET_ADMIN", "NET_RAW", "SETGID", "SETPCAP", "SETUID"]
        if sorted(caps.get("add", [])) != want:
            problems.append(f"sensor (privileges drop): capabilities.add is {caps.get('add')}, not exactly "
                            "[NET_RAW, NET_ADMIN, SETUID, SETGID, SETPCAP]")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append("sensor (privileges drop): allowPrivilegeEscalation is not false")
        if uid != 0:
            problems.append(f"sensor (privileges drop): runAsUser is {uid}, not 0; the sensor switches users itself")
        target = str(priv_user.get("value", ""))
        parts = target.split(":")
        if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
            problems.append(f"sensor (privileges drop): PACKETSTREAMER_PRIVILEGES_USER is {target!r}, not a non-root UID:GID")
        elif psc.get("fsGroup") is not None and int(parts[1]) != psc.get("fsGroup"):
            problems.append(f"sensor (privileges drop): gid {parts[1]} is not fsGroup {psc.get('fsGroup')}; "
                            "the mounted Secrets would be unreadable after the switch")
    else:
        if sorted(caps.get("add", [])) != ["NET_ADMIN", "NET_RAW"]:
            problems.append(f"sensor: capabilities.add is {caps.get('add')}, not exactly [NET_RAW, NET_ADMIN]")
        if sc.get("allowPrivilegeEscalation") is not True:
            problems.append("sensor (privileges fileCaps): allowPrivilegeEscalation is not true; "
                            "under CRI-O and cri-dockerd the file capabilities would grant nothing")
        if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")) or uid in (0, None):
            problems.append("sensor: not running as a non-root user")
    if caps.get("drop") != ["ALL"]:
        problems.append(f"sensor: capabilities.drop is {caps.get('drop')}, not [ALL]")
    if sc.get("privileged"):
        problems.append("sensor: privileged")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append("sensor: readOnlyRootFilesystem is not true")
    # NODE_NAME (the node whose pods the sensor watches) from the downward
    # API; the sensor id is the same name, directly or as $(NODE_NAME)
    # (which Kubernetes expands only from a variable defined before it).
    env_names = [x["name"] for x in c.get("env", []) or []]
    nn = container_env(c, "NODE_NAME")
    if not nn or dig(nn, "valueFrom.fieldRef.fieldPath") != "spec.nodeName":
        problems.append("sensor: NODE_NAME is not the node name from the downward API (fieldRef spec.nodeName)")
    e = container_env(c, "PACKETSTREAMER_SENSOR_ID")
    from_node = (e and e.get("value") == "$(NODE_NAME)" and nn is not None
                 and env_names.index("NODE_NAME") < env_names.index("PACKETSTREAMER_SENSOR_ID"))
    if not e or not (from_node or dig(e, "valueFrom.fieldRef.fieldPath") == "spec.nodeName"):
        problems.append("sensor: PACKETSTREAMER_SENSOR_ID is not the node name from the downward API (spec.nodeName)")
    tol = spec.get("tolerations") or []
    if not any(t.get("operator") == "Exists" and not t.get("key") for t in tol):
        problems.append("sensor: no toleration {operator: Exists}; it would skip tainted nodes")
    res = c.get("resources", {})
    if not res.get("requests") or not res.get("limits"):
        problems.append("sensor: resources need requests and limits")
    cfg, err = config_of(objs, ds)
    if err:
        problems.append(f"sensor: {err}")
        return
    if dig(cfg, "capture.podInterfaces") is not True and ctx.get("podInterfaces", True):
        problems.append("sensor config: capture.podInterfaces is not true (pod-interface mode is the default)")
    mode = ctx.get("captureMode", "continuous")
    if (dig(cfg, "capture.mode") or "continuous") != mode:
        problems.append(f"sensor config: capture.mode is {dig(cfg, 'capture.mode')!r}, values say {mode!r}")
    if mode == "ondemand":
        for k, d in (("seconds", 30), ("sizeMB", 64)):
            want = dig(ctx.get("recorder", {}), k, d)
            if dig(cfg, "capture.recorder." + k) != want:
                problems.append(f"sensor config: capture.recorder.{k} is {dig(cfg, 'capture.recorder.' + k)!r}, values say {want!r}")
    hp = listen_port(cfg)
    for kind, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        pr = c.get(kind)
        if not pr:
            problems.append(f"sensor: no {kind}")
            continue
        got = port_number(c, dig(pr, "httpGet.port"))
        if dig(pr, "httpGet.path") != path:
            problems.append(f"sensor: {kind} path is {dig(pr, 'httpGet.path')}, not {path}")
        if got is None or got != hp:
            problems.append(f"sensor: {kind} port {dig(pr, 'httpGet.port')} ({got}) is not the HTTP port the config listens on ({hp})")
    for p in c.get("ports", []):
        if p.get("hostPort") not in (None, p["containerPort"]):
            problems.append("sensor: hostPort differs from containerPort under hostNetwork")
    # One receiver: its Service. A tier: the headless Service, whose name
    # resolves to every receiver (each sensor picks its home among them).
    rx = headless_service(objs) if ctx.get("tier") else one(objs, "Service", "receiver")
    addr = container_env(c, "PACKETSTREAMER_OUTPUT_SERVER_ADDRESS")
    if ctx.get("tier") and ctx.get("receiver", True) and rx is None:
        problems.append("sensor: receiver.replicas > 1 but no headless receiver Service to stream to")
    if rx is not None:
        fqdn = svc_fqdn(rx)
        what = "the tier's headless Service" if ctx.get("tier") else "the receiver Service"
        if not addr or addr.get("value") != fqdn:
            problems.append(f"sensor: PACKETSTREAMER_OUTPUT_SERVER_ADDRESS is {addr and addr.get('value')!r}, not {what} {fqdn}")
        if dig(cfg, "output.server.address") != fqdn:
            problems.append(f"sensor config: output.server.address is {dig(cfg, 'output.server.address')!r}, not {what} {fqdn}")
        stream = next((p for p in rx["spec"]["ports"] if p["name"] == "stream"), None)
        if stream and dig(cfg, "output.server.port") != stream["port"]:
            problems.append(f"sensor config: output.server.port {dig(cfg, 'output.server.port')} is not the Service's stream port {stream['port']}")
    assert_tls_files(objs, ds, cfg, "sensor", ["certFile", "keyFile", "caFile"], problems, ctx)
    assert_sensor_kubernetes(objs, ds, cfg, problems, ctx)


POD_READER_RULES = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]


def assert_sensor_kubernetes(objs, ds, cfg, problems, ctx):
    """Pod discovery: the ClusterRole reads pods and nothing more, the
    binding names the sensor's ServiceAccount, the token is mounted; with
    kubernetes disabled there is no RBAC object and no token. The rendered
    capture.pods carries the selectors of the values."""
    spec = pod_spec(ds)
    enabled = dig(cfg, "kubernetes.enabled", "auto") is not False
    if enabled != ctx.get("kubernetes", True):
        problems.append(f"sensor config: kubernetes.enabled is {dig(cfg, 'kubernetes.enabled')!r}, "
                        f"the values ask for {'on' if ctx.get('kubernetes', True) else 'off'}")
    sa_name = spec.get("serviceAccountName")
    sa = next((o for o in by_kind(objs, "ServiceAccount") if o["metadata"]["name"] == sa_name), None)
    roles = by_kind(objs, "ClusterRole") + by_kind(objs, "Role")
    bindings = by_kind(objs, "ClusterRoleBinding") + by_kind(objs, "RoleBinding")
    for r in roles:
        rules = [{k: sorted(v) if k == "verbs" else v for k, v in rule.items()} for rule in r.get("rules") or []]
        if rules != POD_READER_RULES:
            problems.append(f"{r['kind']} {r['metadata']['name']}: rules are {r.get('rules')}, not exactly "
                            "get, list, watch on pods (core group)")
    if not enabled:
        if roles or bindings:
            problems.append(f"sensor: kubernetes disabled but RBAC objects are rendered: "
                            f"{[o['kind'] + '/' + o['metadata']['name'] for o in roles + bindings]}")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append("sensor: kubernetes disabled but the API token is mounted (automountServiceAccountToken is not false)")
        if dig(cfg, "capture.pods") is not None:
            problems.append("sensor config: capture.pods rendered with kubernetes disabled")
        return
    if spec.get("automountServiceAccountToken") is not True:
        problems.append("sensor: pod discovery on but automountServiceAccountToken is not true (no API token)")
    if sa is not None and sa.get("automountServiceAccountToken") is False:
        problems.append(f"sensor: ServiceAccount {sa_name} sets automountServiceAccountToken false")
    if ctx.get("rbac", True):
        crs = by_kind(objs, "ClusterRole")
        if len(crs) != 1:
            problems.append(f"sensor: {len(crs)} ClusterRoles rendered, want one (pod reader)")
        elif len(bindings) != 1 or bindings[0]["kind"] != "ClusterRoleBinding":
            problems.append(f"sensor: bindings rendered: {[b['kind'] for b in bindings]}, want one ClusterRoleBinding")
        else:
            b = bindings[0]
            if b["roleRef"] != {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": crs[0]["metadata"]["name"]}:
                problems.append(f"ClusterRoleBinding {b['metadata']['name']}: roleRef {b['roleRef']} is not the pod-reader ClusterRole")
            want = [{"kind": "ServiceAccount", "name": sa_name, "namespace": ds["metadata"].get("namespace", NAMESPACE)}]
            if b.get("subjects") != want:
                problems.append(f"ClusterRoleBinding {b['metadata']['name']}: subjects {b.get('subjects')} are not the sensor's ServiceAccount {want}")
    elif roles or bindings:
        problems.append("rbac.create is false but RBAC objects are rendered")
    pods = dig(cfg, "capture.pods") or {}
    want = ctx.get("pods", {})
    for k, default in (("namespaces", []), ("excludeNamespaces", ["kube-system"]), ("labelSelector", "")):
        got = pods.get(k, [] if k != "labelSelector" else "")
        if got != want.get(k, default):
            problems.append(f"sensor config: capture.pods.{k} is {got!r}, the values say {want.get(k, default)!r}")


def assert_receiver_s3(objs, dep, cfg, problems, ctx):
    """S3 upload: the rendered output.s3 follows the values, credentials come
    from the named Secret as environment variables and never appear in the
    config or as literal values; the receiver's own ServiceAccount carries
    its annotations (IRSA) and no API token."""
    spec = pod_spec(dep)
    c = spec["containers"][0]
    if spec.get("automountServiceAccountToken") is not False:
        problems.append("receiver: automountServiceAccountToken is not false (it never calls the Kubernetes API)")
    sa_name = spec.get("serviceAccountName")
    ds = one(objs, "DaemonSet", "sensor")
    if ds is not None and pod_spec(ds).get("serviceAccountName") == sa_name and sa_name != "default":
        problems.append(f"receiver and sensor share ServiceAccount {sa_name}: the pod RBAC or an IRSA role would reach both")
    sa = next((o for o in by_kind(objs, "ServiceAccount") if o["metadata"]["name"] == sa_name), None)
    want_ann = ctx.get("receiverSAAnnotations") or {}
    if want_ann and (sa is None or any(dig(sa, "metadata.annotations", {}).get(k) != v for k, v in want_ann.items())):
        problems.append(f"receiver: ServiceAccount {sa_name} lacks the annotations {want_ann} (IRSA)")
    s3 = dig(cfg, "output.s3")
    want = ctx.get("s3") or {}
    if not want.get("enabled"):
        if s3 is not None:
            problems.append("receiver config: output.s3 rendered though receiver.s3.enabled is false")
        return
    if not isinstance(s3, dict) or s3.get("enabled") is not True:
        problems.append("receiver config: output.s3.enabled is not true")
        return
    for k in ("bucket", "endpoint", "region", "prefix", "storageClass", "sse", "sseKmsKeyId", "stsEndpoint"):
        if want.get(k) and s3.get(k) != want[k]:
            problems.append(f"receiver config: output.s3.{k} is {s3.get(k)!r}, the values say {want[k]!r}")
    text = yaml.safe_dump(cfg).lower()
    for bad in ("aws_secret", "aws_access", "secretaccesskey", "accesskeyid", "sessiontoken"):
        if bad in text:
            problems.append(f"receiver config: mentions {bad}: credentials belong in the environment, not the config")
    for e in c.get("env", []) or []:
        if e["name"].startswith("AWS_") and "value" in e:
            problems.append(f"receiver: {e['name']} is a literal value; credentials come from a Secret")
    secret = want.get("existingSecret")
    if secret:
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            e = container_env(c, k)
            ref = dig(e or {}, "valueFrom.secretKeyRef") or {}
            if ref.get("name") != secret or ref.get("key") != k or ref.get("optional"):
                problems.append(f"receiver: {k} is not from Secret {secret} key {k} (secretKeyRef, required)")


def assert_pdb(objs, problems, ctx):
    pdbs = by_kind(objs, "PodDisruptionBudget")
    dep = receiver_workload(objs)
    if ctx.get("pdb") and not pdbs:
        problems.append("receiver: podDisruptionBudget enabled but no PodDisruptionBudget rendered")
    if ctx.get("tier") and ctx.get("receiver", True) and ctx.get("pdbAuto", True) and not pdbs:
        problems.append("receiver: a tier (replicas > 1) without a PodDisruptionBudget (podDisruptionBudget.enabled auto)")
    for p in pdbs:
        sp = p["spec"]
        if ("minAvailable" in sp) == ("maxUnavailable" in sp):
            problems.append(f"PodDisruptionBudget {p['metadata']['name']}: needs exactly one of minAvailable, maxUnavailable")
        labels = dig(dep or {}, "spec.template.metadata.labels", {})
        sel = dig(sp, "selector.matchLabels", {})
        if not sel or not all(labels.get(k) == v for k, v in sel.items()):
            problems.append(f"PodDisruptionBudget {p['metadata']['name']}: selector {sel} does not match the receiver pods")


def assert_receiver(objs, problems, ctx):
    dep = receiver_workload(objs)
    tier = ctx.get("tier")
    if dep is None:
        if ctx.get("receiver", True):
            problems.append(f"receiver {'StatefulSet' if tier else 'Deployment'}: not rendered")
        return
    spec = pod_spec(dep)
    c = spec["containers"][0]
    if tier:
        if dep["kind"] != "StatefulSet" or by_kind(objs, "Deployment"):
            problems.append(f"receiver: replicas {ctx.get('replicas')} rendered a {dep['kind']}, not a StatefulSet"
                            + (" (and a Deployment)" if by_kind(objs, "Deployment") else ""))
        if dep["spec"].get("replicas") != ctx.get("replicas"):
            problems.append(f"receiver: StatefulSet replicas {dep['spec'].get('replicas')}, the values say {ctx.get('replicas')}")
    else:
        if dep["kind"] != "Deployment" or by_kind(objs, "StatefulSet"):
            problems.append(f"receiver: one replica rendered a {dep['kind']}, not a Deployment")
        if headless_service(objs) is not None:
            problems.append("receiver: one replica but a headless Service is rendered")
        if dep["spec"].get("replicas") != 1:
            problems.append("receiver: replicas is not 1")
        if dig(dep, "spec.strategy.type") != "Recreate":
            problems.append("receiver: strategy is not Recreate (two writers on one volume)")
    sc = c.get("securityContext", {})
    if dig(sc, "capabilities.add"):
        problems.append(f"receiver: adds capabilities {dig(sc, 'capabilities.add')}; it needs none")
    if dig(sc, "capabilities.drop") != ["ALL"]:
        problems.append("receiver: capabilities.drop is not [ALL]")
    if spec.get("hostNetwork"):
        problems.append("receiver: hostNetwork")
    psc = spec.get("securityContext", {})
    if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")) or psc.get("runAsUser", sc.get("runAsUser")) in (0, None):
        problems.append("receiver: not running as a non-root user")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append("receiver: readOnlyRootFilesystem is not true")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("receiver: allowPrivilegeEscalation is not false")
    cfg, err = config_of(objs, dep)
    if err:
        problems.append(f"receiver: {err}")
        return
    out = dig(cfg, "output.file.path")
    vol, m = mount_for(dep, out or "/")
    vct = {t["metadata"]["name"]: t for t in dig(dep, "spec.volumeClaimTemplates", []) or []}
    if tier and ctx.get("persistence", True):
        # a claim of its own per receiver, from the volumeClaimTemplates
        if not m or m.get("readOnly") or m["name"] not in vct or vol is not None:
            problems.append(f"receiver: output.file.path {out} is not on a writable volumeClaimTemplates claim "
                            f"(mount {m and m['name']}, templates {sorted(vct)}, pod volume {vol and vol['name']})")
        if by_kind(objs, "PersistentVolumeClaim"):
            problems.append("receiver: a tier with a shared PersistentVolumeClaim object (one writer per volume)")
    elif vct:
        problems.append(f"receiver: volumeClaimTemplates {sorted(vct)} though persistence is off or there is one receiver")
    elif not vol or m.get("readOnly") or not ({"persistentVolumeClaim", "emptyDir"} & set(vol)):
        problems.append(f"receiver: output.file.path {out} is not on a writable PVC or emptyDir volume")
    elif "persistentVolumeClaim" in vol:
        claim = vol["persistentVolumeClaim"]["claimName"]
        if ctx.get("existingClaim") != claim and not any(o["metadata"]["name"] == claim for o in by_kind(objs, "PersistentVolumeClaim")):
            problems.append(f"receiver: PVC {claim} is not rendered")
    hp = listen_port(cfg)
    for kind, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        pr = c.get(kind)
        if not pr:
            problems.append(f"receiver: no {kind}")
            continue
        got = port_number(c, dig(pr, "httpGet.port"))
        if dig(pr, "httpGet.path") != path or got != hp:
            problems.append(f"receiver: {kind} is {dig(pr, 'httpGet.path')} on port {got}, not {path} on the config's HTTP port {hp}")
    cports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    if cports.get("stream") != dig(cfg, "input.port", 8081):
        problems.append(f"receiver: container port 'stream' {cports.get('stream')} is not input.port {dig(cfg, 'input.port')}")
    if cports.get("http") != hp:
        problems.append(f"receiver: container port 'http' {cports.get('http')} is not the config's HTTP port {hp}")
    svc = one(objs, "Service", "receiver")
    if svc is None:
        problems.append("receiver: no Service")
    else:
        labels = dig(dep, "spec.template.metadata.labels", {})
        if not all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()):
            problems.append("receiver Service: selector does not match the receiver pods")
        for p in svc["spec"]["ports"]:
            tp = p.get("targetPort", p["port"])
            num = cports.get(tp) if isinstance(tp, str) else tp
            if num is None:
                problems.append(f"receiver Service: port {p['name']} targets {tp!r}, which no container port names")
            elif p["name"] in cports and cports[p["name"]] != num:
                problems.append(f"receiver Service: port {p['name']} targets {num}, container port is {cports[p['name']]}")
    assert_tls_files(objs, dep, cfg, "receiver", ["certFile", "keyFile"], problems, ctx)
    assert_receiver_s3(objs, dep, cfg, problems, ctx)
    assert_tier(objs, dep, cfg, problems, ctx)


def assert_tier(objs, sts, cfg, problems, ctx):
    """A tier of receivers: a StatefulSet (Parallel) on a headless Service
    (clusterIP None, not-ready pods left out) selecting the receiver pods
    with the stream and HTTP ports; tier.peers is that Service's name and
    HTTP port; tier.name is left to the host name (the pod's name); a
    shared http token from a Secret the release has; the NetworkPolicy lets
    receivers reach each other's HTTP port; the ServiceMonitor scrapes each
    receiver through one Service only. One receiver: none of that."""
    peers = dig(cfg, "tier.peers")
    if not ctx.get("tier"):
        if peers is not None:
            problems.append(f"receiver config: tier.peers {peers!r} with one receiver")
        return
    spec = pod_spec(sts)
    c = spec["containers"][0]
    labels = dig(sts, "spec.template.metadata.labels", {})
    hl = headless_service(objs)
    if hl is None:
        problems.append("receiver tier: no headless Service (clusterIP: None) selecting the receivers")
        return
    if sts["kind"] == "StatefulSet":
        if dig(sts, "spec.podManagementPolicy") != "Parallel":
            problems.append(f"receiver tier: podManagementPolicy is {dig(sts, 'spec.podManagementPolicy')!r}, not Parallel")
        if dig(sts, "spec.serviceName") != hl["metadata"]["name"]:
            problems.append(f"receiver tier: StatefulSet serviceName {dig(sts, 'spec.serviceName')!r} is not the headless Service "
                            f"{hl['metadata']['name']} (the pods would have no stable DNS names)")
    if dig(hl, "spec.publishNotReadyAddresses") is not False:
        problems.append("receiver tier: the headless Service's publishNotReadyAddresses is not false "
                        "(sensors would pick receivers that are not ready)")
    if not hl["spec"].get("selector") or not all(labels.get(k) == v for k, v in hl["spec"]["selector"].items()):
        problems.append("receiver tier: the headless Service's selector does not match the receiver pods")
    cports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    hports = {}
    for p in hl["spec"].get("ports", []):
        tp = p.get("targetPort", p["port"])
        hports[p["name"]] = (p["port"], cports.get(tp) if isinstance(tp, str) else tp)
    for name in ("stream", "http"):
        if name not in hports:
            problems.append(f"receiver tier: the headless Service has no {name} port")
        elif hports[name][1] != cports.get(name):
            problems.append(f"receiver tier: the headless Service's {name} port targets {hports[name][1]}, "
                            f"the container's {name} port is {cports.get(name)}")
    want = f"{svc_fqdn(hl)}:{listen_port(cfg)}"
    if peers != want:
        problems.append(f"receiver config: tier.peers is {peers!r}, not the headless Service's name and HTTP port {want}")
    if dig(cfg, "tier.name") is not None:
        problems.append(f"receiver config: tier.name {dig(cfg, 'tier.name')!r} is set: every receiver would have that name "
                        "(the default, the host name, is the pod's)")
    # each receiver's files named after its pod: names unique in the tier
    # (one S3 bucket and prefix), in the captures directory of the config
    env_names = [e["name"] for e in c.get("env", []) or []]
    pn = container_env(c, "POD_NAME")
    fp = container_env(c, "PACKETSTREAMER_OUTPUT_FILE_PATH")
    ext = "pcapng" if dig(cfg, "output.file.format", "pcapng") == "pcapng" else "pcap"
    want_path = f"{str(dig(cfg, 'output.file.path')).rstrip('/')}/$(POD_NAME).{ext}"
    if not pn or dig(pn, "valueFrom.fieldRef.fieldPath") != "metadata.name" or not fp or fp.get("value") != want_path \
            or env_names.index("POD_NAME") > env_names.index("PACKETSTREAMER_OUTPUT_FILE_PATH"):
        problems.append(f"receiver tier: PACKETSTREAMER_OUTPUT_FILE_PATH is {fp and fp.get('value')!r}, not {want_path!r} with "
                        "POD_NAME from metadata.name before it (the receivers' files would share names in S3)")
    # the token the receivers ask each other with (docs/http.md: non-loopback
    # clients are answered only with http.token)
    tok = container_env(c, "PACKETSTREAMER_HTTP_TOKEN")
    ref = dig(tok or {}, "valueFrom.secretKeyRef") or {}
    if not ref.get("name") or ref.get("optional"):
        problems.append("receiver tier: PACKETSTREAMER_HTTP_TOKEN is not from a Secret (the receivers could not answer each other)")
    elif ctx.get("httpTokenSecret"):
        if ref["name"] != ctx["httpTokenSecret"] or ref.get("key") != "token":
            problems.append(f"receiver tier: PACKETSTREAMER_HTTP_TOKEN is {ref}, not Secret {ctx['httpTokenSecret']} key token")
    else:
        sec = next((o for o in by_kind(objs, "Secret") if o["metadata"]["name"] == ref["name"]), None)
        if sec is None or ref.get("key") not in (sec.get("data") or {}):
            problems.append(f"receiver tier: the http token Secret {ref.get('name')} (key {ref.get('key')}) is not rendered")
        elif len(base64.b64decode(sec["data"][ref["key"]])) < 32:
            problems.append(f"receiver tier: the generated http token in {ref['name']} is shorter than 32 bytes")
    for np in by_kind(objs, "NetworkPolicy"):
        if not selects(dig(np, "spec.podSelector", {}), labels):
            continue
        ok = False
        for rule in dig(np, "spec.ingress", []) or []:
            ports = [port_number(c, p.get("port")) for p in rule.get("ports") or []]
            if ports and cports.get("http") not in ports:
                continue
            if any("podSelector" in f and "namespaceSelector" not in f and selects(f["podSelector"], labels)
                   for f in rule.get("from") or []):
                ok = True
        if not ok:
            problems.append(f"NetworkPolicy {np['metadata']['name']}: no ingress rule lets the receivers reach each other's "
                            "HTTP port (tier view)")
    for sm in by_kind(objs, "ServiceMonitor"):
        hit = [o["metadata"]["name"] for o in by_kind(objs, "Service")
               if selects(dig(sm, "spec.selector", {}), o["metadata"].get("labels") or {})]
        if len(hit) != 1:
            problems.append(f"ServiceMonitor {sm['metadata']['name']}: selects Services {hit}; each receiver would be "
                            "scraped once per Service")


def secret_sources(objs, ctx):
    """Secret names the release provides: rendered Secrets, cert-manager
    Certificates' secretName, and the existing Secrets the values name."""
    names = {o["metadata"]["name"]: o for o in by_kind(objs, "Secret")}
    for cert in by_kind(objs, "Certificate"):
        names.setdefault(cert["spec"]["secretName"], cert)
    for n in ctx.get("existingSecrets", []):
        names.setdefault(n, "existing")
    return names


def assert_tls_files(objs, workload, cfg, who, keys, problems, ctx):
    if not dig(cfg, "tls.enable"):
        if ctx.get("tls", True):
            problems.append(f"{who} config: tls.enable is not true (mTLS is on by default)")
        return
    sources = secret_sources(objs, ctx)
    if who == "receiver" and dig(cfg, "tls.requireClientCert") is not True and ctx.get("requireClientCert", True):
        problems.append("receiver config: tls.requireClientCert is not true (mutual TLS is the default)")
    for k in keys + (["clientCaFile"] if who == "receiver" else []):
        path = dig(cfg, f"tls.{k}")
        if not path:
            problems.append(f"{who} config: tls.{k} is not set")
            continue
        vol, m = mount_for(workload, path)
        if not vol or "secret" not in vol:
            problems.append(f"{who}: tls.{k} {path} is not on a mounted Secret volume")
            continue
        if not m.get("readOnly"):
            problems.append(f"{who}: the TLS Secret is not mounted read-only")
        sname = vol["secret"]["secretName"]
        src = sources.get(sname)
        if src is None:
            problems.append(f"{who}: TLS Secret {sname} is neither rendered, issued by cert-manager, nor named in the values")
            continue
        fname = os.path.relpath(path, m["mountPath"])
        if isinstance(src, dict) and src.get("kind") == "Secret" and fname not in (src.get("data") or {}):
            problems.append(f"{who}: Secret {sname} has no key {fname} for tls.{k}")
        elif isinstance(src, dict) and src.get("kind") == "Certificate" and fname not in ("tls.crt", "tls.key", "ca.crt"):
            problems.append(f"{who}: cert-manager writes no key {fname} into {sname}")


def assert_generated_certs(objs, problems):
    """The generated server certificate names the Service the sensors dial and
    the sensors' serverName; both leaf certificates chain to the one CA."""
    ds = one(objs, "DaemonSet", "sensor")
    scfg, _ = config_of(objs, ds)
    secrets = {}
    for who, w in (("sensor", ds), ("receiver", receiver_workload(objs))):
        cfg, _ = config_of(objs, w)
        vol, _m = mount_for(w, dig(cfg, "tls.certFile") or "/nonexistent")
        name = dig(vol or {}, "secret.secretName")
        s = next((o for o in by_kind(objs, "Secret") if o["metadata"]["name"] == name), None)
        if s is None:
            problems.append(f"TLS: the {who}'s certificate Secret {name} is not among the objects")
            return
        secrets[who] = s
    with tempfile.TemporaryDirectory() as d:
        for who, s in secrets.items():
            for k in ("tls.crt", "tls.key", "ca.crt"):
                with open(os.path.join(d, f"{who}-{k}"), "wb") as f:
                    f.write(base64.b64decode(s["data"][k]))
        if open(os.path.join(d, "sensor-ca.crt"), "rb").read() != open(os.path.join(d, "receiver-ca.crt"), "rb").read():
            problems.append("generated TLS: sensor and receiver Secrets carry different CAs")
        for who, purpose in (("receiver", "sslserver"), ("sensor", "sslclient")):
            r = run(["openssl", "verify", "-purpose", purpose, "-CAfile", os.path.join(d, f"{who}-ca.crt"), os.path.join(d, f"{who}-tls.crt")])
            if r.returncode != 0:
                problems.append(f"generated TLS: {who} certificate does not verify for {purpose}: {r.stdout.strip()} {r.stderr.strip()}")
            cm = run(["openssl", "x509", "-noout", "-pubkey", "-in", os.path.join(d, f"{who}-tls.crt")]).stdout
            km = run(["openssl", "pkey", "-pubout", "-in", os.path.join(d, f"{who}-tls.key")]).stdout
            if not cm or cm != km:
                problems.append(f"generated TLS: {who} key does not match its certificate")
        san = run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", os.path.join(d, "receiver-tls.crt")]).stdout
        want = dig(scfg, "tls.serverName")
        sans = {x.strip() for x in re.split(r"[,\n]", san)}
        if f"DNS:{want}" not in sans:
            problems.append(f"generated TLS: receiver certificate SANs ({san.strip()}) lack the sensors' tls.serverName {want}")
        for name in receiver_names(objs):
            if f"DNS:{name}" not in sans:
                problems.append(f"generated TLS: receiver certificate SANs ({san.strip()}) lack {name}")
        cname = run(["openssl", "x509", "-noout", "-subject", "-in", os.path.join(d, "sensor-tls.crt")]).stdout
        if "packetstreamer-sensor" not in cname:
            problems.append(f"generated TLS: sensor client certificate subject is {cname.strip()}")


def receiver_names(objs):
    """Names the receiver's server certificate must carry: the Service's
    FQDN, and in a tier the headless Service's FQDN and its wildcard (each
    pod's own name, POD.HEADLESS.NS.svc.DOMAIN)."""
    names = []
    svc = one(objs, "Service", "receiver")
    if svc is not None:
        names.append(svc_fqdn(svc))
    hl = headless_service(objs)
    if hl is not None:
        names += [svc_fqdn(hl), "*." + svc_fqdn(hl)]
    return names


def assert_certmanager(objs, problems):
    """cert-manager's receiver Certificate names the sensors' serverName and
    the receiver's Services (in a tier, the headless one and its wildcard)."""
    ds = one(objs, "DaemonSet", "sensor")
    want = []
    if ds is not None:
        scfg, _ = config_of(objs, ds)
        want.append(dig(scfg or {}, "tls.serverName"))
    want += receiver_names(objs)
    for cert in by_kind(objs, "Certificate"):
        if dig(cert, "metadata.labels", {}).get("app.kubernetes.io/component") != "receiver":
            continue
        names = dig(cert, "spec.dnsNames", []) or []
        for w in want:
            if w and w not in names:
                problems.append(f"cert-manager: Certificate {cert['metadata']['name']} dnsNames {names} lack {w}")


def assert_objects(objs, ctx):
    problems = []
    assert_sensor(objs, problems, ctx)
    assert_receiver(objs, problems, ctx)
    assert_pdb(objs, problems, ctx)
    for o in objs:
        if o.get("kind") in ("DaemonSet", "Deployment", "StatefulSet"):
            sa = pod_spec(o).get("serviceAccountName")
            create = ctx.get("serviceAccount", True) if o["kind"] == "DaemonSet" else ctx.get("receiverServiceAccount", True)
            if create and not any(s["metadata"]["name"] == sa for s in by_kind(objs, "ServiceAccount")):
                problems.append(f"{o['kind']} {o['metadata']['name']}: ServiceAccount {sa} is not rendered")
    if ctx.get("generatedCerts"):
        assert_generated_certs(objs, problems)
    assert_certmanager(objs, problems)
    return problems


# -------------------------------------------------------- API validation --
def k8s_validate(objs, source):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([{"source": source, "object": o} for o in objs], f)
    try:
        r = run(["node", VALIDATOR, f.name], env={**os.environ, "PS_K8S_VALIDATE_MODULES": VALIDATOR_MODULES})
    finally:
        os.unlink(f.name)
    lines = [l for l in r.stdout.splitlines() if not l.startswith("k8s-validate:")]
    if r.returncode != 0 and not lines:
        lines = [r.stderr.strip() or "validator failed"]
    return lines


# ------------------------------------------------------ check-config run --
def drop_key(cfg, dotted):
    parts = dotted.split(".")
    d = cfg
    for p in parts[:-1]:
        if not isinstance(d, dict) or p not in d:
            return False
        d = d[p]
    if isinstance(d, dict) and parts[-1] in d:
        del d[parts[-1]]
        if not d and len(parts) > 1:
            drop_key(cfg, ".".join(parts[:-1]))
        return True
    return False


def check_config(binary, objs, env_overrides):
    problems, notes = [], []
    for who in ("sensor", "receiver"):
        w = one(objs, "DaemonSet", who) if who == "sensor" else receiver_workload(objs)
        if w is None:
            continue
        cfg, err = config_of(objs, w)
        if err:
            problems.append(f"{who}: {err}")
            continue
        cfg = copy.deepcopy(cfg)
        pending = pending_keys(binary)
        removed = []
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, f"{who}.yaml")
            env = {k: v for k, v in os.environ.items() if not k.startswith("PACKETSTREAMER_")}
            # the http token the pod gets from its Secret (a tier's receivers)
            wc = pod_spec(w)["containers"][0]
            if dig(container_env(wc, "PACKETSTREAMER_HTTP_TOKEN") or {}, "valueFrom.secretKeyRef"):
                env["PACKETSTREAMER_HTTP_TOKEN"] = "t" * 48
            # a tier's receivers: the file path with the pod's name, as the
            # kubelet expands $(POD_NAME)
            fp = container_env(wc, "PACKETSTREAMER_OUTPUT_FILE_PATH")
            if who == "receiver" and fp and "value" in fp:
                env["PACKETSTREAMER_OUTPUT_FILE_PATH"] = fp["value"].replace("$(POD_NAME)", w["metadata"]["name"] + "-0")
            env.update(env_overrides.get(who, {}))
            while True:
                with open(path, "w") as f:
                    yaml.safe_dump(cfg, f)
                r = run([binary, "check-config", "--config", path, "--role", who], env=env)
                msg = (r.stderr or r.stdout).strip()
                refused = next((v for k, v in PENDING_REFUSALS.items() if k in msg), None)
                if r.returncode == 0:
                    break
                if refused and "tls" in cfg and "TLS" in msg:
                    removed.append("tls (refused: " + refused + ")")
                    del cfg["tls"]
                    continue
                # an unknown key the binary does not have yet (PENDING_KEYS)
                m = re.search(r"unknown key '([A-Za-z0-9_.]+)'", msg)
                key = m and next((k for k in pending if m.group(1) == k or m.group(1).startswith(k + ".")), None)
                if key and drop_key(cfg, key):
                    removed.append(f"{key} (unknown to this binary: {pending[key]})")
                    continue
                problems.append(f"{who}: check-config: {msg}")
                break
        if removed:
            notes.append(f"{who}: pending keys removed before check-config: {', '.join(removed)}")
    return problems, notes


# ---------------------------------------------------------------- runs --
def ctx_for(values_file, values=None):
    """What a values file (or a dict of values) changes about the expectations."""
    v = values if values is not None else (yaml.safe_load(open(values_file)) if values_file else {})
    v = v or {}
    tls = dig(v, "tls.enabled", True)
    mode = dig(v, "tls.mode", "generate")
    ctx = {
        "tls": tls,
        "generatedCerts": tls and mode == "generate",
        "existingSecrets": [x for x in (dig(v, "tls.existingSecret.receiver"), dig(v, "tls.existingSecret.sensor"),
                                         dig(v, "auth.existingSecret"), dig(v, "receiver.httpTokenSecret")) if x],
        "sensor": dig(v, "sensor.enabled", True),
        "receiver": dig(v, "receiver.enabled", True),
        "podInterfaces": dig(v, "sensor.capture.podInterfaces", True),
        "captureMode": dig(v, "sensor.capture.mode", "continuous"),
        "recorder": dig(v, "sensor.capture.recorder", {}) or {},
        "existingClaim": dig(v, "receiver.persistence.existingClaim"),
        "serviceAccount": dig(v, "serviceAccount.create", True),
        "receiverServiceAccount": dig(v, "receiver.serviceAccount.create", True),
        "receiverSAAnnotations": dig(v, "receiver.serviceAccount.annotations", {}),
        "kubernetes": dig(v, "sensor.kubernetes.enabled", "auto") is not False,
        "rbac": dig(v, "rbac.create", True),
        "pods": dig(v, "sensor.pods", {}) or {},
        "s3": dig(v, "receiver.s3", {}) or {},
        "pdb": dig(v, "receiver.podDisruptionBudget.enabled", "auto") is True,
        "requireClientCert": dig(v, "tls.requireClientCert", True),
        "replicas": dig(v, "receiver.replicas", 1),
        "tier": dig(v, "receiver.replicas", 1) > 1,
        "persistence": dig(v, "receiver.persistence.enabled", True),
        "httpTokenSecret": dig(v, "receiver.httpTokenSecret", ""),
        "pdbAuto": dig(v, "receiver.podDisruptionBudget.enabled", "auto") != False,
    }
    return ctx


def check_values_file(values_file, binary):
    label = os.path.relpath(values_file, ROOT) if values_file else "default values"
    files = [values_file] if values_file else []
    lint = helm("lint", "--strict", CHART, "--namespace", NAMESPACE, *sum((["-f", f] for f in files), []))
    report(f"helm lint --strict ({label})", [] if lint.returncode == 0 else [lint.stdout.strip() + lint.stderr.strip()])
    try:
        objs = render(files)
    except RuntimeError as e:
        report(f"helm template ({label})", [str(e)])
        return
    report(f"helm template ({label}): {len(objs)} objects", [])
    report(f"Kubernetes API schemas, unknown fields ({label})", k8s_validate(objs, label))
    report(f"assertions ({label})", assert_objects(objs, ctx_for(values_file)))
    if binary:
        fqdn = f"{RELEASE}-packetstreamer-receiver.{NAMESPACE}.svc.cluster.local"
        if ctx_for(values_file).get("tier"):
            fqdn = f"{RELEASE}-packetstreamer-receiver-headless.{NAMESPACE}.svc.cluster.local"
        problems, notes = check_config(binary, objs, {"sensor": {"PACKETSTREAMER_SENSOR_ID": "node-1",
                                                                  "PACKETSTREAMER_OUTPUT_SERVER_ADDRESS": fqdn}})
        report(f"packetstreamer check-config on the rendered configs ({label})", problems)
        for n in notes:
            print(f"     note: {n}")


def check_bad_values():
    for f in sorted(glob.glob(os.path.join(ROOT, "packaging", "chart-tests", "bad-values", "*.yaml"))):
        expect = None
        for line in open(f):
            m = re.match(r"#\s*expect:\s*(.*)", line)
            if m:
                expect = m.group(1).strip()
                break
        try:
            render([f])
            report(f"bad values refused: {os.path.basename(f)}", ["helm template accepted it"])
        except RuntimeError as e:
            ok = expect and expect in str(e)
            report(f"bad values refused: {os.path.basename(f)} ({expect})",
                   [] if ok else [f"expected message containing {expect!r}, got: {e}"])


def check_manifests(binary):
    kdir = os.path.join(ROOT, "manifests")
    if not os.path.exists(os.path.join(kdir, "kustomization.yaml")):
        report("manifests/kustomization.yaml exists", ["missing"])
        return
    r = run([os.path.join(TOOLS, "kubectl"), "kustomize", kdir])
    if r.returncode != 0:
        report("kubectl kustomize manifests/", [r.stderr.strip()])
        return
    objs = [o for o in yaml.safe_load_all(r.stdout) if o]
    report(f"kubectl kustomize manifests/: {len(objs)} objects", [])
    report("Kubernetes API schemas, unknown fields (manifests/)", k8s_validate(objs, "manifests/"))
    # the Secrets come from manifests/make-certs.sh, run here as the README says
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "PATH": TOOLS + os.pathsep + os.environ.get("PATH", "")}
        mk = run(["bash", os.path.join(kdir, "make-certs.sh"), d], env=env)
        report("manifests/make-certs.sh makes the CA, certificates and Secrets", [] if mk.returncode == 0 else [mk.stderr.strip()])
        for f in ("secret-receiver.yaml", "secret-sensor.yaml"):
            if os.path.exists(os.path.join(d, f)):
                objs.append(yaml.safe_load(open(os.path.join(d, f))))
    ctx = {"tls": True, "generatedCerts": True}
    global NAMESPACE
    saved, NAMESPACE = NAMESPACE, "packetstreamer"
    try:
        report("assertions (manifests/)", assert_objects(objs, ctx))
    finally:
        NAMESPACE = saved
    ns = [o for o in objs if o["kind"] == "Namespace"]
    problems = []
    if not ns or dig(ns[0], "metadata.labels", {}).get("pod-security.kubernetes.io/enforce") != "privileged":
        problems.append("manifests/: Namespace missing or not labelled pod-security.kubernetes.io/enforce=privileged (hostNetwork)")
    report("manifests/: namespace allows the privileged sensor", problems)
    gen = run(["bash", os.path.join(ROOT, "packaging", "gen-manifests.sh"), "--check"])
    report("manifests/ equals what packaging/gen-manifests.sh renders from the chart",
           [] if gen.returncode == 0 else [gen.stdout.strip() + gen.stderr.strip()])
    if binary:
        problems, notes = check_config(binary, objs, {"sensor": {"PACKETSTREAMER_SENSOR_ID": "node-1"}})
        report("packetstreamer check-config on manifests/ configs", problems)
        for n in notes:
            print(f"     note: {n}")


def check_tier(binary):
    """`--set receiver.replicas=3`: a tier, checked by name against what
    docs/kubernetes.md promises, then with the generic assertions, the API
    schemas and check-config; the same with cert-manager's Certificate."""
    sets = ["receiver.replicas=3", "networkPolicy.enabled=true", "networkPolicy.nodeCIDRs={10.0.0.0/16}"]
    values = {"receiver": {"replicas": 3}, "networkPolicy": {"enabled": True, "nodeCIDRs": ["10.0.0.0/16"]}}
    try:
        objs = render(sets=sets)
    except RuntimeError as e:
        report("helm template --set receiver.replicas=3", [str(e)])
        return
    label = "receiver.replicas=3"
    report(f"helm template ({label}): {len(objs)} objects", [])
    report(f"Kubernetes API schemas, unknown fields ({label})", k8s_validate(objs, label))
    report(f"assertions ({label})", assert_objects(objs, ctx_for(None, values)))
    problems = []
    rx = f"{RELEASE}-packetstreamer-receiver"
    hl = f"{rx}-headless"
    hl_fqdn = f"{hl}.{NAMESPACE}.svc.cluster.local"
    kinds = sorted(o["kind"] for o in objs)
    sts = by_kind(objs, "StatefulSet")
    if [o["metadata"]["name"] for o in sts] != [rx] or "Deployment" in kinds or "PersistentVolumeClaim" in kinds:
        problems.append(f"want one StatefulSet {rx} and no Deployment or PVC object, got {kinds}")
    else:
        sp = sts[0]["spec"]
        got = (sp.get("replicas"), sp.get("podManagementPolicy"), sp.get("serviceName"),
               [t["metadata"]["name"] for t in sp.get("volumeClaimTemplates", [])])
        if got != (3, "Parallel", hl, ["captures"]):
            problems.append(f"StatefulSet replicas, podManagementPolicy, serviceName, volumeClaimTemplates: {got}")
        tok = container_env(pod_spec(sts[0])["containers"][0], "PACKETSTREAMER_HTTP_TOKEN")
        if dig(tok or {}, "valueFrom.secretKeyRef") != {"name": f"{RELEASE}-packetstreamer-http-token", "key": "token"}:
            problems.append(f"receivers' PACKETSTREAMER_HTTP_TOKEN: {tok}")
        fp = container_env(pod_spec(sts[0])["containers"][0], "PACKETSTREAMER_OUTPUT_FILE_PATH")
        if (fp or {}).get("value") != "/var/lib/packetstreamer/captures/$(POD_NAME).pcapng":
            problems.append(f"receivers' PACKETSTREAMER_OUTPUT_FILE_PATH: {fp}, want captures named after the pod")
    svc = next((o for o in by_kind(objs, "Service") if o["metadata"]["name"] == hl), None)
    if svc is None:
        problems.append(f"no Service {hl}")
    else:
        got = (svc["spec"].get("clusterIP"), svc["spec"].get("publishNotReadyAddresses"),
               sorted((p["name"], p["port"]) for p in svc["spec"]["ports"]))
        if got != ("None", False, [("http", 8080), ("stream", 8081)]):
            problems.append(f"Service {hl}: clusterIP, publishNotReadyAddresses, ports: {got}")
    rcfg = yaml.safe_load(one(objs, "ConfigMap", "receiver")["data"]["receiver.yaml"])
    scfg = yaml.safe_load(one(objs, "ConfigMap", "sensor")["data"]["sensor.yaml"])
    if rcfg.get("tier") != {"peers": f"{hl_fqdn}:8080"}:
        problems.append(f"receiver config tier: {rcfg.get('tier')}, want peers {hl_fqdn}:8080 and no name")
    if dig(scfg, "output.server.address") != hl_fqdn or dig(scfg, "tls.serverName") != hl_fqdn:
        problems.append(f"sensor config: output.server.address {dig(scfg, 'output.server.address')}, "
                        f"tls.serverName {dig(scfg, 'tls.serverName')}; want {hl_fqdn}")
    pdbs = by_kind(objs, "PodDisruptionBudget")
    if len(pdbs) != 1 or dig(pdbs[0], "spec.maxUnavailable") != 1:
        problems.append(f"want one PodDisruptionBudget with maxUnavailable 1, got {[p['spec'] for p in pdbs]}")
    if len(by_kind(objs, "NetworkPolicy")) != 1:
        problems.append("no NetworkPolicy")
    report("tier (receiver.replicas=3): StatefulSet, headless Service, tier.peers, sensor address, token, files named after the pod, "
           "PDB, NetworkPolicy",
           problems)
    if binary:
        problems, notes = check_config(binary, objs, {"sensor": {"PACKETSTREAMER_SENSOR_ID": "node-1",
                                                                  "PACKETSTREAMER_OUTPUT_SERVER_ADDRESS": hl_fqdn}})
        report(f"packetstreamer check-config on the rendered configs ({label})", problems)
        for n in notes:
            print(f"     note: {n}")
    # the server certificate's names, generated and from cert-manager
    problems = []
    secret = next((o for o in by_kind(objs, "Secret") if o["metadata"]["name"] == f"{rx}-tls"), None)
    with tempfile.NamedTemporaryFile("wb", suffix=".crt") as f:
        f.write(base64.b64decode(secret["data"]["tls.crt"]))
        f.flush()
        san = run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", f.name]).stdout
    sans = {x.strip() for x in re.split(r"[,\n]", san)}
    want = {f"DNS:{n}" for n in (f"{rx}.{NAMESPACE}.svc.cluster.local", hl, f"{hl}.{NAMESPACE}.svc", hl_fqdn, f"*.{hl_fqdn}")}
    if want - sans:
        problems.append(f"generated receiver certificate lacks {sorted(want - sans)} (has {san.strip()})")
    cm = render(sets=sets + ["tls.mode=certManager"])
    cert = next((o for o in by_kind(cm, "Certificate") if o["metadata"]["name"] == rx), None)
    names = set(dig(cert or {}, "spec.dnsNames", []) or [])
    if {n[4:] for n in want} - names:
        problems.append(f"cert-manager Certificate {rx} lacks {sorted({n[4:] for n in want} - names)}")
    report("tier: the receiver certificate (generated and cert-manager) names the headless Service and *.its pods", problems)
    # one receiver: none of it
    problems = []
    single = render(sets=["receiver.replicas=1", "networkPolicy.enabled=true"])
    kinds = {o["kind"] for o in single}
    if "StatefulSet" in kinds or headless_service(single) or "Deployment" not in kinds:
        problems.append(f"replicas=1 renders {sorted(kinds)}")
    if "tier" in yaml.safe_load(one(single, "ConfigMap", "receiver")["data"]["receiver.yaml"]):
        problems.append("replicas=1 renders tier.peers")
    if by_kind(single, "Secret") and any(o["metadata"]["name"].endswith("-http-token") for o in by_kind(single, "Secret")):
        problems.append("replicas=1 renders an http token Secret")
    report("one receiver (replicas=1): a Deployment, no StatefulSet, headless Service, tier.peers or token", problems)


def check_names():
    """Release names short and long: every object name is a valid DNS label
    (Services: RFC 1035, at most 63), label values at most 63, and the
    sensors dial the Service that exists."""
    dns1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    for release, sets in (("packetstreamer", ()), ("capture-" + "x" * 45, ()),
                          ("capture-" + "x" * 45, ("receiver.replicas=3",))):
        problems = []
        objs = render(release=release, sets=sets)
        for o in objs:
            n = o["metadata"]["name"]
            # Services (and the DaemonSet/Deployment whose names prefix pod
            # names) must be DNS-1035 labels; other objects DNS-1123 subdomains.
            if o["kind"] in ("Service", "DaemonSet", "Deployment", "StatefulSet"):
                if len(n) > 63 or not dns1035.match(n):
                    problems.append(f"{o['kind']} name {n!r} ({len(n)}) is not a DNS-1035 label of at most 63")
            # a StatefulSet's pods carry controller-revision-hash: NAME-HASH (<= 63)
            if o["kind"] == "StatefulSet" and len(n) > 52:
                problems.append(f"StatefulSet name {n!r} ({len(n)}) is longer than 52: its controller-revision-hash label would not fit")
            elif len(n) > 253 or not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", n):
                problems.append(f"{o['kind']} name {n!r} is not a DNS-1123 subdomain")
            for k, v in (o["metadata"].get("labels") or {}).items():
                if len(str(v)) > 63:
                    problems.append(f"{o['kind']} {n}: label {k} value longer than 63")
        names = sorted(o["metadata"]["name"] for o in objs if o["kind"] in ("DaemonSet", "Deployment", "StatefulSet"))
        if len(set(names)) != 2:
            problems.append(f"sensor and receiver names collide: {names}")
        values = {"receiver": {"replicas": 3}} if sets else None
        problems += assert_objects(objs, ctx_for(None, values))
        report(f"names with release {release!r}{' (' + ', '.join(sets) + ')' if sets else ''}: {', '.join(names)}", problems)


def render_notes(sets=()):
    """NOTES.txt as `helm install` would print it. helm template does not
    render NOTES and helm install needs a cluster, so a copy of the chart
    renders the file through tpl inside a ConfigMap."""
    import shutil
    with tempfile.TemporaryDirectory() as d:
        c = os.path.join(d, "packetstreamer")
        shutil.copytree(CHART, c)
        shutil.copy(os.path.join(c, "templates", "NOTES.txt"), os.path.join(c, "notes-src.txt"))
        with open(os.path.join(c, "templates", "zz-notes.yaml"), "w") as f:
            f.write('apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |\n'
                    '    {{- tpl (.Files.Get "notes-src.txt") . | nindent 4 }}\n')
        cmd = ["template", RELEASE, c, "--namespace", NAMESPACE, "--show-only", "templates/zz-notes.yaml"]
        for x in sets:
            cmd += ["--set", x]
        r = helm(*cmd)
        if r.returncode != 0:
            raise RuntimeError(r.stderr.strip())
        return yaml.safe_load(r.stdout)["data"]["notes"]


def check_notes():
    """NOTES.txt prints commands that work against what the chart renders."""
    problems = []
    objs = render()
    notes = render_notes()
    svc = one(objs, "Service", "receiver")
    name, ns = svc["metadata"]["name"], svc["metadata"]["namespace"]
    http = next(p["port"] for p in svc["spec"]["ports"] if p["name"] == "http")
    want = [f"kubectl -n {ns} port-forward service/{name} {http}:{http}",
            f"curl -s http://127.0.0.1:{http}/api/captures",
            f"http://127.0.0.1:{http}/captures/NAME",
            f"curl -sN http://127.0.0.1:{http}/live",
            f"kubectl label namespace {ns} pod-security.kubernetes.io/enforce=privileged"]
    for w in want:
        if w not in notes:
            problems.append(f"NOTES.txt lacks: {w}")
    if "mutual TLS" not in notes:
        problems.append("NOTES.txt does not say the stream uses mutual TLS")
    plain = render_notes(["tls.enabled=false"])
    if "WARNING" not in plain:
        problems.append("NOTES.txt does not warn when tls.enabled=false")
    role = by_kind(objs, "ClusterRole")[0]["metadata"]["name"]
    for w in (f"ClusterRole {role}: get, list, watch on pods", "excluding kube-system"):
        if w not in notes:
            problems.append(f"NOTES.txt lacks: {w}")
    if "s3://" in notes:
        problems.append("NOTES.txt mentions S3 though receiver.s3.enabled is false")
    sel = render_notes(["sensor.pods.namespaces={shop,payments}", "sensor.pods.labelSelector=app=web",
                        "receiver.s3.enabled=true", "receiver.s3.bucket=captures", "receiver.s3.prefix=a/",
                        "receiver.s3.existingSecret=s3-credentials"])
    for w in ("namespaces shop, payments", 'labels "app=web"', "s3://captures/a/", "Secret s3-credentials"):
        if w not in sel:
            problems.append(f"NOTES.txt with pod selectors and S3 lacks: {w}")
    off = render_notes(["sensor.kubernetes.enabled=false"])
    if "sensor.kubernetes.enabled is false" not in off or "ClusterRole" in off:
        problems.append("NOTES.txt does not say pod discovery is off when sensor.kubernetes.enabled=false")
    # a tier: any receiver's view, each receiver's own files, S3 warned about
    rx = f"{RELEASE}-packetstreamer-receiver"
    if "receiver.s3.enabled is false" in notes or "headless" in notes:
        problems.append("NOTES.txt of one receiver speaks of a tier")
    tier = render_notes(["receiver.replicas=3"])
    for w in (f"StatefulSet {rx} (pods {rx}-0 .. {rx}-2)", f"{rx}-headless.{ns}.svc.cluster.local",
              f"kubectl -n {ns} port-forward service/{name} {http}:{http}", "/api/tier",
              f"kubectl -n {ns} port-forward pod/{rx}-0 18080:{http}", "curl -s http://127.0.0.1:18080/api/captures",
              f"get secret {RELEASE}-packetstreamer-http-token", "WARNING: receiver.s3.enabled is false",
              f"captures-{rx}-0 .. captures-{rx}-2"):
        if w not in tier:
            problems.append(f"NOTES.txt with receiver.replicas=3 lacks: {w}")
    tier_s3 = render_notes(["receiver.replicas=3", "receiver.s3.enabled=true", "receiver.s3.bucket=captures"])
    if "receiver.s3.enabled is false" in tier_s3 or "s3://captures/" not in tier_s3:
        problems.append("NOTES.txt with a tier and S3 still warns about S3, or does not name the bucket")
    report("NOTES.txt: port-forward and curl commands match the rendered Service; pods and S3 when enabled; "
           "a tier: any receiver's view, each receiver's files, S3 warning", problems)


def selftest():
    """Break a good rendering on purpose; each check must fail, with the
    message that names the break."""
    base = render()
    ctx = ctx_for(None)
    if assert_objects(base, ctx):
        report("self-test baseline passes", assert_objects(base, ctx))
        return
    cases = []

    def mutate(name, fn, expect, check="assert", start=None, start_ctx=None):
        objs = copy.deepcopy(start or base)
        fn(objs)
        cases.append((name, objs, expect, check, start_ctx or ctx))

    ds = lambda objs: pod_spec(one(objs, "DaemonSet", "sensor"))
    dep = lambda objs: pod_spec(one(objs, "Deployment", "receiver"))
    mutate("missing hostNetwork", lambda o: ds(o).pop("hostNetwork"), "hostNetwork is not true")
    mutate("dnsPolicy ClusterFirst", lambda o: ds(o).__setitem__("dnsPolicy", "ClusterFirst"), "dnsPolicy is 'ClusterFirst'")
    mutate("extra capability SYS_ADMIN", lambda o: ds(o)["containers"][0]["securityContext"]["capabilities"]["add"].append("SYS_ADMIN"),
           "not exactly [NET_RAW, NET_ADMIN, SETUID, SETGID, SETPCAP]")
    mutate("privilege escalation allowed in drop mode",
           lambda o: ds(o)["containers"][0]["securityContext"].__setitem__("allowPrivilegeEscalation", True),
           "sensor (privileges drop): allowPrivilegeEscalation is not false")
    mutate("drop mode without the switch",
           lambda o: ds(o)["containers"][0].__setitem__("env", [e for e in ds(o)["containers"][0]["env"]
                                                                 if e["name"] != "PACKETSTREAMER_PRIVILEGES_USER"]),
           "sensor: capabilities.add is")
    mutate("switch to root",
           lambda o: [e.__setitem__("value", "0:0") for e in ds(o)["containers"][0]["env"]
                      if e["name"] == "PACKETSTREAMER_PRIVILEGES_USER"],
           "not a non-root UID:GID")
    mutate("capabilities not dropped", lambda o: ds(o)["containers"][0]["securityContext"]["capabilities"].pop("drop"), "capabilities.drop is None")
    mutate("writable root filesystem", lambda o: ds(o)["containers"][0]["securityContext"].__setitem__("readOnlyRootFilesystem", False),
           "sensor: readOnlyRootFilesystem is not true")
    mutate("sensor id not from the downward API",
           lambda o: ds(o)["containers"][0]["env"].__setitem__(0, {"name": "PACKETSTREAMER_SENSOR_ID", "value": "node"}),
           "PACKETSTREAMER_SENSOR_ID is not the node name")
    mutate("readiness probe on the wrong port",
           lambda o: ds(o)["containers"][0]["readinessProbe"]["httpGet"].__setitem__("port", 9999), "readinessProbe port 9999")
    mutate("receiver with a capability",
           lambda o: dep(o)["containers"][0]["securityContext"]["capabilities"].__setitem__("add", ["NET_RAW"]), "receiver: adds capabilities")
    mutate("receiver as root", lambda o: dep(o)["securityContext"].update(runAsUser=0, runAsNonRoot=False), "receiver: not running as a non-root user")
    mutate("TLS Secret not mounted",
           lambda o: dep(o)["containers"][0].__setitem__("volumeMounts", [m for m in dep(o)["containers"][0]["volumeMounts"] if m["name"] != "tls"]),
           "is not on a mounted Secret volume")
    mutate("client certificates made optional",
           lambda o: one(o, "ConfigMap", "receiver")["data"].__setitem__(
               "receiver.yaml", one(o, "ConfigMap", "receiver")["data"]["receiver.yaml"].replace("requireClientCert: true", "requireClientCert: false")),
           "tls.requireClientCert is not true")
    mutate("Service targets an unnamed port",
           lambda o: one(o, "Service", "receiver")["spec"]["ports"][0].__setitem__("targetPort", "strem"), "which no container port names")
    mutate("server certificate for another name",
           lambda o: one(o, "ConfigMap", "sensor")["data"].__setitem__(
               "sensor.yaml", one(o, "ConfigMap", "sensor")["data"]["sensor.yaml"].replace("serverName: ps-", "serverName: other-")),
           "lack the sensors' tls.serverName")
    mutate("wrong field name (hostNetwrk)", lambda o: ds(o).__setitem__("hostNetwrk", ds(o).pop("hostNetwork")),
           "hostNetwrk\"' does not exist in type 'IPodSpec'", check="k8s")
    mutate("wrong type (containerPort: \"9090\")",
           lambda o: ds(o)["containers"][0]["ports"][0].__setitem__("containerPort", "9090"), "containerPort must be integer", check="k8s")
    mutate("bad enum (dnsPolicy: Bogus)", lambda o: ds(o).__setitem__("dnsPolicy", "Bogus"), "must be equal to one of the allowed values", check="k8s")
    # Pod discovery RBAC and selectors, S3 credentials, on renderings of the
    # ci/ values files that turn them on or off.
    ci = lambda n: os.path.join(CHART, "ci", n)
    s3_base, s3_ctx = render([ci("pods-s3-secret-values.yaml")]), ctx_for(ci("pods-s3-secret-values.yaml"))
    irsa_base, irsa_ctx = render([ci("s3-irsa-values.yaml")]), ctx_for(ci("s3-irsa-values.yaml"))
    off_base, off_ctx = render([ci("kubernetes-disabled-values.yaml")]), ctx_for(ci("kubernetes-disabled-values.yaml"))
    for name, b, c in (("pods+S3", s3_base, s3_ctx), ("IRSA", irsa_base, irsa_ctx), ("kubernetes off", off_base, off_ctx)):
        if assert_objects(b, c):
            report(f"self-test baseline ({name}) passes", assert_objects(b, c))
            return
    role = lambda objs: by_kind(objs, "ClusterRole")[0]
    binding = lambda objs: by_kind(objs, "ClusterRoleBinding")[0]

    def set_cm(objs, who, fn):
        cm = one(objs, "ConfigMap", who)
        key = f"{who}.yaml"
        cfg = yaml.safe_load(cm["data"][key])
        fn(cfg)
        cm["data"][key] = yaml.safe_dump(cfg)

    def set_env(objs, kind, who, name, entry):
        c = pod_spec(one(objs, kind, who))["containers"][0]
        c["env"] = [entry if e["name"] == name else e for e in c["env"]]

    mutate("ClusterRole also creates pods", lambda o: role(o)["rules"][0]["verbs"].append("create"),
           "not exactly get, list, watch on pods")
    mutate("ClusterRole also reads secrets", lambda o: role(o)["rules"][0]["resources"].append("secrets"),
           "not exactly get, list, watch on pods")
    mutate("ClusterRole reads pods/exec", lambda o: role(o)["rules"].append(
        {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get"]}), "not exactly get, list, watch on pods")
    mutate("binding to another ServiceAccount", lambda o: binding(o)["subjects"][0].__setitem__("name", "default"),
           "are not the sensor's ServiceAccount")
    mutate("binding to another role", lambda o: binding(o)["roleRef"].__setitem__("name", "cluster-admin"),
           "is not the pod-reader ClusterRole")
    mutate("no ClusterRole", lambda o: o.remove(role(o)), "0 ClusterRoles rendered")
    mutate("API token not mounted with discovery on", lambda o: ds(o).__setitem__("automountServiceAccountToken", False),
           "automountServiceAccountToken is not true")
    mutate("NODE_NAME from a literal",
           lambda o: set_env(o, "DaemonSet", "sensor", "NODE_NAME", {"name": "NODE_NAME", "value": "node-1"}),
           "NODE_NAME is not the node name from the downward API")
    mutate("NODE_NAME from status.hostIP",
           lambda o: set_env(o, "DaemonSet", "sensor", "NODE_NAME",
                             {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}),
           "NODE_NAME is not the node name from the downward API")
    mutate("sensor id expands NODE_NAME before it is defined",
           lambda o: ds(o)["containers"][0]["env"].reverse(), "PACKETSTREAMER_SENSOR_ID is not the node name")
    mutate("labelSelector missing from the sensor config",
           lambda o: set_cm(o, "sensor", lambda c: c["capture"]["pods"].pop("labelSelector")),
           "capture.pods.labelSelector is ''", start=s3_base, start_ctx=s3_ctx)
    mutate("namespaces missing from the sensor config",
           lambda o: set_cm(o, "sensor", lambda c: c["capture"]["pods"].pop("namespaces")),
           "capture.pods.namespaces is []", start=s3_base, start_ctx=s3_ctx)
    mutate("kube-system not excluded by default",
           lambda o: set_cm(o, "sensor", lambda c: c["capture"]["pods"].__setitem__("excludeNamespaces", [])),
           "capture.pods.excludeNamespaces is []")
    mutate("RBAC rendered with kubernetes disabled", lambda o: o.extend(by_kind(base, "ClusterRole")),
           "kubernetes disabled but RBAC objects are rendered", start=off_base, start_ctx=off_ctx)
    mutate("token mounted with kubernetes disabled", lambda o: ds(o).__setitem__("automountServiceAccountToken", True),
           "kubernetes disabled but the API token is mounted", start=off_base, start_ctx=off_ctx)
    mutate("S3 secret key as a literal env value",
           lambda o: set_env(o, "Deployment", "receiver", "AWS_SECRET_ACCESS_KEY",
                             {"name": "AWS_SECRET_ACCESS_KEY", "value": "wJalrXUtnFEMI"}),
           "AWS_SECRET_ACCESS_KEY is a literal value", start=s3_base, start_ctx=s3_ctx)
    mutate("S3 access key from another Secret",
           lambda o: set_env(o, "Deployment", "receiver", "AWS_ACCESS_KEY_ID",
                             {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "other", "key": "AWS_ACCESS_KEY_ID"}}}),
           "AWS_ACCESS_KEY_ID is not from Secret s3-credentials", start=s3_base, start_ctx=s3_ctx)
    mutate("S3 secret key in the receiver config",
           lambda o: set_cm(o, "receiver", lambda c: c["output"]["s3"].__setitem__("secretAccessKey", "wJalrXUtnFEMI")),
           "credentials belong in the environment", start=s3_base, start_ctx=s3_ctx)
    mutate("bucket not rendered",
           lambda o: set_cm(o, "receiver", lambda c: c["output"]["s3"].pop("bucket")),
           "output.s3.bucket is None", start=s3_base, start_ctx=s3_ctx)
    mutate("IRSA annotation missing",
           lambda o: one(o, "ServiceAccount", "receiver")["metadata"].pop("annotations"),
           "lacks the annotations", start=irsa_base, start_ctx=irsa_ctx)
    mutate("receiver on the sensor's ServiceAccount",
           lambda o: dep(o).__setitem__("serviceAccountName", ds(o)["serviceAccountName"]),
           "receiver and sensor share ServiceAccount", start=irsa_base, start_ctx=irsa_ctx)
    mutate("PodDisruptionBudget for other pods",
           lambda o: by_kind(o, "PodDisruptionBudget")[0]["spec"]["selector"]["matchLabels"].__setitem__(
               "app.kubernetes.io/component", "sensor"),
           "does not match the receiver pods", start=s3_base, start_ctx=s3_ctx)
    # A tier (ci/tier-values.yaml: replicas 3, NetworkPolicy, ServiceMonitor;
    # ci/tier-certmanager-emptydir-values.yaml: cert-manager).
    tier_base, tier_ctx = render([ci("tier-values.yaml")]), ctx_for(ci("tier-values.yaml"))
    tcm_base, tcm_ctx = render([ci("tier-certmanager-emptydir-values.yaml")]), ctx_for(ci("tier-certmanager-emptydir-values.yaml"))
    for name, b, c in (("tier", tier_base, tier_ctx), ("tier, cert-manager", tcm_base, tcm_ctx)):
        if assert_objects(b, c):
            report(f"self-test baseline ({name}) passes", assert_objects(b, c))
            return
    sts = lambda objs: one(objs, "StatefulSet", "receiver")
    hl = lambda objs: headless_service(objs)
    hl_fqdn = svc_fqdn(headless_service(tier_base))
    T = dict(start=tier_base, start_ctx=tier_ctx)
    mutate("tier as a Deployment", lambda o: sts(o).__setitem__("kind", "Deployment"),
           "rendered a Deployment, not a StatefulSet", **T)
    mutate("tier started in order", lambda o: sts(o)["spec"].__setitem__("podManagementPolicy", "OrderedReady"),
           "podManagementPolicy is 'OrderedReady', not Parallel", **T)
    mutate("StatefulSet on another Service", lambda o: sts(o)["spec"].__setitem__("serviceName", "other"),
           "is not the headless Service", **T)
    mutate("headless Service with a cluster IP", lambda o: hl(o)["spec"].pop("clusterIP"),
           "receiver tier: no headless Service", **T)
    mutate("headless Service publishes not-ready receivers",
           lambda o: hl(o)["spec"].__setitem__("publishNotReadyAddresses", True),
           "publishNotReadyAddresses is not false", **T)
    mutate("headless Service without the HTTP port",
           lambda o: hl(o)["spec"].__setitem__("ports", [p for p in hl(o)["spec"]["ports"] if p["name"] != "http"]),
           "the headless Service has no http port", **T)
    mutate("headless Service selecting the sensors",
           lambda o: hl(o)["spec"]["selector"].__setitem__("app.kubernetes.io/component", "sensor"),
           "the headless Service's selector does not match", **T)
    mutate("tier.peers on the stream port",
           lambda o: set_cm(o, "receiver", lambda c: c["tier"].__setitem__("peers", hl_fqdn + ":8081")),
           "tier.peers is", **T)
    mutate("tier.peers missing", lambda o: set_cm(o, "receiver", lambda c: c.pop("tier")), "tier.peers is None", **T)
    mutate("one tier.name for all", lambda o: set_cm(o, "receiver", lambda c: c["tier"].__setitem__("name", "receiver")),
           "tier.name 'receiver' is set", **T)
    mutate("sensors dial the ClusterIP Service",
           lambda o: set_env(o, "DaemonSet", "sensor", "PACKETSTREAMER_OUTPUT_SERVER_ADDRESS",
                             {"name": "PACKETSTREAMER_OUTPUT_SERVER_ADDRESS", "value": svc_fqdn(one(o, "Service", "receiver"))}),
           "PACKETSTREAMER_OUTPUT_SERVER_ADDRESS is", **T)
    mutate("sensor config dials the ClusterIP Service",
           lambda o: set_cm(o, "sensor", lambda c: c["output"]["server"].__setitem__("address", svc_fqdn(one(o, "Service", "receiver")))),
           "output.server.address is", **T)
    mutate("no http token",
           lambda o: pod_spec(sts(o))["containers"][0].__setitem__(
               "env", [e for e in pod_spec(sts(o))["containers"][0]["env"] if e["name"] != "PACKETSTREAMER_HTTP_TOKEN"]),
           "PACKETSTREAMER_HTTP_TOKEN is not from a Secret", **T)
    mutate("http token Secret not rendered",
           lambda o: o.remove(next(x for x in by_kind(o, "Secret") if x["metadata"]["name"].endswith("-http-token"))),
           "the http token Secret", **T)
    mutate("files not named after the pod",
           lambda o: pod_spec(sts(o))["containers"][0].__setitem__(
               "env", [e for e in pod_spec(sts(o))["containers"][0]["env"] if e["name"] != "PACKETSTREAMER_OUTPUT_FILE_PATH"]),
           "the receivers' files would share names in S3", **T)
    mutate("captures on a shared claim",
           lambda o: sts(o)["spec"].pop("volumeClaimTemplates"), "is not on a writable volumeClaimTemplates claim", **T)
    mutate("NetworkPolicy without receiver -> receiver HTTP",
           lambda o: by_kind(o, "NetworkPolicy")[0]["spec"].__setitem__(
               "ingress", [r for r in by_kind(o, "NetworkPolicy")[0]["spec"]["ingress"]
                           if not any(dig(f, "podSelector.matchLabels", {}).get("app.kubernetes.io/component") == "receiver"
                                      for f in r.get("from") or [])]),
           "no ingress rule lets the receivers reach each other's HTTP port", **T)
    mutate("tier PodDisruptionBudget for other pods",
           lambda o: by_kind(o, "PodDisruptionBudget")[0]["spec"]["selector"]["matchLabels"].__setitem__(
               "app.kubernetes.io/component", "sensor"), "does not match the receiver pods", **T)
    mutate("tier without a PodDisruptionBudget", lambda o: o.remove(by_kind(o, "PodDisruptionBudget")[0]),
           "without a PodDisruptionBudget", **T)
    mutate("ServiceMonitor also on the headless Service",
           lambda o: by_kind(o, "ServiceMonitor")[0]["spec"]["selector"].pop("matchExpressions"),
           "scraped once per Service", **T)

    mutate("StatefulSet field misspelt (podManagmentPolicy)",
           lambda o: sts(o)["spec"].__setitem__("podManagmentPolicy", sts(o)["spec"].pop("podManagementPolicy")),
           "'\"podManagmentPolicy\"' does not exist in type 'IStatefulSetSpec'", check="k8s", **T)
    mutate("claim template field misspelt (accesModes)",
           lambda o: sts(o)["spec"]["volumeClaimTemplates"][0]["spec"].__setitem__(
               "accesModes", sts(o)["spec"]["volumeClaimTemplates"][0]["spec"].pop("accessModes")),
           "'\"accesModes\"' does not exist in type 'IPersistentVolumeClaimSpec'", check="k8s", **T)
    mutate("headless Service field misspelt (publishNotReadyAdresses)",
           lambda o: hl(o)["spec"].__setitem__("publishNotReadyAdresses", hl(o)["spec"].pop("publishNotReadyAddresses")),
           "'\"publishNotReadyAdresses\"' does not exist in type 'IServiceSpec'", check="k8s", **T)

    def old_certs(objs):
        # the one-receiver release's certificates: same CA, no headless names
        for o in by_kind(objs, "Secret"):
            src = next((b for b in by_kind(base, "Secret") if b["metadata"]["name"] == o["metadata"]["name"]), None)
            if src is not None:
                o["data"] = copy.deepcopy(src["data"])
    mutate("server certificate without the headless names", old_certs, f"lack *.{hl_fqdn}", **T)
    mutate("cert-manager Certificate without the wildcard",
           lambda o: next(c for c in by_kind(o, "Certificate") if c["metadata"]["labels"].get("app.kubernetes.io/component") == "receiver")
           ["spec"]["dnsNames"].remove("*." + hl_fqdn),
           f"lack *.{hl_fqdn}", start=tcm_base, start_ctx=tcm_ctx)
    for name, objs, expect, check, c in cases:
        got = k8s_validate(objs, "selftest") if check == "k8s" else assert_objects(objs, {**c})
        ok = any(expect in p for p in got)
        report(f"self-test: {name} is caught", [] if ok else [f"expected a problem containing {expect!r}, got {got}"])


def selftest_pending(binary):
    """The PENDING_KEYS tolerance drops only pending keys, and only when the
    binary calls them unknown: an unknown key elsewhere still fails."""
    objs = render()
    cm = one(objs, "ConfigMap", "sensor")
    cfg = yaml.safe_load(cm["data"]["sensor.yaml"])
    cfg.setdefault("capture", {})["podz"] = {"namespaces": ["a"]}
    cm["data"]["sensor.yaml"] = yaml.safe_dump(cfg)
    problems, _notes = check_config(binary, objs, {"sensor": {"PACKETSTREAMER_SENSOR_ID": "node-1"}})
    ok = any("capture.podz" in p for p in problems)
    report("self-test: check-config still refuses an unknown key that is not pending (capture.podz)",
           [] if ok else [f"got {problems}"])


def selftest_process():
    """The whole checker, run on a copy of the chart broken on purpose (the
    sensor's hostNetwork line deleted, as in the original's chart), must exit
    non-zero and say why."""
    import shutil
    with tempfile.TemporaryDirectory() as d:
        c = os.path.join(d, "packetstreamer")
        shutil.copytree(CHART, c)
        ds = os.path.join(c, "templates", "sensor-daemonset.yaml")
        text = open(ds).read()
        broken = text.replace("      hostNetwork: true\n", "")
        with open(ds, "w") as f:
            f.write(broken)
        r = run(["/usr/bin/python3", os.path.abspath(__file__), "--default-only"],
                env={**os.environ, "PS_CHART_DIR": c})
        ok = broken != text and r.returncode == 1 and "hostNetwork is not true" in r.stdout
        report("self-test: the checker exits 1 on a chart copy without hostNetwork",
               [] if ok else [f"exit {r.returncode}, output: {r.stdout[-500:]}"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("PS_TEST_BIN", os.path.join(ROOT, "build-asan", "packetstreamer")),
                    help="packetstreamer binary for check-config (skipped if absent)")
    ap.add_argument("--selftest-only", action="store_true")
    ap.add_argument("--default-only", action="store_true", help="only the default values, no self-tests")
    a = ap.parse_args()
    binary = a.bin if os.access(a.bin, os.X_OK) else None
    if not binary:
        print(f"note: no binary at {a.bin}: check-config on rendered configs skipped")
    if a.default_only:
        check_values_file(None, None)
        print(f"packaging: {results['passed']} passed, {results['failed']} failed")
        return 1 if results["failed"] else 0
    if not a.selftest_only:
        check_values_file(None, binary)
        for f in sorted(glob.glob(os.path.join(CHART, "ci", "*.yaml"))):
            check_values_file(f, binary)
        check_bad_values()
        check_manifests(binary)
        check_tier(binary)
        check_notes()
        check_names()
        r = run(["/usr/bin/python3", os.path.join(ROOT, "packaging", "gen_chart_readme.py"), "--check"])
        report("chart README values table matches values.yaml", [] if r.returncode == 0 else [r.stdout.strip()])
    selftest()
    if binary:
        selftest_pending(binary)
    selftest_process()
    print(f"packaging: {results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
