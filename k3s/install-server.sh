#!/usr/bin/env bash
# Installs the cluster's k3s server on this board, air-gapped (README.md, step 3): checks the
# node, verifies and installs the k3s binary and images, puts config/server.yaml and its
# drop-ins in /etc/rancher/k3s/, the lucid-ssd StorageClass in k3s's manifests, then runs
# k3s's install script. Run as root. Settings (environment): README.md, "Script settings".
set -euo pipefail
shopt -s inherit_errexit
lib=$(dirname -- "${BASH_SOURCE[0]}")
# shellcheck source=lib.sh
. "${lib}/lib.sh"

[[ -z "${K3S_URL:-}" ]] || die "K3S_URL is set: that joins an existing cluster; unset it for the first server"
install_node server
note "
k3s server installed and started. Next:
  join token (for install-agent.sh): sudo cat /var/lib/rancher/k3s/server/node-token
  nodes and labels:                  sudo k3s kubectl get nodes -L lucid.io/ssd"
