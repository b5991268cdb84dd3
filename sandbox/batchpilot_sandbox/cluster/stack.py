"""The whole sandbox on one machine: control plane, CRD, sandbox kubelet, Prometheus and the operator
(and, opt-in, KEDA as a peer autoscaler).

`Sandbox` is used three ways: as a context manager by tests and the demo (everything dies with the caller),
and detached by `batchpilot-sandbox up|status|down`, which keep the process ids in `<workdir>/sandbox.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType

from batchpilot_sandbox.cluster.controlplane import ControlPlane
from batchpilot_sandbox.cluster.keda import Keda
from batchpilot_sandbox.cluster.kubectl import KubectlError, install_crd, kubectl
from batchpilot_sandbox.cluster.prometheus import FAST_DISCOVERY, PrometheusServer, render_config
from batchpilot_sandbox.cluster.real_node import RealNode, RealNodeConfig
from batchpilot_sandbox.cluster.real_node_config import NODE_LABEL
from batchpilot_sandbox.paths import default_workdir
from batchpilot_sandbox.process import free_port, pid_alive, spawn, stop_pid, stop_process, tail

NODE_NAME = "sandbox-gpu-0"
STATE_FILE = "sandbox.json"


class SandboxError(RuntimeError):
    pass


@dataclass(frozen=True)
class SandboxConfig:
    """Sizes and periods of a sandbox; the defaults suit the demo and the closed-loop tests."""

    workdir: Path
    gpus: int = 4
    operator: bool = True
    scrape_interval_s: float = 2.0
    control_interval_s: float = 5.0
    metrics_window_s: float = 15.0
    detach: bool = False
    operator_env: dict[str, str] = field(default_factory=dict)
    keda: bool = False
    """Also run KEDA's operator and metrics API server (peer comparisons); off for the demo."""
    real_node: bool = False
    """Also run a real node (containerd, kubelet, kube-scheduler; needs root, `make node-bins image`)."""


