#!/usr/bin/env bash
# Prepares a Raspberry Pi 5 (Raspberry Pi OS, arm64) for k3s; once per board, as root, and
# again after each reboot it asks for (README.md, step 1). It checks, and fixes what it can:
#   - cgroup v2 with the memory controller on (the kernel flags are added when missing; when
#     the running kernel ignores them it stops and says why)
#   - swap off; vm.max_map_count for Elasticsearch
#   - the kernel's page size (16K by default on a Pi 5; LUCID_4K_KERNEL=yes switches to 4K)
#   - the SSD at /mnt/myssd, the default route, the clock
# Exit status: 0 ready for k3s, 2 reboot and run it again, 1 something to fix by hand.
set -euo pipefail
shopt -s inherit_errexit

die() { printf 'prepare-node: %s\n' "$*" >&2; exit 1; }
note() { printf '%s\n' "$*"; }
reboot=no

[[ "${EUID}" -eq 0 ]] || die "run as root (sudo)"
arch=$(uname -m)
[[ "${arch}" == aarch64 ]] || die "expected an arm64 (aarch64) board, got ${arch}"
model=$(tr -d '\0' </proc/device-tree/model 2>/dev/null || true)
[[ "${model}" == "Raspberry Pi 5"* ]] ||
  note "warning: this board is '${model:-unknown}'; these steps are written for a Raspberry Pi 5"

boot=/boot/firmware # Raspberry Pi OS bookworm and later; /boot before
[[ -f "${boot}/cmdline.txt" ]] || boot=/boot
cmdline="${boot}/cmdline.txt"
config="${boot}/config.txt"
[[ -f "${cmdline}" ]] || die "no cmdline.txt in /boot/firmware or /boot: is this Raspberry Pi OS?"

# cgroup v2: the kubelet of Kubernetes 1.35 and later refuses to start on cgroup v1.
fs=$(stat -fc %T /sys/fs/cgroup)
[[ "${fs}" == cgroup2fs ]] ||
  die "/sys/fs/cgroup is ${fs}, not cgroup v2, which Kubernetes 1.35+ needs: remove systemd.unified_cgroup_hierarchy=0 from ${cmdline} and reboot"

# The memory controller. Raspberry Pi's kernel turns it off (cgroup_disable=memory from the
# device tree) unless cmdline.txt turns it back on, and Pi 5 kernels have been seen to ignore
# that: so the check is on the live controller list, not on the flag.
flags="cgroup_memory=1 cgroup_enable=memory"
if grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
  note "memory cgroup controller: on"
elif ! grep -qw cgroup_enable=memory "${cmdline}"; then
  lines=$(wc -l <"${cmdline}")
  ((lines <= 1)) || die "${cmdline} has ${lines} lines; it must be one line: join them, then run this again"
  cp -p -- "${cmdline}" "${cmdline}.lucid-bak"
  sed -i "1 s/\$/ ${flags}/" "${cmdline}"
  note "memory cgroup controller: off; added '${flags}' to ${cmdline} (previous: ${cmdline}.lucid-bak)"
  reboot=yes
elif ! grep -qw cgroup_enable=memory /proc/cmdline; then
  note "memory cgroup controller: off; ${cmdline} turns it on from the next boot"
  reboot=yes
else
  kernel=$(uname -r)
  order=$(tr ' ' '\n' </proc/cmdline | grep '^cgroup_' | tr '\n' ' ')
  die "the memory cgroup controller is off although the kernel was started with cgroup_enable=memory.
  kernel ${kernel}; cgroup flags in /proc/cmdline, in order: ${order}
The last of cgroup_disable=memory and cgroup_enable=memory wins, and only Raspberry Pi's own
kernel knows cgroup_enable=memory. Fix:
  - cgroup_disable=memory after cgroup_enable=memory: the kernel and the device-tree files in
    ${boot} come from different releases; upgrade the kernel and firmware packages together
    (apt full-upgrade against your package mirror) or write a current Raspberry Pi OS image.
  - a kernel that is not Raspberry Pi's (Debian's, Ubuntu's): boot Raspberry Pi's kernel.
Then reboot and run prepare-node.sh again."
fi

# Elasticsearch (lucid-elasticsearch) maps its indices into memory and refuses to start with
# fewer than 262144 memory map areas; a pod cannot raise this host-wide sysctl itself.
printf 'vm.max_map_count = 262144\n' >/etc/sysctl.d/60-lucid-elasticsearch.conf
sysctl -q -w vm.max_map_count=262144

# Swap off: the kubelet's memory accounting and eviction count RAM only, and swapping to an
# SD card wears it out.
if command -v dphys-swapfile >/dev/null; then
  dphys-swapfile swapoff || true
  systemctl disable --now dphys-swapfile || true
fi
swapoff -a
swaps=$(swapon --show --noheadings)
[[ -z "${swaps}" ]] || note "warning: swap is still on (${swaps}); turn it off for good before installing k3s"

# Page size. The Pi 5's default kernel (kernel_2712.img) uses 16K pages. The Lucid images
# (static musl) run on it; programs linked with an allocator built for 4K pages, jemalloc
# above all (a stock Redis image, many Rust binaries), abort at start on 16K pages.
page=$(getconf PAGESIZE)
if ((page == 4096)); then
  note "page size: 4K"
elif [[ "${LUCID_4K_KERNEL:-no}" == yes ]]; then
  if grep -qx 'kernel=kernel8.img' "${config}"; then
    note "page size: ${page}; ${config} already boots kernel8.img (4K pages) from the next boot"
  else
    cp -p -- "${config}" "${config}.lucid-bak"
    printf '\n[all]\nkernel=kernel8.img\n' >>"${config}"
    note "page size: ${page}; added kernel=kernel8.img (4K pages) under [all] in ${config} (previous: ${config}.lucid-bak)"
  fi
  reboot=yes
else
  note "page size: ${page} (the Pi 5's 16K kernel). Fine for the Lucid images; for third-party
  images linked with jemalloc, switch to the 4K kernel: LUCID_4K_KERNEL=yes $0"
fi

# The SSD: local-path volumes live under /mnt/myssd (README, "Storage").
if mountpoint -q /mnt/myssd; then
  ssd=$(findmnt -no SOURCE,FSTYPE /mnt/myssd)
  note "SSD: /mnt/myssd is mounted (${ssd}); this board gets the lucid.io/ssd=true label"
else
  note "SSD: nothing mounted at /mnt/myssd; this board will hold no lucid-ssd volumes"
fi

# k3s needs a default route even without an uplink (it picks the node address from it).
route=$(ip -4 route show default)
[[ -n "${route}" ]] || die "no default route; k3s needs one even air-gapped. Add a dummy one (README, step 1):
  nmcli connection add type dummy ifname dummy0 con-name dummy0 ipv4.method manual \\
    ipv4.addresses 203.0.113.254/31 ipv4.gateway 203.0.113.255 ipv4.route-metric 1000
and set node-ip to this board's LAN address in /etc/rancher/k3s/config.yaml.d/30-node-ip.yaml"

# Certificates need agreeing clocks; air-gapped boards have no time source unless you give
# them one on the LAN.
synced=$(timedatectl show --property=NTPSynchronized --value 2>/dev/null || true)
[[ "${synced}" == yes ]] ||
  note "warning: the clock is not NTP-synchronized; point systemd-timesyncd at a time server on your LAN (README, step 1)"

if [[ "${reboot}" == yes ]]; then
  note "reboot now (sudo reboot), then run prepare-node.sh again"
  exit 2
fi
note "node ready for k3s"
