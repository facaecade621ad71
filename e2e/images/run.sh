#!/usr/bin/env bash
# End-to-end with the real images: a receiver container and a sensor
# container stream live traffic from a namespace "pod" over mutual TLS, with
# the certificates and the config files the Helm chart renders in generate
# mode; the capture is then fetched over the receiver's HTTP port from the
# receiver's own loopback, which is what `kubectl port-forward` reaches.
#
#   e2e/images/run.sh            (root; packaging/build-images.sh first)
#
# Topology (network namespaces made here, addresses only inside them):
#   pspk-pod-N  eth0 10.231.0.2 --veth-- vethpspkN 10.231.0.1  pspk-node-N  (sensor container)
#   pspk-rx-N   eth0 10.231.1.2 --veth-- pspkrxN   10.231.1.1  pspk-node-N  (receiver container)
# The sensor runs as uid 65532 with only NET_RAW+NET_ADMIN, read-only, in
# pod-interface mode (the chart's default config); the receiver as uid 65532
# with no capabilities, read-only, captures on a mounted directory.
#
# Live capture, TLS and the HTTP server land with issues #3, #5 and #6. Until
# the images have them, a process refuses the chart's config ("not available
# in this version yet", an unknown pending key, an unknown flag): the run then
# prints "e2e-images: SKIPPED: <the refusal>" and exits 0. Any other failure
# fails. Prints "N passed, N failed" when it runs.
set -uo pipefail
source "$(dirname "$0")/../../packaging/env.sh"
TAG=${PS_IMAGE_TAG:-$(sed -n 's/^project(packetstreamer VERSION \([0-9.]*\).*/\1/p' "$REPO_DIR/CMakeLists.txt")}
S=packetstreamer-sensor:$TAG
R=packetstreamer-receiver:$TAG
PY=/usr/bin/python3
id=$$
NODE=pspk-node-$id POD=pspk-pod-$id RX=pspk-rx-$id
work=$(mktemp -d /tmp/pspk-e2e.XXXXXX)
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $1"; }
bad() { fail=$((fail+1)); echo "FAIL $1${2:+: $2}"; }

