# Sourced by check.sh: the lucid-stack renders with override values, and the values the
# stack chart's schema must reject. (tests/e2e/stack_matches_catalog.rs checks what these
# renders contain; this feeds them to the validators above.)
# shellcheck shell=bash disable=SC2154 # $out and the functions come from check.sh
render stack-overrides lucid-stack lucid --set storage.storageClassName=lucid-ssd \
  --set services.api-gateway.replicas=2 --set services.api-gateway.image.tag=v2 \
  --set services.api-gateway.env.LOG_LEVEL=DEBUG \
  --set services.api-gateway.resources.limits.memory=512Mi \
  --set services.api-gateway.healthCheck.path=/ready \
  --set services.lucid-mongodb.storage.data.storageClassName=lucid-ssd \
  --set services.lucid-mongodb.service.type=ClusterIP \
  --set services.lucid-redis.service.type=ClusterIP
render stack-no-support lucid-stack lucid --set phases.support.enabled=false
if grep -qE 'name: (support|tron-|admin-interface)' "$out/stack-no-support.yaml"; then
  fail "phases.support.enabled=false still renders the support phase or its services"
fi
render stack-no-application lucid-stack lucid --set phases.application.enabled=false
expect_stack_rejections() {
  expect_rejected lucid-stack "/services/api-gateway/replicas" --set services.api-gateway.replicas=two
  expect_rejected lucid-stack "additional properties 'replica' not allowed" \
    --set services.api-gateway.replica=2
  expect_rejected lucid-stack "/services/api-gateway/service/type" \
    --set services.api-gateway.service.type=Public
  expect_rejected lucid-stack "/services/api-gateway/healthCheck/kind" \
    --set services.api-gateway.healthCheck.kind=Exec
  expect_rejected lucid-stack "/phases/support/enabled" --set phases.support.enabled=no
  expect_rejected lucid-stack "switch session-api off too" --set phases.core.enabled=false
}
