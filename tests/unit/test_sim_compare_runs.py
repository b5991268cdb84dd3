"""How the simulator benchmark runs its runs (bench.sim_compare): the store of finished runs (RunStore), so a stopped
benchmark resumes with the runs the same code made and nothing else, and the worker count."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from bench import sim_compare, sim_report
from bench.sim_compare import RunResult, RunSpec, RunStore, code_fingerprint, default_jobs, run_all

from batchpilot.sim.metrics import RunMetrics


def result(seed: int, setting: float | None = None) -> RunResult:
    spec = RunSpec("resnet50", "step", seed, "keda-rate", setting, "cached-image", 120.0, True, None)
    metrics = RunMetrics(attainment=0.95, window_attainment=0.5, p_latency_ms=math.inf, gpu_hours=0.1 * (seed + 1),
                         goodput_per_gpu_hour=1e6 / 3, failed=7, scale_events=2, cold_starts=1, reloads=0,
                         mean_replicas=2.5)
    timeline = {"load": [10.0, 0.1 + 0.2], "replicas": [2.0, 3.0], "latency_ms": [12.5, math.inf]}
    return RunResult(spec, "keda-rate", "swept 583 req/s", metrics, 1.25, 120.0, timeline)


def test_a_stored_run_reads_back_equal(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    first = RunStore(path, "code-a")
    first.add(result(0, 583.3333333333334))
    first.add(result(1))
    again = RunStore(path, "code-a")
    assert again.runs == {r.spec: r for r in (result(0, 583.3333333333334), result(1))}
    assert again.dropped == 0


def test_runs_of_other_code_and_cut_lines_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    RunStore(path, "code-a").add(result(0))
    RunStore(path, "code-a").add(result(1))
    with path.open("a") as f:
        f.write('{"code": "code-b", "run": {"spec"')  # killed while writing
    store = RunStore(path, "code-b")
    assert (store.runs, store.dropped) == ({}, 3)
    assert path.read_text() == ""


def test_fresh_drops_every_run(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    RunStore(path, "code-a").add(result(0))
    assert RunStore(path, "code-a", fresh=True).runs == {}
    assert RunStore(path, "code-a").runs == {}


def test_stored_runs_are_read_back_not_run(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.jsonl", "code-a")
    stored = [result(0), result(1)]
    for r in stored:
        store.add(r)
    # a run planned twice (the best setting's seed-0 run is its sweep run) is read back twice, nothing runs
    specs = [stored[1].spec, stored[0].spec, stored[1].spec]
    assert run_all(specs, 1, "test", store) == [stored[1], stored[0], stored[1]]


def test_fingerprint_follows_the_sources_not_their_caches(tmp_path: Path) -> None:
    (tmp_path / "operator/batchpilot/sim/__pycache__").mkdir(parents=True)
    (tmp_path / "bench").mkdir()
    planner = tmp_path / "operator/batchpilot/planner.py"
    planner.write_text("TARGET = 0.85\n")
    (tmp_path / "operator/batchpilot/sim/profile.json").write_text("{}")
    (tmp_path / "bench/sim_compare.py").write_text("SERVICES = {}\n")
    before = code_fingerprint(tmp_path)
    (tmp_path / "operator/batchpilot/sim/__pycache__/planner.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "bench/sim_report.py").write_text("# the report's code does not change a run\n")
    assert code_fingerprint(tmp_path) == before
    for path, text in [(planner, "TARGET = 0.9\n"), (tmp_path / "operator/batchpilot/sim/profile.json", '{"a": 1}'),
                       (tmp_path / "bench/sim_compare.py", "SERVICES = {'bert': 1}\n")]:
        kept = path.read_text()
        path.write_text(text)
        assert code_fingerprint(tmp_path) != before, path
        path.write_text(kept)
    assert code_fingerprint(tmp_path) == before


@pytest.mark.parametrize(("cpus", "gib", "jobs"), [
    pytest.param(16, 128, 16, id="one-per-cpu"),
    pytest.param(16, 8, 5, id="memory-bound"),
    pytest.param(2, 1, 1, id="at-least-one"),
])
def test_workers_one_per_cpu_as_memory_allows(monkeypatch: pytest.MonkeyPatch, cpus: int, gib: int, jobs: int) -> None:
    monkeypatch.setattr(sim_compare.os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    monkeypatch.setattr(sim_compare.os, "sysconf", lambda name: {"SC_PAGE_SIZE": 4096}.get(name, gib * 2**30 // 4096))
    assert default_jobs() == jobs


@pytest.mark.parametrize(("args", "warmup_s"), [
    pytest.param([], 0.0, id="none-by-default"),
    pytest.param(["--warmup"], 360.0, id="cached-image-60s-plus-5-min"),
    pytest.param(["--warmup", "--cold-start", "new-node"], 900.0, id="new-node-10-min-plus-5"),
])
def test_warmup_lasts_the_longest_cold_start_and_five_minutes(args: list[str], warmup_s: float) -> None:
    parsed = sim_compare.parse_args(args)
    assert parsed.warmup_s == warmup_s
    sweeps, _ = sim_compare.plan(parsed)
    assert {s.warmup_s for s in sweeps} == {warmup_s}


def test_a_timeline_draws_batchpilot_at_its_default_and_each_peer_at_its_best_swept_setting() -> None:
    """The timeline is what a reader looks at first: the product as a user runs it, beside the fairest peers. It
    once drew Batchpilot's own swept best (targetUtilization 0.5 on ramp + spike) and no Batchpilot default."""
    def run(family: str, setting: str, seed: int = 0) -> RunResult:
        r = result(seed)
        return RunResult(r.spec, family, setting, r.metrics, r.wall_s, r.simulated_s, r.timeline if seed == 0 else {})

    runs = {(f, s): [run(f, s, 1), run(f, s)] for f, s in [
        ("batchpilot", "default"), ("batchpilot", "swept targetUtilization 0.5"), ("keda-rate", "default 729 req/s"),
        ("keda-rate", "swept 365 req/s"), ("static", "peak 1-min"), ("ray-serve", "default 2")]}
    drawn = sim_report.timeline_runs(runs)
    assert [key for key, _ in drawn] == [("batchpilot", "default"), ("keda-rate", "swept 365 req/s"),
                                         ("static", "peak 1-min")]
    assert all(r.timeline for _, r in drawn)  # seed 0's, the one run with a timeline
