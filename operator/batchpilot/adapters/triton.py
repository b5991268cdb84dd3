"""Triton's model repository API, per pod: read a model's live config, load it with a config override.

All Triton I/O of the operator lives here. Calls are synchronous (the control loop runs in kopf's threads).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from batchpilot.build.names import HTTP_PORT


class TritonError(RuntimeError):
    """A Triton call failed; the message says which pod, which call and Triton's own words."""


class TritonAdmin:
    def __init__(self, host: str, port: int = HTTP_PORT, timeout_s: float = 60.0) -> None:
        self.base = f"http://{host}:{port}"
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                text = resp.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace").strip()
            raise TritonError(f"{method} {self.base}{path}: HTTP {e.code}: {detail}") from e
        except (urllib.error.URLError, OSError) as e:
            raise TritonError(f"{method} {self.base}{path}: {e}") from e
        return dict(json.loads(text)) if text else {}

    def config(self, model: str) -> dict[str, Any]:
        """The model's configuration as Triton runs it now."""
        return self._call("GET", f"/v2/models/{model}/config")

    def load(self, model: str, config: dict[str, Any]) -> None:
        """(Re)load the model with this configuration instead of its config.pbtxt (explicit model control).

        Triton loads the new instances before it retires the old ones, so requests keep being served.
        """
        self._call("POST", f"/v2/repository/models/{model}/load",
                   {"parameters": {"config": json.dumps(config)}})

    def ready(self, model: str) -> bool:
        try:
            self._call("GET", f"/v2/models/{model}/ready")
        except TritonError:
            return False
        return True
