"""The model owner's path in the sandbox: a PyTorch module exported (`batchpilot export`, the seed example), applied
as an InferenceService whose model files are a ConfigMap, served by the operator's Triton pod with answers equal to
PyTorch's, profiled on that pod (`batchpilot profile --format patch`, as through a port-forward) and the profile
patched into the live service, which the operator observes and keeps Ready and answering.

The sandbox's Triton has only the Python backend: the exported model.pt runs in the wrapper `export --python-backend`
writes (spec.model.backend python with the exported tensors); a GPU cluster serves the same model.pt with
`platform: pytorch_libtorch` (e2e/ has that path, not run here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from batchpilot.build.names import ChildNames
from batchpilot_sandbox.cluster.namespaces import release_namespace
from batchpilot_sandbox.cluster.stack import Sandbox
from support import (
    REPO_ROOT,
    batchpilot_cli,
    infer_exported,
    isvc_status,
    version_dir_configmap,
    wait_for,
    wait_ready_pods,
)

NAMESPACE, NAME = "e2e-exported", "cifar"


def manifests(version_dir: Path, model: dict[str, object]) -> list[dict[str, object]]:
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        version_dir_configmap(f"{NAME}-files", NAMESPACE, version_dir),
        {"apiVersion": "batchpilot.dev/v1alpha1", "kind": "InferenceService",
         "metadata": {"name": NAME, "namespace": NAMESPACE},
         "spec": {"model": model, "slo": {"latencyMs": 200},
                  "autoscaling": {"minReplicas": 1, "maxReplicas": 2},
                  "runtime": {"resources": {"requests": {"cpu": "100m", "memory": "1Gi"},
                                            "limits": {"memory": "2Gi", "nvidia.com/gpu": 1}}}}},
    ]


def test_an_exported_pytorch_model_is_served_profiled_and_patched(sandbox: Sandbox, tmp_path: Path) -> None:
    exported = batchpilot_cli("export", "--factory", "examples.pytorch.cifar_cnn:build", "--input-shape", "3,32,32",
                          "--name", NAME, "--max-batch-size", "16", "--out", str(tmp_path), "--python-backend")
    assert exported.returncode == 0, exported.stderr
    fields = yaml.safe_load(exported.stdout)["model"]
    model = {**fields, "repository": {"configMap": f"{NAME}-files"}, "backend": "python"}
    del model["platform"]  # the sandbox serves the wrapper; a GPU cluster keeps platform pytorch_libtorch
    sys.path.insert(0, str(REPO_ROOT))
    from examples.pytorch.cifar_cnn import build

    images = np.random.default_rng(11).standard_normal((6, 3, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        expected = build()(torch.from_numpy(images)).numpy()
    try:
        sandbox.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(manifests(tmp_path / NAME / "1", model)))
        (pod,) = wait_ready_pods(sandbox, NAMESPACE, ChildNames(NAME).selector_string, 1, 180)
        ip = pod["status"]["podIP"]
        np.testing.assert_allclose(infer_exported(ip, NAME, images), expected, rtol=1e-3, atol=1e-4)
        profiled = batchpilot_cli("profile", "--triton", ip, "--model", NAME, "--batch-sizes", "1,4,16", "--repeats", "5",
                              "--format", "patch", "--output", str(tmp_path / "profile.json"))
        assert profiled.returncode == 0, profiled.stderr
        generation = json.loads(sandbox.kubectl("get", "inferenceservice", "-n", NAMESPACE, NAME, "-o", "json"))[
            "metadata"]["generation"]
        sandbox.kubectl("patch", "inferenceservice", "-n", NAMESPACE, NAME, "--type", "merge", "--patch-file",
                        str(tmp_path / "profile.json"))

        def patched_and_ready() -> dict[str, object] | None:
            status = isvc_status(sandbox, NAMESPACE, NAME)
            ready = {c["type"]: c["status"] for c in status.get("conditions", [])}.get("Ready")
            return status if status.get("observedGeneration", 0) > generation and ready == "True" else None

        status = wait_for("the patched generation observed and Ready", patched_and_ready, 120,
                          lambda: json.dumps(isvc_status(sandbox, NAMESPACE, NAME), indent=1))
        print(exported.stderr, profiled.stderr, json.dumps(status, indent=1), sep="\n")
        # The pod still answers as PyTorch does after the operator rendered the patched spec.
        (pod,) = wait_ready_pods(sandbox, NAMESPACE, ChildNames(NAME).selector_string, 1, 60)
        np.testing.assert_allclose(infer_exported(pod["status"]["podIP"], NAME, images[:2]), expected[:2], rtol=1e-3, atol=1e-4)
    finally:
        release_namespace(sandbox, NAMESPACE)
