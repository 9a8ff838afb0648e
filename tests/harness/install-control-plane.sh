#!/usr/bin/env bash
# Builds (once) and caches real Kubernetes 1.20.2 from Debian bookworm's `kubernetes` source
# package: kube-apiserver and kube-controller-manager (the control plane every end-to-end test
# uses) and kubelet, kube-scheduler and kube-proxy (the real single-node cluster), plus
# Debian's etcd-server. No cluster, no Docker, only package registries.
#
# Output: $LUCID_K8S_CACHE/<version>-<flavour>/bin/{kube-apiserver,kube-controller-manager,
#         kubelet,kube-scheduler,kube-proxy}
# The cache lives outside the repo and is keyed by the Debian source version and build flavour,
# so CI on a reused machine skips the ~20 minute build.
set -euo pipefail

K8S_DEB_VERSION="${K8S_DEB_VERSION:-1.20.5+really1.20.2-1.1+deb12u1}"
# `providerless`: no cloud provider and no cloud credential provider is compiled in, so nothing
# the kubelet or controller manager runs can probe a cloud metadata address.
FLAVOUR=providerless
CACHE_ROOT="${LUCID_K8S_CACHE:-/var/cache/lucid-k8s}"
OUT="$CACHE_ROOT/$K8S_DEB_VERSION-$FLAVOUR"
BINARIES=(kube-apiserver kube-controller-manager kubelet kube-scheduler kube-proxy)

log() { printf '[control-plane] %s\n' "$*" >&2; }
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/harness/apt.sh
. "$here/apt.sh"

all_built() {
  local b
  for b in "${BINARIES[@]}"; do [ -x "$OUT/bin/$b" ] || return 1; done
}

if all_built; then
  log "cached: $OUT/bin"
  command -v etcd >/dev/null || apt_install etcd-server
  echo "$OUT/bin"
  exit 0
fi

apt_enable_source_packages
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

what="${BINARIES[*]/#/cmd/}"
log "make WHAT=\"$what\" (about 20 minutes on 2 cores)"
export GO111MODULE=off GOTOOLCHAIN=local
export KUBE_GIT_VERSION="v1.20.2" KUBE_GIT_TREE_STATE=clean KUBE_GIT_COMMIT=debian
# hack/lib/golang.sh turns `-tags=` in GOFLAGS into the build tags.
make WHAT="$what" GOFLAGS="-tags=$FLAVOUR" >"$work/build.log" 2>&1 || {
  tail -50 "$work/build.log" >&2; exit 1; }

mkdir -p "$OUT/bin"
for b in "${BINARIES[@]}"; do cp "_output/local/bin/linux/"*"/$b" "$OUT/bin/"; done
cd /; rm -rf "$work"
log "built: $OUT/bin"
echo "$OUT/bin"
