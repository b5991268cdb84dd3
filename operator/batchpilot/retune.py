"""Push a tuning (queue delay, instance count) to every ready pod of a service through Triton's repository API.

One pod at a time: read its live config, load it with the new tuning, read it back. A pod that fails (or reads
back something else) stops the pass and every pod changed in it is loaded back with its previous config, so a
service never runs a half-applied retune. Pods already tuned so are left alone, so a pass is idempotent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from batchpilot.adapters.triton import TritonAdmin, TritonError
from batchpilot.build.batching import tuning_of, with_tuning
from batchpilot.control.types import Tuning


class Tuner(Protocol):
    """One pod's Triton repository API, as far as a retune needs it (adapters/triton.py TritonAdmin)."""

    def config(self, model: str) -> dict[str, Any]: ...
    def load(self, model: str, config: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Retune:
    tuning: Tuning
    """What the pass applied (or tried to)."""
    pods: int
    """Ready pods checked."""
    changed: int
    """Pods reloaded with the delay."""
    error: str | None = None
    """Why the pass failed and was rolled back; None when every ready pod runs the tuning."""


def retune(ips: Sequence[str], model: str, tuning: Tuning, admin: Callable[[str], Tuner] = TritonAdmin) -> Retune:
    """The pass over the ready pods at `ips` (the tick's one pod list)."""
    done: list[tuple[Tuner, dict[str, Any]]] = []
    for ip in ips:
        triton = admin(ip)
        try:
            live = triton.config(model)
            if tuning_of(live) == tuning:
                continue
            triton.load(model, with_tuning(live, tuning))
            done.append((triton, live))
            seen = tuning_of(triton.config(model))
            if seen != tuning:
                raise TritonError(f"pod {ip} reads back {seen.describe() if seen else 'no dynamic batching'}, "
                                  f"not {tuning.describe()}")
        except (TritonError, ValueError) as e:
            for pod, previous in reversed(done):
                with contextlib.suppress(TritonError):
                    pod.load(model, previous)
            return Retune(tuning, len(ips), 0, f"{e}; rolled back {len(done)} pod(s)")
    return Retune(tuning, len(ips), len(done))
