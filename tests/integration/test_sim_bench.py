"""Smoke test of `make bench`'s simulator comparison: the quick mode end to end (runs in worker processes,
writes the report, the JSON and the plots). The full comparison is `make bench`, not part of `make test`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.sim_compare import RUNS_FILE, main


def test_quick_comparison_writes_report_json_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--quick", "--duration", "1500", "--jobs", "2", "--out", str(tmp_path)]
    assert main(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]
    policies = {r["policy"] for r in runs}
    assert {"batchpilot", "static", "oracle", "keda-rate", "hpa-queue-compute", "knative", "ray-serve"} <= policies
    for r in runs:
        m = r["metrics"]
        assert 0.0 <= m["attainment"] <= 1.0 and m["gpu_hours"] > 0, r
        assert r["simulated_s"] == 1500
    report = (tmp_path / "report.md").read_text()
    assert "| resnet50 | step |" in report and "| batchpilot | default |" in report
    assert (tmp_path / "pareto-resnet50-step.png").stat().st_size > 10_000
    assert (tmp_path / "timeline-resnet50-step.png").stat().st_size > 10_000
    assert results["meta"]["simulated_hours_per_wall_s"] > 0

    # run again on the same code: every run is read back from runs.jsonl, none simulated, the same results
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"{len(runs)} of {len(runs)} runs read back from {tmp_path / RUNS_FILE}" in out, out
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["runs"] == runs and again["meta"]["read_back"] == len(runs)
    assert f"({len(runs)} distinct runs read back from runs.jsonl" in (tmp_path / "report.md").read_text()
