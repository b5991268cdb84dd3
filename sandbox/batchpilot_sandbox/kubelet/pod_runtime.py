"""One pod on the sandbox node: volumes, init containers in order, then the main containers as processes.

Each pod gets a worker thread that owns its processes from start to stop (see container_runner on why the
spawning thread must live as long as its children). The kubelet reads `snapshot()` to post pod status.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from batchpilot_sandbox.kubelet.container_command import ContainerStartError, TritonHost, process_spec
from batchpilot_sandbox.kubelet.container_runner import ContainerRunner, ContainerSnapshot
from batchpilot_sandbox.kubelet.kube_client import KubeClient
from batchpilot_sandbox.kubelet.node_agent import now_rfc3339
from batchpilot_sandbox.kubelet.pod_layout import PodLayout
from batchpilot_sandbox.kubelet.volumes import MountTable, VolumeBuilder, mount_container

LOG = logging.getLogger(__name__)
HOST_IP = "127.0.0.1"
Obj = dict[str, Any]
TICK_S = 0.5
RETRY_S = 5.0  # missing ConfigMaps, keys or executables are looked for again this often


@dataclass(frozen=True)
class PodSnapshot:
    phase: str
    initialized: bool
    start_time: str
    init_containers: list[ContainerSnapshot]
    containers: list[ContainerSnapshot]


class PodWorker:
    """Runs one pod's containers on a thread of its own until `request_stop`."""

    def __init__(
        self,
        pod: Obj,
        layout: PodLayout,
        api: KubeClient,
        pod_ip: str,
        triton: Callable[[], TritonHost | None],
        backoff_base_s: float,
    ) -> None:
        spec = pod["spec"]
        # fieldRefs (status.podIP, ...) must see the IP before the API does
        ip_status = {
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
        }
        self.pod = {**pod, "status": {**(pod.get("status") or {}), **ip_status}}
        self.uid: str = pod["metadata"]["uid"]
        self.layout = layout
        self.api = api
        self.pod_ip = pod_ip
        self.triton = triton
        self.backoff_base_s = backoff_base_s
        self.restart_policy: str = spec.get("restartPolicy", "Always")
        self.grace_s = float(spec.get("terminationGracePeriodSeconds", 30))
        self.start_time = now_rfc3339()
        init_policy = "Never" if self.restart_policy == "Never" else "OnFailure"
        self.init_runners = [self._runner(c, init_policy) for c in spec.get("initContainers") or []]
        self.runners = [self._runner(c, self.restart_policy) for c in spec["containers"]]
        self.initialized = not self.init_runners
        self.failed = False
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pod-{layout.root.name}", daemon=True)

    def _runner(self, container: Obj, policy: str) -> ContainerRunner:
        log = self.layout.log(container["name"])
        return ContainerRunner(container, log, policy, self.backoff_base_s, self.pod_ip, self.grace_s)

    # -- control, from the kubelet's thread
    def start(self) -> None:
        self._thread.start()

    def request_stop(self, grace_s: float | None = None) -> None:
        if grace_s is not None:
            self.grace_s = min(self.grace_s, grace_s)
        self._stop.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # -- the worker thread
    def _run(self) -> None:
        try:
            volumes = self._volumes()
            if volumes is not None and self._init(volumes):
                self._main(volumes)
        except Exception:
            LOG.exception("pod %s failed in the sandbox kubelet", self.layout.root.name)
            self.failed = True
        finally:
            self._stop_all()
            self._done.set()

    def _volumes(self) -> dict[str, Any] | None:
        self.layout.root.mkdir(parents=True, exist_ok=True)
        while not self._stop.is_set():
            try:
                return VolumeBuilder(self.api).build(self.pod, self.layout)
            except Exception as exc:  # VolumeError, or the API server briefly away: retry as the kubelet does
                for runner in [*self.init_runners, *self.runners]:
                    runner.wait("ContainerCreating", str(exc))
                self._stop.wait(RETRY_S)
        return None

    def _try_start(self, runner: ContainerRunner, volumes: dict[str, Any]) -> bool:
        try:
            mounts: MountTable = mount_container(runner.container, volumes, self.layout.fs_root(runner.name))
            spec = process_spec(runner.container, self.pod, mounts, self.api, self.triton(), self.pod_ip)
        except ContainerStartError as exc:
            runner.wait(exc.reason, exc.message)
            return False
        except Exception as exc:  # bad mount, missing env source, API error: retried after RETRY_S
            runner.wait("CreateContainerConfigError", str(exc))
            return False
        runner.start(spec, mounts)
        return True

    def _init(self, volumes: dict[str, Any]) -> bool:
        """Run init containers to completion in order; False if the pod failed or is stopping."""
        for runner in self.init_runners:
            for other in self.runners:
                other.wait("PodInitializing")
            while not self._stop.is_set() and not self._try_start(runner, volumes):
                self._stop.wait(RETRY_S)
            while not self._stop.is_set() and not runner.finished:
                runner.tick(time.time())
                self._stop.wait(TICK_S)
            if self._stop.is_set():
                return False
            if runner.exit_code != 0:
                self.failed = True
                return False
        self.initialized = True
        return True

    def _main(self, volumes: dict[str, Any]) -> None:
        pending = list(self.runners)
        next_try = 0.0
        while not self._stop.is_set():
            now = time.time()
            if pending and now >= next_try:
                pending = [r for r in pending if not self._try_start(r, volumes)]
                next_try = now + RETRY_S
            for runner in self.runners:
                runner.tick(now)
            if self.restart_policy != "Always" and not pending and all(r.finished for r in self.runners):
                return
            self._stop.wait(TICK_S)

    def _stop_all(self) -> None:
        """As the kubelet kills a pod: preStop hooks (in parallel), then SIGTERM to every process, then
        SIGKILL to what is left, all within one grace period."""
        deadline = time.monotonic() + self.grace_s
        for runner in [*self.init_runners, *self.runners]:
            runner.stopping = True
        hooks = [
            threading.Thread(target=r.run_pre_stop, args=(deadline,), name=f"prestop-{r.name}", daemon=True)
            for r in self.runners
            if r.running
        ]
        for hook in hooks:
            hook.start()
        for hook in hooks:
            hook.join(max(0.0, deadline - time.monotonic()))
        runners = [r for r in [*self.init_runners, *self.runners] if r.running]
        for runner in runners:
            runner.signal(signal.SIGTERM)
        while any(r.running for r in runners) and time.monotonic() < deadline:
            time.sleep(0.1)
        for runner in runners:
            runner.kill(grace_s=0)
            runner.tick(time.time())

    # -- reporting
    def phase(self) -> str:
        if self.failed:
            return "Failed"
        if not self.initialized:
            return "Pending"
        if any(r.running or r.restart_at is not None for r in self.runners):
            return "Running"
        if self.runners and all(r.finished for r in self.runners):
            return "Succeeded" if all(r.exit_code == 0 for r in self.runners) else "Failed"
        return "Pending"

    def snapshot(self) -> PodSnapshot:
        return PodSnapshot(
            phase=self.phase(),
            initialized=self.initialized,
            start_time=self.start_time,
            init_containers=[r.snapshot() for r in self.init_runners],
            containers=[r.snapshot() for r in self.runners],
        )
