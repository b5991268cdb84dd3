"""Push a queue delay to every ready pod of a service through Triton's repository API.

One pod at a time: read its live config, load it with the new delay, read it back. A pod that fails (or reads
back something else) stops the pass and every pod changed in it is loaded back with its previous config, so a
service never runs a half-applied retune. Pods already at the delay are left alone, so a pass is idempotent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from batchpilot.adapters.kube import Kube
from batchpilot.adapters.triton import TritonAdmin, TritonError
from batchpilot.build.batching import queue_delay_us, with_queue_delay


@dataclass(frozen=True)
class Retune:
    delay_us: int
    """The delay the pass applied (or tried to)."""
    pods: int
    """Ready pods checked."""
    changed: int
    """Pods reloaded with the delay."""
    error: str | None = None
    """Why the pass failed and was rolled back; None when every ready pod runs delay_us."""


def retune(kube: Kube, namespace: str, selector: str, model: str, delay_us: int,
           admin: Callable[[str], TritonAdmin] = TritonAdmin) -> Retune:
    ips = kube.ready_pod_ips(namespace, selector)
    done: list[tuple[TritonAdmin, dict[str, Any]]] = []
    for ip in ips:
        triton = admin(ip)
        try:
            live = triton.config(model)
            if queue_delay_us(live) == delay_us:
                continue
            triton.load(model, with_queue_delay(live, delay_us))
            done.append((triton, live))
            seen = queue_delay_us(triton.config(model))
            if seen != delay_us:
                raise TritonError(f"pod {ip} reads back max_queue_delay_microseconds {seen}, not {delay_us}")
        except (TritonError, ValueError) as e:
            for pod, previous in reversed(done):
                with contextlib.suppress(TritonError):
                    pod.load(model, previous)
            return Retune(delay_us, len(ips), 0, f"{e}; rolled back {len(done)} pod(s)")
    return Retune(delay_us, len(ips), len(done))
