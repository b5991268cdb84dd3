"""spec.model.profile from the files users bring from their GPU machines, and the profile written back out. Pure.

- `perf_analyzer -f FILE` (one run per batch size, `-b N`): the CSV has one row per concurrency level and times in
  microseconds (`Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute
  Input,Server Compute Infer,Server Compute Output,...`). A batch's compute time is the server's compute input +
  infer + output at the lowest concurrency (the least queueing and the least contention).
- Model Analyzer's inference metrics CSV (`metrics-model-inference.csv`), with the server compute columns asked for
  in `inference_output_fields` (`perf_server_compute_input`, `perf_server_compute_infer`,
  `perf_server_compute_output`): one row per (model config, batch, concurrency), times in milliseconds. Per batch
  size, the row at the lowest concurrency (of the one model config chosen, when the file holds several).

The client's latencies in both files include the network and the queue, so they are never taken as compute time.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping

import yaml

from batchpilot.api.spec import ComputeProfile, ProfilePoint


class ProfileError(ValueError):
    """A file that cannot give a profile: the message names the file, the column or row, and the fix."""


PA_COMPUTE = ("Server Compute Input", "Server Compute Infer", "Server Compute Output")
"""perf_analyzer's server-side compute columns (microseconds)."""
MA_COMPUTE = ("Server Compute Input (ms)", "Server Compute Infer (ms)", "Server Compute Output (ms)")
"""Model Analyzer's server-side compute columns (milliseconds); only Infer is required."""


def _rows(text: str, source: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    if not rows:
        raise ProfileError(f"{source}: no rows under the header")
    return rows


def _number(row: Mapping[str, str], column: str, source: str, line: int) -> float:
    try:
        return float(row[column])
    except (KeyError, ValueError):
        raise ProfileError(f"{source}, row {line}: column {column!r} is {row.get(column)!r}, not a number") from None


def _require(rows: list[dict[str, str]], columns: Iterable[str], source: str, fix: str) -> None:
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise ProfileError(f"{source}: no column {', '.join(repr(c) for c in missing)} (it has: "
                           f"{', '.join(rows[0])}); {fix}")


def from_perf_analyzer(batch_size: int, text: str, source: str = "perf_analyzer CSV") -> ProfilePoint:
    """The compute time of one batch of `batch_size` from one `perf_analyzer -b batch_size -f FILE` run."""
    rows = _rows(text, source)
    level = "Concurrency" if "Concurrency" in rows[0] else "Request Rate"
    _require(rows, (level, *PA_COMPUTE), source,
             "write it with perf_analyzer -f against Triton (server-side statistics), not --service-kind=triton_c_api"
             " without them")
    line, lowest = min(enumerate(rows, start=2), key=lambda r: _number(r[1], level, source, r[0]))
    us = sum(_number(lowest, c, source, line) for c in PA_COMPUTE)
    if us <= 0:
        raise ProfileError(f"{source}, row {line}: the server compute time is {us:g} us; was any request served?")
    return ProfilePoint(batch_size=batch_size, latency_ms=us / 1000)


def from_model_analyzer(text: str, model_config: str | None = None,
                        source: str = "Model Analyzer CSV") -> list[ProfilePoint]:
    """One point per batch size from Model Analyzer's inference metrics CSV."""
    rows = _rows(text, source)
    _require(rows, ("Batch", "Concurrency", "Server Compute Infer (ms)"), source,
             "add perf_server_compute_infer (and perf_server_compute_input, perf_server_compute_output) to "
             "inference_output_fields in the Model Analyzer config and run `model-analyzer report` again")
    configs = sorted({r.get("Model Config Path", "") for r in rows})
    if model_config is None and len(configs) > 1:
        raise ProfileError(f"{source}: rows of {len(configs)} model configs ({', '.join(configs)}); choose one "
                           f"with --model-config (the one you deploy)")
    chosen = model_config if model_config is not None else configs[0]
    lines = [(i, r) for i, r in enumerate(rows, start=2) if r.get("Model Config Path", "") == chosen]
    if not lines:
        raise ProfileError(f"{source}: no rows of model config {chosen!r}; it has {', '.join(configs)}")
    lowest: dict[int, tuple[float, int, dict[str, str]]] = {}
    for line, row in lines:
        batch, level = int(_number(row, "Batch", source, line)), _number(row, "Concurrency", source, line)
        if batch not in lowest or level < lowest[batch][0]:
            lowest[batch] = (level, line, row)
    points = []
    for batch, (_, line, row) in sorted(lowest.items()):
        ms = sum(_number(row, c, source, line) for c in MA_COMPUTE if c in row)
        if ms <= 0:
            raise ProfileError(f"{source}, row {line}: the server compute time of batch {batch} is {ms:g} ms")
        points.append(ProfilePoint(batch_size=batch, latency_ms=ms))
    return points


def profile(points: Iterable[ProfilePoint]) -> ComputeProfile:
    """The points as spec.model.profile, by batch size; one point per batch size."""
    by_size: dict[int, ProfilePoint] = {}
    for p in points:
        if p.batch_size in by_size:
            raise ProfileError(f"batch size {p.batch_size} is given twice ({by_size[p.batch_size].latency_ms:g} ms "
                               f"and {p.latency_ms:g} ms); keep one")
        by_size[p.batch_size] = p
    return ComputeProfile(points=[by_size[b] for b in sorted(by_size)])


def _body(measured: ComputeProfile) -> dict[str, object]:
    return {"points": [{"batchSize": p.batch_size, "latencyMs": round(p.latency_ms, 3)} for p in measured.points]}


def as_yaml(measured: ComputeProfile) -> str:
    """`spec.model.profile` as YAML to paste under the InferenceService's spec.model."""
    return yaml.safe_dump({"profile": _body(measured)}, sort_keys=False)


def as_patch(measured: ComputeProfile) -> str:
    """A merge patch: `kubectl patch inferenceservice NAME --type merge --patch-file FILE`."""
    return json.dumps({"spec": {"model": {"profile": _body(measured)}}}, indent=2) + "\n"
