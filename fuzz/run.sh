#!/bin/sh
# Builds the libFuzzer targets with clang (-fsanitize=fuzzer,address,undefined)
# and runs each for a bounded time, starting from the committed corpus.
#
#   fuzz/run.sh                 every target, FUZZ_SECONDS (default 20) each
#   fuzz/run.sh batch config    only these targets
#   FUZZ_SECONDS=600 fuzz/run.sh batch
#
# New interesting inputs go to build-fuzz/corpus-<target>/ (not committed). A
# crash leaves build-fuzz/crash-<target>-*; copy it to fuzz/regress/<target>/
# once fixed: ctest replays fuzz/corpus and fuzz/regress on every build.
set -eu
cd "$(dirname "$0")/.."
OUT=${FUZZ_OUT:-build-fuzz}
SECS=${FUZZ_SECONDS:-20}
TARGETS=${*:-frame hello batch config pcap recovery netlink podmap http env session kube extract s3xml}
PKGS="libpcap libuv openssl zlib liblz4 yaml-0.1 libmicrohttpd libcurl jansson expat"
CC=${FUZZ_CC:-clang}

mkdir -p "$OUT"
CFLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -D_GNU_SOURCE"
CFLAGS="$CFLAGS -DPS_VERSION=\"fuzz\" -Isrc $(pkg-config --cflags $PKGS)"
# libcurl is not linked: src/core/curlload.c loads it when kube.c needs it
LIBS="$(pkg-config --libs $(echo "$PKGS" | sed 's/ libcurl//')) -ldl"
CORE="src/core/buf.c src/core/strvec.c src/core/wire.c src/core/codec.c src/core/config.c src/core/config_keys.c \
  src/core/config_value.c src/core/config_yaml.c src/core/config_suggest.c src/core/config_doc.c \
  src/core/hostport.c src/core/log.c"

status=0
for t in $TARGETS; do
    echo "fuzz: building $t"
    case $t in
    recovery) extra="src/receiver/recovery.c src/receiver/filename.c src/core/pcapng.c" ;;
    netlink) extra="src/sensor/ifwatch.c" ;;
    podmap) extra="src/sensor/podmap.c" ;;
    kube) extra="src/sensor/kube.c src/core/curlload.c" ;;
    s3xml) extra="src/receiver/s3xml.c" ;;
    extract)
        extra="src/receiver/query.c src/receiver/index.c src/receiver/pcapread.c"
        extra="$extra src/receiver/filename.c src/core/pcapng.c"
        ;;
    http) extra="src/core/http.c src/core/metrics.c src/receiver/filename.c" ;;
    env) extra="src/cli.c" ;;
    session)
        extra="src/receiver/hub.c src/receiver/session.c src/receiver/writer.c"
        extra="$extra src/receiver/fileset.c src/receiver/filename.c src/receiver/recovery.c"
        extra="$extra src/receiver/livefeed.c src/core/net.c src/core/tls.c src/core/pcapng.c"
        extra="$extra src/core/metrics.c src/core/http.c src/receiver/jobs.c"
        extra="$extra src/receiver/query.c src/receiver/index.c src/receiver/pcapread.c"
        ;;
    *) extra="" ;;
    esac
    # shellcheck disable=SC2086
    $CC $CFLAGS "fuzz/fuzz_$t.c" $CORE $extra -o "$OUT/fuzz_$t" $LIBS
done
for t in $TARGETS; do
    mkdir -p "$OUT/corpus-$t" "fuzz/corpus/$t"
    echo "fuzz: running $t for ${SECS}s"
    if ! "$OUT/fuzz_$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$OUT/crash-$t-" -print_final_stats=0 \
        "$OUT/corpus-$t" "fuzz/corpus/$t" >"$OUT/fuzz_$t.log" 2>&1; then
        echo "fuzz: $t FAILED (see $OUT/fuzz_$t.log and $OUT/crash-$t-*)"
        tail -40 "$OUT/fuzz_$t.log"
        status=1
    else
        grep -E "^#[0-9]+.*DONE|Done [0-9]+ runs" "$OUT/fuzz_$t.log" | tail -1 || true
    fi
done
exit $status
