#!/usr/bin/env bash
# Install s3rver, the S3-compatible server tests/integration/test_s3.py
# uploads to, from packaging/s3rver/package-lock.json (`npm ci`) into
# $PS_CACHE/s3rver; prints the path of its executable. Called by `make deps`.
# Idempotent: does nothing when the installed lockfile is the committed one.
set -euo pipefail
source "$(dirname "$0")/env.sh"
command -v npm >/dev/null || { echo "s3rver.sh: npm is required (apt-get install npm)" >&2; exit 1; }

dst=$PS_CACHE/s3rver
if ! cmp -s "$PKG_DIR/s3rver/package-lock.json" "$dst/package-lock.json" || [ ! -x "$dst/node_modules/.bin/s3rver" ]; then
	rm -rf "$dst"; mkdir -p "$dst"
	cp "$PKG_DIR/s3rver/package.json" "$PKG_DIR/s3rver/package-lock.json" "$dst/"
	( cd "$dst" && npm ci --silent --no-audit --no-fund >/dev/null )
	echo "s3rver.sh: s3rver installed in $dst" >&2
fi
echo "$dst/node_modules/.bin/s3rver"
