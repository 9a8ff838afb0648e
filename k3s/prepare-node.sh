#!/usr/bin/env bash
# Prepares a Raspberry Pi 5 for k3s: memory cgroup on, swap off, arm64 check.
set -euo pipefail
[ "$(uname -m)" = aarch64 ] || { echo "expected an arm64 (aarch64) node, got $(uname -m)" >&2; exit 1; }
echo "page size: $(getconf PAGESIZE) bytes (16384 on Pi 5 kernels: avoid jemalloc-linked binaries)"
cmdline=/boot/firmware/cmdline.txt; [ -f "$cmdline" ] || cmdline=/boot/cmdline.txt
reboot=no
if ! grep -q "cgroup_memory=1" "$cmdline"; then
  sed -i '1 s/$/ cgroup_memory=1 cgroup_enable=memory/' "$cmdline"
  reboot=yes
fi
if command -v dphys-swapfile >/dev/null; then
  dphys-swapfile swapoff || true
  systemctl disable --now dphys-swapfile || true
fi
swapoff -a || true
[ "$reboot" = yes ] && echo "cgroup memory enabled in $cmdline: reboot, then install k3s" || echo "node ready for k3s"
