#!/usr/bin/env bash
# The chart and a CPU Triton on a throwaway kind cluster. KEEP=1 keeps the cluster afterwards.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
CLUSTER=${CLUSTER:-batchpilot-e2e}
OPERATOR_IMAGE=batchpilot/batchpilot:0.1.0
TRITON_IMAGE=batchpilot/tritonserver-cpu:0.7.0

cleanup() { [ "${KEEP:-0}" = 1 ] || kind delete cluster --name "$CLUSTER"; }
kind create cluster --name "$CLUSTER" --wait 2m
trap cleanup EXIT
docker build -t "$OPERATOR_IMAGE" "$REPO"
docker build -t "$TRITON_IMAGE" "$REPO/images/triton"
kind load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE" "$TRITON_IMAGE"
# No Prometheus here: the control loop reports its metrics as unavailable and keeps minReplicas.
install_operator --set image.pullPolicy=Never
apply_sample "{image: $TRITON_IMAGE, resources: {requests: {cpu: 500m, memory: 1Gi}, limits: {memory: 1Gi}}}"
check_inference
check_delete
log "kind e2e passed"
