"""Searching replica counts for the planner: the answers of trying every count in order, at a fraction of the
predictions.

Pure. Two facts make it exact, not approximate:
- utilization never rises with replicas (CapacityModel.utilization), so the counts within a utilization bound
  are all those from the first one, which halving finds;
- latency_floor_ms() bounds the predicted latency over a range of counts from below, so a range whose floor
  cannot meet (or beat) what is looked for holds no count a full scan would pick, and is passed over whole.
Ranges widen while they pass and narrow when they do not: far from the answer a handful of bounds cover
hundreds of counts; next to it every count is predicted, as a full scan would.
"""

from __future__ import annotations

from collections.abc import Callable

from batchpilot.control.capacity import Candidate, CapacityModel, Prediction
from batchpilot.control.latency_floor import latency_floor_ms

At = Callable[[int], Candidate]
"""The candidate with a given replica count (batching fixed)."""
Found = tuple[int, Prediction]


def first_within(model: CapacityModel, rate: float, utilization: float, at: At, fewest: int, most: int) -> int:
    """The fewest replicas in fewest..most whose predicted utilization is at most `utilization`; most + 1 when
    none is."""
    def within(n: int) -> bool:
        return model.utilization(rate, at(n)) <= utilization

    if not within(most):
        return most + 1
    while fewest < most:
        middle = (fewest + most) // 2
        fewest, most = (fewest, middle) if within(middle) else (middle + 1, most)
    return fewest


def first_meeting(model: CapacityModel, rate: float, latency_ms: float, utilization: float, at: At, start: int,
                  most: int, percentile: int) -> Found | None:
    """The first count from start..most predicted within latency_ms and utilization; None when none is."""
    found: list[Found] = []

    def visit(n: int, prediction: Prediction) -> bool:
        if prediction.latency_ms <= latency_ms and prediction.utilization <= utilization:
            found.append((n, prediction))
        return bool(found)

    _scan(model, rate, at, start, most, percentile, lambda floor: floor > latency_ms, visit)
    return found[0] if found else None


def lowest_latency(model: CapacityModel, rate: float, at: At, start: int, most: int,
                   percentile: int) -> Found | None:
    """The count in start..most with the lowest predicted latency, the fewest replicas on a tie; None when the
    range is empty."""
    best: list[Found] = []

    def visit(n: int, prediction: Prediction) -> bool:
        if not best or prediction.latency_ms < best[0][1].latency_ms:
            best[:] = [(n, prediction)]
        return False

    _scan(model, rate, at, start, most, percentile, lambda floor: bool(best) and floor >= best[0][1].latency_ms,
          visit)
    return best[0] if best else None


def _scan(model: CapacityModel, rate: float, at: At, start: int, most: int, percentile: int,
          passed: Callable[[float], bool], visit: Callable[[int, Prediction], bool]) -> None:
    """Predicts the counts from start up to most in order and hands each to visit until it returns True, except
    the ranges whose latency floor `passed` says no count in them matters. Tries a count first, then ranges of
    2, 4, 8 ... after it, halving one that does not pass, down to the next single count."""
    n, width = start, 1
    while n <= most:
        if width > 1:
            end = min(most, n + width - 1)
            if passed(latency_floor_ms(model, rate, at(n), end, percentile)):
                n, width = end + 1, width * 2
            else:
                width //= 2
            continue
        if visit(n, model.predict(rate, at(n), percentile)):
            return
        n, width = n + 1, 2
