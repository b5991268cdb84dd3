"""The real node's pure parts: containerd's and the kubelet's configuration, and the save/restore plan."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from batchpilot_sandbox.cluster import real_node_config as cfg

LAYOUT = cfg.NodeLayout(Path("/tmp/rn"))
PORTS = cfg.KubeletPorts(server=40001, healthz=40002)


def test_containerd_config_keeps_root_state_and_socket_in_the_work_dir() -> None:
    conf = tomllib.loads(cfg.containerd_config(LAYOUT))
    assert (conf["root"], conf["state"]) == ("/tmp/rn/containerd/root", "/tmp/rn/run")
    assert conf["grpc"]["address"] == "/tmp/rn/run/containerd.sock"
    assert conf["ttrpc"]["address"].startswith("/tmp/rn/")
    cri = conf["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == cfg.PAUSE_IMAGE
    assert cri["restrict_oom_score_adj"] is True  # no CAP_SYS_RESOURCE on these machines
    assert cri["containerd"]["snapshotter"] == "overlayfs"
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["cni"] == {"bin_dir": "/usr/lib/cni", "conf_dir": "/tmp/rn/cni"}


def test_cni_list_is_loopback_only() -> None:
    assert [p["type"] for p in json.loads(cfg.cni_conflist())["plugins"]] == ["loopback"]


def test_kubelet_config_listens_on_loopback_with_the_taint_and_the_runtime_settings() -> None:
    conf = cfg.kubelet_config(LAYOUT, PORTS)
    assert (conf["address"], conf["port"], conf["readOnlyPort"]) == (cfg.NODE_IP, 40001, 0)
    assert (conf["healthzBindAddress"], conf["healthzPort"]) == ("127.0.0.1", 40002)
    assert conf["containerRuntimeEndpoint"] == "unix:///tmp/rn/run/containerd.sock"
    assert (conf["cgroupDriver"], conf["oomScoreAdj"], conf["makeIPTablesUtilChains"]) == ("cgroupfs", 0, False)
    assert conf["registerWithTaints"] == [{"key": cfg.NODE_LABEL, "value": "true", "effect": "NoSchedule"}]
    assert conf["podLogsDirectory"] == "/tmp/rn/pod-logs"


def test_kubelet_args_name_the_node_by_its_loopback_ip_and_label_it() -> None:
    args = cfg.kubelet_args(LAYOUT, Path("/bin/kubelet"), Path("/k/config"), "127.0.2.9")
    assert args[0] == "/bin/kubelet"
    assert "--hostname-override=127.0.2.9" in args
    assert f"--node-labels={cfg.NODE_LABEL}=true" in args
    assert "--root-dir=/tmp/rn/kubelet" in args


def test_layout_refuses_a_socket_path_too_long_to_bind() -> None:
    cfg.NodeLayout(Path("/tmp/short")).check()
    with pytest.raises(ValueError, match="shorter work directory"):
        cfg.NodeLayout(Path("/tmp/" + "x" * 100)).check()


def test_snapshot_records_sysctls_and_only_what_did_not_exist() -> None:
    existing = {Path("/var/lib/cni"), Path("/sys/fs/cgroup/cpu/kubepods")}
    hierarchies = [Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/memory")]
    snap = cfg.take_snapshot(lambda name: f"v-{name}", lambda p: p in existing, hierarchies)
    assert snap.sysctls == {name: f"v-{name}" for name in cfg.KUBELET_SYSCTLS}
    assert Path("/var/lib/cni") not in snap.absent_paths
    assert Path("/var/lib/kubelet") in snap.absent_paths
    assert snap.absent_cgroups == (Path("/sys/fs/cgroup/memory/kubepods"),)


MOUNTINFO = "\n".join([
    "22 1 253:0 / / rw,relatime - ext4 /dev/vda rw",
    "300 22 0:50 / /tmp/rn/kubelet/pods/u1/volumes/kubernetes.io~projected/token rw - tmpfs tmpfs rw",
    "301 22 0:51 / /tmp/rn/containerd/root/io.containerd.snapshotter.v1.overlayfs/snapshots/3/fs rw - overlay o rw",
    "302 22 0:52 / /run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw - overlay overlay rw",
    "303 22 0:53 / /tmp/rn-other/x rw - tmpfs tmpfs rw",
    "304 22 0:54 / /tmp/rn/with\\040space rw - tmpfs tmpfs rw",
])


def test_restore_plan_unmounts_deepest_first_and_writes_back_only_changed_sysctls() -> None:
    before = cfg.HostSnapshot(sysctls={"kernel.panic": "1", "vm.overcommit_memory": "0"},
                              absent_paths=(Path("/var/lib/kubelet"),),
                              absent_cgroups=(Path("/sys/fs/cgroup/memory/kubepods"),))
    plan = cfg.restore_plan(before, {"kernel.panic": "10", "vm.overcommit_memory": "0"}, MOUNTINFO,
                            [Path("/tmp/rn")])
    assert plan.sysctls == {"kernel.panic": "1"}
    assert "/" not in plan.unmount and "/tmp/rn-other/x" not in plan.unmount  # a sibling prefix is not "under"
    assert set(plan.unmount) == {
        "/tmp/rn/kubelet/pods/u1/volumes/kubernetes.io~projected/token",
        "/tmp/rn/containerd/root/io.containerd.snapshotter.v1.overlayfs/snapshots/3/fs",
        "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs",
        "/tmp/rn/with space",
    }
    depths = [p.count("/") for p in plan.unmount]
    assert depths == sorted(depths, reverse=True)
    assert plan.remove_paths == (Path("/var/lib/kubelet"),)
    assert plan.remove_cgroups == (Path("/sys/fs/cgroup/memory/kubepods"),)
