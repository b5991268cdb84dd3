"""Progress lines on stderr: each file as it lands, running bytes of big files, the total at the end."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

REPORT_EVERY_S = 5.0


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class Progress:
    """Writes 'fetch: ...' lines; never anything from the environment (credentials live there)."""

    def __init__(self, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._started = clock()
        self._last_report = self._started

    def note(self, message: str) -> None:
        print(f"fetch: {message}", file=self._stream, flush=True)

    def advance(self, label: str, done: int, total: int | None) -> None:
        """done bytes of label so far; reported every few seconds so big files show movement."""
        now = self._clock()
        if now - self._last_report >= REPORT_EVERY_S:
            self._last_report = now
            of = f" of {human_bytes(total)}" if total else ""
            self.note(f"{label}: {human_bytes(done)}{of}")

    def file_done(self, label: str, size: int) -> None:
        self.note(f"{label} ({human_bytes(size)})")

    def finish(self, files: int, size: int, dest: str) -> None:
        elapsed = self._clock() - self._started
        self.note(
            f"done: {files} file{'' if files == 1 else 's'}, {human_bytes(size)} "
            f"in {elapsed:.1f} s into {dest}"
        )
