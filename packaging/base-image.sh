#!/usr/bin/env bash
# Make the base images the Dockerfiles start FROM, without a registry:
# debootstrap --variant=minbase bookworm, then `podman import` as
#   debian:bookworm        (build stage; apt installs the -dev packages)
#   debian:bookworm-slim   (runtime; the same rootfs without docs, man pages
#                           and locales, and a dpkg filter that keeps them out,
#                           as Debian's official slim images do)
# The mirror is the URI of the active deb822 source under /etc/apt (the other
# lists on these machines are disabled); override with PS_DEBIAN_MIRROR.
# The rootfs tarballs are cached in $PS_CACHE/base; images already present in
# podman's storage are left alone (PS_REBUILD_BASE=1 forces a rebuild).
set -euo pipefail
source "$(dirname "$0")/env.sh"
SUITE=bookworm
base=$PS_CACHE/base
mkdir -p "$base"

have() { podman image exists "$1" 2>/dev/null; }
if [ "${PS_REBUILD_BASE:-0}" != 1 ] && have debian:bookworm && have debian:bookworm-slim; then
	echo "base-image: debian:bookworm and debian:bookworm-slim present"; exit 0
fi

mirror=${PS_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		# first URIs of a stanza whose Suites include the plain suite name
		mirror=$(awk -v s="$SUITE" '
			/^URIs:/ {u=$2} /^Suites:/ {for(i=2;i<=NF;i++) if($i==s) {print u; exit}}
			/^$/ {u=""}' "$f")
		[ -n "$mirror" ] && break
	done
fi
[ -n "$mirror" ] || { echo "base-image: no deb822 source for $SUITE found; set PS_DEBIAN_MIRROR" >&2; exit 1; }
echo "base-image: mirror $mirror"

full=$base/$SUITE-minbase.tar
slim=$base/$SUITE-slim.tar
if [ ! -s "$full" ] || [ "${PS_REBUILD_BASE:-0}" = 1 ]; then
	command -v debootstrap >/dev/null || apt-get install -y -qq --no-install-recommends debootstrap
	root=$(mktemp -d "$base/rootfs.XXXXXX")
	trap 'rm -rf "$root"' EXIT
	debootstrap --variant=minbase --components=main \
		--keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
		"$SUITE" "$root" "$mirror" >"$base/debootstrap.log" 2>&1 \
		|| { tail -20 "$base/debootstrap.log" >&2; exit 1; }
	cat >"$root/etc/apt/sources.list" <<SRC
deb $mirror $SUITE main
deb $mirror $SUITE-updates main
SRC
	# Like the official images: no recommends, no apt caches left behind.
	cat >"$root/etc/apt/apt.conf.d/90packetstreamer" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
APT
	# As Debian's official images do: no .deb files kept after an install.
	cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
	chroot "$root" apt-get clean
	rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log \
		"$root"/var/cache/debconf/*-old "$root"/tmp/* "$root"/root/.bash_history
	: >"$root/etc/machine-id"
	tar --numeric-owner --xattrs -C "$root" -cf "$full.tmp" . && mv "$full.tmp" "$full"
	# slim: drop docs, man pages, locales; keep them out of later installs.
	cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
DPKG
	find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
	find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
	rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
		"$root"/usr/share/groff/* "$root"/usr/share/lintian/*
	tar --numeric-owner --xattrs -C "$root" -cf "$slim.tmp" . && mv "$slim.tmp" "$slim"
fi

import() {
	podman import --quiet \
		--change 'CMD ["bash"]' \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--message "debootstrap --variant=minbase $SUITE from $mirror" \
		"$1" "$2" >/dev/null
	echo "base-image: imported $2 ($(podman image inspect --format '{{.Size}}' "$2") bytes)"
}
import "$full" debian:$SUITE
import "$slim" debian:$SUITE-slim
