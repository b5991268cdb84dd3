"""Where the sandbox kubelet keeps each pod on disk: volumes, per-container file trees and logs.

`<workdir>/pods/<namespace>_<name>_<uid>/` holds `volumes/<volume>/`, `fs/<container>/` (a stand-in for the
container's `/`, where each volumeMount is a symlink to its volume) and `<container>.log`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PodLayout:
    root: Path

    @classmethod
    def for_pod(cls, workdir: Path, pod: dict[str, Any]) -> PodLayout:
        meta = pod["metadata"]
        return cls(workdir / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}")

    def volume(self, name: str) -> Path:
        return self.root / "volumes" / name

    def fs_root(self, container: str) -> Path:
        return self.root / "fs" / container

    def log(self, container: str) -> Path:
        return self.root / f"{container}.log"


def container_log(workdir: Path, namespace: str, pod: str, container: str) -> Path:
    """Log file of a container (the sandbox's `kubectl logs`); the newest pod incarnation wins."""
    candidates = sorted(
        (workdir / "pods").glob(f"{namespace}_{pod}_*/{container}.log"),
        key=lambda p: p.stat().st_mtime,
    )
    if not candidates:
        raise FileNotFoundError(
            f"no log for container {container!r} of pod {namespace}/{pod} under {workdir}/pods"
        )
    return candidates[-1]
