"""Loaders for the two public serverless traces people replay, as a `Trace`.

- Azure Functions 2019 (Shahrad et al., "Serverless in the Wild", ATC '20; AzurePublicDataset
  `AzureFunctionsDataset2019.md`): `invocations_per_function_md.anon.dNN.csv`, one row per function with
  columns HashOwner,HashApp,HashFunction,Trigger,1,2,...,1440 (invocations in each minute of the day).
  The file has counts, not times: each minute's count is spread uniformly at random inside the minute, which
  is a Poisson process given its count.
- Azure Functions 2021 (AzurePublicDataset `AzureFunctionsInvocationTrace2021.md`):
  `AzureFunctionsInvocationTraceForTwoWeeksJan2021.txt`, one row per invocation with columns
  app,func,end_timestamp,duration (seconds); the arrival is end_timestamp - duration.

Errors say the file, the line, what is wrong and what was expected, so a person can fix the file or the call.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from batchpilot.sim.types import FloatArray, Trace

AZURE_2019_KEYS = ("HashOwner", "HashApp", "HashFunction", "Trigger")
"""The columns of the 2019 per-minute file before the minute counts."""
AZURE_2021_COLUMNS = ("app", "func", "end_timestamp", "duration")
MINUTE_S = 60.0
EXAMPLES_LISTED = 5
"""How many existing functions an error names when the one asked for is not in the file."""
WHERE_TO_GET = "see https://github.com/Azure/AzurePublicDataset"


class TraceFormatError(ValueError):
    """A trace file that does not have the expected format, or a selection that matches nothing in it."""


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) for every line of a CSV file, header included; blank lines skipped."""
    try:
        with path.open(newline="") as f:
            for lineno, row in enumerate(csv.reader(f), start=1):
                if row:
                    yield lineno, row
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such trace file ({WHERE_TO_GET})") from None


def _header(path: Path, rows: Iterator[tuple[int, list[str]]], required: tuple[str, ...]) -> dict[str, int]:
    """Column name -> index, checking the required columns are there and no name repeats."""
    lineno, header = next(rows, (1, []))
    index = {name.strip(): i for i, name in enumerate(header)}
    if len(index) != len(header):
        raise TraceFormatError(f"{path}: line {lineno}: a column name appears twice in the header; expected "
                               f"each of {','.join(required)} once")
    missing = [name for name in required if name not in index]
    if missing:
        raise TraceFormatError(f"{path}: line {lineno}: missing column(s) {', '.join(missing)}; expected a "
                               f"header with {','.join(required)}, got {','.join(header)[:200]!r}")
    return index


def _minute_columns(path: Path, index: dict[str, int]) -> list[int]:
    """The indices of the 2019 file's minute columns 1..N, which must be consecutive."""
    minutes = sorted(int(name) for name in index if name.isdigit())
    if not minutes or minutes != list(range(1, len(minutes) + 1)):
        raise TraceFormatError(f"{path}: line 1: minute columns must be 1,2,...,N (1440 for a day), got "
                               f"{len(minutes)} numbered columns starting at {minutes[:1]}")
    return [index[str(m)] for m in minutes]


def _counts(path: Path, lineno: int, row: list[str], columns: list[int], header_len: int) -> FloatArray:
    if len(row) != header_len:
        raise TraceFormatError(f"{path}: line {lineno}: {len(row)} fields, expected {header_len} like the "
                               "header")
    try:
        counts = np.array([row[i] for i in columns], dtype=np.float64)  # numpy parses the text, fast
    except ValueError:
        bad = next(i for i in columns if not _is_number(row[i]))
        raise TraceFormatError(f"{path}: line {lineno}: minute column {columns.index(bad) + 1} has "
                               f"{row[bad]!r}; expected a whole number of invocations >= 0") from None
    wrong = ~np.isfinite(counts) | (counts < 0) | (counts != np.floor(counts))
    if wrong.any():
        minute = int(np.argmax(wrong))
        raise TraceFormatError(f"{path}: line {lineno}: minute column {minute + 1} has "
                               f"{row[columns[minute]]!r}; expected a whole number of invocations >= 0")
    return counts


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _not_found(path: Path, what: str, wanted: str, seen: list[str], total: int) -> TraceFormatError:
    return TraceFormatError(f"{path}: no row has {what} {wanted!r}; {total} distinct in the file, e.g. "
                            f"{', '.join(seen[:EXAMPLES_LISTED])}")


