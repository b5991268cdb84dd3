"""The cost of one planner decision: `batchpilot.control.planner.decide()` timed on realistic observations.

decide() predicts the latency of replica counts for every queue delay and instance count it may pick; this
measures what one call costs as maxReplicas (10, 100, 1000) and maxInstanceCount (1, 4) grow, per scenario:

    loaded          a service near what it needs, steady (WithinSLO)
    light           a tenth of that load on the same replicas (the scale-down plan runs too: Stabilizing)
    breach          twice the replicas needed than it runs, p95 three times the SLO (Panic)
    batching-bound  requests wait up to 300 ms for batches that do not fill (BatchingBound)
    manual          spec.replicas pins the count; batching is still tuned for it (ManualReplicas)

Each call gets freshly built inputs (a new capacity model: nothing cached from the previous call), built
outside the timed region. Writes decide_cost.md and decide_cost.json to --out. With --baseline (the JSON of an
earlier run, e.g. on the code before a change) it adds the baseline's times and the speed-up, and checks that
every decision (replicas, reason, message, predicted latency, batching, history) is the same.

    python -m bench.decide_cost --out out/bench
    python -m bench.decide_cost --replicas 1000 --instances 4 --baseline out/bench-before/decide_cost.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.control.capacity import CapacityModel
from batchpilot.control.planner import decide
from batchpilot.control.types import Decision, History, Observation

NOW = 1_000_000.0
PROFILE = [(1, 47.4), (2, 40.7), (4, 41.2), (8, 43.3), (16, 43.7), (32, 43.2), (64, 76.9)]
"""The sandbox's emulated GPU: ResNet-50 on an H100, ten times slower (batch size, ms per batch)."""
MAX_BATCH = 8
"""maxBatchSize of the benchmark's model: batches of 8 in ~43 ms, ~185 req/s per replica with one instance."""
SLO_MS = 150.0
CONTENTION = 0.4
"""Measured contention for maxInstanceCount > 1: instances were probed already, every count is a candidate."""
MAX_DELAY_US = 10_000
"""Auto mode's upper queue delay: 0..10 ms gives 8 delays to weigh (0, 100, 250, 500, 1000, 2000, 5000, 10000)."""

Inputs = tuple[InferenceServiceSpec, Observation, History]


def per_replica(instances: int) -> float:
    """Requests/s one replica serves at best: batches of 8 in 43.3 ms, each instance slowed by the others."""
    return instances * MAX_BATCH / (43.3 * (1 + CONTENTION * (instances - 1))) * 1000.0


def _spec(max_replicas: int, max_instances: int, *, slo: float = SLO_MS, max_batch: int = MAX_BATCH,
          min_delay: int = 0, max_delay: int = MAX_DELAY_US, min_replicas: int = 1,
          replicas: int | None = None) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate({
        "model": {"name": "m", "repository": {"configMap": "m-files"}, "maxBatchSize": max_batch,
                  "profile": {"points": [{"batchSize": b, "latencyMs": ms} for b, ms in PROFILE]}},
        "slo": {"latencyMs": slo},
        "autoscaling": {"minReplicas": min_replicas, "maxReplicas": max_replicas},
        "batching": {"mode": "auto", "minQueueDelayMicroseconds": min_delay,
                     "maxQueueDelayMicroseconds": max_delay, "maxInstanceCount": max_instances},
        "replicas": replicas,
    })


def _history(max_instances: int, rate: float) -> History:
    """Steady for ten minutes, no recent change; a fresh model object (seeded by decide from the profile)."""
    # Measured at every batch size the benchmark's pods form (1..MAX_BATCH): no size past what was seen.
    model = CapacityModel(contention=((1.0, CONTENTION), (float(MAX_BATCH), CONTENTION)) if max_instances > 1 else ())
    return History(last_scale_at=NOW - 600, steady_rate=rate, steady_since=NOW - 600, model=model,
                   last_retune_at=NOW - 600)


