"""The model directory is replaced all at once on success and left exactly as it was on failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchpilot.fetch.errors import FetchError
from batchpilot.fetch.staging import staged


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_new_dest_receives_the_model(tmp_path: Path) -> None:
    dest = tmp_path / "models" / "resnet"
    with staged(dest) as work:
        (work.model / "1").mkdir()
        (work.model / "1" / "model.onnx").write_bytes(b"new")
        (work.scratch / "download.tar.gz").write_bytes(b"archive")
    assert _tree(dest) == {"1/model.onnx": b"new"}
    assert dest.stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in dest.parent.iterdir()) == ["resnet"]


def test_existing_dest_is_replaced_not_merged(tmp_path: Path) -> None:
    dest = tmp_path / "resnet"
    (dest / "1").mkdir(parents=True)
    (dest / "1" / "old.onnx").write_bytes(b"old")
    with staged(dest) as work:
        (work.model / "2").mkdir()
        (work.model / "2" / "model.onnx").write_bytes(b"new")
    assert _tree(dest) == {"2/model.onnx": b"new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnet"]


def test_failure_leaves_dest_as_it_was(tmp_path: Path) -> None:
    dest = tmp_path / "resnet"
    (dest / "1").mkdir(parents=True)
    (dest / "1" / "old.onnx").write_bytes(b"old")
    with pytest.raises(FetchError), staged(dest) as work:
        (work.model / "1").mkdir()
        (work.model / "1" / "half.onnx").write_bytes(b"half")
        raise FetchError("network went away")
    assert _tree(dest) == {"1/old.onnx": b"old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnet"]


def test_failure_creates_no_dest(tmp_path: Path) -> None:
    dest = tmp_path / "resnet"
    with pytest.raises(FetchError), staged(dest):
        raise FetchError("404")
    assert list(tmp_path.iterdir()) == []


def test_workspace_left_by_a_killed_fetch_is_removed(tmp_path: Path) -> None:
    stale = tmp_path / ".resnet.fetch-abc123"
    (stale / "model").mkdir(parents=True)
    with staged(tmp_path / "resnet") as work:
        (work.model / "f").write_bytes(b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnet"]


def test_dest_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "resnet").write_text("x")
    with pytest.raises(FetchError, match="not a directory"), staged(tmp_path / "resnet"):
        pass
