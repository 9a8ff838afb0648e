#!/usr/bin/env bash
# Runs every test: static checks of the charts and k3s scripts (tests/charts/check.sh), the
# operator workspace (unit tests, generated-file checks, end-to-end
# tests against a real kube-apiserver, and the real single-node cluster's tests with pods
# under a real kubelet) and the services workspace (against real Redis and a MongoDB
# wire-protocol server). Installs and builds what they need first (cached after the first
# run, outside the repo).
set -euo pipefail
cd "$(dirname "$0")/.."
# Each assigned before it is exported: `export X="$(...)"` would hide a failed install.
LUCID_K8S_BIN="$(bash tests/harness/install-control-plane.sh | tail -n 1)"
LUCID_KUBECTL="$(bash tests/harness/install-tools.sh | tail -n 1)/kubectl"
LUCID_HELM="$(dirname "${LUCID_KUBECTL}")/helm"
LUCID_NX27017="$(bash tests/harness/install-service-deps.sh | tail -n 1)"
export LUCID_K8S_BIN LUCID_KUBECTL LUCID_HELM LUCID_NX27017
bash tests/harness/install-node.sh
command -v openssl >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null; }
# The images the real cluster runs: this machine's architecture at least (.ci/run builds
# arm64 too and passes them in LUCID_IMAGES).
host_arch="$(dpkg --print-architecture)"
if [[ -z "${LUCID_IMAGES:-}" ]]; then
  LUCID_IMAGES="$(LUCID_IMAGE_ARCHES="${host_arch}" bash images/build.sh | tail -n 1)"
fi
LUCID_NODE_IMAGES="$(bash tests/harness/build-node-images.sh | tail -n 1)"
export LUCID_IMAGES LUCID_NODE_IMAGES
bash tests/charts/check.sh
# The services' record_session example, which the real-cluster test runs against the
# cluster: built now, not on that test's clock.
cargo build --manifest-path services/Cargo.toml --locked --quiet -p lucid-services --example record_session
# The real-cluster test binaries (real_cluster and upgrades on one node, multi_node on three)
# run with the rest and take turns through the lock in /run/lucid-cluster; multi_node costs
# about 5.6 minutes here on top (333 s in CI, session 8: its own three-node cluster Ready in
# ~28 s, the pipeline, a drain, a node lost for about a minute and booted, a power cut).
# --no-fail-fast: one failing test binary does not hide how the others fare; both
# workspaces run, and the script fails if either did.
status=0
cargo test --workspace --locked --no-fail-fast || status=$?
cargo test --manifest-path services/Cargo.toml --workspace --locked --no-fail-fast || status=$?
exit "${status}"
