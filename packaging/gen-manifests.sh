#!/usr/bin/env bash
# Generate manifests/*.yaml (the plain-YAML deployment) from the Helm chart,
# so the two cannot drift: `helm template` with packaging/manifests-values.yaml
# in namespace "packetstreamer", Helm's own labels and annotations removed,
# one file per object kind. manifests/kustomization.yaml, namespace.yaml,
# make-certs.sh and README.md are written by hand.
#   packaging/gen-manifests.sh           rewrite manifests/
#   packaging/gen-manifests.sh --check   exit 1 if manifests/ differs
set -euo pipefail
source "$(dirname "$0")/env.sh"
out=$REPO_DIR/manifests
mode=${1:-write}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$TOOLS_BIN/helm" template packetstreamer "$REPO_DIR/charts/packetstreamer" \
	--namespace packetstreamer -f "$PKG_DIR/manifests-values.yaml" >"$tmp/all.yaml"
/usr/bin/python3 - "$tmp/all.yaml" "$tmp" <<'PY'
import sys, yaml
objs = [o for o in yaml.safe_load_all(open(sys.argv[1])) if o]
files = {"ServiceAccount": "serviceaccount.yaml", "ConfigMap": "configmaps.yaml",
         "DaemonSet": "sensor-daemonset.yaml", "Deployment": "receiver-deployment.yaml",
         "Service": "receiver-service.yaml", "PersistentVolumeClaim": "receiver-pvc.yaml",
         "ClusterRole": "rbac.yaml", "ClusterRoleBinding": "rbac.yaml",
         "PodDisruptionBudget": "receiver-pdb.yaml"}
DROP_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by"}
def clean(meta):
    for k in DROP_LABELS:
        (meta.get("labels") or {}).pop(k, None)
    ann = meta.get("annotations") or {}
    for k in [k for k in ann if k.startswith("helm.sh/") or k.startswith("checksum/")]:
        ann.pop(k)
    if "annotations" in meta and not meta["annotations"]:
        del meta["annotations"]
by_file = {}
for o in objs:
    clean(o["metadata"])
    tmpl = o.get("spec", {}).get("template", {})
    if tmpl:
        clean(tmpl["metadata"])
    by_file.setdefault(files[o["kind"]], []).append(o)
class Dumper(yaml.SafeDumper):
    pass
def str_presenter(dumper, data):
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)
Dumper.add_representer(str, str_presenter)
for name, items in by_file.items():
    with open(f"{sys.argv[2]}/{name}", "w") as f:
        f.write("# Generated from charts/packetstreamer by packaging/gen-manifests.sh; do not edit.\n")
        f.write("---\n".join(yaml.dump(o, Dumper=Dumper, sort_keys=False, default_flow_style=False) for o in items))
PY
rm "$tmp/all.yaml"
if [ "$mode" = --check ]; then
	rc=0
	for f in "$tmp"/*.yaml; do
		diff -u "$out/$(basename "$f")" "$f" >/dev/null 2>&1 || { echo "manifests/$(basename "$f") is stale: run packaging/gen-manifests.sh"; rc=1; }
	done
	exit $rc
fi
mkdir -p "$out"; cp "$tmp"/*.yaml "$out/"
ls "$tmp"
