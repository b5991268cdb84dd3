"""The sandbox kubelet: one fake GPU node whose pods run as host processes on loopback IPs.

It registers and heartbeats a Node, schedules pending pods onto it (no kube-scheduler runs in the sandbox),
runs bound pods (`pod_runtime`), posts their status, and finishes graceful deletions. Run it as
`python -m batchpilot_sandbox.kubelet --kubeconfig K --node-name sandbox-gpu-0 --gpus 4 --workdir DIR`.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

from batchpilot_sandbox.kubelet.container_command import TritonHost
from batchpilot_sandbox.kubelet.kube_client import KubeClient, is_not_found
from batchpilot_sandbox.kubelet.node_agent import NodeAgent, NodeSpec
from batchpilot_sandbox.kubelet.pod_ips import IpPool, listening_ips
from batchpilot_sandbox.kubelet.pod_layout import PodLayout
from batchpilot_sandbox.kubelet.pod_runtime import PodWorker
from batchpilot_sandbox.kubelet.pod_status import pod_status
from batchpilot_sandbox.kubelet.scheduler import SCHEDULER_NAME, TERMINAL_PHASES, Scheduler
from batchpilot_sandbox.kubelet.triton_runtime import TritonNotFoundError, find_triton, prepare_backend_dir

LOG = logging.getLogger("batchpilot_sandbox.kubelet.node")
Obj = dict[str, Any]
SHUTDOWN_GRACE_S = 10.0


class SandboxKubelet:
    """Node agent + scheduler + pod runner for one sandbox node; `run()` blocks until `stop()`."""

    def __init__(
        self,
        kubeconfig: Path,
        node_name: str,
        gpus: int,
        workdir: Path,
        cpu: str = "16",
        memory: str = "64Gi",
        pods: int = 110,
        backoff_base_s: float = 10.0,
        sync_period_s: float = 0.5,
        heartbeat_s: float = 10.0,
        scheduler_name: str = SCHEDULER_NAME,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.workdir = workdir
        self.node_spec = NodeSpec(node_name, gpus, cpu=cpu, memory=memory, pods=pods)
        self.backoff_base_s = backoff_base_s
        self.sync_period_s = sync_period_s
        self.heartbeat_s = heartbeat_s
        self.scheduler_name = scheduler_name
        self.workers: dict[str, PodWorker] = {}
        self.ips = IpPool()
        self._sent: dict[str, Obj] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._triton: TritonHost | None = None
        self._triton_lock = threading.Lock()

    @property
    def node_name(self) -> str:
        return self.node_spec.name

    def triton(self) -> TritonHost | None:
        """The wheel's tritonserver with a backend directory prepared once; None if the wheel is missing."""
        with self._triton_lock:
            if self._triton is None:
                try:
                    install = find_triton()
                except TritonNotFoundError as exc:
                    LOG.error("%s", exc)
                    return None
                self._triton = TritonHost(
                    install, prepare_backend_dir(self.workdir / "triton-backends", install)
                )
            return self._triton

    def wait_ready(self, timeout_s: float = 30.0) -> bool:
        """True once the node is registered (for callers running `run` on a thread)."""
        return self._ready.wait(timeout_s)

    def run(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.api = KubeClient(self.kubeconfig)
        agent = NodeAgent(self.api, self.node_spec, self.heartbeat_s)
        self.node = agent.register()
        self.scheduler = Scheduler(self.api, self.node_name, self.scheduler_name)
        beats = threading.Thread(target=agent.run, name="node-heartbeat", daemon=True)
        beats.start()
        self._ready.set()
        LOG.info("node %s registered with %d GPUs", self.node_name, self.node_spec.gpus)
        try:
            while not self._stop.is_set():
                try:
                    self.sync_once()
                except Exception:  # the API server may be restarting; keep the pods running
                    LOG.warning("sync failed", exc_info=True)
                self._stop.wait(self.sync_period_s)
        finally:
            agent.stop()
            self.shutdown()
            self.api.close()

    def stop(self) -> None:
        self._stop.set()

    def shutdown(self) -> None:
        """Stop every pod's processes (the node is going away; pods stay in the API, as on a real node)."""
        for worker in self.workers.values():
            worker.request_stop(SHUTDOWN_GRACE_S)
        for worker in self.workers.values():
            worker.join(SHUTDOWN_GRACE_S + 10)

    # -- one reconcile pass
    def sync_once(self) -> None:
        pods = self.api.list_pods()
        for pod in self.scheduler.schedule(pods, self.node):
            pod["spec"]["nodeName"] = self.node_name
        mine = {p["metadata"]["uid"]: p for p in pods if p["spec"].get("nodeName") == self.node_name}
        others_ips = {
            ip
            for p in pods
            if p["metadata"]["uid"] not in mine and (ip := (p.get("status") or {}).get("podIP"))
        }
        for uid, pod in mine.items():
            try:
                self._sync_pod(uid, pod, others_ips)
            except Exception:  # one pod's API error must not hold up the others
                LOG.warning("sync of pod %s failed", pod["metadata"]["name"], exc_info=True)
        for uid in [u for u in self.workers if u not in mine]:  # deleted behind our back
            worker = self.workers[uid]
            worker.request_stop(0)
            if worker.done:
                self._forget(uid)

    def _sync_pod(self, uid: str, pod: Obj, others_ips: set[str]) -> None:
        meta = pod["metadata"]
        worker = self.workers.get(uid)
        if meta.get("deletionTimestamp"):
            if worker is not None:
                worker.request_stop(float(meta.get("deletionGracePeriodSeconds", worker.grace_s)))
            if worker is None or worker.done:
                self._delete(pod)
                return
        elif worker is None:
            if pod.get("status", {}).get("phase") in TERMINAL_PHASES:
                return
            worker = self._start(uid, pod, others_ips)
        self._post_status(uid, pod, worker)

    def _start(self, uid: str, pod: Obj, others_ips: set[str]) -> PodWorker:
        ip = self.ips.allocate(uid, (pod.get("status") or {}).get("podIP"), others_ips | listening_ips())
        layout = PodLayout.for_pod(self.workdir, pod)
        worker = PodWorker(pod, layout, self.api, ip, self.triton, self.backoff_base_s)
        self.workers[uid] = worker
        worker.start()
        LOG.info("pod %s/%s started on %s", pod["metadata"]["namespace"], pod["metadata"]["name"], ip)
        return worker

    def _post_status(self, uid: str, pod: Obj, worker: PodWorker) -> None:
        status = pod_status(worker.snapshot(), worker.pod_ip, pod)
        if self._sent.get(uid) == status:
            return
        meta = pod["metadata"]
        try:
            self.api.patch_pod_status(meta["namespace"], meta["name"], status)
            self._sent[uid] = status
        except Exception as exc:
            if not is_not_found(exc):
                raise

    def _delete(self, pod: Obj) -> None:
        meta = pod["metadata"]
        try:
            self.api.delete_pod_now(meta["namespace"], meta["name"], meta["uid"])
        except Exception as exc:
            if not is_not_found(exc):
                raise
        LOG.info("pod %s/%s deleted", meta["namespace"], meta["name"])
        self._forget(meta["uid"])

    def _forget(self, uid: str) -> None:
        worker = self.workers.pop(uid, None)
        self._sent.pop(uid, None)
        self.ips.release(uid)
        if worker is not None:
            shutil.rmtree(worker.layout.root, ignore_errors=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m batchpilot_sandbox.kubelet", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--node-name", default="sandbox-gpu-0")
    parser.add_argument("--gpus", type=int, default=4, help="nvidia.com/gpu capacity of the node")
    parser.add_argument("--workdir", type=Path, default=Path(".sandbox/kubelet"), help="pod dirs and logs")
    parser.add_argument("--cpu", default="16", help="cpu capacity (quantity)")
    parser.add_argument("--memory", default="64Gi", help="memory capacity (quantity)")
    parser.add_argument("--pods", type=int, default=110, help="pod capacity")
    parser.add_argument(
        "--backoff-base", type=float, default=10.0, help="first CrashLoopBackOff delay, seconds"
    )
    parser.add_argument("--sync-period", type=float, default=0.5, help="seconds between pod list passes")
    parser.add_argument(
        "--scheduler-name",
        default=SCHEDULER_NAME,
        help="schedule only pods naming this scheduler (isolates nodes)",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    kubelet = SandboxKubelet(
        args.kubeconfig.resolve(),
        args.node_name,
        args.gpus,
        args.workdir.resolve(),
        cpu=args.cpu,
        memory=args.memory,
        pods=args.pods,
        backoff_base_s=args.backoff_base,
        sync_period_s=args.sync_period,
        scheduler_name=args.scheduler_name,
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: kubelet.stop())
    atexit.register(kubelet.shutdown)
    kubelet.run()
    return 0

