"""Pure parts of the load generator: schedules, Poisson arrivals and window statistics (no I/O, no clock)."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

Phase = tuple[float, float]  # (duration_s, rate_per_s)

MAX_RATE = 100_000.0  # far beyond what one Python process can send; catches typos such as "2m@1500000"
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}
_PHASE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|)\s*@\s*(\d+(?:\.\d+)?)\s*(?:/s)?\s*$")


def parse_schedule(text: str) -> list[Phase]:
    """Parse "30s@20,2m@150" into [(30.0, 20.0), (120.0, 150.0)]: duration (ms|s|m|h) @ requests/s."""
    phases: list[Phase] = []
    for token in text.split(","):
        m = _PHASE.match(token)
        if not m:
            raise ValueError(
                f"schedule phase {token.strip()!r} in {text!r} is not DURATION@RATE; "
                "write it like 30s@20 or 2m@150 (units ms, s, m, h)"
            )
        duration = float(m.group(1)) * _UNITS[m.group(2)]
        phases.append((duration, float(m.group(3))))
    validate_phases(phases)
    return phases


def validate_phases(phases: Sequence[Phase]) -> None:
    """Raise ValueError naming the bad phase: durations > 0, finite, rates in [0, MAX_RATE]."""
    if not phases:
        raise ValueError("schedule is empty; give at least one phase such as 30s@20")
    for i, (duration, rate) in enumerate(phases):
        if not (math.isfinite(duration) and duration > 0):
            raise ValueError(f"schedule phase {i}: duration {duration!r} s must be a positive number")
        if not (math.isfinite(rate) and 0 <= rate <= MAX_RATE):
            raise ValueError(f"schedule phase {i}: rate {rate!r}/s must be between 0 and {MAX_RATE:.0f}")


def schedule_duration(phases: Sequence[Phase]) -> float:
    return sum(d for d, _ in phases)


def rate_at(phases: Sequence[Phase], t: float) -> float:
    """The scheduled rate at offset t seconds (0 after the schedule ends)."""
    start = 0.0
    for duration, rate in phases:
        if start <= t < start + duration:
            return rate
        start += duration
    return 0.0


def poisson_arrivals(phases: Sequence[Phase], rng: random.Random) -> Iterator[float]:
    """Offsets (s from start, increasing) of a Poisson process whose rate follows the phases.

    At a phase boundary the pending gap is redrawn at the new rate, which is exact because exponential
    gaps are memoryless. The iterator ends with the schedule, so it is finite.
    """
    validate_phases(phases)
    start = 0.0
    for duration, rate in phases:
        end = start + duration
        t = start
        while rate > 0:
            t += rng.expovariate(rate)
            if t >= end:
                break
            yield t
        start = end


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """q-th percentile (0..100) of already sorted values, linear interpolation (numpy's default)."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q={q} must be within 0..100")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


@dataclass
class WindowReport:
    """What happened in one reporting window (or the whole run)."""

    start_s: float  # offset of the window from the start of the run
    duration_s: float
    offered: int  # arrivals due in the window, sent or not
    ok: int  # completed with HTTP 200
    offered_rate: float
    achieved_rate: float  # ok / duration
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    errors: dict[str, int] = field(default_factory=dict)  # kind -> count
    in_flight: int = 0  # requests open at the end of the window
    max_lag_ms: float = 0.0  # how late the generator sent its latest request; large means it fell behind

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["error_count"] = self.error_count
        return d

    def line(self) -> str:
        """One human-readable line."""

        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}ms"

        errs = " ".join(f"{k}={v}" for k, v in sorted(self.errors.items())) or "none"
        return (
            f"t={self.start_s + self.duration_s:7.1f}s offered={self.offered_rate:7.1f}/s "
            f"achieved={self.achieved_rate:7.1f}/s p50={ms(self.p50_ms)} p95={ms(self.p95_ms)} "
            f"p99={ms(self.p99_ms)} errors={self.error_count} ({errs}) in_flight={self.in_flight}"
            f" lag={self.max_lag_ms:.0f}ms"
        )


def summarize(
    start_s: float,
    duration_s: float,
    offered: int,
    latencies_s: Sequence[float],
    errors: Mapping[str, int],
    in_flight: int = 0,
    max_lag_s: float = 0.0,
) -> WindowReport:
    """Rates and latency percentiles of one window; latencies are of successful requests, in seconds."""
    span = max(duration_s, 1e-9)
    ordered = sorted(latencies_s)

    def pct(q: float) -> float | None:
        return percentile(ordered, q) * 1000.0 if ordered else None

    return WindowReport(
        start_s=start_s,
        duration_s=duration_s,
        offered=offered,
        ok=len(ordered),
        offered_rate=offered / span,
        achieved_rate=len(ordered) / span,
        p50_ms=pct(50),
        p95_ms=pct(95),
        p99_ms=pct(99),
        errors={k: v for k, v in errors.items() if v},
        in_flight=in_flight,
        max_lag_ms=max_lag_s * 1000.0,
    )
