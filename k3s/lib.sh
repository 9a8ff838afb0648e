# shellcheck shell=bash
# Sourced by install-server.sh and install-agent.sh: one air-gapped k3s node from the files
# next to these scripts (README.md, "What to bring"). Every file is checked against its
# checksum before it is installed, on the server and on every agent.

# The k3s release these scripts install. Kubernetes 1.36 is supported upstream until
# 2027-06-28: take each new v1.36.x+k3sN patch when it comes out (change it here, bring that
# release's files, rerun the install scripts), and move to a newer minor before that date.
K3S_VERSION="${K3S_VERSION:-v1.36.5+k3s1}"

here=$(dirname -- "${BASH_SOURCE[0]}")
here=$(cd -- "${here}" && pwd)
K3S_BINARY="${K3S_BINARY:-${here}/k3s-arm64}"
K3S_INSTALL_SCRIPT="${K3S_INSTALL_SCRIPT:-${here}/install.sh}"
K3S_SHA256SUMS="${K3S_SHA256SUMS:-${here}/sha256sum-arm64.txt}"
LUCID_IMAGES="${LUCID_IMAGES:-${here}/images}"
ssd_mount=/mnt/myssd
images_dir=/var/lib/rancher/k3s/agent/images

die() { printf '%s: %s\n' "${0##*/}" "$*" >&2; exit 1; }
note() { printf '%s\n' "$*"; }

sha256_of() { # file
  local line
  line=$(sha256sum -- "$1")
  printf '%s\n' "${line%% *}"
}

# Checks a k3s release file against a pinned sum (K3S_SHA256, K3S_AIRGAP_SHA256) or, by
# default, against the release's own sha256sum-arm64.txt.
verify_release_file() { # file release-name pinned-sum
  local file=$1 name=$2 want=$3 got
  if [[ -z "${want}" ]]; then
    [[ -f "${K3S_SHA256SUMS}" ]] ||
      die "no checksum for ${name}: put k3s ${K3S_VERSION}'s sha256sum-arm64.txt at ${K3S_SHA256SUMS}"
    want=$(awk -v f="${name}" '$2 == f || $2 == "*" f { print $1; exit }' "${K3S_SHA256SUMS}")
    [[ -n "${want}" ]] || die "${K3S_SHA256SUMS} lists no ${name}: is it the sums file of k3s ${K3S_VERSION}?"
  fi
  got=$(sha256_of "${file}")
  [[ "${got}" == "${want}" ]] ||
    die "checksum mismatch: ${file} is ${got}, k3s ${K3S_VERSION}'s ${name} is ${want}"
  note "checksum ok: ${file}"
}

check_node() {
  local arch fs route
  [[ "${EUID}" -eq 0 ]] || die "run as root (sudo)"
  arch=$(uname -m)
  [[ "${arch}" == aarch64 ]] || die "expected an arm64 (aarch64) board, got ${arch}"
  fs=$(stat -fc %T /sys/fs/cgroup)
  [[ "${fs}" == cgroup2fs ]] || die "cgroup v1 at /sys/fs/cgroup: Kubernetes 1.35+ needs cgroup v2; run prepare-node.sh"
  grep -qw memory /sys/fs/cgroup/cgroup.controllers ||
    die "the memory cgroup controller is off: run prepare-node.sh, which says how to turn it on"
  route=$(ip -4 route show default)
  [[ -n "${route}" ]] ||
    die "no default route: k3s needs one even air-gapped (README, step 1: the dummy route)"
}

# Sets board (4gb or 8gb) from LUCID_BOARD or the memory the kernel reports.
pick_board() {
  local kib
  case "${LUCID_BOARD:-auto}" in
    4gb | 8gb) board=${LUCID_BOARD}; return ;;
    auto) ;;
    *) die "LUCID_BOARD must be auto, 4gb or 8gb, not ${LUCID_BOARD}" ;;
  esac
  kib=$(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo)
  if ((kib < 3 * 1024 * 1024)); then
    die "only $((kib / 1024)) MiB of memory: the reservations are sized for 4 GB and 8 GB boards (LUCID_BOARD=4gb forces the 4 GB ones)"
  elif ((kib < 6 * 1024 * 1024)); then
    board=4gb
  else
    board=8gb # 8 GB and 16 GB boards: the same reservations, the rest is allocatable
  fi
}

