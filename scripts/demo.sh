#!/usr/bin/env bash
# Demo: a receiver and a sensor on loopback stream a generated capture.
#
#   scripts/demo.sh [BIN]        BIN defaults to build/packetstreamer
#
# Generates a 2000-packet capture in a temporary directory, starts a receiver
# on 127.0.0.1:18081 (override with DEMO_PORT) writing ./captures-demo/ in the
# repository, streams the capture with a sensor, stops the receiver with
# SIGTERM, then prints the files written and a one-line summary of each.
# Unattended; exits non-zero on any failure; never leaves a process behind.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${1:-$REPO/build/packetstreamer}"
PORT="${DEMO_PORT:-18081}"
PACKETS="${DEMO_PACKETS:-2000}"
OUT="$REPO/captures-demo"
PY=/usr/bin/python3
PCAPLIB="$REPO/tests/lib/pcaplib.py"

die() { echo "demo: $*" >&2; exit 1; }

case "$BIN" in /*) ;; *) BIN="$PWD/$BIN" ;; esac
[ -x "$BIN" ] || die "no executable at $BIN (run 'make build' first)"
[ -x "$PY" ] || die "$PY not found (apt-get install python3)"

TMP="$(mktemp -d)"
RX_PID=""
cleanup() {
    local rc=$?
    if [ -n "$RX_PID" ] && kill -0 "$RX_PID" 2>/dev/null; then
        kill -TERM "$RX_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$RX_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$RX_PID" 2>/dev/null || true
        wait "$RX_PID" 2>/dev/null || true
    fi
    if [ $rc -ne 0 ] && [ -s "$TMP/receiver.log" ]; then
        echo "--- receiver log (last lines) ---" >&2
        tail -n 20 "$TMP/receiver.log" >&2
    fi
    rm -rf "$TMP"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Only PACKETSTREAMER_* variables the binary knows may be set: drop any from
# the caller's environment (e.g. a leftover PACKETSTREAMER_BIN).
for v in $(env | sed -n 's/^\(PACKETSTREAMER_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done

"$BIN" --version

if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    die "something already listens on 127.0.0.1:$PORT (set DEMO_PORT)"
fi

INPUT="$TMP/demo.pcap"
"$PY" "$PCAPLIB" gen --kind varied --count "$PACKETS" --seed 42 --format pcap-ns --out "$INPUT"
echo "input:    $("$PY" "$PCAPLIB" summary "$INPUT")"

mkdir -p "$OUT"
# files from an earlier demo run stay; remember what is there to show only the new ones
ls -1 "$OUT" > "$TMP/before" 2>/dev/null || true

# HTTP on a free loopback port: the defaults (8080, 8082) may be taken here,
# and an address that cannot be bound stops the process.
"$BIN" receiver --listen "127.0.0.1:$PORT" --output "$OUT" --format pcapng \
    --http 127.0.0.1:0 2> "$TMP/receiver.log" &
RX_PID=$!

for _ in $(seq 100); do
    kill -0 "$RX_PID" 2>/dev/null || die "receiver exited early: $(tail -n 5 "$TMP/receiver.log")"
    if grep -qi ":$(printf '%04X' "$PORT") 00000000:0000 0A" /proc/net/tcp 2>/dev/null; then
        break
    fi
    sleep 0.1
done
grep -qi ":$(printf '%04X' "$PORT") 00000000:0000 0A" /proc/net/tcp \
    || die "receiver not listening on 127.0.0.1:$PORT after 10 s"

SENSOR_LOG="$TMP/sensor.log"
if ! timeout 120 "$BIN" sensor --read-file "$INPUT" --receiver "127.0.0.1:$PORT" --id demo \
        --http 127.0.0.1:0 2> "$SENSOR_LOG"; then
    tail -n 20 "$SENSOR_LOG" >&2
    die "sensor failed"
fi
echo "sensor:   $(tail -n 1 "$SENSOR_LOG")"

kill -TERM "$RX_PID"
rc=0
wait "$RX_PID" || rc=$?
RX_PID=""
[ $rc -eq 0 ] || die "receiver exited with $rc after SIGTERM"

mapfile -t NEW < <(ls -1 "$OUT" | grep -vxF -f "$TMP/before" || true)
[ ${#NEW[@]} -gt 0 ] || die "the receiver wrote no file into $OUT"
for f in "${NEW[@]}"; do
    case "$f" in *.part) die "left a partial file: $OUT/$f" ;; esac
done
echo "written:"
for f in "${NEW[@]}"; do
    "$PY" "$PCAPLIB" summary "$OUT/$f" || die "cannot read $OUT/$f"
done
echo "open with: tshark -r $OUT/${NEW[0]}   (or wireshark, tcpdump -r)"
