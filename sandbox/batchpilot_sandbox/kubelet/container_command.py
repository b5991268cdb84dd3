"""Turn a container spec into a host process: argv, environment and working directory.

Image mapping: a command starting with `tritonserver` (any image) runs the nvidia-pytriton wheel's server,
bound to the pod's own loopback IP; any other command runs as-is if the executable exists on the host.
Host commands find this interpreter's bin directory first on PATH, so `python3` has the sandbox's packages.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchpilot_sandbox.kubelet.kube_client import KubeClient
from batchpilot_sandbox.kubelet.triton_runtime import TritonInstall, server_argv, triton_env
from batchpilot_sandbox.kubelet.volumes import MountTable, field_value

Obj = dict[str, Any]
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "TZ")
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ContainerStartError(RuntimeError):
    """The container cannot start; reason and message go to its waiting state."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class TritonHost:
    """The wheel's tritonserver and a prepared backend directory, shared by all pods."""

    install: TritonInstall
    backend_dir: Path


@dataclass(frozen=True)
class ProcessSpec:
    argv: list[str]
    env: dict[str, str]
    cwd: Path


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined variables are substituted, `$$` escapes, others stay."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(sub, text)


def _key_ref(api: KubeClient, namespace: str, ref: Obj, kind: str) -> str | None:
    obj = (
        api.read_configmap(namespace, ref["name"])
        if kind == "configMap"
        else api.read_secret(namespace, ref["name"])
    )
    data = obj.get("data") or {}
    if ref["key"] not in data:
        if ref.get("optional"):
            return None
        raise ContainerStartError(
            "CreateContainerConfigError", f"couldn't find key {ref['key']} in {kind} {ref['name']}"
        )
    value = data[ref["key"]]
    return base64.b64decode(value).decode() if kind == "secret" else str(value)


def container_env(container: Obj, pod: Obj, api: KubeClient) -> dict[str, str]:
    """Environment of a container: inherited basics, envFrom, then env (with fieldRef and key refs)."""
    namespace = pod["metadata"]["namespace"]
    env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")])
    env["HOSTNAME"] = pod["metadata"]["name"]
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            data = api.read_configmap(namespace, source["configMapRef"]["name"]).get("data") or {}
            env.update({prefix + k: str(v) for k, v in data.items()})
        if "secretRef" in source:
            data = api.read_secret(namespace, source["secretRef"]["name"]).get("data") or {}
            env.update({prefix + k: base64.b64decode(v).decode() for k, v in data.items()})
    for var in container.get("env") or []:
        value: str | None = expand(var.get("value", ""), env)
        source = var.get("valueFrom") or {}
        if "fieldRef" in source:
            value = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "configMapKeyRef" in source:
            value = _key_ref(api, namespace, source["configMapKeyRef"], "configMap")
        elif "secretKeyRef" in source:
            value = _key_ref(api, namespace, source["secretKeyRef"], "secret")
        if value is not None:
            env[var["name"]] = value
    return env


def is_triton(argv: list[str]) -> bool:
    return bool(argv) and os.path.basename(argv[0]) == "tritonserver"


def process_spec(
    container: Obj, pod: Obj, mounts: MountTable, api: KubeClient, triton: TritonHost | None, pod_ip: str
) -> ProcessSpec:
    """argv/env/cwd for a container, or ContainerStartError saying why it cannot run here."""
    env = {k: mounts.rewrite(v) for k, v in container_env(container, pod, api).items()}
    argv = [
        mounts.rewrite(expand(a, env))
        for a in [*(container.get("command") or []), *(container.get("args") or [])]
    ]
    image = container.get("image", "")
    if not argv:
        raise ContainerStartError(
            "ErrImagePull",
            f"sandbox cannot run the entrypoint of image {image!r}: give the container a command",
        )
    cwd = Path(mounts.rewrite(container.get("workingDir", "/")))
    if not cwd.is_dir() or str(cwd) == "/":
        cwd = mounts.root
    if is_triton(argv):
        if triton is None:
            raise ContainerStartError("ErrImagePull", "tritonserver unavailable: `pip install -e ./sandbox` (make deps)")
        return ProcessSpec(
            server_argv(triton.install, triton.backend_dir, pod_ip, argv[1:]), triton_env(env), cwd
        )
    executable = argv[0] if os.path.isabs(argv[0]) else shutil.which(argv[0], path=env.get("PATH"))
    if not executable or not os.access(executable, os.X_OK):
        raise ContainerStartError(
            "ErrImagePull",
            f"sandbox has no host executable {argv[0]!r} for image {image!r}: only tritonserver and host commands run",
        )
    return ProcessSpec([executable, *argv[1:]], env, cwd)
