"""What an exported model looks like to Triton and to the InferenceService: pure, no torch.

One naming everywhere: inputs INPUT__0.., outputs OUTPUT__0.. (the PyTorch backend's convention, kept for ONNX so a
model's spec does not change with its format). Dims never include the batch dimension (Triton adds it when
max_batch_size > 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import yaml

from batchpilot.api.spec import BatchingSpec, ModelSpec, TensorSpec
from batchpilot.build.config_pbtxt import render_config_pbtxt

Format = Literal["torchscript", "onnx"]
ARTIFACT = {"torchscript": "model.pt", "onnx": "model.onnx"}
"""The file Triton's native backend looks for in the version directory."""
PLATFORM = {"torchscript": "pytorch_libtorch", "onnx": "onnxruntime_onnx"}

PYTHON_WRAPPER = '''"""Triton Python-backend model that runs the exported {fmt} artifact beside it ({artifact}).

Written by `batchpilot export --python-backend` for Tritons with only the Python backend (the sandbox's CPU
tritonserver); real clusters serve {artifact} with Triton's native {platform} backend instead."""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

INPUTS = {inputs!r}
OUTPUTS = {outputs!r}


class TritonPythonModel:
    def initialize(self, args):
        path = str(Path(__file__).resolve().parent / "{artifact}")
        if "{fmt}" == "onnx":
            import onnxruntime

            session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
            self.run = lambda arrays: session.run(OUTPUTS, dict(zip(INPUTS, arrays)))
        else:
            import torch

            module = torch.jit.load(path, map_location="cpu").eval()

            def run(arrays):
                with torch.inference_mode():
                    out = module(*(torch.from_numpy(a) for a in arrays))
                outs = out if isinstance(out, (tuple, list)) else (out,)
                return [o.numpy() for o in outs]

            self.run = run

    def execute(self, requests):
        # One run for the whole batch Triton formed: the requests' rows stacked, then split back.
        arrays = [[pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests] for name in INPUTS]
        rows = [a.shape[0] for a in arrays[0]]
        outs = self.run([np.concatenate(parts) for parts in arrays])
        responses, start = [], 0
        for n in rows:
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(o[start:start + n])) for name, o in zip(OUTPUTS, outs)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += n
        return responses
'''


@dataclass(frozen=True)
class Exported:
    """A model as exported: its name, format, batch bound and tensors."""

    name: str
    format: Format
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def model_spec(self, python_backend: bool = False) -> ModelSpec:
        """spec.model for it (the repository is a placeholder: where the user uploads the directory)."""
        where = {"backend": "python"} if python_backend else {"platform": PLATFORM[self.format]}
        return ModelSpec.model_validate({
            "name": self.name, "repository": {"configMap": f"{self.name}-files"}, **where,
            "maxBatchSize": self.max_batch_size, "inputs": [t.to_wire() for t in self.inputs],
            "outputs": [t.to_wire() for t in self.outputs]})

    def config_pbtxt(self, python_backend: bool = False) -> str:
        return render_config_pbtxt(self.model_spec(python_backend), BatchingSpec())

    def spec_yaml(self) -> str:
        """The spec.model fields to paste into the InferenceService (repository left to the user)."""
        wire = self.model_spec().to_wire()
        wire.pop("repository")
        return yaml.safe_dump({"model": wire}, sort_keys=False)

    def files(self, python_backend: bool = False) -> dict[str, str]:
        """Relative path -> text of every file but the artifact (NAME/config.pbtxt, and the wrapper's model.py)."""
        out = {f"{self.name}/config.pbtxt": self.config_pbtxt(python_backend)}
        if python_backend:
            out[f"{self.name}/1/model.py"] = PYTHON_WRAPPER.format(
                fmt=self.format, artifact=ARTIFACT[self.format], platform=PLATFORM[self.format],
                inputs=[t.name for t in self.inputs], outputs=[t.name for t in self.outputs])
        return out

    @property
    def artifact(self) -> str:
        return f"{self.name}/1/{ARTIFACT[self.format]}"
