"""Pure parts of the harness's real node: its files, containerd's and the kubelet's configuration, and the plan
of host changes it saves before it starts and restores after it stops.

Settings measured on these machines (shared/FACTS.md, "A real node here"): cgroupfs, overlayfs, CRI
`restrict_oom_score_adj` with kubelet `oomScoreAdj: 0` (no CAP_SYS_RESOURCE here), a loopback-only CNI list,
hostNetwork pods, the node named by its loopback IP (the kubelet refuses a loopback `--node-ip`, but takes a
hostname override that is an IP as its InternalIP).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NODE_IP = "127.0.2.1"
"""The real node's InternalIP and name: on loopback, outside the sandbox kubelet's pod IPs (127.0.0.2-200)."""
NODE_LABEL = "batchpilot.dev/real-node"
"""Label (value "true") and NoSchedule taint key of the real node: only pods that select and tolerate it land."""
PAUSE_IMAGE = "batchpilot/pause:3.10"
"""The pod sandbox image, built by hack/build-images.sh from the kubernetes sources' pause.c."""
CNI_BIN_DIR = Path("/usr/lib/cni")
"""Where Debian's containernetworking-plugins installs the loopback plugin."""
MAX_SOCKET_PATH = 100
"""A unix socket path longer than sun_path (108 bytes, less room for the shim's suffixes) cannot be bound."""

KUBELET_SYSCTLS = (
    "vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes",
)
"""What the kubelet's container manager sets at start (kubernetes pkg/kubelet/cm/container_manager_linux.go,
setupKernelTunables); restored to the values seen before the node started."""
FIXED_HOST_PATHS = (
    Path("/var/lib/kubelet"), Path("/var/log/containers"), Path("/var/log/pods"), Path("/run/containerd"),
    Path("/var/lib/cni"),
)
"""Paths the kubelet, containerd's shims or CNI use whatever their configuration says (device-plugin sockets,
container log links, shim sockets, CNI state): removed on teardown when the node created them."""
KUBEPODS_CGROUP = "kubepods"
"""The cgroup the kubelet (cgroupfs driver) creates under each hierarchy's root for the pods' QoS classes."""


@dataclass(frozen=True)
class NodeLayout:
    """Every file and directory of one real node, under its work directory."""

    workdir: Path
    image_store: Path | None = None
    """containerd's root (content, snapshots, metadata): outside the work dir so imported images survive the node
    (an import is skipped when the archive is unchanged, and nothing large is deleted at stop); None: in it."""

    @property
    def containerd_root(self) -> Path:
        return self.image_store or self.workdir / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.workdir / "run"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd_state / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.workdir / "containerd" / "config.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.workdir / "cni"

    @property
    def kubelet_root(self) -> Path:
        return self.workdir / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.workdir / "kubelet-config.yaml"

    @property
    def pod_logs(self) -> Path:
        return self.workdir / "pod-logs"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def check(self) -> None:
        """Fail early, with the fix, when the socket path cannot be bound."""
        socket = str(self.containerd_socket)
        if len(socket) > MAX_SOCKET_PATH:
            raise ValueError(f"real node workdir {self.workdir} makes the containerd socket path {len(socket)} "
                             f"characters long (at most {MAX_SOCKET_PATH}); use a shorter work directory")


def containerd_config(layout: NodeLayout, pause_image: str = PAUSE_IMAGE, cni_bin_dir: Path = CNI_BIN_DIR) -> str:
    """containerd 1.6's config (version 2) for a node of its own: root, state and socket in the work dir."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return "\n".join([
        "version = 2",
        f'root = "{layout.containerd_root}"',
        f'state = "{layout.containerd_state}"',
        "[grpc]",
        f'  address = "{layout.containerd_socket}"',
        "[ttrpc]",
        f'  address = "{layout.containerd_state / "ttrpc.sock"}"',
        f"[{cri}]",
        f'  sandbox_image = "{pause_image}"',
        # Without CAP_SYS_RESOURCE runc cannot lower a container's oom_score_adj below containerd's own.
        "  restrict_oom_score_adj = true",
        '  stream_server_address = "127.0.0.1"',
        f"[{cri}.containerd]",
        '  snapshotter = "overlayfs"',
        '  default_runtime_name = "runc"',
        f"[{cri}.containerd.runtimes.runc]",
        '  runtime_type = "io.containerd.runc.v2"',
        f"[{cri}.containerd.runtimes.runc.options]",
        "  SystemdCgroup = false",
        f"[{cri}.cni]",
        f'  bin_dir = "{cni_bin_dir}"',
        f'  conf_dir = "{layout.cni_conf_dir}"',
        "",
    ])


def cni_conflist() -> str:
    """Loopback only: enough for the node to be Ready; its pods use the host network, so traffic stays on lo."""
    return json.dumps({"cniVersion": "0.4.0", "name": "batchpilot-loopback", "plugins": [{"type": "loopback"}]})


@dataclass(frozen=True)
class KubeletPorts:
    """The kubelet's listening ports, chosen free at start (the sandbox kubelet and other nodes coexist)."""

    server: int
    healthz: int


