#!/usr/bin/env bash
# Check the built images for real (packaging/build-images.sh first):
#   - OCI labels, non-root user 65532, STOPSIGNAL, ENTRYPOINT
#   - the sensor binary keeps its file capabilities through COPY (getcap on the
#     mounted image) and runs as uid 65532 with only NET_RAW+NET_ADMIN granted
#   - one sensor image for every runtime: its file capabilities are
#     "permitted" only, so it execs where NET_ADMIN (or even NET_RAW) is not
#     granted, e.g. Docker's defaults and Fargate
#   - no build tools in the runtime images (no gcc, cmake, setcap)
#   - a receiver container (non-root, read-only rootfs, all caps dropped) and
#     a sensor container (host network, NET_RAW+NET_ADMIN only) stream a
#     generated capture; the file written is compared record by record.
# Prints "N passed, N failed" and exits non-zero on any failure.
set -uo pipefail
source "$(dirname "$0")/env.sh"
TAG=${1:-$(sed -n 's/^project(packetstreamer VERSION \([0-9.]*\).*/\1/p' "$REPO_DIR/CMakeLists.txt")}
S=packetstreamer-sensor:$TAG
R=packetstreamer-receiver:$TAG
PY=/usr/bin/python3
pass=0; fail=0; names=()
ok()  { pass=$((pass+1)); echo "ok   $1"; }
bad() { fail=$((fail+1)); echo "FAIL $1${2:+: $2}"; }
check() { local name=$1; shift; local out; if out=$("$@" 2>&1); then ok "$name"; else bad "$name" "$(echo "$out" | tail -3 | tr '\n' ' ')"; fi; }
inspect() { podman image inspect --format "$2" "$1"; }

check "podman storage driver is overlay" test "$(podman info --format "{{.Store.GraphDriverName}}")" = overlay
for img in "$S" "$R"; do
	check "$img exists" podman image exists "$img"
done

for img in "$S" "$R"; do
	check "$img labels" test "$(inspect "$img" '{{index .Labels "org.opencontainers.image.version"}} {{index .Labels "org.opencontainers.image.licenses"}}')" = "$TAG Apache-2.0"
	check "$img user 65532" test "$(inspect "$img" '{{.Config.User}}')" = "65532:65532"
	check "$img stopsignal" test "$(inspect "$img" '{{.Config.StopSignal}}')" = "SIGTERM"
	check "$img entrypoint" test "$(inspect "$img" '{{json .Config.Entrypoint}}')" = '["/usr/bin/packetstreamer"]'
	mnt=$(podman image mount "$img")
	check "$img has no build tools" sh -c "! ls '$mnt'/usr/bin/gcc* '$mnt'/usr/bin/cmake '$mnt'/usr/sbin/setcap >/dev/null 2>&1"
	check "$img links only present libraries" sh -c "chroot '$mnt' ldd /usr/bin/packetstreamer | grep -v 'not found' >/dev/null && ! chroot '$mnt' ldd /usr/bin/packetstreamer | grep -q 'not found'"
	# libcurl is dlopen()ed (src/core/curlload.c), so ldd does not list it:
	# a command that loads it reaches the network, not a load error.
	check "$img loads libcurl when a feature needs it" sh -c "chroot '$mnt' /usr/bin/packetstreamer job list --receiver http://127.0.0.1:9 2>&1 | grep -q \"Couldn't connect\""
	if [ "$img" = "$S" ]; then
		check "$img file caps survive COPY" sh -c "getcap '$mnt/usr/bin/packetstreamer' | grep -q 'cap_net_admin,cap_net_raw=p'"
	else
		check "$img binary has no file caps" test -z "$(getcap "$mnt/usr/bin/packetstreamer")"
	fi
	podman image unmount "$img" >/dev/null
done

