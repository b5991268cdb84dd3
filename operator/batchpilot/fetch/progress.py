"""Progress lines on stderr: each file as it lands, running bytes of big files, the total at the end, or the
one line saying why the fetch failed. Every line is scrubbed of the credentials' values first."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Collection, Mapping
from typing import TextIO

REPORT_EVERY_S = 5.0
CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "HTTP_AUTHORIZATION")
"""The credentialsSecret keys whose values are secret (CA_BUNDLE and the endpoint are not)."""
SHORTEST_HIDDEN = 8
"""Values shorter than this are not scrubbed: a 3-letter value would mangle ordinary words of a message, and no
real key is that short (an AWS key id has 20 characters, a secret key 40)."""
REDACTED = "[redacted]"


def credential_values(env: Mapping[str, str]) -> tuple[str, ...]:
    """The values never to print, longest first: each credential whole, and an Authorization header's
    credentials without their scheme ('Bearer abc...' -> 'abc...'), in case a server echoes only those."""
    values = set()
    for key in CREDENTIAL_KEYS:
        value = env.get(key, "").strip()
        values.add(value)
        if key == "HTTP_AUTHORIZATION" and " " in value:
            values.add(value.split(" ", 1)[1].strip())
    return tuple(sorted((v for v in values if len(v) >= SHORTEST_HIDDEN), key=len, reverse=True))


def redact(text: str, hidden: Collection[str]) -> str:
    """text with every hidden value replaced by [redacted]."""
    for value in hidden:
        text = text.replace(value, REDACTED)
    return text


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class Progress:
    """Writes 'fetch: ...' lines. Nothing from the environment is printed on purpose; `hidden` (see
    credential_values) is scrubbed from every line anyway, as a server's error message may quote what it got."""

    def __init__(self, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic,
                 hidden: Collection[str] = ()) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._hidden = tuple(hidden)
        self._started = clock()
        self._last_report = self._started

    def _print(self, line: str) -> None:
        print(redact(line, self._hidden), file=self._stream, flush=True)

    def note(self, message: str) -> None:
        self._print(f"fetch: {message}")

    def fail(self, message: str) -> None:
        """The last line: what failed and the fix (the pod's termination message, quoted in the status)."""
        self._print(f"fetch failed: {message}")

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
