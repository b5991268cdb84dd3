"""Issue 10 item 4: the sandbox comparison's shapes through the simulator, to check its models of KEDA and the HPA.

The same arrivals (bench/compare_shapes.py `trace`: the load generator's own draw for the shape and seed), the
sample's curve, SLO, bounds and static batching, and the simulator set to the sandbox as bench/sim_validate.py
sets it (2 s scrapes, 4 GPUs, the load generator's 10 s timeout, cold starts measured on the sandbox runs).
Batchpilot reads a 15 s rate window as the sandbox's operator does; the peers' policies see the 60 s window of
their queries (bench/compare_configs.py PEER_RATE_WINDOW_S). Each real configuration maps to the simulator's
family that models it (Config.sim_family); batching-only (Batchpilot's batching under an HPA) has no model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from batchpilot.sim.engine import SimConfig, simulate
from batchpilot.sim.metrics import run_metrics
from batchpilot.sim.policies import PeerContext, make
from batchpilot.sim.policies.batchpilot import BatchpilotPolicy, service_spec
from batchpilot.sim.types import ColdStart, Policy, RunRecord, Trace
from bench.compare_configs import MAX_REPLICAS, MIN_REPLICAS, PEER_RATE_WINDOW_S, configs
from bench.compare_metrics import RealRun, clip_series
from bench.compare_real import CLIENT_TIMEOUT_S, SEED, SERVICE
from bench.compare_shapes import SHAPES, trace
from bench.sim_compare import RunResult, RunSpec, minute_timeline, sizing
from bench.sim_validate import DEFAULT_COLD_START
from bench.sim_validate_stats import Series, cold_starts

BATCHPILOT_WINDOW_S = 15.0
"""The sandbox operator's metrics window (SandboxConfig.metrics_window_s)."""
CONTROL_INTERVAL_S = 5.0
"""The sandbox operator's control interval (SandboxConfig.control_interval_s)."""
SCALE_DOWN_STABILIZATION_S = 30
"""batchpilot_sandbox/demo/sample.py scale_down_stabilization_seconds, which the real Batchpilot run has too."""


@dataclass(frozen=True)
class SimRun:
    """One simulated run beside its real counterpart."""

    config: str
    """The real configuration's key."""
    result: RunResult
    series: Series
    """Desired and ready replicas, each second."""


def measured_cold_start(runs: Sequence[RealRun]) -> ColdStart:
    """Desired-up-to-ready seconds seen on the sandbox runs, else bench/sim_validate.py's default."""
    seen = [c for r in runs for c in cold_starts(clip_series(r.series, r.duration_s))]
    return ColdStart("sandbox", min(seen), max(seen)) if seen else ColdStart("default", *DEFAULT_COLD_START)


def policy(family: str, tr: Trace, cold: ColdStart) -> Policy:
    """The simulator's Batchpilot (batching fixed, as the real run) or its model of a peer at the setting the
    real ScaledObject had (the families' defaults are the same numbers: capacity, SLO, 1000m)."""
    curve, batching, capacity = sizing(SERVICE)
    if family == "batchpilot":
        spec = service_spec(curve, SERVICE.slo_ms, 95, SERVICE.max_batch_size, MIN_REPLICAS, MAX_REPLICAS,
                            max_queue_delay_us=batching.max_queue_delay_us,
                            extra={"batching": {"mode": "fixed"},
                                   "autoscaling": {"scaleDown": {"stabilizationSeconds": SCALE_DOWN_STABILIZATION_S}}})
        return BatchpilotPolicy(spec, MIN_REPLICAS, period_s=CONTROL_INTERVAL_S)
    ctx = PeerContext(MIN_REPLICAS, MAX_REPLICAS, MIN_REPLICAS, batching, capacity, SERVICE.slo_ms, 95, tr, cold)
    return make(family, None, ctx)


def sim_config(family: str, cold: ColdStart) -> SimConfig:
    curve, batching, _ = sizing(SERVICE)
    window = BATCHPILOT_WINDOW_S if family == "batchpilot" else PEER_RATE_WINDOW_S
    return SimConfig(curve=curve, slo_ms=SERVICE.slo_ms, cold_start=cold, gpus=MAX_REPLICAS, batching=batching,
                     scrape_s=2.0, rate_window_s=window, client_timeout_s=CLIENT_TIMEOUT_S)


def run_sim(config: str, family: str, shape: str, quick: bool, cold: ColdStart) -> SimRun:
    tr = trace(shape, SHAPES[shape].phases(SEED, quick), SEED)
    p = policy(family, tr, cold)
    rec: RunRecord = simulate(tr, p, sim_config(family, cold), SEED)
    spec = RunSpec("sandbox", shape, SEED, family, None, cold.name)
    result = RunResult(spec, p.name, p.setting, run_metrics(rec), rec.wall_s, tr.duration_s, minute_timeline(rec))
    return SimRun(config, result, Series(tuple(rec.timeline_t), tuple(rec.timeline_replicas),
                                         tuple(rec.timeline_ready)))


def run_sims(runs: Sequence[RealRun], quick: bool) -> list[SimRun]:
    """A simulated twin of every real run whose configuration the simulator models."""
    _, batching, capacity = sizing(SERVICE)
    families = {c.key: c.sim_family for c in configs("sim", batching.max_queue_delay_us, capacity)}
    cold = measured_cold_start(runs)
    return [run_sim(r.policy, family, r.shape, quick, cold) for r in runs
            if (family := families.get(r.policy)) is not None]
