"""Helpers shared by the integration and e2e tests (pytest puts tests/ on sys.path through conftest)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from batchpilot.sandbox import kubectl as sandbox_kubectl
from batchpilot.sandbox.demo import Row, load_step
from batchpilot.sandbox.gpu_emulator import model_files
from batchpilot.sandbox.process import spawn, stop_process, tail
from batchpilot.sandbox.sample import SampleService
from batchpilot.sandbox.service_watch import ServiceSample, ServiceWatch
from batchpilot.sandbox.stack import Sandbox
from batchpilot.sandbox.triton_runtime import find_triton, prepare_backend_dir, server_argv, triton_env

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float, detail: Callable[[], str] = str) -> T:
    """Poll check until it returns a truthy value; fail naming what was awaited (plus detail())."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}\n{detail()}")


def processes_with(*needles: str) -> list[int]:
    """PIDs whose command line contains every needle (to prove a pod's processes are gone)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().split(") ", 1)[1][:1]
        except (OSError, IndexError):
            continue
        if state != "Z" and all(n in cmdline for n in needles):
            pids.append(int(entry.name))
    return pids


def http_status(url: str) -> int | None:
    """HTTP status of a GET, None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None


def infer(address: str, model: str) -> list[float]:
    """One KServe-v2 inference of a [1, 4] FP32 tensor against the GPU emulator."""
    body = {"inputs": [{"name": "INPUT", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    request = urllib.request.Request(f"http://{address}/v2/models/{model}/infer", data=json.dumps(body).encode(),
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10) as resp:
        data: list[float] = json.loads(resp.read())["outputs"][0]["data"]
        return data


def release_namespace(sandbox: Sandbox, namespace: str, timeout_s: float = 180) -> None:
    """Delete a test's namespace and return once its pods are gone (their GPUs free again), without waiting for
    the namespace itself: with Triton pods in it, `kubectl delete namespace --wait` took ~36 s per test in make
    test, though the pods go in seconds (preStop, then SIGTERM); the namespace controller comes back to it later
    (apparently after about the pods' 40 s grace period). A namespace name is not reused within a session."""
    sandbox.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not sandbox.kubectl("get", "pods", "-n", namespace, "-o", "name", check=False).strip():
            return
        time.sleep(0.5)


class SampleRun:
    """One sample service through a load schedule in the sandbox, then deleted: what the load generator saw
    (rows), the service as sampled each second, its last status and a report (load lines, Events, operator
    log) to print."""

    def __init__(self, sandbox: Sandbox, sample: SampleService, schedule: str) -> None:
        watches: list[ServiceWatch] = []
        lines: list[str] = []
        try:
            self.rows = load_step(sandbox, sample, schedule, lines.append, on_start=watches.append)
            self.status: dict[str, Any] = json.loads(sandbox.kubectl(
                "get", "inferenceservice", "-n", sample.namespace, sample.name, "-o", "json"))["status"]
            self.events = sandbox.kubectl("get", "events", "-n", sample.namespace, "--field-selector",
                                          "involvedObject.kind=InferenceService", check=False)
        finally:
            release_namespace(sandbox, sample.namespace)
        self.samples: list[ServiceSample] = watches[0].samples
        self.report = "\n".join(lines) + "\n" + self.events + "\noperator log:\n" + \
            tail(sandbox.logs / "operator.log", 20)

    def replica_seconds(self) -> float:
        return sum(a.replicas * (b.at - a.at) for a, b in zip(self.samples, self.samples[1:], strict=False))


class BackgroundLoad:
    """The demo's load step on a thread, so a test can inject faults from the main thread meanwhile (the
    sandbox ties each process it starts to the starting thread: a process started on a short-lived thread
    would die with it)."""

    def __init__(self, sandbox: Sandbox, sample: SampleService, schedule: str) -> None:
        self.lines: list[str] = []
        self.rows: list[Row] = []
        self._watches: list[ServiceWatch] = []
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(sandbox, sample, schedule), daemon=True)

    def _run(self, sandbox: Sandbox, sample: SampleService, schedule: str) -> None:
        self.rows.extend(load_step(sandbox, sample, schedule, self.lines.append, on_start=self._on_start))

    def _on_start(self, watch: ServiceWatch) -> None:
        self._watches.append(watch)
        self._started.set()

    def start(self, timeout_s: float = 300) -> ServiceWatch:
        """Start; returns once the load runs, with the watch sampling the service."""
        self._thread.start()
        assert self._started.wait(timeout_s), "the service never became ready:\n" + "\n".join(self.lines)
        return self._watches[0]

    def join(self, timeout_s: float = 300) -> None:
        self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        """The load is still being offered."""
        return self._thread.is_alive()


@contextlib.contextmanager
def metrics_stub(host: str, value: int) -> Iterator[str]:
    """A /metrics endpoint with the counter stub_requests_total on host, in a thread; yields ip:port."""
    body = f"# TYPE stub_requests_total counter\nstub_requests_total {value}\n".encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    try:
        yield f"{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def kubectl_run(kubeconfig: str | os.PathLike[str], *args: str,
                stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """kubectl with args against kubeconfig's cluster, as a user would run it (output captured, never raises)."""
    return subprocess.run(["kubectl", f"--kubeconfig={os.fspath(kubeconfig)}", *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


def install_crd(kubeconfig: Path, namespace: str) -> Path:
    """The generated InferenceService CRD, Established, and namespace (which may exist already); returns
    kubeconfig."""
    sandbox_kubectl.install_crd(kubeconfig)
    done = kubectl_run(kubeconfig, "create", "namespace", namespace)
    assert done.returncode == 0 or "AlreadyExists" in done.stderr, done.stderr
    return kubeconfig


@contextlib.contextmanager
def emulator_triton(root: Path, address: str, config_pbtxt: str, time_scale: float,
                    extra_args: Sequence[str] = ()) -> Iterator[str]:
    """The wheel's tritonserver on address:8000 with the GPU emulator (h100-resnet50-fp16, time_scale times
    slower) loaded as model "emulator" under explicit model control, config_pbtxt as its config. root holds
    the model repository, the backends and tritonserver.log. Yields the base URL once ready; stops it after."""
    version_dir = root / "models" / "emulator" / "1"
    version_dir.mkdir(parents=True)
    for name, text in model_files("h100-resnet50-fp16", time_scale).items():
        (version_dir / name).write_text(text)
    (version_dir.parent / "config.pbtxt").write_text(config_pbtxt)
    install = find_triton()
    args = [f"--model-repository={root / 'models'}", "--model-control-mode=explicit", "--load-model=emulator",
            *extra_args]
    log = root / "tritonserver.log"
    proc = spawn(server_argv(install, prepare_backend_dir(root / "backends", install), address, args), log,
                 env=triton_env(install=install))
    url = f"http://{address}:8000"

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"tritonserver exited ({proc.returncode}) before it was ready at {url}; "
                                 f"log tail:\n{tail(log, 40)}")
        return http_status(f"{url}/v2/health/ready") == 200

    try:
        wait_for(f"tritonserver ready at {url}", ready, 90, lambda: "log tail:\n" + tail(log, 40))
        yield url
    finally:
        stop_process(proc, grace_s=10)
