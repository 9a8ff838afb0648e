#!/usr/bin/env bash
# Builds every Lucid image, the operator's and the services', without a Docker daemon:
# static musl binaries (Debian's rustc-web with std built from Debian's rust-web-src, zig as
# the C compiler and linker through cargo-zigbuild), each in a FROM scratch image (binary,
# CA certificates, numeric user 65532, no shell, no libraries) built with Debian's buildah,
# for amd64 and arm64, gathered in one multi-arch manifest list per image.
#
#   images/build.sh                     every image, for amd64 and arm64
#   LUCID_IMAGE_ARCHES=amd64 images/build.sh lucid-operator
#   LUCID_ARM64_IMAGES=lucid-operator   build arm64 only for these images (CI's budget)
#
# Writes to $LUCID_IMAGE_OUT (default target/images):
#   <image>-<tag>.tar          OCI archive of the multi-arch manifest list, named
#                              docker.io/lucid/<image>:<tag> (what `ctr images import` and
#                              `k3s ctr images import` load; see k3s/README.md)
#   <image>-<tag>-<arch>.tar   one architecture
#   summary.tsv                image, arch, archive KiB, binary KiB, `file` of the binary
# Every binary is checked before it is packed: `file` must say static and the right machine,
# and `<binary> --version` must run (arm64 under qemu-aarch64-static).
# The tag is the operator chart's appVersion (the chart's default image is what this builds).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

ZIG_VERSION=0.15.2
ZIGBUILD_VERSION=0.24.1
TOOLS="${LUCID_IMAGE_TOOLS:-/opt/lucid-zig}"
TAG="$(awk -F'"' '/^appVersion:/ {print $2}' charts/lucid-operator/Chart.yaml)"
OUT="${LUCID_IMAGE_OUT:-$repo/target/images}"
# Cargo target dirs for the musl builds: outside the repo, so a warm CI run rebuilds little.
CACHE="${LUCID_IMAGE_CACHE:-/var/cache/lucid-images}"
read -r -a ARCHES <<<"${LUCID_IMAGE_ARCHES:-amd64 arm64}"
ARM64_ONLY_FOR="${LUCID_ARM64_IMAGES:-}"

# image name -> "manifest-path package binary"
declare -A SOURCES=(
  [lucid-operator]="Cargo.toml lucid-operator lucid-operator"
  [lucid-session-storage]="services/Cargo.toml lucid-services session-storage"
  [lucid-session-recorder]="services/Cargo.toml lucid-services session-recorder"
  [lucid-api-gateway]="services/Cargo.toml lucid-services api-gateway"
  [lucid-auth-service]="services/Cargo.toml lucid-services lucid-auth-service"
)
ORDER=(lucid-operator lucid-session-storage lucid-session-recorder lucid-api-gateway lucid-auth-service)
if [ $# -gt 0 ]; then ORDER=("$@"); fi

log() { printf '[images] %s  %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
# shellcheck source=tests/harness/apt.sh
. "$repo/tests/harness/apt.sh"

install_toolchain() {
  apt_install rustc-web cargo-web rust-web-src buildah qemu-user-static file ca-certificates
  if [ ! -x "$TOOLS/bin/python3" ] || ! "$TOOLS/bin/python3" -m ziglang version 2>/dev/null | grep -qx "$ZIG_VERSION"; then
    log "ziglang $ZIG_VERSION (PyPI)"
    python3 -m venv "$TOOLS"
    "$TOOLS/bin/pip" install -q "ziglang==$ZIG_VERSION"
  fi
  if ! "$TOOLS/bin/cargo-zigbuild" --version 2>/dev/null | grep -q "$ZIGBUILD_VERSION"; then
    log "cargo-zigbuild $ZIGBUILD_VERSION (crates.io)"
    cargo install -q --locked "cargo-zigbuild@$ZIGBUILD_VERSION" --root "$TOOLS" >&2
  fi
}

triple() { case "$1" in amd64) echo x86_64-unknown-linux-musl ;; arm64) echo aarch64-unknown-linux-musl ;; *) echo "unknown arch $1" >&2; return 1 ;; esac; }
machine() { case "$1" in amd64) echo x86-64 ;; arm64) echo "ARM aarch64" ;; esac; }

wants_arch() { # image arch
  [ "$2" != arm64 ] || [ -z "$ARM64_ONLY_FOR" ] || [[ " $ARM64_ONLY_FOR " == *" $1 "* ]]
}

