#!/usr/bin/env bash
# Joins a Pi to the cluster as a k3s agent (K3S_URL and K3S_TOKEN from the server).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${K3S_URL:?set K3S_URL=https://<server>:6443}" "${K3S_TOKEN:?set K3S_TOKEN to the server node-token}"
K3S_VERSION="${K3S_VERSION:-v1.31.4+k3s1}"
K3S_BINARY="${K3S_BINARY:-$here/k3s-arm64}"
K3S_INSTALL_SCRIPT="${K3S_INSTALL_SCRIPT:-$here/install.sh}"
[ -x "$K3S_BINARY" ] || { echo "put the k3s $K3S_VERSION arm64 binary at $K3S_BINARY" >&2; exit 1; }
install -m 0755 "$K3S_BINARY" /usr/local/bin/k3s
INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_VERSION="$K3S_VERSION" K3S_URL="$K3S_URL" K3S_TOKEN="$K3S_TOKEN" sh "$K3S_INSTALL_SCRIPT"
