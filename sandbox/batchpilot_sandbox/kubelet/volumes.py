"""Pod volumes as host directories, and each container's mounts as a host file tree.

Volumes are written once when the pod starts (configMap/secret updates are not synced, as with subPath
mounts on a real node). Containers see their mounts through `MountTable`: absolute paths in command, args
and env that lead to or lie under a mountPath are rewritten to the host tree.
"""

from __future__ import annotations

import base64
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchpilot_sandbox.kubelet.kube_client import KubeClient, is_not_found
from batchpilot_sandbox.kubelet.pod_layout import PodLayout

LOG = logging.getLogger(__name__)
Obj = dict[str, Any]
_ABS_PATH = re.compile(r"(?<![^=:,\s'\"])/[^\s:,'\"=;]*")


class VolumeError(RuntimeError):
    """A volume cannot be materialized (missing ConfigMap/Secret or key); the pod waits, as on a real node."""


def _write_files(dest: Path, files: Mapping[str, bytes], items: list[Obj] | None, mode: int | None) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    wanted = (
        [(i["key"], i["path"], i.get("mode", mode)) for i in items]
        if items
        else [(k, k, mode) for k in files]
    )
    for key, rel, file_mode in wanted:
        if key not in files:
            raise VolumeError(f"key {key!r} not found")
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[key])
        if file_mode is not None:
            os.chmod(target, file_mode)


def _configmap_files(obj: Obj) -> dict[str, bytes]:
    files = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    files.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return files


def _secret_files(obj: Obj) -> dict[str, bytes]:
    files = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    files.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
    return files


def field_value(pod: Obj, path: str) -> str:
    """Value of a downward-API fieldPath such as metadata.name or metadata.labels['app']."""
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return str((pod["metadata"].get(match.group(1)) or {}).get(match.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        values = pod["metadata"].get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
    node: Any = pod
    for part in path.split("."):
        node = node.get(part, "") if isinstance(node, dict) else ""
    return str(node)


class VolumeBuilder:
    """Writes a pod's volumes under its layout; ConfigMaps and Secrets are read through the API."""

    def __init__(self, api: KubeClient) -> None:
        self.api = api

    def _source(self, kind: str, namespace: str, name: str, optional: bool) -> dict[str, bytes]:
        read: Callable[[str, str], Obj] = (
            self.api.read_configmap if kind == "configMap" else self.api.read_secret
        )
        try:
            obj = read(namespace, name)
        except Exception as exc:
            if is_not_found(exc) and optional:
                return {}
            if is_not_found(exc):
                raise VolumeError(f'{kind} "{name}" not found') from exc
            raise
        return _configmap_files(obj) if kind == "configMap" else _secret_files(obj)

    def build(self, pod: Obj, layout: PodLayout) -> dict[str, Path]:
        """Volume name -> host path, every volume written."""
        namespace = pod["metadata"]["namespace"]
        paths = {}
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            name, dest = volume["name"], layout.volume(volume["name"])
            try:
                paths[name] = self._build_one(pod, namespace, volume, dest)
            except VolumeError as exc:
                raise VolumeError(f'MountVolume.SetUp failed for volume "{name}": {exc}') from exc
        return paths

    def _build_one(self, pod: Obj, namespace: str, volume: Obj, dest: Path) -> Path:
        if "configMap" in volume or "secret" in volume:
            kind = "configMap" if "configMap" in volume else "secret"
            src = volume[kind]
            ref = src.get("name") or src.get("secretName", "")
            files = self._source(kind, namespace, ref, bool(src.get("optional")))
            _write_files(dest, files, src.get("items"), src.get("defaultMode"))
        elif "hostPath" in volume:
            host = Path(volume["hostPath"]["path"])
            if volume["hostPath"].get("type") == "DirectoryOrCreate":
                host.mkdir(parents=True, exist_ok=True)
            return host
        elif "projected" in volume:
            dest.mkdir(parents=True, exist_ok=True)
            for source in volume["projected"].get("sources") or []:
                self._project(pod, namespace, source, dest)
        elif "downwardAPI" in volume:
            self._project(pod, namespace, {"downwardAPI": volume["downwardAPI"]}, dest)
        else:
            if "emptyDir" not in volume:
                LOG.warning("volume %s: unsupported type, using an empty directory", volume["name"])
            dest.mkdir(parents=True, exist_ok=True)
        return dest

    def _project(self, pod: Obj, namespace: str, source: Obj, dest: Path) -> None:
        for kind in ("configMap", "secret"):
            if kind in source:
                src = source[kind]
                files = self._source(kind, namespace, src["name"], bool(src.get("optional")))
                _write_files(dest, files, src.get("items"), None)
        if "downwardAPI" in source:
            items = source["downwardAPI"].get("items") or []
            files = {
                i["path"]: field_value(pod, i["fieldRef"]["fieldPath"]).encode()
                for i in items
                if "fieldRef" in i
            }
            _write_files(dest, files, None, None)
        if (
            "serviceAccountToken" in source
        ):  # nothing in the sandbox checks tokens; an empty file keeps paths valid
            _write_files(dest, {source["serviceAccountToken"]["path"]: b""}, None, None)


@dataclass(frozen=True)
class MountTable:
    """A container's view of its mounts: `root` stands for the container's `/`."""

    root: Path
    mount_paths: tuple[str, ...]

    def _related(self, path: str) -> bool:
        clean = path.rstrip("/")
        return bool(clean) and any(
            clean == m or clean.startswith(m + "/") or m.startswith(clean + "/") for m in self.mount_paths
        )

    def host_path(self, container_path: str) -> str:
        """Host path for a container path if it leads to or lies under a mount, else the path unchanged."""
        return f"{self.root}{container_path}" if self._related(container_path) else container_path

    def rewrite(self, text: str) -> str:
        """Every absolute path inside text (flags like --x=/models too) mapped by host_path."""
        return _ABS_PATH.sub(lambda m: self.host_path(m.group(0)), text)


def mount_container(container: Obj, volumes: Mapping[str, Path], root: Path) -> MountTable:
    """Create root/<mountPath> symlinks to the volumes (or their subPath) for one container."""
    root.mkdir(parents=True, exist_ok=True)
    mount_paths = []
    for mount in container.get("volumeMounts") or []:
        if mount["name"] not in volumes:
            raise VolumeError(f'volumeMount {mount["mountPath"]!r} names unknown volume "{mount["name"]}"')
        source = volumes[mount["name"]] / mount.get("subPath", "")
        if not source.exists():
            source.mkdir(parents=True)  # as the kubelet does for a missing subPath
        mount_path = "/" + mount["mountPath"].strip("/")
        target = root / mount_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.is_file():
            target.unlink()
        target.symlink_to(source.resolve())
        mount_paths.append(mount_path)
    return MountTable(root, tuple(sorted(mount_paths)))
