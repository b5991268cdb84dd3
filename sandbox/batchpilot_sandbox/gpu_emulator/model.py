"""Triton Python-backend model that emulates one GPU: each batch takes the profile's compute time.

Runs inside Triton's backend stub, where only numpy, the stdlib and the files shipped beside it are
guaranteed. The stub imports this file as `<version>.model` (the version directory becomes a namespace
package), so the relative import of the sibling `profile_curve.py` works there as it does in batchpilot.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from .profile_curve import PROFILE_FILE, ProfileCurve, batch_seconds, load_settings

DEFAULT_TENSOR = {"data_type": "TYPE_FP32", "dims": [4]}


class TritonPythonModel:
    """Echo OUTPUT = INPUT after sleeping for the profiled compute time of the whole batch."""

    @staticmethod
    def auto_complete_config(auto_complete_model_config: Any) -> Any:
        """Add INPUT/OUTPUT (FP32, dims [4]) when config.pbtxt has none; batching settings are left alone."""
        config = auto_complete_model_config.as_dict()
        if not config.get("input"):
            auto_complete_model_config.add_input({"name": "INPUT", **DEFAULT_TENSOR})
        if not config.get("output"):
            auto_complete_model_config.add_output({"name": "OUTPUT", **DEFAULT_TENSOR})
        return auto_complete_model_config

    def initialize(self, args: dict[str, str]) -> None:
        model_dir = Path(__file__).resolve().parent
        config = json.loads(args["model_config"])
        self.curve = ProfileCurve.from_json((model_dir / PROFILE_FILE).read_text())
        self.settings = load_settings(model_dir)
        time.sleep(self.settings.load_s)
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.input_name = config["input"][0]["name"]
        output = config["output"][0]
        self.output_name = output["name"]
        self.output_dtype = pb_utils.triton_string_to_numpy(output["data_type"])
        # flock on the model directory: instances of this model (one pod) share one emulated GPU; the
        # overlapping part of a batch runs outside the lock
        self.lock_fd = os.open(model_dir, os.O_RDONLY)

    def execute(self, requests: list[Any]) -> list[Any]:
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        batch_size = sum(int(a.shape[0]) if self.batched and a.ndim else 1 for a in arrays)
        seconds = batch_seconds(self.curve, batch_size, self.settings.time_scale)
        time.sleep(seconds * self.settings.overlap)
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
        try:
            time.sleep(seconds * (1.0 - self.settings.overlap))
        finally:
            fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
        return [
            pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(self.output_name, np.asarray(a, dtype=self.output_dtype))]
            )
            for a in arrays
        ]

    def finalize(self) -> None:
        os.close(self.lock_fd)
