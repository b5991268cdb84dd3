"""A claim's model directory laid out as links (fetch/link.py): every entry but config.pbtxt, the config's empty
mount point, a restart that finds the links of the last run, and refusals that say what to set."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from batchpilot.fetch.__main__ import main
from batchpilot.fetch.errors import FetchError
from batchpilot.fetch.link import link
from batchpilot.fetch.progress import Progress


def _claim(root: Path, *versions: str, config: bool = False) -> Path:
    for v in versions:
        (root / v).mkdir(parents=True)
        (root / v / "model.onnx").write_bytes(b"weights " + v.encode())
    (root / "labels.txt").write_text("cat\ndog\n")
    if config:
        (root / "config.pbtxt").write_text('name: "shipped"')
    return root


def test_every_entry_but_the_config_is_linked_and_the_mount_point_is_empty(tmp_path: Path) -> None:
    claim = _claim(tmp_path / "claim", "1", "3", config=True)
    dest = tmp_path / "models" / "resnet"
    out = io.StringIO()
    link(claim, dest, Progress(out))
    assert sorted(p.name for p in dest.iterdir()) == ["1", "3", "config.pbtxt", "labels.txt"]
    assert (dest / "1").is_symlink() and (dest / "1").resolve() == (claim / "1").resolve()
    assert (dest / "3" / "model.onnx").read_bytes() == b"weights 3"  # read through the link
    assert (dest / "labels.txt").read_text() == "cat\ndog\n"
    config = dest / "config.pbtxt"
    assert not config.is_symlink() and config.read_bytes() == b""  # the shipped one is not used
    assert "skipped config.pbtxt" in out.getvalue() and "versions 1, 3" in out.getvalue()


def test_a_restart_replaces_the_links_of_the_last_run(tmp_path: Path) -> None:
    old = _claim(tmp_path / "old", "1")
    new = _claim(tmp_path / "new", "1", "2")
    dest = tmp_path / "resnet"
    link(old, dest, Progress(io.StringIO()))
    link(new, dest, Progress(io.StringIO()))
    assert (dest / "1").resolve() == (new / "1").resolve()
    assert sorted(p.name for p in dest.iterdir()) == ["1", "2", "config.pbtxt", "labels.txt"]


def test_a_claim_without_a_version_folder_is_refused_with_the_fix(tmp_path: Path) -> None:
    claim = tmp_path / "claim"
    (claim / "resnet" / "1").mkdir(parents=True)  # the subPath stops one level too high
    with pytest.raises(FetchError, match=r"no version folder \(found resnet\).*pvc\.subPath"):
        link(claim, tmp_path / "dest", Progress(io.StringIO()))
    assert not (tmp_path / "dest").exists()
    with pytest.raises(FetchError, match="not a directory"):
        link(tmp_path / "missing", tmp_path / "dest", Progress(io.StringIO()))


def test_the_command_line_links_or_fetches_never_both(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    claim = _claim(tmp_path / "claim", "1")
    assert main(["--link", str(claim), "--dest", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "1").is_symlink()
    assert main(["--link", str(tmp_path / "nothing"), "--dest", str(tmp_path / "n")]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("fetch failed: ")
    with pytest.raises(SystemExit):
        main(["--link", str(claim), "--uri", "s3://b/m", "--dest", str(tmp_path / "o")])
