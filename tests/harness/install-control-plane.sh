#!/usr/bin/env bash
# Builds (once) and caches the real Kubernetes control plane used by the end-to-end tests:
# kube-apiserver and kube-controller-manager from Debian bookworm's `kubernetes` source package,
# plus Debian's etcd-server. No cluster, no Docker, only package registries.
#
# Output: $LUCID_K8S_CACHE/<version>/bin/{kube-apiserver,kube-controller-manager}
# The cache lives outside the repo and is keyed by the Debian source version, so CI on a
# reused machine skips the ~15 minute build.
set -euo pipefail

K8S_DEB_VERSION="${K8S_DEB_VERSION:-1.20.5+really1.20.2-1.1+deb12u1}"
CACHE_ROOT="${LUCID_K8S_CACHE:-/var/cache/lucid-k8s}"
OUT="$CACHE_ROOT/$K8S_DEB_VERSION"

log() { printf '[control-plane] %s\n' "$*" >&2; }

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_apt_lists() {
  if [ ! -f /etc/apt/sources.list.d/lucid-bookworm-src.sources ]; then
    cat > /etc/apt/sources.list.d/lucid-bookworm-src.sources <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    APT_UPDATED=0
  fi
  if [ "${APT_UPDATED:-0}" != 1 ]; then
    log "apt-get update"
    apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
}

if [ -x "$OUT/bin/kube-apiserver" ] && [ -x "$OUT/bin/kube-controller-manager" ]; then
  log "cached: $OUT/bin"
  command -v etcd >/dev/null || { ensure_apt_lists; apt_install etcd-server; }
  echo "$OUT/bin"
  exit 0
fi

ensure_apt_lists
apt_install etcd-server golang-go rsync dpkg-dev golang-github-modern-go-reflect2-dev build-essential

work="$CACHE_ROOT/build-$K8S_DEB_VERSION"
rm -rf "$work"; mkdir -p "$work"; cd "$work"
log "apt-get source kubernetes=$K8S_DEB_VERSION"
apt-get source --download-only "kubernetes=$K8S_DEB_VERSION" >/dev/null
dpkg-source --no-check -x ./kubernetes_*.dsc src >/dev/null
cd src

# reflect2 1.0.1 reads runtime internals that changed in Go 1.18 and crashes the API server;
# Debian's 1.0.2 source is API-compatible.
log "replacing vendored modern-go/reflect2 with Debian's 1.0.2"
rm -rf vendor/github.com/modern-go/reflect2
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2

log "make WHAT=cmd/kube-apiserver cmd/kube-controller-manager (about 15 minutes on 2 cores)"
export GO111MODULE=off GOFLAGS=-mod=vendor GOTOOLCHAIN=local
export KUBE_GIT_VERSION="v1.20.2" KUBE_GIT_TREE_STATE=clean KUBE_GIT_COMMIT=debian
unset GOFLAGS
make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$work/build.log" 2>&1 || {
  tail -50 "$work/build.log" >&2; exit 1; }

mkdir -p "$OUT/bin"
cp _output/local/bin/linux/*/kube-apiserver _output/local/bin/linux/*/kube-controller-manager "$OUT/bin/"
cd /; rm -rf "$work"
log "built: $OUT/bin"
echo "$OUT/bin"