def kubelet_config(layout: NodeLayout, ports: KubeletPorts, node_ip: str = NODE_IP) -> dict[str, Any]:
    """The KubeletConfiguration (v1beta1) of the real node."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node_ip,
        "port": ports.server,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports.healthz,
        # The API server reaches the kubelet (logs, exec) on loopback without a client certificate.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "oomScoreAdj": 0,
        "makeIPTablesUtilChains": False,
        "failSwapOn": False,
        "podLogsDirectory": str(layout.pod_logs),
        "maxPods": 30,
        # A shared build machine's disk is not the node's to evict for; images are never pulled, so never GCed.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "registerWithTaints": [{"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"}],
        "nodeStatusReportFrequency": "10s",
        "shutdownGracePeriod": "0s",
    }


def kubelet_args(layout: NodeLayout, kubelet: Path, kubeconfig: Path, node_ip: str = NODE_IP) -> list[str]:
    return [
        str(kubelet), f"--config={layout.kubelet_config}", f"--kubeconfig={kubeconfig}",
        f"--hostname-override={node_ip}", f"--root-dir={layout.kubelet_root}",
        f"--cert-dir={layout.workdir / 'kubelet-pki'}", f"--node-labels={NODE_LABEL}=true", "--v=1",
    ]


# -- host changes: saved before start, restored after stop


@dataclass(frozen=True)
class HostSnapshot:
    """The host as the node found it, for what the node may change."""

    sysctls: dict[str, str]
    """KUBELET_SYSCTLS name -> value before the node started."""
    absent_paths: tuple[Path, ...]
    """FIXED_HOST_PATHS that did not exist: the node's to remove."""
    absent_cgroups: tuple[Path, ...]
    """<hierarchy>/kubepods directories that did not exist: the node's to remove."""


@dataclass(frozen=True)
class RestorePlan:
    """What to undo after the node's processes are gone, in this order."""

    unmount: tuple[str, ...]
    """Mount points under the node's directories, deepest first."""
    sysctls: dict[str, str]
    """name -> value to write back (only those that changed)."""
    remove_cgroups: tuple[Path, ...]
    remove_paths: tuple[Path, ...]


def take_snapshot(read_sysctl: Callable[[str], str], exists: Callable[[Path], bool],
                  cgroup_hierarchies: Iterable[Path]) -> HostSnapshot:
    return HostSnapshot(
        sysctls={name: read_sysctl(name) for name in KUBELET_SYSCTLS},
        absent_paths=tuple(p for p in FIXED_HOST_PATHS if not exists(p)),
        absent_cgroups=tuple(h / KUBEPODS_CGROUP for h in cgroup_hierarchies if not exists(h / KUBEPODS_CGROUP)),
    )


def mount_points(mountinfo: str) -> list[str]:
    """Mount points in /proc/self/mountinfo text (field 5; octal escapes such as \\040 decoded)."""
    points = []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            points.append(fields[4].encode().decode("unicode_escape"))
    return points


def _under(path: str, roots: Iterable[Path]) -> bool:
    return any(path == str(r) or path.startswith(str(r).rstrip("/") + "/") for r in roots)


def restore_plan(before: HostSnapshot, now_sysctls: dict[str, str], mountinfo: str,
                 node_dirs: Iterable[Path]) -> RestorePlan:
    """Undo the node's changes: unmount what is mounted under its directories (its own and the fixed host paths),
    write back the sysctls it changed, remove the cgroups and host paths it created."""
    roots = [*node_dirs, *FIXED_HOST_PATHS]
    mounted = [p for p in mount_points(mountinfo) if _under(p, roots)]
    return RestorePlan(
        unmount=tuple(sorted(set(mounted), key=lambda p: (-p.count("/"), p))),
        sysctls={k: v for k, v in before.sysctls.items() if now_sysctls.get(k) != v},
        remove_cgroups=before.absent_cgroups,
        remove_paths=before.absent_paths,
    )
