"""From a PyTorch module to a served, profiled model: `batchpilot export` on the seed example (a CIFAR-10-style CNN,
examples/pytorch/cifar_cnn.py), the artifact served by the wheel's real tritonserver, its answers matching the
PyTorch module's, then `batchpilot profile` on it and the result accepted by the API models.

The sandbox's Triton has only the Python backend, so the exported artifact (TorchScript via torch.jit.load, ONNX via
onnxruntime) runs inside a Python-backend wrapper that `export --python-backend` writes; real clusters serve the same
model.pt / model.onnx with Triton's native pytorch_libtorch / onnxruntime_onnx backends (config.pbtxt without the
flag names the platform)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import factories
from support import repository_triton

ROOT = Path(__file__).resolve().parents[2]
ADDRESS = "127.0.0.206"  # clear of the other Triton tests (.201-.205)


def batchpilot(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batchpilot", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def infer(model: str, images: np.ndarray) -> np.ndarray:
    body = {"inputs": [{"name": "INPUT__0", "shape": list(images.shape), "datatype": "FP32",
                        "data": images.ravel().tolist()}]}
    request = urllib.request.Request(f"http://{ADDRESS}:8000/v2/models/{model}/infer", data=json.dumps(body).encode(),
                                     method="POST")
    with urllib.request.urlopen(request, timeout=60) as resp:
        (out,) = json.loads(resp.read())["outputs"]
    assert out["name"] == "OUTPUT__0" and out["datatype"] == "FP32", out
    return np.array(out["data"], dtype=np.float32).reshape(out["shape"])


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_serve_and_profile_the_seed_example(fmt: str, tmp_path: Path) -> None:
    name = f"cifar-{fmt}"
    exported = batchpilot("export", "--factory", "examples.pytorch.cifar_cnn:build", "--input-shape", "3,32,32",
                          "--name", name, "--format", fmt, "--max-batch-size", "16", "--out", str(tmp_path / "models"),
                          "--python-backend")
    assert exported.returncode == 0, exported.stderr
    fields = yaml.safe_load(exported.stdout)["model"]
    assert fields["platform"] == {"torchscript": "pytorch_libtorch", "onnx": "onnxruntime_onnx"}[fmt]
    assert fields["inputs"] == [{"name": "INPUT__0", "dataType": "TYPE_FP32", "dims": [3, 32, 32]}]
    assert fields["outputs"] == [{"name": "OUTPUT__0", "dataType": "TYPE_FP32", "dims": [10]}]

    sys.path.insert(0, str(ROOT))
    from examples.pytorch.cifar_cnn import build

    images = np.random.default_rng(7).standard_normal((5, 3, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        expected = build()(torch.from_numpy(images)).numpy()
    with repository_triton(tmp_path, ADDRESS, name):
        got = infer(name, images)
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(infer(name, images[:1]), expected[:1], rtol=1e-3, atol=1e-4)
        profiled = batchpilot("profile", "--triton", ADDRESS, "--model", name, "--batch-sizes", "1,4,16",
                              "--repeats", "5")
    assert profiled.returncode == 0, profiled.stderr
    print(exported.stderr, exported.stdout, profiled.stderr, profiled.stdout, sep="\n")
    # The third command's input: the exported fields, the measured profile and a repository make a valid spec.
    spec = factories.service_spec(model={**fields, **yaml.safe_load(profiled.stdout)})
    assert [p.batch_size for p in spec.model.profile.points] == [1, 4, 16]
    assert spec.model.inputs is not None and spec.model.platform is not None


@pytest.mark.parametrize(("factory", "words"), [
    ("examples.pytorch.nope:build", ["cannot import"]),
    ("examples.pytorch.cifar_cnn:nope", ["has no 'nope'"]),
    ("json:dumps", ["calling it without arguments failed", "TypeError"]),
    ("json:JSONEncoder", ["gave a JSONEncoder, not a torch.nn.Module"]),
])
def test_a_factory_that_gives_no_module_is_refused(factory: str, words: list[str], tmp_path: Path) -> None:
    run = batchpilot("export", "--factory", factory, "--input-shape", "3,32,32", "--name", "m", "--out",
                     str(tmp_path))
    assert run.returncode == 2 and all(w in run.stderr for w in words), run.stderr