@dataclass
class SandboxState:
    """What another process needs to use or stop a running sandbox."""

    kubeconfig: str
    server: str
    prometheus_url: str
    operator_metrics: str
    pids: dict[str, int]


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class Sandbox:
    def __init__(self, config: SandboxConfig, progress: Progress = _quiet) -> None:
        self.config = config
        self.progress = progress
        self.control_plane = ControlPlane(config.workdir / "control-plane", detach=config.detach,
                                          service_account_tokens=config.real_node)
        self.real_node: RealNode | None = None
        self.prometheus: PrometheusServer | None = None
        self.keda: Keda | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.operator_port = 0

    # -- paths and clients
    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.kubeconfig

    @property
    def logs(self) -> Path:
        return self.config.workdir / "logs"

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        """Run kubectl against the sandbox; raises with kubectl's own message when it fails."""
        try:
            return kubectl(self.kubeconfig, *args, stdin=stdin, check=check, timeout_s=120)
        except KubectlError as e:
            raise SandboxError(str(e)) from None

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    # -- lifecycle
    def start(self) -> None:
        self.config.workdir.mkdir(parents=True, exist_ok=True)
        try:
            t0 = time.monotonic()
            self.progress("starting etcd, kube-apiserver, kube-controller-manager")
            self.control_plane.start()
            self.progress(f"control plane ready at {self.control_plane.server} ({time.monotonic() - t0:.0f}s)")
            self.install_crd()
            self.progress(f"starting the sandbox kubelet (node {NODE_NAME}, {self.config.gpus} nvidia.com/gpu)")
            self._start_kubelet()
            if self.config.real_node:
                self.real_node = RealNode(RealNodeConfig(self.config.workdir / "real-node", self.kubeconfig,
                                                         gpus=self.config.gpus, detach=self.config.detach))
                self.real_node.start()
                self.progress(f"real node {self.real_node.name} Ready (label and taint {NODE_LABEL})")
            self.operator_port = free_port()
            self._start_prometheus()
            self.progress(f"Prometheus ready at {self.prometheus_url}")
            if self.config.keda:
                self.keda = Keda(self.control_plane, self.config.workdir / "keda", detach=self.config.detach)
                self.keda.start()
                self.progress(f"KEDA serving external metrics from {self.keda.host_ip}:{self.keda.metrics_port}")
            if self.config.operator:
                self.start_operator()
                self.progress(f"operator running (metrics on 127.0.0.1:{self.operator_port})")
            self._save_state()
        except BaseException:
            self.stop()
            raise

    def install_crd(self) -> None:
        install_crd(self.kubeconfig)

    def _python(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.procs[name] = spawn([sys.executable, *argv], self.logs / f"{name}.log", env=full_env,
                                 tie_to_parent=not self.config.detach)

    def _start_kubelet(self) -> None:
        self._python("kubelet", [
            "-m", "batchpilot_sandbox.kubelet", f"--kubeconfig={self.kubeconfig}", f"--node-name={NODE_NAME}",
            f"--gpus={self.config.gpus}", f"--workdir={self.config.workdir / 'kubelet'}", "--backoff-base=2",
        ])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self._check_alive("kubelet")
            ready = self.kubectl("get", "node", NODE_NAME, "-o",
                                 "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False)
            if ready == "True":
                return
            time.sleep(0.3)
        raise SandboxError(f"node {NODE_NAME} not Ready after 60s; log:\n{tail(self.logs / 'kubelet.log')}")

    def _start_prometheus(self) -> None:
        cp = self.control_plane
        config = render_config(cp.server, cp.ca_file, cp.client_cert, cp.client_key,
                               self.config.scrape_interval_s, [f"127.0.0.1:{self.operator_port}"])
        self.prometheus = PrometheusServer(self.config.workdir / "prometheus", config,
                                           extra_args=FAST_DISCOVERY, detach=self.config.detach)
        self.prometheus.start()

    @property
    def prometheus_url(self) -> str:
        if self.prometheus is None:
            raise SandboxError("Prometheus is not running")
        return self.prometheus.url

    def operator_env(self) -> dict[str, str]:
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "BATCHPILOT_PROMETHEUS_URL": self.prometheus_url,
            "BATCHPILOT_CONTROL_INTERVAL_SECONDS": str(self.config.control_interval_s),
            "BATCHPILOT_METRICS_WINDOW_SECONDS": str(self.config.metrics_window_s),
            "BATCHPILOT_METRICS_PORT": str(self.operator_port),
            "BATCHPILOT_METRICS_ADDRESS": "127.0.0.1",
            **self.config.operator_env,
        }

    def start_operator(self, name: str = "operator", env: dict[str, str] | None = None) -> None:
        """Start an operator process (log: logs/<name>.log). Tests start more than one under their own names, with
        env added to operator_env() (leader election, a metrics port each)."""
        self._python(name, ["-m", "batchpilot", "operator"], env={**self.operator_env(), **(env or {})})

    def stop_operator(self, name: str = "operator") -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            stop_process(proc, grace_s=10)

    def _check_alive(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is not None:
            raise SandboxError(f"{name} exited with code {proc.returncode}; last log lines:\n"
                               + tail(self.logs / f"{name}.log"))

    def stop(self) -> None:
        """Stop everything this sandbox started: operator(s), kubelet (and its Triton pods), Prometheus, control
        plane."""
        for name in [n for n in self.procs if n.startswith("operator")]:
            self.stop_operator(name)
        if self.real_node is not None:
            self.real_node.stop()
        kubelet = self.procs.pop("kubelet", None)
        if kubelet is not None:
            stop_process(kubelet, grace_s=30)
        if self.prometheus is not None:
            self.prometheus.stop()
        if self.keda is not None:
            self.keda.stop()
        self.control_plane.stop()

    # -- detached use (`batchpilot-sandbox up|status|down`)
    def _save_state(self) -> None:
        pids = {n: p.pid for n, p in self.procs.items()}
        pids.update({f"control-plane/{n}": p.pid for n, p in self.control_plane.procs.items()})
        if self.prometheus is not None and self.prometheus.proc is not None:
            pids["prometheus"] = self.prometheus.proc.pid
        if self.keda is not None:
            pids.update({n: p.pid for n, p in self.keda.procs.items()})
        if self.real_node is not None:  # listed for `status`; `down` stops them through RealNode.stop_detached
            pids.update({f"real-node/{n}": p.pid for n, p in self.real_node.procs.items()})
        state = SandboxState(str(self.kubeconfig), self.control_plane.server, self.prometheus_url,
                             f"http://127.0.0.1:{self.operator_port}/metrics", pids)
        (self.config.workdir / STATE_FILE).write_text(json.dumps(asdict(state), indent=1) + "\n")


def load_state(workdir: Path) -> SandboxState | None:
    path = workdir / STATE_FILE
    return SandboxState(**json.loads(path.read_text())) if path.exists() else None


STOP_ORDER = ("operator", "kubelet", "prometheus", "keda-adapter", "keda-operator",
              "control-plane/kube-controller-manager", "control-plane/kube-apiserver", "control-plane/etcd")


def stop_detached(workdir: Path) -> list[str]:
    """Stop a sandbox started by `sandbox up`, in dependency order; returns the names stopped."""
    state = load_state(workdir)
    if state is None:
        return []
    stopped = RealNode.stop_detached(workdir / "real-node")
    for name in STOP_ORDER:
        pid = state.pids.get(name)
        if pid and pid_alive(pid):
            stop_pid(pid, grace_s=30 if name == "kubelet" else 10)
            stopped.append(name)
    (workdir / STATE_FILE).unlink()
    return stopped


def cli(args: argparse.Namespace) -> int:
    workdir: Path = (args.workdir or default_workdir()).resolve()
    if args.action == "up":
        state = load_state(workdir)
        if state and any(pid_alive(p) for p in state.pids.values()):
            print(f"a sandbox is already running in {workdir}; `batchpilot-sandbox down` first", file=sys.stderr)
            return 1
        config = SandboxConfig(workdir, gpus=args.gpus, operator=not args.no_operator, detach=True,
                               keda=args.keda, real_node=args.real_node)
        Sandbox(config, progress=lambda m: print(f"[sandbox] {m}", flush=True)).start()
        print(f"sandbox up; use it with:\n  export KUBECONFIG={workdir / 'control-plane' / 'kubeconfig'}")
        return 0
    if args.action == "down":
        stopped = stop_detached(workdir)
        print(f"stopped: {', '.join(stopped)}" if stopped else f"no sandbox running in {workdir}")
        return 0
    state = load_state(workdir)
    if state is None:
        print(f"no sandbox in {workdir}")
        return 1
    alive = {name: pid_alive(pid) for name, pid in state.pids.items()}
    print(f"kubeconfig  {state.kubeconfig}\napi server  {state.server}\nprometheus  {state.prometheus_url}\n"
          f"operator    {state.operator_metrics}")
    for name, ok in alive.items():
        print(f"  {name:40s} {'running' if ok else 'STOPPED'}")
    return 0 if all(alive.values()) else 1
