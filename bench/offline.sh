#!/usr/bin/env bash
# Offline benchmark wrapper: builds nothing (`make bench` builds first).
#   bench/offline.sh [--packets N] [--codecs none,lz4,zlib] [--repeat R] ...
# BIN selects the binary (default build/packetstreamer, the Release build).
set -euo pipefail
cd "$(dirname "$0")/.."
exec /usr/bin/python3 bench/offline.py --bin "${BIN:-build/packetstreamer}" "$@"
