#!/usr/bin/env bash
# What the chart checks need: checkov and kubernetes-validate (PyPI, pinned, in their own
# venv outside the repo) and Debian's shellcheck. Output: the venv's bin directory.
set -euo pipefail
# shellcheck source=tests/harness/apt.sh
. "$(dirname "$0")/apt.sh"
apt_install shellcheck python3-venv
VENV="${LUCID_CHART_CHECKS_VENV:-/var/cache/lucid-chart-checks}/checkov-3.3.30-kv-1.37.0"
if [ ! -x "$VENV/bin/checkov" ] || [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "checkov==3.3.30" "kubernetes-validate==1.37.0" >&2
fi
echo "$VENV/bin"
