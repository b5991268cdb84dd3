"""Fetch a storageUri into a model directory, all or nothing."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from batchpilot.fetch.bucket import fetch_bucket
from batchpilot.fetch.https import fetch_https
from batchpilot.fetch.progress import Progress
from batchpilot.fetch.source import HttpsSource, parse_uri
from batchpilot.fetch.staging import staged

RENDERED_CONFIG = "config.pbtxt"
SKIPPED_CONFIG = f"skipped {RENDERED_CONFIG}: Batchpilot renders its own from the InferenceService spec"
"""The note when the source ships a config.pbtxt (fetched or on a claim): it is never the one Triton reads."""


def _drop_rendered_config(model: Path, progress: Progress) -> None:
    """Remove a shipped config.pbtxt: Batchpilot renders its own from the spec."""
    config = model / RENDERED_CONFIG
    if config.is_file() or config.is_symlink():
        config.unlink()
        progress.note(SKIPPED_CONFIG)


def mount_point(model: Path) -> None:
    """An empty config.pbtxt where the Triton container mounts the rendered one (a subPath of the model-config
    ConfigMap): the model directory is mounted read-only there, so a real runtime (runc) cannot create the mount
    point itself ("read-only file system", seen on the real node)."""
    (model / RENDERED_CONFIG).touch()


def _totals(model: Path) -> tuple[int, int]:
    files = [p for p in model.rglob("*") if p.is_file() and not p.is_symlink()]
    return len(files), sum(p.stat().st_size for p in files)


def fetch(uri: str, dest: Path, env: Mapping[str, str], progress: Progress) -> None:
    """Fetch uri into dest; on FetchError (BadUri for a malformed uri) dest is left as it was."""
    source = parse_uri(uri)
    progress.note(f"fetching {uri} into {dest}")
    with staged(dest) as work:
        if isinstance(source, HttpsSource):
            fetch_https(source, work, env, progress)
        else:
            fetch_bucket(source, work, env, progress)
        _drop_rendered_config(work.model, progress)
        files, size = _totals(work.model)
        mount_point(work.model)
    progress.finish(files, size, str(dest))
