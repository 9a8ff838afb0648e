#!/usr/bin/env bash
# Installs the operator, then the Lucid stack, and waits for every phase to be Ready.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ns="${LUCID_NAMESPACE:-lucid}"
helm upgrade --install lucid-operator "$root/charts/lucid-operator" -n lucid-system --create-namespace --wait
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -
# Replace crds/examples/environment.yaml's placeholder secrets before a real install.
kubectl apply -n "$ns" -f "${LUCID_ENVIRONMENT:-$root/crds/examples/environment.yaml}"
helm upgrade --install lucid "$root/charts/lucid-stack" -n "$ns"
for phase in foundation core application support; do
  kubectl wait -n "$ns" --for=condition=Ready "lucidphase/$phase" --timeout=30m
  kubectl get -n "$ns" lucidphases
done
