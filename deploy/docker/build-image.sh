#!/usr/bin/env bash
# Builds the Spate container image FROM scratch, with no base image to pull.
#
#   deploy/docker/build-image.sh            cargo build --release, then docker build
#
# Environment: SPATE_IMAGE (tag, default spate:latest); SPATE_BIN (use this prebuilt
# binary instead of building one). The build context is staged in a temporary directory:
# the binary (debug symbols stripped), every shared library `ldd` says it loads (at the
# same paths), an /etc/passwd and /etc/group naming uid/gid 65532 "spate", and the data
# directory, owned by 65532 in the image.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
IMAGE="${SPATE_IMAGE:-spate:latest}"
die() { echo "build-image.sh: $*" >&2; exit 1; }

command -v docker >/dev/null || die "docker not found"
if [ -n "${SPATE_BIN:-}" ]; then
  BIN="$SPATE_BIN"
else
  (cd "$ROOT" && cargo build --release --bin spate)
  BIN="$ROOT/target/release/spate"
fi
[ -x "$BIN" ] || die "no executable at $BIN"

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/etc" "$ctx/data"
cp "$BIN" "$ctx/rootfs/spate"
if command -v strip >/dev/null; then strip --strip-debug "$ctx/rootfs/spate"; fi

# The dynamic loader and libraries, e.g. "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)"
# and "/lib64/ld-linux-x86-64.so.2 (0x...)". A static binary has none.
libs="$(ldd "$BIN" 2>/dev/null | awk '/=> \//{print $3} /^[ \t]*\//{print $1}' || true)"
for lib in $libs; do
  mkdir -p "$ctx/rootfs$(dirname "$lib")"
  cp -L "$lib" "$ctx/rootfs$lib"
done
echo "spate:x:65532:65532:spate:/var/lib/spate:/spate" >"$ctx/rootfs/etc/passwd"
echo "spate:x:65532:" >"$ctx/rootfs/etc/group"
# Name resolution (glibc): /etc/hosts first, then DNS (the container runtime provides both).
echo "hosts: files dns" >"$ctx/rootfs/etc/nsswitch.conf"
touch "$ctx/data/.keep"

docker build -q -t "$IMAGE" -f "$ROOT/deploy/docker/Dockerfile" "$ctx" >/dev/null
size="$(docker image inspect -f '{{.Size}}' "$IMAGE")"
echo "built $IMAGE ($((size / 1024 / 1024)) MiB, $(echo "$libs" | wc -w) shared libraries)"