cleanup() {
	for c in "pspk-sensor-$id" "pspk-receiver-$id"; do podman rm -f -t 2 --ignore "$c" >/dev/null 2>&1; done
	for n in "$POD" "$RX" "$NODE"; do ip netns del "$n" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT

# Pending-feature refusals: which messages mean "not built yet", not "broken".
# An unknown http/tls key counts as pending only while the image's --help
# lacks the feature's flag (--http, --tls-cert); after that it is a failure.
# Live capture, TLS and HTTP have all landed: a refusal of any of them is a
# failure now, reported with the container's own words.
PENDING_RE="not available in this version yet|unknown key|unrecognized option|unknown option"
skip_if_pending() { # $1 = container; fails with the refusal if it refused a feature
	local msg
	msg=$(podman logs "$1" 2>&1 | grep -E -m1 "$PENDING_RE")
	if [ -n "$msg" ]; then
		echo "e2e-images: FAILED: $1 refused its configuration: $msg"
		exit 1
	fi
}

for img in "$S" "$R"; do
	podman image exists "$img" || { echo "e2e-images: no image $img (run packaging/build-images.sh)"; exit 1; }
done

# 1. Certificates and configs exactly as the chart renders them (generate mode).
# No API server here: pod discovery off, as sensor.kubernetes.enabled=false renders it.
"$TOOLS_BIN/helm" template ps "$REPO_DIR/charts/packetstreamer" --namespace capture \
	--set tls.mode=generate --set sensor.kubernetes.enabled=false >"$work/chart.yaml" ||
	{ echo "e2e-images: helm template failed"; exit 1; }
$PY - "$work" <<'PY' || { echo "e2e-images: could not extract the chart's Secrets and ConfigMaps"; exit 1; }
import base64, os, sys, yaml
work = sys.argv[1]
for o in yaml.safe_load_all(open(os.path.join(work, "chart.yaml"))):
    if not o:
        continue
    comp = o["metadata"].get("labels", {}).get("app.kubernetes.io/component")
    if o["kind"] == "Secret" and o.get("type") == "kubernetes.io/tls":
        d = os.path.join(work, f"tls-{comp}")
        os.makedirs(d)
        for k, v in o["data"].items():
            with open(os.path.join(d, k), "wb") as f:
                f.write(base64.b64decode(v))
    if o["kind"] == "ConfigMap":
        for k, v in o["data"].items():
            # Keys of work not merged yet (as packaging/check_chart.py
            # PENDING_KEYS), removed before the images see them. Every key
            # the chart renders has landed: keep it empty.
            PENDING = []
            cfg = yaml.safe_load(v)
            for key in PENDING:
                *parents, last = key.split(".")
                d = cfg
                for p in parents:
                    d = d.get(p, {}) if isinstance(d, dict) else {}
                if isinstance(d, dict):
                    d.pop(last, None)
            with open(os.path.join(work, k), "w") as f:
                f.write(yaml.safe_dump(cfg) if PENDING else v)
for need in ("tls-receiver/tls.crt", "tls-sensor/tls.key", "sensor.yaml", "receiver.yaml"):
    assert os.path.exists(os.path.join(work, need)), need
PY
# as a Secret volume with fsGroup 65532 and defaultMode 0440 would present them
chown -R 0:65532 "$work"/tls-*; chmod 0750 "$work"/tls-*; chmod 0440 "$work"/tls-*/*
chmod 0644 "$work"/*.yaml; chmod 0755 "$work"
mkdir -p "$work/captures"; chown 65532:65532 "$work/captures"
server_name=$($PY -c 'import sys,yaml; print(yaml.safe_load(open(sys.argv[1]))["tls"]["serverName"])' "$work/sensor.yaml")
http_port=$($PY -c 'import sys,yaml; print(yaml.safe_load(open(sys.argv[1]))["http"]["listen"].rsplit(":",1)[1])' "$work/receiver.yaml")
sensor_http=$($PY -c 'import sys,yaml; print(yaml.safe_load(open(sys.argv[1]))["http"]["listen"].rsplit(":",1)[1])' "$work/sensor.yaml")

# 2. The small cluster.
for n in "$NODE" "$POD" "$RX"; do ip netns add "$n"; done
ip link add "vethpspk$id" netns "$NODE" type veth peer name eth0 netns "$POD"
ip link add "pspkrx$id" netns "$NODE" type veth peer name eth0 netns "$RX"
ip -n "$NODE" addr add 10.231.0.1/24 dev "vethpspk$id"; ip -n "$NODE" addr add 10.231.1.1/24 dev "pspkrx$id"
ip -n "$POD" addr add 10.231.0.2/24 dev eth0; ip -n "$RX" addr add 10.231.1.2/24 dev eth0
for n in "$NODE" "$POD" "$RX"; do ip -n "$n" link set lo up; done
ip -n "$NODE" link set "vethpspk$id" up; ip -n "$NODE" link set "pspkrx$id" up
ip -n "$POD" link set eth0 up; ip -n "$RX" link set eth0 up

# 3. The receiver, as the Deployment runs it.
podman run -d --name "pspk-receiver-$id" --network "ns:/run/netns/$RX" --read-only \
	--cap-drop all --security-opt no-new-privileges \
	-v "$work/receiver.yaml:/etc/packetstreamer/receiver.yaml:ro" \
	-v "$work/tls-receiver:/etc/packetstreamer/tls:ro" \
	-v "$work/captures:/var/lib/packetstreamer/captures" \
	"$R" receiver --config /etc/packetstreamer/receiver.yaml >/dev/null
http_get() { # NETNS URL OUTFILE -> HTTP status
	ip netns exec "$1" $PY - "$2" "$3" <<'PY'
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        open(sys.argv[2], "wb").write(r.read()); print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print(0)
PY
}
ready=0
for _ in $(seq 50); do
	[ "$(http_get "$RX" "http://127.0.0.1:$http_port/readyz" /dev/null)" = 200 ] && { ready=1; break; }
	[ "$(podman inspect -f '{{.State.Running}}' "pspk-receiver-$id")" = true ] || break
	sleep 0.2
done
skip_if_pending "pspk-receiver-$id"
[ $ready = 1 ] && ok "receiver ready (/readyz on its HTTP port)" || { bad "receiver ready" "$(podman logs "pspk-receiver-$id" 2>&1 | tail -3)"; exit 1; }

# 4. The sensor, as the DaemonSet runs it (node name from the environment).
podman run -d --name "pspk-sensor-$id" --network "ns:/run/netns/$NODE" --read-only \
	--cap-drop all --cap-add NET_RAW,NET_ADMIN --security-opt no-new-privileges \
	-e PACKETSTREAMER_SENSOR_ID=e2e-node -e PACKETSTREAMER_OUTPUT_SERVER_ADDRESS=10.231.1.2 \
	-v "$work/sensor.yaml:/etc/packetstreamer/sensor.yaml:ro" \
	-v "$work/tls-sensor:/etc/packetstreamer/tls:ro" \
	"$S" sensor --config /etc/packetstreamer/sensor.yaml >/dev/null
ready=0
for _ in $(seq 50); do
	[ "$(http_get "$NODE" "http://127.0.0.1:$sensor_http/readyz" /dev/null)" = 200 ] && { ready=1; break; }
	[ "$(podman inspect -f '{{.State.Running}}' "pspk-sensor-$id")" = true ] || break
	sleep 0.2
done
skip_if_pending "pspk-sensor-$id"
[ $ready = 1 ] && ok "sensor ready: connected over mTLS (server name $server_name) and capturing" \
	|| { bad "sensor ready" "$(podman logs "pspk-sensor-$id" 2>&1 | tail -3)"; exit 1; }
sleep 1

# 5. Traffic from the pod: unique payloads, UDP to the node side.
count=200
ip netns exec "$POD" $PY - "$id" "$count" <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[2])):
    s.sendto(f"pspk-e2e-{sys.argv[1]}-{i:05d}".encode(), ("10.231.0.1", 9999))
    time.sleep(0.002)
PY
sleep 2
podman stop -t 20 "pspk-sensor-$id" >/dev/null
code=$(podman inspect -f '{{.State.ExitCode}}' "pspk-sensor-$id")
[ "$code" = 0 ] && ok "sensor stopped cleanly on SIGTERM" || bad "sensor exit code $code" "$(podman logs "pspk-sensor-$id" 2>&1 | tail -3)"

# 6. Fetch the capture over HTTP from the receiver's loopback (port-forward's view).
st=$(http_get "$RX" "http://127.0.0.1:$http_port/api/captures" "$work/captures.json")
[ "$st" = 200 ] && ok "GET /api/captures" || bad "GET /api/captures" "status $st"
names=$($PY -c 'import json,sys
d=json.load(open(sys.argv[1])); d=d.get("captures", d) if isinstance(d, dict) else d
print(" ".join(c["name"] for c in d))' "$work/captures.json" 2>/dev/null)
[ -n "$names" ] && ok "captures listed: $names" || bad "no captures listed" "$(head -c 300 "$work/captures.json")"
mkdir -p "$work/fetched"
for n in $names; do
	st=$(http_get "$RX" "http://127.0.0.1:$http_port/captures/$n" "$work/fetched/$n")
	[ "$st" = 200 ] || bad "GET /captures/$n" "status $st"
done
$PY - "$REPO_DIR/tests/lib" "$work/fetched" "$id" "$count" <<'PY' && ok "every packet the pod sent is in the fetched capture, on e2e-node's pod interface, and none of the sensor's own stream" || bad "fetched capture content"
import glob, os, sys
sys.path.insert(0, sys.argv[1])
import pcaplib
want = {f"pspk-e2e-{sys.argv[3]}-{i:05d}".encode() for i in range(int(sys.argv[4]))}
seen, ifaces, own = set(), set(), 0
for f in glob.glob(os.path.join(sys.argv[2], "*")):
    for ifname, ts, caplen, origlen, data in pcaplib.read_named(f):
        for w in want:
            if data.endswith(w):
                seen.add(w); ifaces.add(ifname)
        if b"\x1f\x91" in data[34:38]:   # TCP port 8081 at the IPv4 transport header
            own += 1
missing = want - seen
print(f"packets found {len(seen)}/{len(want)} on {sorted(ifaces)}; own-stream packets {own}")
ok = not missing and own == 0 and all(i.startswith("e2e-node/") and "vethpspk" in i for i in ifaces)
sys.exit(0 if ok else 1)
PY
podman stop -t 20 "pspk-receiver-$id" >/dev/null
[ "$(podman inspect -f '{{.State.ExitCode}}' "pspk-receiver-$id")" = 0 ] && ok "receiver stopped cleanly" || bad "receiver exit code"
echo "e2e-images: $pass passed, $fail failed"
[ $fail -eq 0 ]