# Builds one static binary; prints its path.
build_binary() { # manifest package binary arch
  local manifest=$1 package=$2 binary=$3 arch=$4 target workspace
  target="$(triple "$arch")"
  workspace="$(basename "$(dirname "$repo/$manifest")")"
  [ "$manifest" = Cargo.toml ] && workspace=operator
  log "cargo zigbuild $binary for $target"
  # Debian's cargo and rustc (1.96, with std sources) first; std is built from source for musl
  # (RUSTC_BOOTSTRAP for -Zbuild-std), zig supplies musl's libc and links statically.
  (
    export PATH="/usr/bin:$TOOLS/bin:$PATH"
    export RUSTC=/usr/bin/rustc CARGO=/usr/bin/cargo
    CARGO_ZIGBUILD_ZIG_PATH="$("$TOOLS/bin/python3" -c 'import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')"
    export CARGO_ZIGBUILD_ZIG_PATH
    export RUSTC_BOOTSTRAP=1 RUSTFLAGS="-C link-self-contained=no"
    export CARGO_TARGET_DIR="$CACHE/target-$workspace"
    /usr/bin/cargo zigbuild --release --locked -q --manifest-path "$repo/$manifest" \
      -p "$package" --bin "$binary" --target "$target" -Zbuild-std=std,panic_abort >&2
  )
  echo "$CACHE/target-$workspace/$target/release/$binary"
}

# `file` must say statically linked for the right machine, and --version must run.
verify_binary() { # path arch
  local exe=$1 arch=$2 kind
  kind="$(file -b "$exe")"
  [[ "$kind" == *"$(machine "$arch")"* ]] || { echo "$exe is not $arch: $kind" >&2; return 1; }
  [[ "$kind" == *"static"* ]] || { echo "$exe is not static: $kind" >&2; return 1; }
  if [ "$arch" = "$(dpkg --print-architecture)" ]; then
    "$exe" --version >&2
  elif [ "$arch" = arm64 ]; then
    qemu-aarch64-static "$exe" --version >&2
  else
    qemu-x86_64-static "$exe" --version >&2
  fi
}

pack() { # image arch binary-path binary-name
  local image=$1 arch=$2 exe=$3 binary=$4 root ctr
  root="$(mktemp -d)"
  install -D -m 0755 "$exe" "$root/usr/local/bin/$binary"
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  printf 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'nonroot:x:65532:\n' >"$root/etc/group"
  ctr="$($B from --arch "$arch" scratch)"
  $B copy "$ctr" "$root/" / >/dev/null
  $B config --arch "$arch" --os linux --user 65532:65532 --workingdir / \
    --entrypoint "[\"/usr/local/bin/$binary\"]" \
    --label org.opencontainers.image.title="$image" \
    --label org.opencontainers.image.version="$TAG" \
    --label lucid.io/security=hardened "$ctr"
  $B commit -q --rm "$ctr" "localhost/$image:$TAG-$arch" >/dev/null
  rm -f "$OUT/$image-$TAG-$arch.tar"
  $B push -q "localhost/$image:$TAG-$arch" "oci-archive:$OUT/$image-$TAG-$arch.tar:docker.io/lucid/$image:$TAG" >/dev/null
  $B manifest add --arch "$arch" "localhost/$image:$TAG" "localhost/$image:$TAG-$arch" >/dev/null
  rm -rf "$root"
  printf '%s\t%s\t%s\t%s\t%s\n' "$image" "$arch" "$(du -k "$OUT/$image-$TAG-$arch.tar" | cut -f1)" \
    "$(du -k "$exe" | cut -f1)" "$(file -b "$exe" | cut -d, -f1-2,4- | tr -s ' ')" >>"$OUT/summary.tsv"
}

install_toolchain
B="buildah --storage-driver vfs"
mkdir -p "$OUT" "$CACHE"
: >"$OUT/summary.tsv"
for image in "${ORDER[@]}"; do
  [ -n "${SOURCES[$image]:-}" ] || { echo "unknown image $image (known: ${!SOURCES[*]})" >&2; exit 2; }
  read -r manifest package binary <<<"${SOURCES[$image]}"
  $B manifest rm "localhost/$image:$TAG" >/dev/null 2>&1 || true
  $B manifest create "localhost/$image:$TAG" >/dev/null
  for arch in "${ARCHES[@]}"; do
    wants_arch "$image" "$arch" || continue
    exe="$(build_binary "$manifest" "$package" "$binary" "$arch")"
    verify_binary "$exe" "$arch"
    pack "$image" "$arch" "$exe" "$binary"
  done
  rm -f "$OUT/$image-$TAG.tar"
  $B manifest push -q --all "localhost/$image:$TAG" "oci-archive:$OUT/$image-$TAG.tar:docker.io/lucid/$image:$TAG" >/dev/null
  log "$OUT/$image-$TAG.tar"
done
column -t -s $'\t' "$OUT/summary.tsv" >&2
echo "$OUT"
