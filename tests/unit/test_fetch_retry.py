"""Transient failures are retried with doubling delays; others fail at once."""

from __future__ import annotations

import io

import pytest

from batchpilot.fetch.errors import FetchError, TransientError
from batchpilot.fetch.progress import Progress, human_bytes
from batchpilot.fetch.retry import retrying


class Flaky:
    """Fails with the given errors in turn, then returns 'ok'."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_transient_errors_are_retried_with_doubling_delays() -> None:
    slept: list[float] = []
    log = io.StringIO()
    action = Flaky(TransientError("reset"), TransientError("reset"))
    assert retrying(action, Progress(log), sleep=slept.append) == "ok"
    assert action.calls == 3 and slept == [1.0, 2.0]
    assert "retrying in 1 s (attempt 2 of 4)" in log.getvalue()


def test_gives_up_after_the_last_attempt() -> None:
    slept: list[float] = []
    action = Flaky(*(TransientError("503") for _ in range(5)))
    with pytest.raises(TransientError, match="503 .gave up after 4 attempts"):
        retrying(action, Progress(io.StringIO()), sleep=slept.append)
    assert action.calls == 4 and slept == [1.0, 2.0, 4.0]


def test_other_errors_are_not_retried() -> None:
    action = Flaky(FetchError("404"))
    with pytest.raises(FetchError, match="404"):
        retrying(action, Progress(io.StringIO()), sleep=lambda s: None)
    assert action.calls == 1


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 << 20, "5.0 MiB"), (3 << 40, "3072.0 GiB")],
)
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text


def test_big_files_report_every_few_seconds() -> None:
    now = [0.0]
    log = io.StringIO()
    progress = Progress(log, clock=lambda: now[0])
    progress.advance("1/model.plan", 1 << 20, 4 << 20)
    now[0] = 6.0
    progress.advance("1/model.plan", 2 << 20, 4 << 20)
    assert log.getvalue() == "fetch: 1/model.plan: 2.0 MiB of 4.0 MiB\n"
