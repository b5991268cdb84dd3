"""Compute time per batch size from a measured GPU profile: piecewise-linear, extrapolated past the ends.

Pure and stdlib-only on purpose: the same file is shipped next to model.py into the Triton model directory,
where the Python backend stub imports it as a sibling (`from .profile_curve import ...`), and the sandbox and
tests import it as `batchpilot_sandbox.gpu_emulator.profile_curve`. (The simulator reads the same profiles through
its own curve, batchpilot/sim/profile.py, which extrapolates differently past the ends.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROFILE_FILE = "profile.json"
EMULATOR_FILE = "emulator.json"


@dataclass(frozen=True)
class ProfileCurve:
    """Latency (ms) at measured batch sizes, sorted by batch size, at least one point."""

    batch_sizes: tuple[float, ...]
    latencies_ms: tuple[float, ...]

    @classmethod
    def from_points(cls, points: Iterable[Mapping[str, Any]]) -> ProfileCurve:
        """Build from `[{"batch_size": .., "latency_ms": ..}, ...]` (the profile JSON's `points`)."""
        pairs = sorted((float(p["batch_size"]), float(p["latency_ms"])) for p in points)
        if not pairs:
            raise ValueError("profile has no points; expected points: [{batch_size, latency_ms}, ...]")
        if any(b <= 0 or ms < 0 for b, ms in pairs):
            raise ValueError(f"profile points need batch_size > 0 and latency_ms >= 0, got {pairs}")
        if len({b for b, _ in pairs}) != len(pairs):
            raise ValueError(f"profile repeats a batch_size: {[b for b, _ in pairs]}")
        return cls(tuple(b for b, _ in pairs), tuple(ms for _, ms in pairs))

    @classmethod
    def from_json(cls, text: str) -> ProfileCurve:
        return cls.from_points(json.loads(text)["points"])

    def latency_ms(self, batch_size: float) -> float:
        """Interpolated compute time of one batch; linear extrapolation past the first and last points.

        A single-point profile is flat. Never negative: extrapolating a falling segment below the first point is clamped at zero.
        """
        xs, ys = self.batch_sizes, self.latencies_ms
        if len(xs) == 1:
            return ys[0]
        if batch_size <= xs[0]:
            i = 0
        elif batch_size >= xs[-1]:
            i = len(xs) - 2
        else:
            i = next(k for k in range(len(xs) - 1) if xs[k] <= batch_size <= xs[k + 1])
        slope = (ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i])
        return max(0.0, ys[i] + slope * (batch_size - xs[i]))


@dataclass(frozen=True)
class EmulatorSettings:
    time_scale: float = 1.0
    """Every batch takes the profile's time times this (10: a 4.3 ms batch takes 43 ms)."""
    overlap: float = 0.0
    """Fraction of a batch's time that model instances of one pod may spend side by side (0: they take turns on
    the one emulated GPU, a saturated GPU; 1: they never contend, as with launch-bound kernels)."""
    load_s: float = 0.0
    """Seconds each model instance takes to initialize, as a real backend takes to put its weights on the GPU."""


def load_settings(model_dir: Path) -> EmulatorSettings:
    """emulator.json in model_dir (defaults when the file or a key is absent)."""
    path = model_dir / EMULATOR_FILE
    if not path.exists():
        return EmulatorSettings()
    raw = json.loads(path.read_text())
    settings = EmulatorSettings(float(raw.get("time_scale", 1.0)), float(raw.get("overlap", 0.0)),
                                float(raw.get("load_s", 0.0)))
    if settings.time_scale < 0 or settings.load_s < 0:
        raise ValueError(f"{path}: time_scale and load_s must be >= 0, got {settings.time_scale}, {settings.load_s}")
    if not 0.0 <= settings.overlap <= 1.0:
        raise ValueError(f"{path}: overlap must be within 0..1, got {settings.overlap}")
    return settings


def batch_seconds(curve: ProfileCurve, batch_size: float, time_scale: float = 1.0) -> float:
    """Seconds the emulated GPU spends on one batch of batch_size."""
    return curve.latency_ms(batch_size) * time_scale / 1000.0
