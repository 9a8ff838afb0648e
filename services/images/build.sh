#!/usr/bin/env bash
# Builds one OCI image per service binary without a Docker daemon (Debian buildah, vfs
# storage): FROM scratch, the release binary, the shared libraries it links (glibc: see
# below), CA certificates, numeric user 65532, no shell. Writes OCI archives and a
# multi-arch manifest list per service to services/target/images/, and prints their sizes.
#
# Static musl binaries would need the x86_64/aarch64-unknown-linux-musl Rust targets, which
# this toolchain does not ship and cannot fetch here; so the images carry the binary's few
# glibc libraries instead (ldd lists them). arm64 is added to the manifest only when the
# aarch64-unknown-linux-gnu target and a cross linker are installed.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG="${TAG:-0.1.0}"
OUT=target/images
mkdir -p "$OUT"
command -v buildah >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah ca-certificates >/dev/null; }
B="buildah --storage-driver vfs"

cargo build --release --locked -p lucid-services --bins >&2
arches=(amd64)
if rustup target list --installed 2>/dev/null | grep -q aarch64-unknown-linux-gnu && command -v aarch64-linux-gnu-gcc >/dev/null; then
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc cargo build --release --locked -p lucid-services --bins --target aarch64-unknown-linux-gnu >&2
  arches+=(arm64)
fi

for bin in session-storage session-recorder api-gateway; do
  $B manifest rm "lucid-$bin:$TAG" >/dev/null 2>&1 || true
  $B manifest create "lucid-$bin:$TAG" >/dev/null
  for arch in "${arches[@]}"; do
    exe=target/release/$bin; [ "$arch" = arm64 ] && exe=target/aarch64-unknown-linux-gnu/release/$bin
    root=$(mktemp -d)
    install -D -m 0755 "$exe" "$root/usr/local/bin/$bin"
    if [ "$arch" = amd64 ]; then
      for lib in $(ldd "$exe" | awk '/=>/ {print $3} /ld-linux/ {print $1}'); do
        install -D -m 0644 "$lib" "$root$lib"
      done
    fi
    install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    printf 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' > "$root/etc/passwd"
    printf 'nonroot:x:65532:\n' > "$root/etc/group"
    ctr=$($B from --arch "$arch" scratch)
    $B copy "$ctr" "$root/" / >/dev/null
    $B config --arch "$arch" --os linux --user 65532:65532 --workingdir / \
      --entrypoint "[\"/usr/local/bin/$bin\"]" --env LUCID_ENV=production \
      --label org.opencontainers.image.title="lucid-$bin" --label lucid.io/security=hardened "$ctr"
    $B commit --rm "$ctr" "lucid-$bin:$TAG-$arch" >/dev/null
    $B push "lucid-$bin:$TAG-$arch" "oci-archive:$OUT/lucid-$bin-$TAG-$arch.tar" >/dev/null
    $B manifest add --arch "$arch" "lucid-$bin:$TAG" "lucid-$bin:$TAG-$arch" >/dev/null
    rm -rf "$root"
    printf '%s\t%s\t%s\n' "lucid-$bin" "$arch" "$(du -k "$OUT/lucid-$bin-$TAG-$arch.tar" | cut -f1) KiB (OCI archive)"
  done
  $B manifest push --all "lucid-$bin:$TAG" "oci-archive:$OUT/lucid-$bin-$TAG.tar" >/dev/null
done
