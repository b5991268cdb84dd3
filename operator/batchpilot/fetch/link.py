"""Lay out a model directory from a read-only claim: links to the claim's entries plus the config's mount point.

A PersistentVolumeClaim model directory is mounted read-only, and the Triton container mounts the rendered
config.pbtxt (a subPath of the model-config ConfigMap) inside the model directory. A real runtime (runc) must create
that mount point when the claim has no config.pbtxt, which a read-only mount refuses ("read-only file system",
seen on the real node). So the pod mounts the claim beside the model directory, and this (the init container's
`python -m batchpilot.fetch --link CLAIM --dest DIR`) fills an emptyDir with one symbolic link per entry of the
claim (Triton follows them) and an empty config.pbtxt for the mount. Nothing is copied: a link costs nothing
whatever the size of the model.
"""

from __future__ import annotations

from pathlib import Path

from batchpilot.fetch.errors import FetchError
from batchpilot.fetch.fetcher import RENDERED_CONFIG, SKIPPED_CONFIG, mount_point
from batchpilot.fetch.progress import Progress


def link(claim: Path, dest: Path, progress: Progress) -> None:
    """dest with a link to every entry of claim but config.pbtxt, and config.pbtxt's empty mount point."""
    if not claim.is_dir():
        raise FetchError(f"{claim} is not a directory: spec.model.repository.pvc.subPath must name the model's "
                         f"directory inside the claim (the one holding its version folders, e.g. 1/)")
    entries = sorted(p for p in claim.iterdir() if p.name != RENDERED_CONFIG)
    versions = [p.name for p in entries if p.is_dir() and p.name.isdigit()]
    if not versions:
        found = ", ".join(p.name for p in entries[:10]) or "nothing"
        raise FetchError(f"{claim} holds no version folder (found {found}): Triton loads a model from numbered "
                         f"folders such as 1/; set spec.model.repository.pvc.subPath to the model's directory")
    dest.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        target = dest / entry.name
        if target.is_symlink() or target.is_file():
            target.unlink()  # a restarted pod's emptyDir keeps the links of the last run
        if not target.exists():
            target.symlink_to(entry)
    if (claim / RENDERED_CONFIG).exists():
        progress.note(SKIPPED_CONFIG)
    mount_point(dest)
    progress.note(f"linked {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} of {claim} into {dest} "
                  f"(versions {', '.join(versions)})")
