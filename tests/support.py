"""Helpers shared by the integration and e2e tests (pytest puts tests/ on sys.path through conftest)."""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from batchpilot.adapters.triton import TritonAdmin
from batchpilot.build.batching import tuning_of, with_tuning
from batchpilot.control.types import Tuning
from batchpilot_sandbox.cluster import kubectl as sandbox_kubectl
from batchpilot_sandbox.cluster.namespaces import release_namespace
from batchpilot_sandbox.cluster.stack import Sandbox
from batchpilot_sandbox.demo.run import Row, load_step
from batchpilot_sandbox.demo.sample import SampleService
from batchpilot_sandbox.demo.service_watch import ServiceSample, ServiceWatch
from batchpilot_sandbox.gpu_emulator import model_files
from batchpilot_sandbox.kubelet.triton_runtime import (
    find_triton,
    prepare_backend_dir,
    server_argv,
    triton_env,
)
from batchpilot_sandbox.process import poll, spawn, stop_process, tail

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float, detail: Callable[[], str] = str) -> T:
    """Poll check until it returns a truthy value; fail the test naming what was awaited (plus detail())."""
    try:
        return poll(what, check, timeout_s, detail=detail)
    except TimeoutError as e:
        raise AssertionError(str(e)) from None


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
        self.requests: list[tuple[float, float | None]] = []
        """(seconds since the load started when sent, latency or None when it failed), as they end."""
        self._watches: list[ServiceWatch] = []
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(sandbox, sample, schedule), daemon=True)

    def _run(self, sandbox: Sandbox, sample: SampleService, schedule: str) -> None:
        self.rows.extend(load_step(sandbox, sample, schedule, self.lines.append, on_start=self._on_start,
                                   on_request=lambda sent, latency: self.requests.append((sent, latency))))

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
                    extra_args: Sequence[str] = (), load_s: float = 0.0) -> Iterator[str]:
    """The wheel's tritonserver on address:8000 with the GPU emulator (h100-resnet50-fp16, time_scale times
    slower, each instance load_s to initialize) loaded as model "emulator" under explicit model control,
    config_pbtxt as its config. root holds the model repository, the backends and tritonserver.log. Yields the
    base URL once ready; stops it after."""
    version_dir = root / "models" / "emulator" / "1"
    version_dir.mkdir(parents=True)
    for name, text in model_files("h100-resnet50-fp16", time_scale, load_s=load_s).items():
        (version_dir / name).write_text(text)
    (version_dir.parent / "config.pbtxt").write_text(config_pbtxt)
    with repository_triton(root, address, "emulator", extra_args) as url:
        yield url


