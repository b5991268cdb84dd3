"""Smoke test of `make bench`'s fleet-scale simulator runs (bench/sim_fleet.py): the quick mode end to end, in
worker processes, on a shared GPU pool; writes the report, the JSON and both plots. The full runs (1,000
replicas, 200 services) are `make bench`, not part of `make test`."""

from __future__ import annotations

import json
from pathlib import Path

from bench.sim_fleet import FAMILIES, main


def test_quick_fleet_writes_report_json_and_plots(tmp_path: Path) -> None:
    assert main(["--quick", "--jobs", "2", "--out", str(tmp_path)]) == 0
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert sorted((r["part"], r.get("gpu_factor"), r["family"]) for r in runs) == sorted(
        [("scale", None, f) for f in FAMILIES] + [("cluster", g, f) for g in (1.3, 3.0) for f in FAMILIES])
    for r in (r for r in runs if r["part"] == "scale"):
        m = r["metrics"]
        assert 0.0 <= m["attainment"] <= 1.0 and m["gpu_hours"] > 0, r
        assert r["peak_replicas"] <= 60 and r["peak_rss_mb"] > 0 and r["sim_hours_per_wall_s"] > 0
        assert r["decide"]["calls"] > 0 and r["decide"]["p95_ms"] >= r["decide"]["p50_ms"] > 0
    for r in (r for r in runs if r["part"] == "cluster"):
        assert len(r["services"]) == 12 and r["gpu_hours"] > 0
        assert r["peak_gpus_in_use"] <= r["gpus"]  # the pool is shared: never more pods scheduled than GPUs
        a = r["attainment"]
        assert 0.0 <= a["min"] <= min(a["p10"], a["mean"]) and max(a["p10"], a["mean"]) <= 1.0
        assert r["gpu_hours"] <= r["gpus"] * 1500 / 3600 + 1e-6
    static = {r["gpu_factor"]: r for r in runs if r["part"] == "cluster" and r["family"] == "static"}
    assert static[1.3]["pending"]["pod_hours"] > 0  # every service at its peak overflows 1.3x the mean demand
    assert static[3.0]["pending"]["pod_hours"] == 0 and static[3.0]["gpus"] > static[1.3]["gpus"]
    report = (tmp_path / "report.md").read_text()
    assert "## 1. One service up to 1,000 replicas" in report and "(1.3x the mean demand)" in report
    assert "| batchpilot | default |" in report
    assert (tmp_path / "cluster-1.3x.png").stat().st_size > 10_000
    assert (tmp_path / "cluster-3x.png").stat().st_size > 10_000
    assert (tmp_path / "scale.png").stat().st_size > 10_000
