"""Pure pieces of the sandbox kubelet: fit checks, path mapping, env expansion, IPs, argv, status."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from batchpilot_sandbox.kubelet.container_command import expand
from batchpilot_sandbox.kubelet.pod_ips import IpPool, listening_ips
from batchpilot_sandbox.kubelet.pod_layout import PodLayout, container_log
from batchpilot_sandbox.kubelet.pod_runtime import PodSnapshot
from batchpilot_sandbox.kubelet.pod_status import pod_status
from batchpilot_sandbox.kubelet.scheduler import pod_requests, unschedulable_message, wants_scheduling
from batchpilot_sandbox.kubelet.triton_runtime import TritonInstall, server_argv
from batchpilot_sandbox.kubelet.volumes import MountTable, VolumeBuilder, VolumeError, mount_container

ALLOCATABLE = {"cpu": "4", "memory": "8Gi", "pods": "3", "nvidia.com/gpu": "2"}
LABELS = {"nvidia.com/gpu.present": "true"}


def pod(gpus: int = 0, cpu: str | None = None, **spec: Any) -> dict[str, Any]:
    limits = {"nvidia.com/gpu": str(gpus)} if gpus else {}
    requests = {"cpu": cpu} if cpu else {}
    container = {"name": "c", "resources": {"limits": limits, "requests": requests}}
    return {"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": [container], **spec}, "status": {}}


def test_requests_default_to_limits_and_init_containers_take_the_max() -> None:
    p = pod(gpus=1, cpu="500m")
    p["spec"]["initContainers"] = [{"name": "i", "resources": {"requests": {"cpu": "2"}}}]
    assert pod_requests(p) == {"cpu": 2.0, "memory": 0.0, "nvidia.com/gpu": 1.0}


@pytest.mark.parametrize(
    ("candidate", "bound", "message"),
    [
        (pod(gpus=1), [pod(gpus=1)], None),
        (pod(gpus=1), [pod(gpus=2)], "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."),
        (pod(gpus=3), [], "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."),
        (pod(cpu="3"), [pod(cpu="2")], "0/1 nodes are available: 1 Insufficient cpu."),
        (pod(), [pod(), pod(), pod()], "0/1 nodes are available: 1 Too many pods."),
        (
            pod(gpus=1, nodeSelector={"nvidia.com/gpu.product": "A100"}),
            [],
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
        ),
        (pod(gpus=1, nodeSelector={"nvidia.com/gpu.present": "true"}), [], None),
    ],
)
def test_fit_reports_like_kube_scheduler(
    candidate: dict[str, Any], bound: list[Any], message: str | None
) -> None:
    assert unschedulable_message(candidate, LABELS, ALLOCATABLE, bound) == message


def test_only_unbound_pods_of_our_scheduler_are_scheduled() -> None:
    assert wants_scheduling(pod())
    assert not wants_scheduling(pod(nodeName="n"))
    assert not wants_scheduling(pod(schedulerName="other"))
    assert wants_scheduling(pod(schedulerName="other"), "other")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("--model-repository=/models", "--model-repository=ROOT/models"),  # parent of a mount
        ("/models/emulator/1/model.py", "ROOT/models/emulator/1/model.py"),  # under a mount
        ("/models/emulator/config.pbtxt", "ROOT/models/emulator/config.pbtxt"),  # a subPath file mount
        ("/usr/bin/python3", "/usr/bin/python3"),
        ("/modelsx", "/modelsx"),
        ("/", "/"),
        ("a:/data/x,/etc", "a:ROOT/data/x,/etc"),
    ],
)
def test_mount_table_rewrites_paths_that_lead_to_mounts(text: str, expected: str) -> None:
    table = MountTable(Path("ROOT"), ("/data", "/models/emulator/1", "/models/emulator/config.pbtxt"))
    assert table.rewrite(text) == expected


class FakeApi:
    def read_configmap(self, namespace: str, name: str) -> dict[str, Any]:
        if name != "cm":
            raise ApiException(status=404, reason="Not Found")
        return {"data": {"a": "A", "b": "B"}}

    def read_secret(self, namespace: str, name: str) -> dict[str, Any]:
        return {"data": {"token": base64.b64encode(b"s3cret").decode()}}


def test_volumes_materialize_and_mount_with_subpath(tmp_path: Path) -> None:
    p = pod()
    p["metadata"].update(namespace="ns")
    p["spec"]["volumes"] = [
        {"name": "cm", "configMap": {"name": "cm", "items": [{"key": "a", "path": "dir/renamed"}]}},
        {"name": "sec", "secret": {"secretName": "s"}},
        {"name": "scratch", "emptyDir": {}},
    ]
    layout = PodLayout(tmp_path / "pod")
    volumes = VolumeBuilder(FakeApi()).build(p, layout)  # type: ignore[arg-type]
    container = {
        "name": "c",
        "volumeMounts": [
            {"name": "cm", "mountPath": "/etc/cm"},
            {"name": "cm", "mountPath": "/etc/one.txt", "subPath": "dir/renamed"},
            {"name": "sec", "mountPath": "/var/secret"},
            {"name": "scratch", "mountPath": "/tmp/work"},
        ],
    }
    table = mount_container(container, volumes, layout.fs_root("c"))
    assert Path(table.host_path("/etc/cm/dir/renamed")).read_text() == "A"
    assert not Path(table.host_path("/etc/cm/b")).exists()  # items select keys
    assert Path(table.host_path("/etc/one.txt")).read_text() == "A"
    assert Path(table.host_path("/var/secret/token")).read_text() == "s3cret"
    assert Path(table.host_path("/tmp/work")).is_dir()


def test_missing_configmap_names_the_volume(tmp_path: Path) -> None:
    p = pod()
    p["metadata"].update(namespace="ns")
    p["spec"]["volumes"] = [{"name": "model", "configMap": {"name": "absent"}}]
    with pytest.raises(VolumeError, match='volume "model": configMap "absent" not found'):
        VolumeBuilder(FakeApi()).build(p, PodLayout(tmp_path))  # type: ignore[arg-type]


def test_env_expansion_follows_kubernetes() -> None:
    env = {"A": "1"}
    assert expand("$(A)-$(B)-$$(A)-$$", env) == "1-$(B)-$(A)-$"


def test_ip_pool_hands_out_unique_loopback_ips(tmp_path: Path) -> None:
    pool = IpPool(first=2, last=4, lock_dir=tmp_path / "locks")
    assert pool.allocate("a") == "127.0.0.2"
    assert pool.allocate("b", avoid={"127.0.0.3"}) == "127.0.0.4"
    assert pool.allocate("a") == "127.0.0.2"
    pool.release("a")
    assert pool.allocate("c") == "127.0.0.3"
    assert pool.allocate("d") == "127.0.0.2"  # released IPs come back last
    with pytest.raises(RuntimeError, match="no loopback pod IPs"):
        pool.allocate("e")
    tcp = tmp_path / "tcp"
    tcp.write_text(
        "  sl  local_address rem_address   st\n"
        "   0: 0500007F:1F40 00000000:0000 0A\n"  # 127.0.0.5:8000 listening
        "   1: 0600007F:1F40 0100007F:1234 01\n"  # established: ignored
    )
    assert listening_ips(tcp) == {"127.0.0.5"}


def test_two_sandboxes_never_hand_out_the_same_ip(tmp_path: Path) -> None:
    # two kubelets on one machine (parallel test workers): each IP in use is locked machine-wide
    first, second = (IpPool(first=2, last=4, lock_dir=tmp_path) for _ in range(2))
    assert first.allocate("a") == "127.0.0.2"
    assert second.allocate("x") == "127.0.0.3"
    assert first.allocate("b") == "127.0.0.4"
    with pytest.raises(RuntimeError, match="reserved by another sandbox"):
        second.allocate("y")
    first.release("a")  # the pod is gone: its IP is free for the other sandbox
    assert second.allocate("y") == "127.0.0.2"


def test_triton_argv_binds_the_pod_ip_and_our_backends() -> None:
    install = TritonInstall(Path("/bin/tritonserver"), Path("/libs"), Path("/be"), Path("/stub"), "3.11")
    argv = server_argv(
        install, Path("/b"), "127.0.0.9", ["--http-address", "0.0.0.0", "--model-repository=/m"]
    )
    assert argv == [
        "/bin/tritonserver",
        "--model-repository=/m",
        "--backend-directory=/b",
        "--allow-gpu-metrics=false",
        "--http-address=127.0.0.9",
        "--grpc-address=127.0.0.9",
        "--metrics-address=127.0.0.9",
    ]


def test_status_keeps_transition_times_while_nothing_changes() -> None:
    snapshot = PodSnapshot("Running", True, "2026-01-01T00:00:00Z", [], [])
    first = pod_status(snapshot, "127.0.0.2", {"status": {}})
    again = pod_status(snapshot, "127.0.0.2", {"status": {"conditions": first["conditions"]}})
    assert again == first
    ready = {c["type"]: c for c in first["conditions"]}["Ready"]
    assert ready["status"] == "True" and ready["reason"] is None  # None clears a stale reason in the patch
    assert first["podIP"] == "127.0.0.2" and first["hostIP"] == "127.0.0.1"


def test_container_log_finds_the_newest_incarnation(tmp_path: Path) -> None:
    log = PodLayout(tmp_path / "pods" / "ns_web_uid1").log("triton")
    log.parent.mkdir(parents=True)
    log.write_text("hello")
    assert container_log(tmp_path, "ns", "web", "triton") == log
    with pytest.raises(FileNotFoundError, match="ns/web"):
        container_log(tmp_path, "ns", "web", "other")