def load_azure_2019(path: str | Path, function: str | None = None, scale: float = 1.0, seed: int = 0,
                    minutes: int | None = None) -> Trace:
    """Arrivals of one function (its HashFunction; several rows with it are summed) or of all rows summed.

    `minutes` keeps the first that many minutes (default all); `scale` multiplies every minute's count,
    rounded at random to a whole number so the mean is kept (e.g. 0.5 of 3 is 1 or 2, each half the time).
    """
    path = Path(path)
    if scale < 0 or not math.isfinite(scale):
        raise ValueError(f"scale must be a finite number >= 0, got {scale!r}")
    rows = _rows(path)
    index = _header(path, rows, AZURE_2019_KEYS)
    columns = _minute_columns(path, index)
    if minutes is not None and not 1 <= minutes <= len(columns):
        raise ValueError(f"{path}: minutes must be 1..{len(columns)} (the file's minute columns), "
                         f"got {minutes!r}")
    total = np.zeros(len(columns))
    seen: dict[str, None] = {}  # insertion-ordered set of the functions, for the error message
    matched = False
    for lineno, row in rows:
        name = row[index["HashFunction"]] if len(row) > index["HashFunction"] else ""
        if function is not None and name != function:
            seen.setdefault(name)
            continue
        total += _counts(path, lineno, row, columns, len(index))
        matched = True
    if function is not None and not matched:
        raise _not_found(path, "HashFunction", function, list(seen), len(seen))
    counts = total[:minutes]
    rng = np.random.default_rng(seed)
    if scale != 1.0:
        scaled = counts * scale
        counts = np.floor(scaled) + (rng.random(counts.size) < scaled - np.floor(scaled))
    n = counts.astype(np.int64)
    arrivals = np.sort(np.repeat(np.arange(n.size) * MINUTE_S, n) + rng.random(int(n.sum())) * MINUTE_S)
    duration = n.size * MINUTE_S
    label = "all" if function is None else function[:8]
    return Trace(name=f"azure-2019:{label}", arrivals=np.minimum(arrivals, np.nextafter(duration, 0.0)),
                 duration_s=duration, seed=seed)


def _number(path: Path, lineno: int, row: list[str], column: str, i: int) -> float:
    try:
        value = float(row[i])
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or (column == "duration" and value < 0):
        raise TraceFormatError(f"{path}: line {lineno}: column {column} has {row[i]!r}; expected "
                               f"{'a duration in seconds >= 0' if column == 'duration' else 'seconds'}")
    return value


def _read_2021(path: Path, app: str | None, func: str | None) -> FloatArray:
    """Arrival times (end - duration, trace seconds, file order) of the selected invocations."""
    rows = _rows(path)
    index = _header(path, rows, AZURE_2021_COLUMNS)
    i_app, i_func, i_end, i_dur = (index[c] for c in AZURE_2021_COLUMNS)
    arrivals: list[float] = []
    seen: dict[str, None] = {}
    for lineno, row in rows:
        if len(row) != len(index):
            raise TraceFormatError(f"{path}: line {lineno}: {len(row)} fields, expected {len(index)} "
                                   f"({','.join(AZURE_2021_COLUMNS)})")
        if (app is not None and row[i_app] != app) or (func is not None and row[i_func] != func):
            seen.setdefault(f"{row[i_app]}/{row[i_func]}")
            continue
        end = _number(path, lineno, row, "end_timestamp", i_end)
        arrivals.append(end - _number(path, lineno, row, "duration", i_dur))
    if not arrivals:
        wanted = f"{app or '*'}/{func or '*'}"
        raise _not_found(path, "app/func", wanted, list(seen), len(seen))
    return np.array(arrivals)


def load_azure_2021(path: str | Path, app: str | None = None, func: str | None = None, speedup: float = 1.0,
                    start_s: float | None = None, duration_s: float | None = None) -> Trace:
    """Arrivals of the invocations of `app` and/or `func` (default all), replayed `speedup` times faster.

    `start_s` and `duration_s` select a window in the file's own seconds (default: from the first selected
    arrival to the last); the trace starts at the window's start, and its duration is the window's divided by
    `speedup` (without a window, the whole second after the last arrival).
    """
    path = Path(path)
    if speedup <= 0 or not math.isfinite(speedup):
        raise ValueError(f"speedup must be a finite number > 0, got {speedup!r}")
    if duration_s is not None and duration_s <= 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s!r}")
    arrivals = np.sort(_read_2021(path, app, func))
    start = float(arrivals[0]) if start_s is None else start_s
    end = math.inf if duration_s is None else start + duration_s
    shifted = (arrivals[(arrivals >= start) & (arrivals < end)] - start) / speedup
    if not shifted.size:
        raise TraceFormatError(f"{path}: no selected invocation arrives in [{start}, {end}) s; they arrive "
                               f"from {arrivals[0]} to {arrivals[-1]} s")
    if duration_s is not None:
        duration = duration_s / speedup
        shifted = np.minimum(shifted, np.nextafter(duration, 0.0))
    else:
        duration = math.floor(shifted[-1]) + 1.0
    label = f"{(app or 'all')[:8]}/{(func or 'all')[:8]}"
    return Trace(name=f"azure-2021:{label}", arrivals=shifted, duration_s=duration)
