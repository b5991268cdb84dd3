"""The real node's I/O on the host itself: sysctls, cgroup hierarchies, the one-node-per-machine guard and the
restore of what the node changed (the plan is pure: real_node_config.restore_plan)."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

from batchpilot_sandbox.cluster import real_node_config as cfg
from batchpilot_sandbox.paths import cache_dir

STATE_FILE = "real-node.json"
"""A running node's state file in its work directory (pids and the host snapshot)."""


class RealNodeError(RuntimeError):
    pass


def read_sysctl(name: str) -> str:
    return Path("/proc/sys", *name.split(".")).read_text().strip()


def write_sysctl(name: str, value: str) -> None:
    Path("/proc/sys", *name.split(".")).write_text(value)


def cgroup_hierarchies(root: Path = Path("/sys/fs/cgroup")) -> list[Path]:
    """Each mounted hierarchy (cgroup v1: one per controller set; v2: the root itself)."""
    if (root / "cgroup.controllers").exists():
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())


def _guard_file() -> Path:
    return cache_dir() / "real-node.owner"


def claim_machine(workdir: Path) -> None:
    """One real node per machine (the kubelet's and the shims' fixed host paths cannot be shared): the guard file
    names the work directory of the node that runs, and stays while its state file does (detached nodes too)."""
    guard = _guard_file()
    if guard.exists():
        owner = Path(guard.read_text().strip())
        if owner != workdir and (owner / STATE_FILE).exists():
            raise RealNodeError(f"another real node runs on this machine (work directory {owner}); stop it first "
                                f"(`batchpilot-sandbox down`, or end its test run), or remove {guard} if it is gone")
    guard.parent.mkdir(parents=True, exist_ok=True)
    guard.write_text(f"{workdir}\n")


def release_machine(workdir: Path) -> None:
    guard = _guard_file()
    if guard.exists() and Path(guard.read_text().strip()) == workdir:
        guard.unlink()


def restore_host(snapshot: cfg.HostSnapshot, layout: cfg.NodeLayout) -> None:
    """Carry out the restore plan: unmount, write back sysctls, remove the cgroups and paths the node created."""
    sysctls = {}
    for name in snapshot.sysctls:
        with contextlib.suppress(OSError):
            sysctls[name] = read_sysctl(name)
    plan = cfg.restore_plan(snapshot, sysctls, Path("/proc/self/mountinfo").read_text(), [layout.workdir])
    for point in plan.unmount:
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    for name, value in plan.sysctls.items():
        write_sysctl(name, value)
    for cgroup in plan.remove_cgroups:
        if cgroup.exists():  # deepest first: a cgroup directory goes only once its children are gone
            for d in sorted((p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    d.rmdir()
            with contextlib.suppress(OSError):
                cgroup.rmdir()
    for path in plan.remove_paths:
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], capture_output=True, check=False)
