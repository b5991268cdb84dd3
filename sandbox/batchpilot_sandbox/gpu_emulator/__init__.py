"""A Triton Python-backend model that behaves like a GPU running a profiled network (see model.py).

The model version directory holds model.py, its sibling profile_curve.py (the interpolation), profile.json (a
measured curve from batchpilot/sim/profiles) and emulator.json (time_scale, overlap, load_s).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from batchpilot.sim.profile import profile_path
from batchpilot_sandbox.gpu_emulator.profile_curve import EMULATOR_FILE, PROFILE_FILE, ProfileCurve

PACKAGE_DIR = Path(__file__).resolve().parent
MODEL_SOURCES = ("model.py", "profile_curve.py")
DEFAULT_PROFILE = "h100-resnet50-fp16"


def model_files(profile: str = DEFAULT_PROFILE, time_scale: float = 1.0, overlap: float = 0.0,
                load_s: float = 0.0) -> dict[str, str]:
    """File name -> text for the emulator's model version directory (see EmulatorSettings for the knobs)."""
    if time_scale < 0 or load_s < 0:
        raise ValueError(f"time_scale and load_s must be >= 0, got {time_scale}, {load_s}")
    if not 0.0 <= overlap <= 1.0:
        raise ValueError(f"overlap must be within 0..1, got {overlap}")
    profile_text = profile_path(profile).read_text()
    ProfileCurve.from_json(profile_text)  # fail here, not inside Triton, on a malformed profile
    files = {name: (PACKAGE_DIR / name).read_text() for name in MODEL_SOURCES}
    files[PROFILE_FILE] = profile_text
    files[EMULATOR_FILE] = json.dumps({"time_scale": time_scale, "overlap": overlap, "load_s": load_s}) + "\n"
    return files


def model_configmap(
    name: str, namespace: str, profile: str = DEFAULT_PROFILE, time_scale: float = 1.0, overlap: float = 0.0
) -> dict[str, Any]:
    """ConfigMap manifest whose keys are the model version directory's files (mount it at <model>/1)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/component": "gpu-emulator",
                "app.kubernetes.io/part-of": "batchpilot",
            },
            "annotations": {
                "batchpilot.dev/gpu-profile": profile,
                "batchpilot.dev/time-scale": str(time_scale),
                "batchpilot.dev/overlap": str(overlap),
            },
        },
        "data": model_files(profile, time_scale, overlap),
    }
