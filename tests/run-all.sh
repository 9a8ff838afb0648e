#!/usr/bin/env bash
# Runs every test: operator unit tests, generated-file checks, and the end-to-end tests
# against a real kube-apiserver. Installs what they need first (cached after the first run).
set -euo pipefail
cd "$(dirname "$0")/.."
export LUCID_K8S_BIN="$(bash tests/harness/install-control-plane.sh | tail -n 1)"
export LUCID_KUBECTL="$(bash tests/harness/install-tools.sh | tail -n 1)/kubectl"
command -v openssl >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null; }
cargo test --workspace --locked
