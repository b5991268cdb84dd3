"""Triton's model repository API, per pod: read a model's live config, load it with a config override.

All Triton I/O of the operator lives here. Calls are synchronous (the control loop runs in kopf's threads).
Reads go over HTTP; a load goes over gRPC (TritonAdmin.load says why).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from batchpilot.build.names import GRPC_PORT, HTTP_PORT


class TritonError(RuntimeError):
    """A Triton call failed; the message says which pod, which call and Triton's own words."""


class TritonAdmin:
    def __init__(self, host: str, port: int = HTTP_PORT, timeout_s: float = 60.0, grpc_port: int = GRPC_PORT) -> None:
        self.base = f"http://{host}:{port}"
        self.grpc = f"{host}:{grpc_port}"
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

        Triton loads the new instances before it retires the old ones, so requests keep being served. Over gRPC,
        not HTTP: Triton's HTTP server runs a load on one of its worker threads until the model is ready, and
        every client connection that thread serves waits as long. On the wheel's tritonserver 2.51 at 85 req/s,
        instances taking 4 s to initialize: over HTTP a request took 5.46 s, over gRPC p99 130 ms
        (tests/integration/test_triton_runtime.py::test_a_slow_load_under_load_holds_no_request).
        """
        client = triton_grpc.InferenceServerClient(self.grpc)
        try:
            client.load_model(model, config=json.dumps(config), client_timeout=self.timeout_s)
        except InferenceServerException as e:
            raise TritonError(f"load {model} at grpc://{self.grpc}: {e}") from e
        finally:
            client.close()

    def stats(self, model: str) -> dict[str, Any]:
        """The model's statistics since it was (re)loaded (GET /v2/models/<model>/stats)."""
        return self._call("GET", f"/v2/models/{model}/stats")

    def infer_zeros(self, model: str, inputs: Sequence[tuple[str, str, Sequence[int], int]]) -> None:
        """One request of all-zero inputs, each (name, wire datatype, shape, bytes), sent as binary tensors (Triton's
        binary data extension: a JSON header, then the raw bytes); outputs come back binary and are not read."""
        header = json.dumps({"inputs": [{"name": name, "datatype": dtype, "shape": list(shape),
                                         "parameters": {"binary_data_size": size}} for name, dtype, shape, size in inputs],
                             "parameters": {"binary_data_output": True}}).encode()
        body = header + bytes(sum(size for *_, size in inputs))
        request = urllib.request.Request(f"{self.base}/v2/models/{model}/infer", data=body, method="POST",
                                         headers={"Content-Type": "application/octet-stream",
                                                  "Inference-Header-Content-Length": str(len(header))})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                resp.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace").strip()
            raise TritonError(f"POST {self.base}/v2/models/{model}/infer: HTTP {e.code}: {detail}") from e
        except (urllib.error.URLError, OSError) as e:
            raise TritonError(f"POST {self.base}/v2/models/{model}/infer: {e}") from e

    def batch_stats(self, model: str) -> dict[int, tuple[int, int]]:
        """The model's executions and compute ns per batch size, cumulative since it was (re)loaded.

        From Triton's statistics (`batch_stats[].compute_infer`), summed over the model's versions. Raises
        TritonError when Triton does not answer, KeyError/TypeError/ValueError when the answer has another shape.
        """
        out: dict[int, tuple[int, int]] = {}
        for version in self.stats(model)["model_stats"]:
            for entry in version.get("batch_stats") or []:
                size, infer = int(entry["batch_size"]), entry["compute_infer"]
                count, ns = out.get(size, (0, 0))
                out[size] = (count + int(infer["count"]), ns + int(infer["ns"]))
        return out

    def ready(self, model: str) -> bool:
        try:
            self._call("GET", f"/v2/models/{model}/ready")
        except TritonError:
            return False
        return True


def repository_index(host: str, port: int = HTTP_PORT, timeout_s: float = 2.0) -> list[dict[str, Any]] | None:
    """Every model in the pod's repository with Triton's `state` and `reason` (why a load failed).

    None when Triton does not answer in time or answers nonsense: the caller then knows no more than before.
    """
    request = urllib.request.Request(f"http://{host}:{port}/v2/repository/index", method="POST",
                                     data=json.dumps({"ready": False}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            index = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    if not isinstance(index, list):
        return None
    return [dict(m) for m in index if isinstance(m, dict) and isinstance(m.get("name"), str)]


STATS_TIMEOUT_S = 2.0
"""Per pod: a Triton too slow to say its statistics is skipped for the tick, not waited for."""


def batch_stats(host: str, model: str, port: int = HTTP_PORT,
                timeout_s: float = STATS_TIMEOUT_S) -> dict[int, tuple[int, int]] | None:
    """TritonAdmin.batch_stats of one pod; None when the pod does not answer in time or answers nonsense: the
    caller skips it."""
    try:
        return TritonAdmin(host, port, timeout_s).batch_stats(model)
    except (TritonError, ValueError, KeyError, TypeError, AttributeError):
        return None


def service_batch_stats(hosts: Sequence[str], model: str,
                        timeout_s: float = STATS_TIMEOUT_S) -> dict[str, dict[int, tuple[int, int]]]:
    """batch_stats of each pod, asked side by side (a hung pod costs one timeout, not one each); pods that did
    not answer are left out."""
    if not hosts:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(hosts))) as pool:
        snapshots = pool.map(lambda host: batch_stats(host, model, timeout_s=timeout_s), hosts)
        return {host: snapshot for host, snapshot in zip(hosts, snapshots, strict=True) if snapshot is not None}