def _obs(replicas: int, rate: float, p95: float, queue: float, batch: float, instances: int) -> Observation:
    return Observation(at=NOW, replicas=replicas, ready_replicas=replicas, latency_ms=p95, arrival_rate=rate,
                       queue_ms=queue, compute_ms=43.0, avg_batch_size=batch, queue_delay_us=2000,
                       instance_count=instances, window_s=60)


def loaded(m: int, k: int) -> Inputs:
    """60% of maxReplicas at 80% of their capacity (70% with 4 instances, where latency binds first): what they
    need, neither more nor fewer."""
    current = max(1, m * 6 // 10)
    rate = current * per_replica(k) * (0.8 if k == 1 else 0.7)
    return _spec(m, k), _obs(current, rate, 0.6 * SLO_MS, 20, 7.0, k), _history(k, rate)


def light(m: int, k: int) -> Inputs:
    current = max(1, m * 6 // 10)
    rate = current * per_replica(k) * 0.08
    return _spec(m, k), _obs(current, rate, 0.4 * SLO_MS, 2, 1.2, k), _history(k, rate)


def breach(m: int, k: int) -> Inputs:
    current = max(1, m * 3 // 10)
    rate = 2 * current * per_replica(k) * 0.8
    return _spec(m, k), _obs(current, rate, 3 * SLO_MS, 2 * SLO_MS, 8.0, k), _history(k, rate)


def batching_bound(m: int, k: int) -> Inputs:
    """The planner tests' scenario scaled with maxReplicas: 20 req/s per replica at minReplicas (an eighth of
    maxReplicas), batches of 4 at most, at least 300 ms of queue delay: more replicas only lengthen the wait."""
    floor = max(1, m // 8)
    rate = 20.0 * floor
    s = _spec(m, k, slo=200, max_batch=4, min_delay=300_000, max_delay=300_000, min_replicas=floor)
    return s, _obs(floor, rate, 260, 200, 3.0, 1), _history(k, rate)


def manual(m: int, k: int) -> Inputs:
    spec, observation, history = loaded(m, k)
    return spec.model_copy(update={"replicas": max(1, m // 2)}), observation, history


SCENARIOS: dict[str, Callable[[int, int], Inputs]] = {
    "loaded": loaded, "light": light, "breach": breach, "batching-bound": batching_bound, "manual": manual}


@dataclass(frozen=True)
class Cell:
    """One scenario at one (maxReplicas, maxInstanceCount): its decision and the time per call."""

    scenario: str
    """A key of SCENARIOS."""
    max_replicas: int
    """spec.autoscaling.maxReplicas."""
    max_instances: int
    """spec.batching.maxInstanceCount."""
    calls: int
    """Timed calls (after one untimed warm-up)."""
    median_ms: float
    """Median wall time of one decide() call."""
    p95_ms: float
    """95th percentile (nearest rank) of the same."""
    decision: dict[str, Any]
    """What decide() returned (identical on every call: it is pure), as JSON."""


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile, p in 0..100."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _as_json(decision: Decision) -> dict[str, Any]:
    d = asdict(decision)
    # JSON has no infinity: keep it readable and comparable.
    return json.loads(json.dumps(d, default=str).replace("Infinity", '"inf"'))


def measure(scenario: str, m: int, k: int, calls: int, budget_s: float) -> Cell:
    """Times `calls` decide() calls (fewer, at least 3, when they take longer than budget_s together)."""
    build = SCENARIOS[scenario]
    first = decide(*build(m, k), NOW)  # warm-up: imports, pydantic caches
    times: list[float] = []
    spent = 0.0
    while len(times) < calls and (len(times) < 3 or spent < budget_s):
        spec, observation, history = build(m, k)  # fresh inputs: no model cache carried over
        start = time.perf_counter()
        decision = decide(spec, observation, history, NOW)
        elapsed = time.perf_counter() - start
        assert decision == first, "decide() is pure: the same inputs must give the same decision"
        times.append(elapsed * 1000.0)
        spent += elapsed
    ordered = sorted(times)
    return Cell(scenario, m, k, len(times), ordered[len(ordered) // 2] if len(ordered) % 2 else
                (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2, percentile(times, 95),
                _as_json(first))


def _baseline(path: Path | None) -> dict[tuple[str, int, int], dict[str, Any]]:
    if path is None:
        return {}
    cells = json.loads(path.read_text())["cells"]
    return {(c["scenario"], c["max_replicas"], c["max_instances"]): c for c in cells}


def markdown(result: dict[str, Any], before: dict[tuple[str, int, int], dict[str, Any]]) -> str:
    lines = [
        "# decide() cost",
        "",
        f"`batchpilot.control.planner.decide()` per call, fresh inputs each call. Machine: {result['cpus']} CPUs, "
        f"load average {result['load_average']}, Python {result['python']}.",
        "",
    ]
    head = "| scenario | maxReplicas | maxInstanceCount | reason | replicas | calls | median ms | p95 ms |"
    rule = "|---|---|---|---|---|---|---|---|"
    if before:
        head += " before median ms | before p95 ms | speed-up (median) | same decision |"
        rule += "---|---|---|---|"
    lines += [head, rule]
    for c in result["cells"]:
        row = (f"| {c['scenario']} | {c['max_replicas']} | {c['max_instances']} | {c['decision']['reason']} | "
               f"{c['decision']['replicas']} | {c['calls']} | {c['median_ms']:.3f} | {c['p95_ms']:.3f} |")
        old = before.get((c["scenario"], c["max_replicas"], c["max_instances"]))
        if before and old is None:
            row += " - | - | - | - |"
        elif old is not None:
            row += (f" {old['median_ms']:.3f} | {old['p95_ms']:.3f} | {old['median_ms'] / c['median_ms']:.0f}x | "
                    f"{'yes' if old['decision'] == c['decision'] else 'NO'} |")
        lines.append(row)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.decide_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/bench"), help="where to write the results")
    parser.add_argument("--replicas", default="10,100,1000", help="maxReplicas values, comma-separated")
    parser.add_argument("--instances", default="1,4", help="maxInstanceCount values, comma-separated")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="scenarios, comma-separated")
    parser.add_argument("--calls", type=int, default=30, help="timed calls per cell")
    parser.add_argument("--budget-s", type=float, default=10.0,
                        help="stop a cell after this many seconds of calls (at least 3 calls)")
    parser.add_argument("--baseline", type=Path, help="decide_cost.json of an earlier run to compare with")
    args = parser.parse_args(argv)
    before = _baseline(args.baseline)
    cells = []
    for scenario in args.scenarios.split(","):
        for m in (int(v) for v in args.replicas.split(",")):
            for k in (int(v) for v in args.instances.split(",")):
                cell = measure(scenario, m, k, args.calls, args.budget_s)
                print(f"{scenario:15} maxReplicas {m:5} maxInstanceCount {k}: {cell.decision['reason']:16} "
                      f"median {cell.median_ms:9.3f} ms  p95 {cell.p95_ms:9.3f} ms", flush=True)
                cells.append(asdict(cell))
    result = {"cpus": os.cpu_count(), "load_average": ", ".join(f"{v:.2f}" for v in os.getloadavg()),
              "python": platform.python_version(), "cells": cells}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decide_cost.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "decide_cost.md").write_text(markdown(result, before))
    differ = [c for c in cells if (old := before.get((c["scenario"], c["max_replicas"], c["max_instances"])))
              and old["decision"] != c["decision"]]
    for c in differ:
        print(f"decision differs from the baseline: {c['scenario']} {c['max_replicas']} {c['max_instances']}",
              file=sys.stderr)
    print(f"wrote {args.out / 'decide_cost.md'}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
