#!/usr/bin/env bash
# Installs the Lucid operator, then the stack, from a machine whose kubectl and Helm reach the
# cluster (README.md, step 6), and waits until every LucidService is Ready. It refuses to run
# without a real Secret: the example's placeholders never reach a cluster.
#   LUCID_NAMESPACE      namespace of the stack (lucid)
#   LUCID_SECRET         Secret the stack reads (lucid-secrets, the stack chart's envFiles.secrets.name)
#   LUCID_ENVIRONMENT    your ConfigMaps (and Secret, if you keep it there) applied as they are;
#                        default: the ConfigMaps of crds/examples/environment.yaml, not its Secret
#   LUCID_STORAGE_CLASS  class of the stack's data claims (lucid-ssd; empty: the chart's own)
#   LUCID_VALUES         a values file for the stack chart (image names, ...)
#   LUCID_PHASES         phases to report in order (foundation core application support)
#   LUCID_TIMEOUT        how long each wait may take (30m)
set -euo pipefail
shopt -s inherit_errexit

die() { printf 'install-lucid: %s\n' "$*" >&2; exit 1; }
note() { printf '%s\n' "$*"; }

root=$(dirname -- "${BASH_SOURCE[0]}")
root=$(cd -- "${root}/.." && pwd)
ns="${LUCID_NAMESPACE:-lucid}"
secret="${LUCID_SECRET:-lucid-secrets}"
class="${LUCID_STORAGE_CLASS-lucid-ssd}"
timeout="${LUCID_TIMEOUT:-30m}"
read -r -a phases <<<"${LUCID_PHASES:-foundation core application support}"

for tool in kubectl helm; do
  command -v "${tool}" >/dev/null || die "${tool} not found"
done
kubectl get nodes >/dev/null || die "kubectl cannot reach the cluster: set KUBECONFIG (README, step 5)"

kubectl create namespace "${ns}" --dry-run=client -o yaml | kubectl apply -f -

# The environment ConfigMaps (the compose env files).
if [[ -n "${LUCID_ENVIRONMENT:-}" ]]; then
  [[ -f "${LUCID_ENVIRONMENT}" ]] || die "LUCID_ENVIRONMENT: no file ${LUCID_ENVIRONMENT}"
  if grep -q 'change-me' "${LUCID_ENVIRONMENT}"; then
    die "${LUCID_ENVIRONMENT} still holds change-me placeholders: put real values in, or leave the Secret out of it and create it as install-lucid.sh says without LUCID_ENVIRONMENT"
  fi
  kubectl apply -n "${ns}" -f "${LUCID_ENVIRONMENT}"
else
  # Every YAML document of the example that is a ConfigMap; its Secret is left out.
  awk '
    function flush() { if (keep) printf "---\n%s", doc; doc = ""; keep = 0 }
    /^---[[:space:]]*$/ { flush(); next }
    { doc = doc $0 "\n" }
    /^kind:[[:space:]]*ConfigMap[[:space:]]*$/ { keep = 1 }
    END { flush() }
  ' "${root}/crds/examples/environment.yaml" | kubectl apply -n "${ns}" -f -
fi

# The Secret: it must exist, made by you, and hold no placeholder.
if ! kubectl get secret -n "${ns}" "${secret}" >/dev/null 2>&1; then
  die "no Secret ${secret} in namespace ${ns}; the stack reads its keys and this script will not
install the example's placeholders. Create it with real values, then run install-lucid.sh again:
  kubectl create secret generic ${secret} -n ${ns} \\
    --from-literal=JWT_SECRET_KEY=\"\$(openssl rand -hex 64)\" \\
    --from-literal=MONGODB_PASSWORD=\"\$(openssl rand -hex 24)\"
or from a file of KEY=value lines that stays out of git:
  kubectl create secret generic ${secret} -n ${ns} --from-env-file=lucid-secrets.env"
fi
# Key names only, never values, leave this pipeline.
# shellcheck disable=SC2016 # a Go template for kubectl, not shell: $k and $v are its variables
placeholders=$(kubectl get secret -n "${ns}" "${secret}" \
  -o go-template='{{range $k, $v := .data}}{{$k}}={{$v | base64decode}}{{"\n"}}{{end}}' |
  awk -F= '$2 ~ /^change-me/ { printf "%s ", $1 }')
[[ -z "${placeholders}" ]] ||
  die "Secret ${secret} in ${ns} still holds the example's change-me values (${placeholders% }): replace them, e.g. kubectl delete secret -n ${ns} ${secret} and create it again as above"

# The storage class of the data claims, and boards it can use.
overrides=()
if [[ -n "${class}" ]]; then
  kubectl get storageclass "${class}" >/dev/null ||
    die "no StorageClass ${class}: install-server.sh installs lucid-ssd; or set LUCID_STORAGE_CLASS= to keep the chart's class"
  if [[ "${class}" == lucid-ssd ]]; then
    ssd_nodes=$(kubectl get nodes -l lucid.io/ssd=true -o name)
    [[ -n "${ssd_nodes}" ]] ||
      die "no node is labelled lucid.io/ssd=true, so no lucid-ssd claim can be provisioned: kubectl label node <board with the SSD> lucid.io/ssd=true"
  fi
  overrides=(--set "storage.storageClassName=${class}")
fi
overrides+=(--set "envFiles.secrets.name=${secret}")
values=()
if [[ -n "${LUCID_VALUES:-}" ]]; then values=(-f "${LUCID_VALUES}"); fi

helm upgrade --install lucid-operator "${root}/charts/lucid-operator" \
  -n lucid-system --create-namespace --wait --timeout 10m
helm upgrade --install lucid "${root}/charts/lucid-stack" -n "${ns}" "${values[@]}" "${overrides[@]}"

# Phases in order, for progress; then the services themselves, since a phase with no members
# is Ready without anything running.
count=$(kubectl get lucidservices -n "${ns}" -o name | wc -l)
((count > 0)) || die "the stack chart made no LucidServices in ${ns}"
for phase in "${phases[@]}"; do
  note "waiting for phase ${phase} (up to ${timeout})"
  if ! kubectl wait -n "${ns}" --for=condition=Ready "lucidphase/${phase}" --timeout="${timeout}"; then
    kubectl get -n "${ns}" lucidphases,lucidservices || true
    die "phase ${phase} is not Ready after ${timeout}: the services' STATUS and MESSAGE above say what they wait for"
  fi
done
note "waiting for all ${count} LucidServices"
if ! kubectl wait -n "${ns}" --for=condition=Ready lucidservices --all --timeout="${timeout}"; then
  kubectl get -n "${ns}" lucidservices || true
  die "not every LucidService is Ready after ${timeout}: see STATUS and MESSAGE above"
fi
kubectl get -n "${ns}" lucidphases,lucidservices
