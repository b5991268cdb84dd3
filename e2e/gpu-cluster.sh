#!/usr/bin/env bash
# The chart and NVIDIA's Triton on the current kubectl context's GPU nodes. REGISTRY: where you pushed
# batchpilot:0.1.0 (`docker build -t $REGISTRY/batchpilot:0.1.0 . && docker push ...`).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
: "${REGISTRY:?set REGISTRY to the registry holding batchpilot:0.1.0}"
PROMETHEUS_URL=${PROMETHEUS_URL:-}

cleanup() {
  kubectl delete namespace "$NAMESPACE" --ignore-not-found --wait=false
  helm uninstall batchpilot -n "$RELEASE_NS" || true
}
trap cleanup EXIT
install_operator --set image.repository="$REGISTRY/batchpilot" ${PROMETHEUS_URL:+--set prometheusUrl=$PROMETHEUS_URL}
# The InferenceService's default Triton image, one GPU.
apply_sample "{resources: {requests: {cpu: '1', memory: 4Gi}, limits: {memory: 4Gi, nvidia.com/gpu: 1}}}"
check_inference
check_delete
log "GPU cluster e2e passed"
