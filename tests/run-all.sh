#!/usr/bin/env bash
# Runs every test: the operator workspace (unit tests, generated-file checks, end-to-end
# tests against a real kube-apiserver) and the services workspace (against real Redis and a
# MongoDB wire-protocol server). Installs what they need first (cached after the first run).
set -euo pipefail
cd "$(dirname "$0")/.."
export LUCID_K8S_BIN="$(bash tests/harness/install-control-plane.sh | tail -n 1)"
export LUCID_KUBECTL="$(bash tests/harness/install-tools.sh | tail -n 1)/kubectl"
export LUCID_HELM="$(dirname "$LUCID_KUBECTL")/helm"
export LUCID_NX27017="$(bash tests/harness/install-service-deps.sh | tail -n 1)"
command -v openssl >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null; }
cargo test --workspace --locked
cargo test --manifest-path services/Cargo.toml --workspace --locked
