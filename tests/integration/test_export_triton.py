"""From a PyTorch module to a served, profiled model: `batchpilot export` on the seed example (a CIFAR-10-style CNN,
examples/pytorch/cifar_cnn.py), the artifact served by the wheel's real tritonserver, its answers matching the
PyTorch module's, then `batchpilot profile` on it and the result accepted by the API models.

The sandbox's Triton has only the Python backend, so the exported artifact (TorchScript via torch.jit.load, ONNX via
onnxruntime) runs inside a Python-backend wrapper that `export --python-backend` writes; real clusters serve the same
model.pt / model.onnx with Triton's native pytorch_libtorch / onnxruntime_onnx backends (config.pbtxt without the
flag names the platform)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import factories
from batchpilot_sandbox.cluster.controlplane import ControlPlane
from support import (
    REPO_ROOT,
    batchpilot_cli,
    infer_exported,
    install_crd,
    kubectl_run,
    repository_triton,
    version_dir_configmap,
)

ADDRESS = "127.0.0.206"  # clear of the other Triton tests (.201-.205)


NAMESPACE = "export-path"


def manifests(name: str, version_dir: Path, model: dict[str, object]) -> str:
    """The ConfigMap holding the exported version directory and the InferenceService."""
    service = {"apiVersion": "batchpilot.dev/v1alpha1", "kind": "InferenceService",
               "metadata": {"name": name, "namespace": NAMESPACE},
               "spec": {"model": {**model, "repository": {"configMap": f"{name}-files"}}, "slo": {"latencyMs": 100}}}
    return yaml.safe_dump_all([version_dir_configmap(f"{name}-files", NAMESPACE, version_dir), service])


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_serve_and_profile_the_seed_example(fmt: str, tmp_path: Path, control_plane: ControlPlane) -> None:
    name = f"cifar-{fmt}"
    exported = batchpilot_cli("export", "--factory", "examples.pytorch.cifar_cnn:build", "--input-shape", "3,32,32",
                          "--name", name, "--format", fmt, "--max-batch-size", "16", "--out", str(tmp_path / "models"),
                          "--python-backend")
    assert exported.returncode == 0, exported.stderr
    fields = yaml.safe_load(exported.stdout)["model"]
    assert fields["platform"] == {"torchscript": "pytorch_libtorch", "onnx": "onnxruntime_onnx"}[fmt]
    assert fields["inputs"] == [{"name": "INPUT__0", "dataType": "TYPE_FP32", "dims": [3, 32, 32]}]
    assert fields["outputs"] == [{"name": "OUTPUT__0", "dataType": "TYPE_FP32", "dims": [10]}]

    sys.path.insert(0, str(REPO_ROOT))
    from examples.pytorch.cifar_cnn import build

    images = np.random.default_rng(7).standard_normal((5, 3, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        expected = build()(torch.from_numpy(images)).numpy()
    with repository_triton(tmp_path, ADDRESS, name):
        got = infer_exported(ADDRESS, name, images)
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(infer_exported(ADDRESS, name, images[:1]), expected[:1], rtol=1e-3, atol=1e-4)
        profiled = batchpilot_cli("profile", "--triton", ADDRESS, "--model", name, "--batch-sizes", "1,4,16",
                              "--repeats", "5")
    assert profiled.returncode == 0, profiled.stderr
    print(exported.stderr, exported.stdout, profiled.stderr, profiled.stdout, sep="\n")
    # The third command: the exported fields and the measured profile, with the model files in a ConfigMap, are
    # what the real API server accepts (server-side dry run: the CRD's schema and CEL rules, the ConfigMap's size).
    model = {**fields, **yaml.safe_load(profiled.stdout)}
    spec = factories.service_spec(model=model)
    assert spec.model.profile is not None and [p.batch_size for p in spec.model.profile.points] == [1, 4, 16]
    api = install_crd(control_plane.kubeconfig, NAMESPACE)
    applied = kubectl_run(api, "apply", "--dry-run=server", "-f", "-",
                          stdin=manifests(name, tmp_path / "models" / name / "1", model))
    assert applied.returncode == 0 and "created (server dry run)" in applied.stdout, applied.stderr
    without = {k: v for k, v in model.items() if k not in ("inputs", "outputs")}
    refused = kubectl_run(api, "apply", "--dry-run=server", "-f", "-",
                          stdin=manifests(name, tmp_path / "models" / name / "1", without))
    assert fmt == "onnx" or "pytorch_libtorch needs inputs and outputs" in refused.stderr, refused.stderr


@pytest.mark.parametrize(("factory", "words"), [
    ("examples.pytorch.nope:build", ["cannot import"]),
    ("examples.pytorch.cifar_cnn:nope", ["has no 'nope'"]),
    ("json:dumps", ["calling it without arguments failed", "TypeError"]),
    ("json:JSONEncoder", ["gave a JSONEncoder, not a torch.nn.Module"]),
])
def test_a_factory_that_gives_no_module_is_refused(factory: str, words: list[str], tmp_path: Path) -> None:
    run = batchpilot_cli("export", "--factory", factory, "--input-shape", "3,32,32", "--name", "m", "--out",
                     str(tmp_path))
    assert run.returncode == 2 and all(w in run.stderr for w in words), run.stderr


class FixedBatch(torch.nn.Module):
    """The mistake the export check is for: right in eager mode, but int() makes the example's batch size a
    constant of the traced graph."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(int(x.shape[0]), -1).sum(dim=1, keepdim=True)


class NoBatchRow(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum()


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_a_model_that_cannot_batch_is_refused_with_the_fix(fmt: str, tmp_path: Path) -> None:
    from batchpilot.export.torch_model import ExportError, export

    with pytest.raises(ExportError, match=r"batch size is fixed somewhere.*x\.flatten\(1\)"):
        export(FixedBatch().eval(), "fixed", fmt, [4], tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ExportError, match="one row per input row"):
        export(NoBatchRow().eval(), "scalar", fmt, [4], tmp_path)  # type: ignore[arg-type]
    assert not list(tmp_path.rglob("model.*")) and not list(tmp_path.rglob("config.pbtxt")), \
        "no artifact that failed its check is left where Triton would load it"
