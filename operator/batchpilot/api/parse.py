"""Parse a custom resource's spec into the typed model, with errors that name the field and the fix."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from batchpilot.api.spec import InferenceServiceSpec


class SpecError(ValueError):
    """The spec cannot be served; the message says which field, what value and what to do."""


def _path(loc: tuple[int | str, ...]) -> str:
    out = "spec"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def describe(error: ValidationError) -> str:
    lines = []
    for e in error.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        got = f" (got {e['input']!r})" if e["type"] != "missing" and not isinstance(e["input"], dict) else ""
        lines.append(f"{_path(loc)}: {e['msg']}{got}")
    return "; ".join(lines)


def parse_spec(spec: Mapping[str, Any]) -> InferenceServiceSpec:
    try:
        return InferenceServiceSpec.model_validate(dict(spec))
    except ValidationError as e:
        raise SpecError(describe(e)) from None
