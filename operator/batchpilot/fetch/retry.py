"""Retry transient network failures with exponential back-off."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from batchpilot.fetch.errors import TransientError
from batchpilot.fetch.progress import Progress

T = TypeVar("T")

ATTEMPTS = 4
FIRST_DELAY_S = 1.0


def retrying(
    action: Callable[[], T],
    progress: Progress,
    *,
    attempts: int = ATTEMPTS,
    first_delay_s: float = FIRST_DELAY_S,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run action, retrying TransientError with delays 1 s, 2 s, 4 s...; the last failure propagates."""
    delay = first_delay_s
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except TransientError as e:
            if attempt == attempts:
                raise TransientError(f"{e} (gave up after {attempts} attempts)") from e
            progress.note(f"{e}; retrying in {delay:.0f} s (attempt {attempt + 1} of {attempts})")
            sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
