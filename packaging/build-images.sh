#!/usr/bin/env bash
# Build packetstreamer-sensor and packetstreamer-receiver with podman from the
# repository's Dockerfiles (base images from packaging/base-image.sh; no
# registry is contacted: --pull=never). The two build stages are identical, so
# --layers builds the sources once. Prints the image sizes.
#   packaging/build-images.sh [TAG]       (TAG defaults to the CMake version)
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$REPO_DIR"
"$PKG_DIR/base-image.sh"
version=$(sed -n 's/^project(packetstreamer VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
tag=${1:-$version}
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for role in receiver sensor; do
	podman build --pull=never --network host --layers \
		--build-arg VERSION="$version" --build-arg REVISION="$revision" \
		--build-arg CREATED="$created" \
		-f "Dockerfile.$role" -t "packetstreamer-$role:$tag" . \
		>"$PS_CACHE/build-$role.log" 2>&1 \
		|| { tail -30 "$PS_CACHE/build-$role.log" >&2; echo "build-images: $role failed" >&2; exit 1; }
	podman image inspect --format "packetstreamer-$role:$tag {{.Size}} bytes" "packetstreamer-$role:$tag"
done
