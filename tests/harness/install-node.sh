#!/usr/bin/env bash
# What the real single-node cluster runs on besides the Kubernetes binaries
# (install-control-plane.sh): Debian's containerd 1.6, runc, the CNI plugins (bridge,
# host-local, loopback), iptables/ipset/conntrack for kube-proxy, dnsmasq for cluster DNS.
# The harness runs its own containerd and dnsmasq on its own socket and bridge: a system
# instance the packages may have started is stopped so nothing else manages pods here.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/harness/apt.sh
. "$here/apt.sh"
apt_install containerd runc containernetworking-plugins iptables ipset conntrack dnsmasq-base \
  iproute2 kmod
if pgrep -x containerd >/dev/null && [ -S /run/containerd/containerd.sock ]; then
  (systemctl stop containerd || service containerd stop) >/dev/null 2>&1 || true
fi