@contextlib.contextmanager
def repository_triton(root: Path, address: str, model: str, extra_args: Sequence[str] = ()) -> Iterator[str]:
    """The wheel's tritonserver on address:8000 serving root/models, `model` loaded under explicit model control;
    root also gets the backends and tritonserver.log. Yields the base URL once ready; stops it after."""
    install = find_triton()
    args = [f"--model-repository={root / 'models'}", "--model-control-mode=explicit", f"--load-model={model}",
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


# -- the model owner's path (tests/integration/test_export_triton.py, tests/e2e/test_exported_model.py)

REPO_ROOT = Path(__file__).resolve().parents[1]


def batchpilot_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m batchpilot ARGS` from the repository root (where examples/ imports from), output captured."""
    return subprocess.run([sys.executable, "-m", "batchpilot", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)


def infer_exported(address: str, model: str, rows: Any) -> Any:
    """One request of FP32 rows (a numpy array) to an exported model (INPUT__0 -> OUTPUT__0); its output array."""
    import numpy as np

    body = {"inputs": [{"name": "INPUT__0", "shape": list(rows.shape), "datatype": "FP32",
                        "data": rows.ravel().tolist()}]}
    request = urllib.request.Request(f"http://{address}:8000/v2/models/{model}/infer", data=json.dumps(body).encode(),
                                     method="POST")
    with urllib.request.urlopen(request, timeout=60) as resp:
        (out,) = json.loads(resp.read())["outputs"]
    assert out["name"] == "OUTPUT__0" and out["datatype"] == "FP32", out
    return np.array(out["data"], dtype=np.float32).reshape(out["shape"])


def version_dir_configmap(name: str, namespace: str, version_dir: Path) -> dict[str, Any]:
    """A ConfigMap of an exported version directory, as spec.model.repository.configMap mounts it: Python files as
    data, the artifact (model.pt, model.onnx) as binaryData."""
    files = sorted(p for p in version_dir.iterdir() if p.is_file())
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": {p.name: p.read_text() for p in files if p.suffix == ".py"},
            "binaryData": {p.name: base64.b64encode(p.read_bytes()).decode() for p in files if p.suffix != ".py"}}


# -- fault tests (tests/e2e/test_faults.py): what the operator recorded, read back from the API server

def isvc_status(sandbox: Sandbox, namespace: str, name: str) -> dict[str, Any]:
    """The InferenceService's status as stored ({} before the first write)."""
    out = sandbox.kubectl("get", "inferenceservice", "-n", namespace, name, "-o", "json")
    status: dict[str, Any] = json.loads(out).get("status") or {}
    return status


def rfc3339_time(stamp: str) -> float:
    """Unix time of a Kubernetes timestamp (whole seconds, or eventTime's microseconds)."""
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def observed_at(status: dict[str, Any]) -> float:
    """status.observed.at as Unix time: when the last tick that reached status ran (0 before the first)."""
    at = (status.get("observed") or {}).get("at")
    return rfc3339_time(at) if at else 0.0


def event_time(event: dict[str, Any]) -> float:
    """Unix time of an Event (kopf posts one Event per call, its eventTime to the microsecond)."""
    return rfc3339_time(event.get("eventTime") or event.get("firstTimestamp")
                        or event["metadata"]["creationTimestamp"])


def isvc_events(sandbox: Sandbox, namespace: str, name: str) -> list[dict[str, Any]]:
    """The service's Events, oldest first."""
    items: list[dict[str, Any]] = json.loads(sandbox.kubectl(
        "get", "events", "-n", namespace, "--field-selector",
        f"involvedObject.kind=InferenceService,involvedObject.name={name}", "-o", "json"))["items"]
    return sorted(items, key=event_time)


SCALE_STEP = re.compile(r"(\d+) -> (\d+)")
NOT_SCALE_REASONS = {"Reconciled", "Retuned"}
"""Normal Events that are not a replica change (every other Normal Event is a scale action, handlers.control)."""


def scale_steps(events: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
    """(from, to) of each scale Event, oldest first (each Event counted as often as it was seen: count)."""
    steps = []
    for e in events:
        if e["type"] != "Normal" or e["reason"] in NOT_SCALE_REASONS:
            continue
        pairs = SCALE_STEP.findall(e["message"])
        assert pairs, f"a scale Event without its step: {e['reason']}: {e['message']}"
        steps += [(int(pairs[-1][0]), int(pairs[-1][1]))] * int(e.get("count") or 1)
    return steps


def actions_between(events: Sequence[dict[str, Any]], start: float, end: float) -> list[str]:
    """`reason: message` of each action Event (a scale step or a retune pass: every Normal Event but Reconciled)
    posted in [start, end)."""
    return [f"{e['reason']}: {e['message']}" for e in events if e["type"] == "Normal" and e["reason"] != "Reconciled"
            and start <= event_time(e) < end]


def broken_chain(steps: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Steps that do not start where the one before ended: an action lost (a gap) or doubled (the same step
    twice, as two deciders acting on the same state, or one process repeating an action it forgot it took)."""
    return [b for a, b in zip(steps, steps[1:], strict=False) if a[1] != b[0]]


class TickLog:
    """Samples status.observed.at of some services twice a second on a thread: each distinct value is one tick
    that reached status, so the gaps between them are the control loop's period as the API server saw it."""

    def __init__(self, sandbox: Sandbox, services: Sequence[tuple[str, str]]) -> None:
        self.sandbox, self.services = sandbox, list(services)
        self.ticks: dict[tuple[str, str], list[float]] = {s: [] for s in self.services}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tick-log", daemon=True)

    def __enter__(self) -> TickLog:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            for namespace, name in self.services:
                with contextlib.suppress(Exception):  # a missed read is a gap in sampling, not a crash
                    at = observed_at(isvc_status(self.sandbox, namespace, name))
                    seen = self.ticks[(namespace, name)]
                    if at and (not seen or at != seen[-1]):
                        seen.append(at)
            self._stop.wait(0.5)

    def gaps(self, namespace: str, name: str, since: float = 0.0) -> list[float]:
        """Seconds between consecutive ticks of a service, from the first tick at or after since."""
        ticks = [t for t in self.ticks[(namespace, name)] if t >= since]
        return [b - a for a, b in zip(ticks, ticks[1:], strict=False)]


def ready_pods(sandbox: Sandbox, namespace: str, selector: str) -> list[dict[str, Any]]:
    """The Ready pods matching selector, sorted by IP as the operator orders them (adapters/kube.py placement)."""
    pods = json.loads(sandbox.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json"))["items"]
    ready = [p for p in pods if not p["metadata"].get("deletionTimestamp") and p["status"].get("podIP") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])]
    return sorted(ready, key=lambda p: str(p["status"]["podIP"]))


def live_queue_delay(ip: str, model: str) -> int | None:
    """The queue delay a pod's Triton runs the model with now (GET its config), None without dynamic batching."""
    with urllib.request.urlopen(f"http://{ip}:8000/v2/models/{model}/config", timeout=10) as resp:
        batching = json.loads(resp.read()).get("dynamic_batching")
    return int(batching.get("max_queue_delay_microseconds", 0)) if batching else None


def revert_pods(ips: Sequence[str], model: str, delay_us: int) -> None:
    """Load every pod's model with delay_us, side by side (as someone reverting the pods by hand would): the
    operator's next tick finds them off its tuning and retunes them, one pod at a time (retune.py)."""
    def one(ip: str) -> None:
        triton = TritonAdmin(ip)
        live = triton.config(model)
        running = tuning_of(live)
        assert running is not None, f"pod {ip} runs {model} without dynamic batching"
        triton.load(model, with_tuning(live, Tuning(delay_us, running.instance_count)))

    threads = [threading.Thread(target=one, args=(ip,)) for ip in ips]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)


def wait_ready_pods(sandbox: Sandbox, namespace: str, selector: str, count: int,
                    timeout_s: float = 240) -> list[dict[str, Any]]:
    """The Ready pods matching selector once there are count of them (sorted by IP, see ready_pods)."""
    def check() -> list[dict[str, Any]] | None:
        pods = ready_pods(sandbox, namespace, selector)
        return pods if len(pods) == count else None

    return wait_for(f"{count} Ready pod(s) {selector} in {namespace}", check, timeout_s)


FAULT_RECOVERY_BOUND_S = 30.0
"""After a fault ends, the loop ticks again within this: two periods of 5 s plus a watch reconnect, with room
for a busy 2-core machine (kopf's own 60 s retry back-off for a failed handler would exceed it)."""
LOAD_WINDOW_S = 5.0
"""The load generator's report window (demo.load_step): offered requests = sum of offered rates x 5 s."""


def fault_report(sandbox: Sandbox, load: BackgroundLoad, *extra: str) -> str:
    """The load table, extra lines and the operator log's tail, for an assertion message."""
    return "\n".join([*load.lines, *extra, "operator log:", tail(sandbox.logs / "operator.log", 25)])


def fault_line(name: str, load: BackgroundLoad, **figures: object) -> str:
    """One `FAULT name: failed F of ~N requests; figure value, ...` line: a row of the fault matrix."""
    offered = round(sum(r.offered_rate for r in load.rows) * LOAD_WINDOW_S)
    failed = sum(r.errors for r in load.rows)
    return f"FAULT {name}: failed {failed} of ~{offered} requests; " + \
        ", ".join(f"{k} {v}" for k, v in figures.items())


# -- Prometheus outages (tests/e2e/test_metrics_outage.py, tests/e2e/test_faults_long.py)

METRICS_CONDITION_LAG_S = 12.0
"""MetricsAvailable follows Prometheus going away within one loop period (5 s) plus one failed query (a 5 s
timeout at most; a stopped Prometheus refuses at once), with 2 s to spare for the 1 s sampling."""


@dataclass
class Outage:
    """When Prometheus went away and when it answered again (None until it has)."""

    down_at: float
    back_at: float | None = None


@contextlib.contextmanager
def prometheus_outage(sandbox: Sandbox, lose_data: bool = False) -> Iterator[Outage]:
    """The sandbox's Prometheus stopped for the with block (its data kept, as a crashed or evicted pod with a
    volume; with lose_data its TSDB removed, as a pod without one); started again on the way out, whatever
    happened inside, and ready by the time back_at is set."""
    prometheus = sandbox.prometheus
    assert prometheus is not None, "the sandbox runs no Prometheus"
    prometheus.stop()
    outage = Outage(time.time())
    if lose_data:
        shutil.rmtree(prometheus.workdir / "data")
    try:
        yield outage
    finally:
        prometheus.start()
        outage.back_at = time.time()


def first_metrics_state(samples: Sequence[ServiceSample], since: float, state: str) -> ServiceSample | None:
    """The first sample at or after since whose MetricsAvailable condition reads state ("True" or "False")."""
    return next((s for s in samples if s.at >= since and s.metrics_available == state), None)


def metrics_flipped_at(sandbox: Sandbox, namespace: str, name: str, state: str, since: float) -> float | None:
    """When the tick that turned the MetricsAvailable condition to state ("True" or "False") started (its
    lastTransitionTime, whole seconds), once it reads state since that second; None before."""
    status = isvc_status(sandbox, namespace, name)
    cond = next((c for c in status.get("conditions") or [] if c["type"] == "MetricsAvailable"), None)
    if cond is None or cond["status"] != state:
        return None
    at = rfc3339_time(cond["lastTransitionTime"])
    return at if at >= int(since) else None
