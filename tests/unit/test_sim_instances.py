"""Model instances in the simulator's inputs, without a GPU: the contention fit the profiles carry
(bench/gpu_profile.py, rewriting profiles from the H200 measurements bench/measurements/ keeps) and the comparison's
--max-instances (bench/sim_compare.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.gpu_profile import contention_points, main

from batchpilot.sim.profile import load_curve

MEASUREMENTS = Path(__file__).resolve().parents[2] / "bench" / "measurements" / "h200-2026-12-04.json"


def test_the_fit_weighs_each_instance_count_by_what_it_says_about_c() -> None:
    """Least squares of t_k / t_1 - 1 = c (k - 1): with k=2 and k=4, c = (c2 + 9 c4) / 10; a size measured with
    one instance only is left out."""
    measured = {
        "8": {"k1": {"contention": None}, "k2": {"contention": 0.5}, "k4": {"contention": 0.6}},
        "1": {"k1": {"contention": None}, "k2": {"contention": 0.3}},
        "2": {"k1": {"contention": None}},
        "4": "not measured: out of memory",
    }
    assert contention_points(measured) == [{"batch_size": 1, "coefficient": 0.3},
                                           {"batch_size": 8, "coefficient": 0.59}]


def test_profiles_rewritten_from_the_h200_measurements_match_the_shipped_ones(tmp_path: Path) -> None:
    assert main([str(tmp_path), "--from-measurements", str(MEASUREMENTS)]) == 0
    for name in ("h200-resnet50-fp16-kernels", "h200-bert-base-seq128-fp16-kernels"):
        written, shipped = load_curve(str(tmp_path / f"{name}.json")), load_curve(name)
        assert written.points == shipped.points
        assert written.contention == shipped.contention and len(shipped.contention) == 8
    eager = json.loads((tmp_path / "h200-resnet50-fp16.json").read_text())
    assert eager["contention"][0] == {"batch_size": 1, "coefficient": pytest.approx(0.244)}


def test_the_comparison_can_give_batchpilot_instances_to_tune_and_refuses_a_count_the_api_would() -> None:
    """`python -m bench.sim_compare --max-instances N`: Batchpilot's spec.batching.maxInstanceCount, within the API's
    1..16; the peers keep their static batching."""
    from bench.sim_compare import SERVICES, RunSpec, make_policy, parse_args, trace_for

    spec = RunSpec("resnet50-h200", "step", 0, "batchpilot", None, "cached-image", 600.0, True, 4)
    trace = trace_for(spec)
    policy = make_policy(SERVICES[spec.service], "batchpilot", None, trace, "cached-image", True, 4)
    assert policy.spec.batching.max_instance_count == 4  # type: ignore[attr-defined]
    assert parse_args(["--max-instances", "4"]).max_instances == 4
    with pytest.raises(SystemExit):
        parse_args(["--max-instances", "17"])
