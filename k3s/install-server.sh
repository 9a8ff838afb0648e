#!/usr/bin/env bash
# Installs the first k3s server from a local k3s binary and install script (see README.md).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
K3S_VERSION="${K3S_VERSION:-v1.31.4+k3s1}"
K3S_BINARY="${K3S_BINARY:-$here/k3s-arm64}"
K3S_INSTALL_SCRIPT="${K3S_INSTALL_SCRIPT:-$here/install.sh}"
[ -x "$K3S_BINARY" ] || { echo "put the k3s $K3S_VERSION arm64 binary at $K3S_BINARY" >&2; exit 1; }
if [ -n "${K3S_SHA256:-}" ]; then echo "$K3S_SHA256  $K3S_BINARY" | sha256sum -c -; fi
install -m 0755 "$K3S_BINARY" /usr/local/bin/k3s
# Lean control plane for a Pi: no Traefik (the stack brings its own gateway).
INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_VERSION="$K3S_VERSION" \
  INSTALL_K3S_EXEC="server --disable traefik --write-kubeconfig-mode 0640 --node-label lucid.io/role=server" \
  sh "$K3S_INSTALL_SCRIPT"
echo "join token: /var/lib/rancher/k3s/server/node-token"
