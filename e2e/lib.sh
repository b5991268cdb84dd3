# Shared by kind.sh and gpu-cluster.sh: install the chart, serve a model, infer, delete. Sourced, not run.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NAMESPACE=${NAMESPACE:-bp-e2e}
RELEASE_NS=${RELEASE_NS:-batchpilot-system}
log() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

install_operator() {  # install_operator HELM_ARGS...
  log "helm install batchpilot ($*)"
  helm upgrade --install batchpilot "$REPO/charts/batchpilot" -n "$RELEASE_NS" --create-namespace \
    --set replicas=1 --set leaderElection.enabled=false "$@" --wait --timeout 5m
}

# A Python-backend model that adds one, stored in a ConfigMap (spec.model.repository.configMap).
apply_sample() {  # apply_sample RUNTIME_JSON   e.g. '{"image": "...", "resources": {...}}'
  kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
  kubectl -n "$NAMESPACE" create configmap add-one-model --dry-run=client -o yaml --from-literal=model.py='
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", (pb_utils.get_input_tensor_by_name(
            r, "INPUT0").as_numpy() + 1).astype(np.float32))]) for r in requests]
' | kubectl apply -f -
  kubectl apply -f - <<YAML
apiVersion: batchpilot.dev/v1alpha1
kind: InferenceService
metadata: {name: add-one, namespace: $NAMESPACE}
spec:
  model:
    name: add_one
    backend: python
    maxBatchSize: 8
    repository: {configMap: add-one-model}
    inputs: [{name: INPUT0, dataType: TYPE_FP32, dims: [4]}]
    outputs: [{name: OUTPUT0, dataType: TYPE_FP32, dims: [4]}]
  runtime: $1
  slo: {latencyMs: 200}
  autoscaling: {minReplicas: 1, maxReplicas: 2}
YAML
}

check_inference() {
  log "waiting for the InferenceService to be Ready"
  kubectl -n "$NAMESPACE" wait --for=condition=Ready inferenceservice/add-one --timeout=10m
  kubectl -n "$NAMESPACE" port-forward svc/add-one 18000:8000 >/dev/null 2>&1 & pf=$!
  sleep 3
  out=$(curl -sf -X POST localhost:18000/v2/models/add_one/infer \
    -d '{"inputs":[{"name":"INPUT0","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}') || { kill $pf; return 1; }
  kill $pf
  echo "$out" | grep -q '"data":\[2.0,3.0,4.0,5.0\]' || { echo "unexpected answer: $out" >&2; return 1; }
  log "inference answered: $out"
}

check_delete() {
  kubectl -n "$NAMESPACE" delete inferenceservice add-one --wait=true
  kubectl -n "$NAMESPACE" wait --for=delete pod -l batchpilot.dev/inferenceservice=add-one --timeout=2m || true
  [ -z "$(kubectl -n "$NAMESPACE" get deploy,pods -o name)" ] || { echo "children left behind" >&2; return 1; }
  log "deleting the InferenceService removed its Deployment and pods"
}