caps=(--cap-drop all --cap-add NET_RAW,NET_ADMIN)
check "receiver --version" sh -c "podman run --rm '$R' --version | grep -qx 'packetstreamer $TAG'"
check "receiver receiver --help" sh -c "podman run --rm '$R' receiver --help | grep -q 'usage: packetstreamer receiver'"
check "sensor --version (NET_RAW+NET_ADMIN, uid 65532)" sh -c "podman run --rm ${caps[*]} '$S' --version | grep -qx 'packetstreamer $TAG'"
check "sensor sensor --help" sh -c "podman run --rm ${caps[*]} '$S' sensor --help | grep -q 'usage: packetstreamer sensor'"
check "sensor default CMD prints sensor help" sh -c "podman run --rm ${caps[*]} '$S' | grep -q 'usage: packetstreamer sensor'"
check "sensor runs with no-new-privileges" sh -c "podman run --rm --security-opt no-new-privileges ${caps[*]} '$S' --version"
check "sensor runs with podman's default capabilities" sh -c "podman run --rm '$S' --version | grep -qx 'packetstreamer $TAG'"
check "sensor runs as on Fargate (NET_RAW only, read-only)" sh -c "podman run --rm --read-only --cap-drop all --cap-add NET_RAW '$S' --version | grep -qx 'packetstreamer $TAG'"
check "sensor runs with no capabilities at all" sh -c "podman run --rm --cap-drop all '$S' --version | grep -qx 'packetstreamer $TAG'"
check "live sensor without NET_RAW exits 1 naming CAP_NET_RAW" sh -c "out=\$(podman run --rm --network host --cap-drop all -e PACKETSTREAMER_HTTP_ENABLE=false '$S' sensor --receiver 127.0.0.1:9 --interface lo --id nocap 2>&1); rc=\$?; [ \$rc -eq 1 ] && echo \"\$out\" | grep -q 'needs CAP_NET_RAW'"

# --- a stream between the two containers ------------------------------------
work=$(mktemp -d); rx=ps-check-rx-$$
cleanup() { podman rm -f -t 5 "$rx" >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/in" "$work/captures"
$PY "$REPO_DIR/tests/lib/pcaplib.py" gen --kind varied --count 500 --out "$work/in/in.pcapng" --format pcapng >/dev/null
chown -R 65532:65532 "$work/captures"; chmod 0755 "$work/in"; chmod 0644 "$work/in/in.pcapng"
port=$((20000 + $$ % 20000))
podman run -d --name "$rx" --network host --read-only --cap-drop all \
	--security-opt no-new-privileges -v "$work/captures:/var/lib/packetstreamer/captures:Z" \
	"$R" receiver --listen "127.0.0.1:$port" --output /var/lib/packetstreamer/captures >/dev/null
for _ in $(seq 50); do podman logs "$rx" 2>&1 | grep -qi listen && break; sleep 0.1; done
check "sensor container streams a capture to the receiver container" \
	podman run --rm --network host --read-only "${caps[@]}" -v "$work/in:/in:ro,Z" \
	"$S" sensor --receiver "127.0.0.1:$port" --read-file /in/in.pcapng --id image-check
podman stop -t 20 "$rx" >/dev/null 2>&1
check "receiver exited 0 on SIGTERM" test "$(podman inspect --format '{{.State.ExitCode}}' "$rx")" = 0
out=$(ls "$work"/captures/*.pcapng 2>/dev/null | head -1)
check "capture written by uid 65532" test "$(stat -c %u "${out:-/nonexistent}")" = 65532
check "capture identical to the input, record by record" $PY "$REPO_DIR/tests/lib/pcaplib.py" compare "$work/in/in.pcapng" "${out:-/nonexistent}"
[ $fail -eq 0 ] || podman logs "$rx" 2>&1 | tail -10

# A live sensor process (uid 65532) holds NET_RAW+NET_ADMIN as effective
# capabilities through the permitted file capabilities it raises at start
# (src/sensor/privs.h): CapEff bits 12 and 13 = 0x3000. It captures on the
# loopback interface and sends nowhere (nothing listens on port 9).
sn=ps-check-sn-$$
podman run -d --name "$sn" --network host --read-only "${caps[@]}" --security-opt no-new-privileges \
	-e PACKETSTREAMER_HTTP_ENABLE=false "$S" sensor --receiver 127.0.0.1:9 --interface lo --id capcheck >/dev/null
sleep 1
st=$(podman exec "$sn" sh -c 'grep -E "^(Uid|CapEff):" /proc/1/status' 2>&1 | tr -s '\t ' ' ')
podman rm -f -t 1 "$sn" >/dev/null 2>&1
check "running sensor is uid 65532 with CapEff = NET_RAW+NET_ADMIN only" \
	sh -c "echo '$st' | grep -q 'Uid: 65532' && echo '$st' | grep -q 'CapEff: 0000000000003000'"

for img in "$S" "$R"; do echo "size $img $(inspect "$img" '{{.Size}}') bytes"; done
echo "images: $pass passed, $fail failed"
[ $fail -eq 0 ]
