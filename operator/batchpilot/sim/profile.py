"""The GPU compute-time curve of one model: median milliseconds per batch, by batch size.

The measured profiles live here (`sim/profiles/*.json`, resolved by `profile_path`); the sandbox's GPU emulator
serves the same files, but the simulator extrapolates differently past the ends:
below the first measured size a batch costs what the first point costs (a smaller batch is never cheaper than
the smallest one measured), and past the last point time grows in proportion to the batch (no batching gain is
assumed beyond what was measured).
"""

from __future__ import annotations

import json
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
"""The measured GPU curves shipped with batchpilot (the simulator's and the sandbox GPU emulator's)."""


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.json"))


def profile_path(profile: str) -> Path:
    """Path of a profile given by name (a file in sim/profiles) or by path to a JSON file."""
    named = PROFILES_DIR / f"{profile}.json"
    if named.exists():
        return named
    given = Path(profile)
    if given.suffix == ".json" and given.exists():
        return given
    raise FileNotFoundError(
        f"GPU profile {profile!r} not found: use one of {available_profiles()} or a path to a .json file"
    )


@dataclass(frozen=True)
class ComputeCurve:
    """Median compute time of one batch on one model instance, piecewise-linear between measured points."""

    name: str
    """The profile's name, e.g. "h100-resnet50-fp16" (with "*factor" appended once scaled)."""
    points: tuple[tuple[int, float], ...]
    """(batch size, median compute ms of one batch), sorted by batch size, sizes distinct and > 0, ms > 0."""
    contention: tuple[tuple[int, float], ...] = ()
    """(batch size, c) measured: n batches of that size in flight on one GPU take `1 + c * (n - 1)` times as long as
    one alone (1: instances take turns; 0: they never slow each other). Sorted, sizes distinct and > 0, c >= 0;
    empty when the profile has none (the simulator then assumes 1)."""
    _sizes: tuple[int, ...] = field(init=False, repr=False, compare=False)
    """The batch sizes of `points`, for bisection."""

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError(f"compute curve {self.name!r} has no points")
        sizes = tuple(b for b, _ in self.points)
        if any(b <= 0 for b in sizes) or any(b2 <= b1 for b1, b2 in zip(sizes, sizes[1:], strict=False)):
            raise ValueError(
                f"compute curve {self.name!r}: batch sizes must be > 0 and strictly increasing, got {sizes}"
            )
        if any(not ms > 0 for _, ms in self.points):
            raise ValueError(f"compute curve {self.name!r}: every latency must be > 0 ms, got {self.points}")
        contended = tuple(b for b, _ in self.contention)
        if any(b <= 0 for b in contended) or any(b2 <= b1 for b1, b2 in zip(contended, contended[1:], strict=False)) \
                or any(not c >= 0 for _, c in self.contention):
            raise ValueError(f"compute curve {self.name!r}: contention needs batch sizes > 0, strictly increasing, "
                             f"and coefficients >= 0, got {self.contention}")
        object.__setattr__(self, "_sizes", sizes)

    def ms(self, batch_size: int) -> float:
        """Compute ms of one batch of batch_size, e.g. 4.742 ms at 1 and 4.326 ms at 8 for resnet50 on H100."""
        first_b, first_ms = self.points[0]
        last_b, last_ms = self.points[-1]
        if batch_size <= first_b:
            return first_ms
        if batch_size >= last_b:
            return last_ms * batch_size / last_b
        i = bisect_right(self._sizes, batch_size) - 1
        (b0, ms0), (b1, ms1) = self.points[i], self.points[i + 1]
        return ms0 + (ms1 - ms0) * (batch_size - b0) / (b1 - b0)

    def contention_at(self, batch_size: int, default: float = 1.0) -> float:
        """The contention coefficient of batches of batch_size: piecewise-linear between measured sizes, the end
        values past the ends (e.g. 0.24 at 1 and 0.88 at 32 for resnet50 on H200); `default` without any."""
        if not self.contention:
            return default
        sizes = [b for b, _ in self.contention]
        if batch_size <= sizes[0]:
            return self.contention[0][1]
        if batch_size >= sizes[-1]:
            return self.contention[-1][1]
        i = bisect_right(sizes, batch_size) - 1
        (b0, c0), (b1, c1) = self.contention[i], self.contention[i + 1]
        return c0 + (c1 - c0) * (batch_size - b0) / (b1 - b0)

    def scaled(self, factor: float) -> ComputeCurve:
        """The same curve with every time multiplied by factor (a heavier model: 2 doubles every batch)."""
        if not factor > 0:
            raise ValueError(f"scale factor must be > 0, got {factor}")
        if factor == 1.0:
            return self
        return ComputeCurve(f"{self.name}*{factor:g}", tuple((b, ms * factor) for b, ms in self.points),
                            self.contention)  # a ratio: the same at any speed

    def throughput(self, batch_size: int) -> float:
        """Requests/s of one instance running back-to-back batches of batch_size (8 / 4.326 ms = 1849/s)."""
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        return batch_size * 1000.0 / self.ms(batch_size)


def load_curve(profile: str, time_scale: float = 1.0) -> ComputeCurve:
    """The curve of a profile given by name (a file in sim/profiles) or by path to a profile JSON.

    The JSON is `{"model", "accelerator", "points": [{"batch_size", "latency_ms"}, ...]}`, and optionally
    `"contention": [{"batch_size", "coefficient"}, ...]` where it was measured (bench/gpu_profile.py); time_scale
    multiplies every time, as the GPU emulator's `time_scale` does.
    """
    path = profile_path(profile)  # FileNotFoundError naming the profile and the available ones
    name = Path(path).stem
    try:
        raw = json.loads(path.read_text())
        points = tuple(sorted((int(p["batch_size"]), float(p["latency_ms"])) for p in raw["points"]))
        contention = tuple(sorted((int(p["batch_size"]), float(p["coefficient"])) for p in raw.get("contention", ())))
        curve = ComputeCurve(name, points, contention)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(
            f"GPU profile {profile!r} ({path}) is malformed: {err}; expected "
            '{"points": [{"batch_size": 1, "latency_ms": 4.7}, ...]} with distinct sizes > 0 and times > 0 (and '
            'optionally "contention": [{"batch_size": 1, "coefficient": 0.3}, ...], coefficients >= 0)'
        ) from err
    return curve.scaled(time_scale)
