#!/usr/bin/env bash
# Joins this board to the cluster as a k3s agent, air-gapped (README.md, step 4): the same
# checks, checksums and images as the server, config/agent.yaml and its drop-ins, then k3s's
# install script with the server's address and token. Run as root:
#   sudo K3S_URL=https://<server>:6443 K3S_TOKEN=<node-token> ./install-agent.sh
set -euo pipefail
shopt -s inherit_errexit
lib=$(dirname -- "${BASH_SOURCE[0]}")
# shellcheck source=lib.sh
. "${lib}/lib.sh"

[[ "${K3S_URL:-}" == https://*:6443 ]] || die "set K3S_URL=https://<server address>:6443"
[[ -n "${K3S_TOKEN:-}" ]] || die "set K3S_TOKEN to the server's token (sudo cat /var/lib/rancher/k3s/server/node-token on the server)"
export K3S_URL K3S_TOKEN
install_node agent
note "
k3s agent installed and started. On the server: sudo k3s kubectl get nodes -L lucid.io/ssd"
