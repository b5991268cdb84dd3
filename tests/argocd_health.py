"""Argo CD's health check of an InferenceService (integrations/argocd/.../health.lua), run as Argo CD runs it: a
real Lua 5.1 interpreter (lupa's lua51) with the object as the global `obj`. Objects the tests capture live can
be written into the check's testdata (BATCHPILOT_CAPTURE_ARGOCD=1)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml
from lupa import lua51

CHECK = Path(__file__).resolve().parents[1] / "integrations/argocd/batchpilot.dev/InferenceService"
CAPTURE_ENV = "BATCHPILOT_CAPTURE_ARGOCD"


def _lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({k: _lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_lua(runtime, v) for v in value])
    return value


def health(obj: dict[str, Any]) -> dict[str, str]:
    """{"status": ..., "message": ...} as health.lua returns it for obj."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = _lua(runtime, obj)
    result = runtime.execute((CHECK / "health.lua").read_text())
    return {"status": str(result["status"]), "message": str(result["message"] or "")}


def captured(obj: dict[str, Any], name: str) -> None:
    """With BATCHPILOT_CAPTURE_ARGOCD set, write obj (without server bookkeeping) as testdata/<name>.yaml."""
    if not os.environ.get(CAPTURE_ENV):
        return
    kept = copy.deepcopy(obj)
    meta = kept.get("metadata") or {}
    for key in ("managedFields", "uid", "resourceVersion", "creationTimestamp", "annotations"):
        meta.pop(key, None)
    (CHECK / "testdata" / f"{name}.yaml").write_text(yaml.safe_dump(kept, sort_keys=False))