# Sets ssd (yes or no) from LUCID_SSD or whether the SSD is mounted.
pick_ssd() {
  case "${LUCID_SSD:-auto}" in
    yes) ssd=yes ;;
    no) ssd=no ;;
    auto) if mountpoint -q "${ssd_mount}"; then ssd=yes; else ssd=no; fi ;;
    *) die "LUCID_SSD must be auto, yes or no, not ${LUCID_SSD}" ;;
  esac
  if [[ "${ssd}" == yes ]] && ! mountpoint -q "${ssd_mount}"; then
    die "LUCID_SSD=yes but nothing is mounted at ${ssd_mount}: mount the SSD there first (README, step 1)"
  fi
}

# Config files go where none is, or an identical one. Where a different one is, the run stops
# before installing anything, unless K3S_CONFIG_EXISTING says keep (yours stays) or replace
# (ours goes in, yours is saved as <file>.bak).
plan_configs() { # role (server or agent): sets config_src and config_dest
  local role=$1 unit=k3s
  if [[ "${role}" == agent ]]; then unit=k3s-agent; fi
  config_src=("${here}/config/${role}.yaml" "${here}/config/reserved/${role}-${board}.yaml")
  config_dest=(/etc/rancher/k3s/config.yaml /etc/rancher/k3s/config.yaml.d/10-lucid-reserved.yaml)
  if [[ "${role}" == server ]]; then
    config_src+=("${here}/manifests/lucid-ssd.yaml")
    config_dest+=(/var/lib/rancher/k3s/server/manifests/lucid-ssd.yaml)
  fi
  if [[ "${ssd}" == yes ]]; then
    config_src+=("${here}/config/ssd.yaml" "${here}/config/requires-ssd.conf")
    config_dest+=(/etc/rancher/k3s/config.yaml.d/20-lucid-ssd.yaml "/etc/systemd/system/${unit}.service.d/lucid-ssd.conf")
  fi
  if [[ -n "${K3S_REGISTRIES:-}" ]]; then
    [[ -f "${K3S_REGISTRIES}" ]] || die "K3S_REGISTRIES: no file ${K3S_REGISTRIES}"
    config_src+=("${K3S_REGISTRIES}")
    config_dest+=(/etc/rancher/k3s/registries.yaml)
  fi
}

check_configs() {
  local i src dest
  case "${K3S_CONFIG_EXISTING:=stop}" in
    stop | keep | replace) ;;
    *) die "K3S_CONFIG_EXISTING must be stop, keep or replace, not ${K3S_CONFIG_EXISTING}" ;;
  esac
  [[ "${K3S_CONFIG_EXISTING}" == stop ]] || return 0
  for i in "${!config_src[@]}"; do
    src=${config_src[i]} dest=${config_dest[i]}
    if [[ -e "${dest}" ]] && ! cmp -s -- "${src}" "${dest}"; then
      diff -u -- "${dest}" "${src}" >&2 || true
      die "${dest} differs from ${src} (diff above). Rerun with K3S_CONFIG_EXISTING=keep to keep yours, or =replace to install ours (yours is then saved as ${dest}.bak)"
    fi
  done
}

install_configs() {
  local i src dest
  for i in "${!config_src[@]}"; do
    src=${config_src[i]} dest=${config_dest[i]}
    if [[ -e "${dest}" ]] && ! cmp -s -- "${src}" "${dest}"; then
      if [[ "${K3S_CONFIG_EXISTING}" == keep ]]; then
        note "kept ${dest} (differs from ${src})"
        continue
      fi
      cp -p -- "${dest}" "${dest}.bak"
    fi
    install -D -m 0600 -- "${src}" "${dest}"
    note "installed ${dest}"
  done
  if [[ "${ssd}" == no ]]; then
    note "no SSD at ${ssd_mount}: this board gets no lucid.io/ssd label (no lucid-ssd volumes land here)"
  fi
}

# k3s's own images (pause, CoreDNS, local-path, ...) come from the release's airgap archive.
find_airgap_images() { # sets airgap
  local ext
  airgap="${K3S_AIRGAP_IMAGES:-}"
  if [[ -z "${airgap}" ]]; then
    for ext in tar.zst tar.gz tar; do
      if [[ -f "${here}/k3s-airgap-images-arm64.${ext}" ]]; then
        airgap="${here}/k3s-airgap-images-arm64.${ext}"
        break
      fi
    done
  fi
  [[ -n "${airgap}" && -f "${airgap}" ]] ||
    die "put k3s ${K3S_VERSION}'s k3s-airgap-images-arm64.tar.zst next to this script (or set K3S_AIRGAP_IMAGES)"
}

