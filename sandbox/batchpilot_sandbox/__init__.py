"""The local sandbox: a harness apart from the operator, never shipped in its image.

- `cluster`: a real control plane (etcd, kube-apiserver, kube-controller-manager), Prometheus, KEDA, the opt-in
  real node, and `stack.Sandbox`, which starts them all with the operator;
- `kubelet`: the sandbox kubelet (one fake GPU node whose pods run as host processes) and its scheduler;
- `loadgen`: the open-loop load generator (`python -m batchpilot_sandbox.loadgen`);
- `gpu_emulator`: a Triton Python-backend model that runs a measured GPU curve on CPU;
- `demo`: `make demo`, the sample InferenceService and the watcher the closed-loop tests share.

`batchpilot-sandbox up|status|down|demo` is its command line (`batchpilot_sandbox.cli`). It imports `batchpilot`
(the API models, builders and profiles); `batchpilot` never imports it.
"""
