"""A real Kubernetes node for the harness: Debian's containerd and runc, a kubelet and kube-scheduler built at
the control plane's version (`make node-bins`), and the images of `make image` imported into its containerd.

Opt-in (tests take the `real_node` fixture; `batchpilot-sandbox up --real-node`). The node is named by its
loopback IP, labelled and tainted `batchpilot.dev/real-node` so only pods that select and tolerate it land there,
runs hostNetwork pods (loopback CNI only), and coexists with the sandbox kubelet (its own ports, its own node).
Needs root. Every host change is saved before start and restored by `stop()` (sysctls, mounts, cgroups, fixed
host paths), and every process it started is stopped, the containers first.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from batchpilot_sandbox.cluster import real_node_config as cfg
from batchpilot_sandbox.cluster.kubectl import kubectl
from batchpilot_sandbox.cluster.real_node_host import (
    STATE_FILE,
    RealNodeError,
    cgroup_hierarchies,
    claim_machine,
    read_sysctl,
    release_machine,
    restore_host,
)
from batchpilot_sandbox.paths import cache_dir, node_bins_dir
from batchpilot_sandbox.process import free_port, pid_alive, poll, spawn, stop_pid, stop_process, tail

IMAGES_HINT = "run `make image` (builds the operator, Triton and pause images: hack/build-images.sh)"
def image_archives() -> list[Path]:
    """The docker-archives of `make image`; the pause image among them."""
    base = cache_dir() / "images" / "archives"
    archives = sorted(base.glob("*.tar"))
    if not (base / "pause.tar").exists():
        raise RealNodeError(f"image archives missing in {base} (no pause.tar); {IMAGES_HINT}")
    return archives


@dataclass(frozen=True)
class RealNodeConfig:
    workdir: Path
    kubeconfig: Path
    """Credentials of the kubelet and kube-scheduler (the control plane's admin kubeconfig in the harness)."""
    node_ip: str = cfg.NODE_IP
    gpus: int = 0
    """nvidia.com/gpu advertised as an extended resource (no device behind it), for pods that request GPUs."""
    scheduler: bool = True
    """Also run kube-scheduler (binds pods that select the node; the sandbox kubelet binds the rest)."""
    detach: bool = False
    image_store: Path | None = field(default_factory=lambda: cache_dir() / "real-node" / "containerd-root")
    """containerd's root, kept between nodes (see NodeLayout.image_store); one node at a time uses it."""


@dataclass
class RealNodeState:
    """What `sandbox down` needs to stop a detached real node and restore the host."""

    workdir: str
    pids: dict[str, int]
    snapshot: dict[str, Any] = field(default_factory=dict)
    """HostSnapshot's fields (paths as strings), for the restore."""


class RealNode:
    """containerd + kubelet (+ kube-scheduler) for one real node; a context manager."""

    def __init__(self, config: RealNodeConfig) -> None:
        self.config = config
        self.layout = cfg.NodeLayout(config.workdir, config.image_store)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.snapshot: cfg.HostSnapshot | None = None

    @property
    def name(self) -> str:
        return self.config.node_ip

    def __enter__(self) -> RealNode:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def ctr(self, *args: str, timeout_s: float = 300) -> str:
        done = subprocess.run(["ctr", f"--address={self.layout.containerd_socket}", "-n", "k8s.io", *args],
                              capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            raise RealNodeError(f"ctr {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    # -- start
    def start(self, timeout_s: float = 120) -> None:
        if os.geteuid() != 0:
            raise RealNodeError("a real node needs root (containerd, runc, cgroups, mounts); run as root")
        bins, archives = node_bins_dir(), image_archives()
        self.layout.check()
        claim_machine(self.layout.workdir)
        self.snapshot = cfg.take_snapshot(read_sysctl, Path.exists, cgroup_hierarchies())
        self._save_state()
        try:
            self._write_configs()
            self._start_containerd()
            self._remove_containers()  # any a crashed node left in the shared image store
            self._import_images(archives)
            self._start_kubelet(bins, timeout_s)
            if self.config.scheduler:
                self._spawn("kube-scheduler", [
                    bins / "kube-scheduler", f"--kubeconfig={self.config.kubeconfig}",
                    f"--authentication-kubeconfig={self.config.kubeconfig}",
                    f"--authorization-kubeconfig={self.config.kubeconfig}",
                    "--bind-address=127.0.0.1", f"--secure-port={free_port()}", "--leader-elect=false", "--v=1",
                ])
            self._save_state()
        except BaseException:
            self.stop()
            raise

    def _import_images(self, archives: list[Path]) -> None:
        """Import each archive unless this image store already holds that very file (size and mtime recorded)."""
        record = self.layout.containerd_root / "batchpilot-imported.json"
        seen: dict[str, list[float]] = json.loads(record.read_text()) if record.exists() else {}
        for archive in archives:
            stamp = [archive.stat().st_size, archive.stat().st_mtime]
            if seen.get(str(archive)) != stamp:
                self.ctr("images", "import", str(archive))
                seen[str(archive)] = stamp
                record.write_text(json.dumps(seen, indent=1))

    def _write_configs(self) -> None:
        lay = self.layout
        for d in (lay.containerd_root, lay.containerd_config.parent, lay.containerd_state, lay.cni_conf_dir,
                  lay.kubelet_root, lay.logs):
            d.mkdir(parents=True, exist_ok=True)
        lay.containerd_config.write_text(cfg.containerd_config(lay))
        (lay.cni_conf_dir / "10-loopback.conflist").write_text(cfg.cni_conflist())
        ports = cfg.KubeletPorts(server=free_port(self.config.node_ip), healthz=free_port())
        lay.kubelet_config.write_text(yaml.safe_dump(cfg.kubelet_config(lay, ports, self.config.node_ip)))

    def _spawn(self, name: str, argv: list[str | Path]) -> None:
        self.procs[name] = spawn(argv, self.layout.logs / f"{name}.log", tie_to_parent=not self.config.detach)

    def _check_alive(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            raise RealNodeError(f"{name} exited with code {proc.returncode}; last log lines:\n"
                                + tail(self.layout.logs / f"{name}.log"))

    def _start_containerd(self, timeout_s: float = 30) -> None:
        self._spawn("containerd", ["containerd", f"--config={self.layout.containerd_config}"])

        def answers() -> bool:
            self._check_alive("containerd")
            with contextlib.suppress(RealNodeError, subprocess.TimeoutExpired):
                self.ctr("version", timeout_s=5)
                return True
            return False

        poll(f"containerd on {self.layout.containerd_socket}", answers, timeout_s, interval_s=0.2,
             detail=lambda: "log:\n" + tail(self.layout.logs / "containerd.log"))

    def _start_kubelet(self, bins: Path, timeout_s: float) -> None:
        self._spawn("kubelet", list(cfg.kubelet_args(self.layout, bins / "kubelet", self.config.kubeconfig,
                                                     self.config.node_ip)))

        def ready() -> bool:
            self._check_alive("kubelet")
            return kubectl(self.config.kubeconfig, "get", "node", self.name, "-o",
                           "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False) == "True"

        poll(f"node {self.name} Ready", ready, timeout_s, interval_s=0.3,
             detail=lambda: "kubelet log:\n" + tail(self.layout.logs / "kubelet.log"))
        if self.config.gpus:
            patch = {"status": {"capacity": {"nvidia.com/gpu": str(self.config.gpus)}}}
            kubectl(self.config.kubeconfig, "patch", "node", self.name, "--subresource=status", "--type=merge",
                    "-p", json.dumps(patch))

    # -- stop and restore
    def stop(self) -> None:
        """Stop kube-scheduler and the kubelet, kill and delete every container, stop containerd (and any shim
        left), then restore the host as the snapshot found it."""
        for name in ("kube-scheduler", "kubelet"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                stop_process(proc, grace_s=15)
        containerd = self.procs.pop("containerd", None)
        if containerd is not None and containerd.poll() is None:
            self._remove_containers()
            stop_process(containerd, grace_s=10)
        self._stop_shims()
        self._kill_cgroup_processes()
        if self.snapshot is not None:
            restore_host(self.snapshot, self.layout)
            self.snapshot = None
        (self.layout.workdir / STATE_FILE).unlink(missing_ok=True)
        release_machine(self.layout.workdir)

    @staticmethod
    def stop_detached(workdir: Path) -> list[str]:
        """Stop a node started by another process (`sandbox down`) and restore the host; returns what stopped."""
        path = workdir / STATE_FILE
        if not path.exists():
            return []
        state = RealNodeState(**json.loads(path.read_text()))
        node = RealNode(RealNodeConfig(workdir, Path(), detach=True))
        node.snapshot = cfg.HostSnapshot(
            sysctls=dict(state.snapshot.get("sysctls") or {}),
            absent_paths=tuple(Path(p) for p in state.snapshot.get("absent_paths") or ()),
            absent_cgroups=tuple(Path(p) for p in state.snapshot.get("absent_cgroups") or ()),
        )
        stopped = []
        for name in ("kube-scheduler", "kubelet"):
            pid = state.pids.get(name)
            if pid and pid_alive(pid):
                stop_pid(pid, grace_s=15)
                stopped.append(f"real-node/{name}")
        containerd = state.pids.get("containerd")
        if containerd and pid_alive(containerd):
            node._remove_containers()
            stop_pid(containerd, grace_s=10)
            stopped.append("real-node/containerd")
        node.stop()  # shims, leftover container processes, the host restore
        return stopped

    def _remove_containers(self) -> None:
        with contextlib.suppress(RealNodeError, subprocess.TimeoutExpired):
            for task in self.ctr("tasks", "ls", "-q", timeout_s=30).split():
                with contextlib.suppress(RealNodeError, subprocess.TimeoutExpired):
                    self.ctr("tasks", "kill", "-s", "SIGKILL", task, timeout_s=30)
                    self.ctr("tasks", "delete", "-f", task, timeout_s=30)
            for container in self.ctr("containers", "ls", "-q", timeout_s=30).split():
                with contextlib.suppress(RealNodeError, subprocess.TimeoutExpired):
                    self.ctr("containers", "delete", container, timeout_s=30)

    def _stop_shims(self) -> None:
        """containerd's shims detach from it; find this node's by the socket address on their command line."""
        address = str(self.layout.containerd_socket).encode()
        for proc_dir in Path("/proc").iterdir():
            if not proc_dir.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                argv = (proc_dir / "cmdline").read_bytes().split(b"\0")
                if argv and argv[0].endswith(b"containerd-shim-runc-v2") and address in argv:
                    stop_pid(int(proc_dir.name), grace_s=5)

    def _kill_cgroup_processes(self) -> None:
        """Whatever still runs in the pods' cgroups (a container whose shim died) is the node's: SIGKILL it."""
        if self.snapshot is None:
            return
        for cgroup in self.snapshot.absent_cgroups:
            if cgroup.exists():
                for procs in cgroup.rglob("cgroup.procs"):
                    for pid in procs.read_text().split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)

    def _save_state(self) -> None:
        snap = asdict(self.snapshot) if self.snapshot else {}
        state = RealNodeState(str(self.layout.workdir), {n: p.pid for n, p in self.procs.items()},
                              json.loads(json.dumps(snap, default=str)))
        self.layout.workdir.mkdir(parents=True, exist_ok=True)
        (self.layout.workdir / STATE_FILE).write_text(json.dumps(asdict(state), indent=1) + "\n")