# Every file checked before anything is installed.
verify_files() {
  local got
  [[ -f "${K3S_BINARY}" ]] || die "put the k3s ${K3S_VERSION} arm64 binary (k3s-arm64) at ${K3S_BINARY}"
  verify_release_file "${K3S_BINARY}" k3s-arm64 "${K3S_SHA256:-}"
  find_airgap_images
  verify_release_file "${airgap}" "${airgap##*/}" "${K3S_AIRGAP_SHA256:-}"
  [[ -f "${K3S_INSTALL_SCRIPT}" ]] ||
    die "put k3s's install script at ${K3S_INSTALL_SCRIPT} (README, \"What to bring\")"
  if [[ -n "${K3S_INSTALL_SCRIPT_SHA256:-}" ]]; then
    got=$(sha256_of "${K3S_INSTALL_SCRIPT}")
    [[ "${got}" == "${K3S_INSTALL_SCRIPT_SHA256}" ]] ||
      die "checksum mismatch: ${K3S_INSTALL_SCRIPT} is ${got}, expected ${K3S_INSTALL_SCRIPT_SHA256}"
    note "checksum ok: ${K3S_INSTALL_SCRIPT}"
  fi
  # The Lucid images (operator and services): archives listed in LUCID_IMAGES/SHA256SUMS.
  # Without that directory they must come from a registry mirror.
  if [[ -d "${LUCID_IMAGES}" ]]; then
    LUCID_IMAGES=$(cd -- "${LUCID_IMAGES}" && pwd)
    [[ -f "${LUCID_IMAGES}/SHA256SUMS" ]] ||
      die "${LUCID_IMAGES} has no SHA256SUMS: write it where the images were built (README, step 2)"
    (cd -- "${LUCID_IMAGES}" && sha256sum --check --strict --quiet SHA256SUMS) ||
      die "an archive in ${LUCID_IMAGES} does not match its SHA256SUMS"
    note "checksum ok: the image archives in ${LUCID_IMAGES}"
  else
    note "no ${LUCID_IMAGES}: the Lucid images must come from the registry mirror (K3S_REGISTRIES) or be added later (README, step 2)"
  fi
}

install_k3s_binary() {
  local version
  install -m 0755 -- "${K3S_BINARY}" /usr/local/bin/k3s
  version=$(/usr/local/bin/k3s --version)
  [[ "${version}" == *"${K3S_VERSION}"* ]] ||
    die "/usr/local/bin/k3s says '${version%%$'\n'*}', expected ${K3S_VERSION}"
}

# Image archives go to agent/images, which k3s imports when it starts and while it runs; the
# copies are checked again.
install_images() {
  local name=${airgap##*/} old sum file
  mkdir -p "${images_dir}"
  for old in "${images_dir}"/k3s-airgap-images-*; do # an older release's archive
    if [[ -e "${old}" && "${old##*/}" != "${name}" ]]; then rm -f -- "${old}"; fi
  done
  install -m 0644 -- "${airgap}" "${images_dir}/${name}"
  verify_release_file "${images_dir}/${name}" "${name}" "${K3S_AIRGAP_SHA256:-}"
  [[ -d "${LUCID_IMAGES}" ]] || return 0
  while read -r sum file; do
    file=${file#\*}
    [[ -n "${sum}" && "${file}" != */* ]] || die "unexpected line in ${LUCID_IMAGES}/SHA256SUMS: ${sum} ${file}"
    install -m 0644 -- "${LUCID_IMAGES}/${file}" "${images_dir}/${file}"
    note "image archive: ${images_dir}/${file}"
  done <"${LUCID_IMAGES}/SHA256SUMS"
  (cd -- "${images_dir}" && sha256sum --check --strict --quiet -- "${LUCID_IMAGES}/SHA256SUMS") ||
    die "an archive copied to ${images_dir} does not match ${LUCID_IMAGES}/SHA256SUMS"
  note "checksum ok: the image archives in ${images_dir}"
}

run_k3s_install_script() {
  # Uses /usr/local/bin/k3s as installed above; server or agent follows from K3S_URL.
  INSTALL_K3S_SKIP_DOWNLOAD=true sh "${K3S_INSTALL_SCRIPT}"
}

install_node() { # role (server or agent)
  local role=$1
  check_node
  pick_board
  pick_ssd
  note "k3s ${K3S_VERSION} ${role}, ${board} board, SSD: ${ssd}"
  plan_configs "${role}"
  check_configs
  verify_files
  install_k3s_binary
  install_images
  install_configs
  run_k3s_install_script
}
