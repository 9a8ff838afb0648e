#!/usr/bin/env bash
# The real test cluster's own images, for the host architecture only (they never reach a Pi):
#   lucid/pause       the pod sandbox image (containerd's sandbox_image), from node-images/pause.c
#   lucid/redis       Redis from Debian's source package, built with libc malloc (no jemalloc:
#                     Debian's redis-server links it), the binary and its few glibc libraries
#   lucid/mongo-wire  nx-27017 (PyPI), the MongoDB wire-protocol server the services' tests use,
#                     on Debian's python3.11: no real mongod is packaged anywhere; started by
#                     node-images/nx-start.py, which removes a stale PID file first (after a
#                     kill, PID 1 would find its own old PID in it and refuse to start)
# Each is FROM scratch, user 65532, no shell. Cached outside the repo, keyed by this script and
# pause.c; prints the directory holding the OCI archives (<name>.tar, named docker.io/lucid/<name>).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/harness/apt.sh
. "$here/apt.sh"
NX_VERSION=0.8.1
key="$(cat "$0" "$here/node-images/pause.c" "$here/node-images/nx-start.py" | sha256sum | cut -c1-12)"
OUT="${LUCID_NODE_IMAGE_CACHE:-/var/cache/lucid-node-images}/$key"
log() { printf '[node-images] %s\n' "$*" >&2; }
if [ -f "$OUT/pause.tar" ] && [ -f "$OUT/redis.tar" ] && [ -f "$OUT/mongo-wire.tar" ]; then
  echo "$OUT"; exit 0
fi
apt_install buildah ca-certificates build-essential dpkg-dev python3.11 libpython3.11-stdlib file rsync
B="buildah --storage-driver vfs"
arch="$(dpkg --print-architecture)"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT"

# Copies into $1 every shared library the ELF files under $1 need, from this machine.
add_libraries() {
  local root=$1 elf lib
  while IFS= read -r elf; do
    for lib in $(ldd "$elf" 2>/dev/null | awk '$3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}'); do
      # 0755: the kernel execs the dynamic loader, and libraries are mapped executable.
      [ -e "$root$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
    done
  done < <(find "$root" -type f -exec sh -c 'file -b "$1" | grep -q "ELF.*dynamic"' _ {} \; -print)
}

# image name, rootfs, entrypoint JSON, extra `buildah config` arguments...
make_image() {
  local name=$1 root=$2 entrypoint=$3 ctr; shift 3
  printf 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' | install -D -m 0644 /dev/stdin "$root/etc/passwd"
  printf 'nonroot:x:65532:\n' | install -D -m 0644 /dev/stdin "$root/etc/group"
  ctr="$($B from scratch)"
  $B copy "$ctr" "$root/" / >/dev/null
  $B config --arch "$arch" --os linux --user 65532:65532 --workingdir / --entrypoint "$entrypoint" "$@" "$ctr"
  $B commit -q --rm "$ctr" "localhost/lucid-node-$name" >/dev/null
  rm -f "$OUT/$name.tar"
  $B push -q "localhost/lucid-node-$name" "oci-archive:$OUT/$name.tar:docker.io/lucid/$name:harness" >/dev/null
  $B rmi "localhost/lucid-node-$name" >/dev/null 2>&1 || true
  log "$name: $(du -k "$OUT/$name.tar" | cut -f1) KiB"
}

log "pause"
mkdir -p "$work/pause/usr/local/bin"
gcc -Os -static -o "$work/pause/usr/local/bin/pause" "$here/node-images/pause.c"
make_image pause "$work/pause" '["/usr/local/bin/pause"]'

apt_enable_source_packages
# The current bookworm source (security updates included), whatever its Debian revision.
(cd "$work" && apt-get source --download-only redis >/dev/null 2>&1 &&
  dpkg-source --no-check -x ./redis_*.dsc redis-src >/dev/null)
log "redis $(cd "$work" && ls redis_*.dsc) from Debian's source, MALLOC=libc"
make -C "$work/redis-src/src" -j"$(nproc)" redis-server MALLOC=libc USE_SYSTEMD=no BUILD_TLS=no \
  >"$work/redis-build.log" 2>&1 || { tail -40 "$work/redis-build.log" >&2; exit 1; }
install -D -m 0755 "$work/redis-src/src/redis-server" "$work/redis/usr/local/bin/redis-server"
add_libraries "$work/redis"
if find "$work/redis" -name '*jemalloc*' | grep -q .; then echo "jemalloc found in the redis image" >&2; exit 1; fi
make_image redis "$work/redis" '["/usr/local/bin/redis-server"]'

log "mongo-wire: nx-27017 $NX_VERSION on Debian python3.11"
root="$work/mongo"
install -D -m 0755 /usr/bin/python3.11 "$root/usr/bin/python3.11"
mkdir -p "$root/usr/lib"
rsync -a --exclude test --exclude tests --exclude idlelib --exclude tkinter --exclude ensurepip \
  --exclude turtledemo --exclude __pycache__ --exclude 'config-3.11-*' /usr/lib/python3.11 "$root/usr/lib/"
python3 -m pip install -q --no-compile --target "$root/opt/nx" "nx-27017==$NX_VERSION" >&2
install -D -m 0644 "$here/node-images/nx-start.py" "$root/opt/nx/lucid_nx_start.py"
add_libraries "$root"
make_image mongo-wire "$root" '["/usr/bin/python3.11", "-m", "lucid_nx_start"]' \
  --env PYTHONPATH=/opt/nx --env PYTHONDONTWRITEBYTECODE=1 --env HOME=/tmp
echo "$OUT"
