#!/usr/bin/env bash
# Static checks of both charts and the k3s scripts, no cluster needed: helm lint --strict;
# helm template with default and override values; every rendered object validated with
# kubernetes-validate --strict for Kubernetes 1.28 and 1.32, every LucidService/LucidPhase
# against its CRD's schema; bad values rejected by values.schema.json with a message naming
# them; checkov over both charts (skips justified in charts/lucid-operator/README.md);
# and `shellcheck -o all` over the k3s scripts.
set -euo pipefail
cd "$(dirname "$0")/../.."
helm="${LUCID_HELM:-$(bash tests/harness/install-tools.sh | tail -n 1)/helm}"
checks="$(bash tests/harness/install-chart-checks.sh | tail -n 1)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
step() { printf '[charts] %s\n' "$*"; }

step "helm lint --strict"
for chart in charts/lucid-operator charts/lucid-stack; do
  "$helm" lint --strict "$chart" >"$out/lint" || { cat "$out/lint"; exit 1; }
done

render() { # name chart namespace [helm args...]
  local name=$1 chart=$2 namespace=$3
  shift 3
  "$helm" template lucid "charts/$chart" -n "$namespace" "$@" >"$out/$name.yaml"
}
step "helm template, default and override values"
render operator-default lucid-operator lucid-system
render operator-namespaced lucid-operator lucid-system \
  --set 'watchNamespaces={lucid,lab}' --set crds.enabled=false --set serviceAccount.name=lucid-sa \
  --set nodeAccess=false
# With nodeAccess (the default) the one cluster-scoped grant is reading nodes.
render operator-namespaced-nodes lucid-operator lucid-system \
  --set 'watchNamespaces={lucid,lab}' --set crds.enabled=false
render operator-everything lucid-operator lucid-system \
  --set networkPolicy.enabled=true --set 'networkPolicy.apiServer.cidrs={192.168.1.10/32}' \
  --set metrics.serviceMonitor.enabled=true --set fullnameOverride=operator --set dashboard.enabled=true \
  --set image.digest="sha256:$(printf '%064d' 0)" --set priorityClassName=system-cluster-critical \
  --set 'extraEnv[0].name=EXTRA' --set-string 'extraEnv[0].value=1' --set podAnnotations.a=b
fail() { echo "[charts] $*" >&2; exit 1; }
grep -q 'kind: Role$' "$out/operator-namespaced.yaml" || fail "namespaced mode: no Role"
if grep -qE 'kind: (ClusterRole|CustomResourceDefinition)' "$out/operator-namespaced.yaml"; then
  fail "namespaced mode with crds.enabled=false and nodeAccess=false renders cluster-scoped objects"
fi
[[ "$(grep -cE '^kind: ClusterRole(Binding)?$' "$out/operator-namespaced-nodes.yaml")" == 2 ]] ||
  fail "namespaced mode with nodeAccess: not exactly one ClusterRole and its binding"
cluster_role="$(awk '/^kind: ClusterRole$/ {on = 1} on && /^---/ {exit} on' "$out/operator-namespaced-nodes.yaml")"
if ! grep -q 'resources: \[nodes\]' <<<"$cluster_role" ||
  [[ "$(grep -c 'resources:' <<<"$cluster_role")" != 1 ]] ||
  grep -qE 'verbs: .*(create|patch|update|delete)' <<<"$cluster_role"; then
  fail "namespaced mode with nodeAccess: the ClusterRole grants more than reading nodes"
fi
grep -q 'lucid/lucid-operator@sha256:' "$out/operator-everything.yaml" || fail "image.digest ignored"
render stack-default lucid-stack lucid
# shellcheck source=tests/charts/stack-overrides.sh
. tests/charts/stack-overrides.sh

step "kubernetes-validate --strict (1.28, 1.32)"
for version in 1.28.0 1.32.0; do
  "$checks/kubernetes-validate" --strict --quiet --no-warn -k "$version" "$out"/*.yaml
done
step "custom resources against the CRDs' schemas"
"$checks/python" tests/charts/validate_custom_resources.py crds/lucid.io.yaml "$out"/stack-*.yaml

step "bad values fail with a message naming them"
expect_rejected() { # chart expected-message helm-args...
  local chart=$1 message=$2
  shift 2
  if "$helm" template lucid "charts/$chart" "$@" >/dev/null 2>"$out/err"; then
    fail "accepted: $chart $*"
  fi
  grep -qF "$message" "$out/err" || { cat "$out/err" >&2; fail "unclear error for $chart $*"; }
}
expect_rejected lucid-operator "/image/pullPolicy" --set image.pullPolicy=Sometimes
expect_rejected lucid-operator "/metrics/port" --set metrics.port=http
expect_rejected lucid-operator "'watchNamespace' not allowed" --set watchNamespace=lucid
expect_rejected lucid-operator "/watchNamespaces/0" --set 'watchNamespaces={Not_A_Namespace}'
expect_rejected lucid-operator "serviceAccount.name is required" --set serviceAccount.create=false
expect_stack_rejections

step "checkov"
PATH="$(dirname "$helm"):$PATH" "$checks/checkov" --config-file charts/.checkov.yaml \
  -d charts/lucid-operator -d charts/lucid-stack >"$out/checkov" || { cat "$out/checkov"; exit 1; }
grep -E '^(Passed|Failed) checks' "$out/checkov" || true

step "shellcheck -o all"
shellcheck -o all k3s/*.sh
shellcheck tests/charts/*.sh

step "ok"
