#!/usr/bin/env bash
# Builds the krew archive of kubectl-lucid for this machine's architecture and writes its
# sha256 into a copy of the manifest beside it: target/krew/{kubectl-lucid.tar.gz,lucid.yaml}.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked -p kubectl-lucid >&2
out=target/krew
rm -rf "$out" && mkdir -p "$out/pkg"
cp target/release/kubectl-lucid "$out/pkg/"
tar -C "$out/pkg" -czf "$out/kubectl-lucid.tar.gz" kubectl-lucid
sum=$(sha256sum "$out/kubectl-lucid.tar.gz" | cut -d' ' -f1)
sed "s/SHA256_OF_THE_ARCHIVE/$sum/" kubectl-lucid/krew/lucid.yaml > "$out/lucid.yaml"
echo "kubectl krew install --manifest=$out/lucid.yaml --archive=$out/kubectl-lucid.tar.gz"
