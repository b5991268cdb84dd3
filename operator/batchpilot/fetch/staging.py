"""Download beside dest, then swap the result into place, so dest is never half-written."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from batchpilot.fetch.errors import FetchError


@dataclass(frozen=True)
class Workspace:
    """A temporary directory on dest's filesystem (so the final moves are renames)."""

    model: Path
    """Becomes the contents of dest."""
    scratch: Path
    """For downloads that are not model files themselves (an archive before extraction)."""


def _prefix(dest: Path) -> str:
    return f".{dest.name}.fetch-"


@contextmanager
def staged(dest: Path) -> Iterator[Workspace]:
    """Yield a workspace; when the body succeeds its model directory replaces dest's contents.

    On any failure dest is left exactly as it was, and the workspace is always removed."""
    if dest.exists() and not dest.is_dir():
        raise FetchError(f"--dest {dest} exists and is not a directory: remove it or choose another path")
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(_prefix(dest) + "*"):  # left by a fetcher that was killed
        shutil.rmtree(stale, ignore_errors=True)
    root = Path(tempfile.mkdtemp(prefix=_prefix(dest), dir=dest.parent))
    try:
        work = Workspace(root / "model", root / "scratch")
        work.model.mkdir(mode=0o755)
        work.scratch.mkdir()
        yield work
        _install(work.model, dest, root / "previous")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _install(model: Path, dest: Path, previous: Path) -> None:
    """Replace dest's contents by model's (dest itself may be a mount point, so it is kept)."""
    model.chmod(0o755)  # mkdtemp's 0700 would hide the model from a Triton running as another user
    if not dest.exists():
        model.rename(dest)
        return
    previous.mkdir()
    moved_out: list[Path] = []
    moved_in: list[Path] = []
    try:
        for entry in list(dest.iterdir()):
            entry.rename(previous / entry.name)
            moved_out.append(entry)
        for entry in list(model.iterdir()):
            entry.rename(dest / entry.name)
            moved_in.append(dest / entry.name)
    except OSError as e:
        for entry in moved_in:
            entry.rename(model / entry.name)
        for entry in moved_out:
            (previous / entry.name).rename(entry)
        raise FetchError(
            f"could not move the fetched files into {dest} ({e}): check that the volume is "
            f"writable and has free space"
        ) from e
