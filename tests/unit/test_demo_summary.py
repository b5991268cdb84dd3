"""The demo's table line and summary: batching shown beside the replicas, and what it bought."""

from __future__ import annotations

from pathlib import Path

from batchpilot_sandbox.demo.run import HEADER, Row, line, plot, summarize


def rows() -> list[Row]:
    def at(t: float, rate: float, replicas: int, batch: float | None) -> Row:
        return Row(t, rate, rate, 0, 90.0, 88.0, replicas, replicas, "WithinSLO", avg_batch_size=batch,
                   queue_delay_us=0, instance_count=1)

    return [at(5, 15, 1, 1.2), at(10, 120, 1, 3.1), at(15, 118, 2, 2.4), at(20, 15, 2, None)]


def test_the_summary_says_what_batching_bought() -> None:
    s = summarize(rows(), 200.0, 5.0, batch1_ms=47.4)  # the sample's emulated ResNet-50: 47.4 ms at batch 1
    assert (s.peak_offered_rate, s.peak_replicas, s.peak_batch_size) == (120, 2, 3.1)
    assert s.replicas_at_batch_1 == 6  # 120 req/s x 47.4 ms = 5.7 replicas busy all the time at batch 1
    assert summarize(rows(), 200.0, 5.0).replicas_at_batch_1 is None  # no profile: no claim


def test_the_table_shows_batching_beside_the_replicas() -> None:
    text = line(rows()[1], 200.0)
    assert text.split()[-5:] == ["1/1", "3.1", "0", "1", "WithinSLO"], text
    assert len(text) - len("WithinSLO") == len(HEADER) - len("decision"), "columns under the header"
    assert line(rows()[3], 200.0).split()[-4:] == ["-", "0", "1", "WithinSLO"]


def test_the_plot_has_a_batching_panel(tmp_path: Path) -> None:
    plot(rows(), 200.0, tmp_path / "timeline.png")
    assert (tmp_path / "timeline.png").stat().st_size > 10_000
