"""Archives of a model directory extract into it, and members that would land outside it are refused."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from batchpilot.fetch.archive import extract, member_path
from batchpilot.fetch.errors import FetchError
from batchpilot.fetch.progress import Progress

URI = "https://host/model.tar.gz"


def _tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            body = (data or {}).get(member.name)
            if body is not None:
                member.size = len(body)
            tar.addfile(member, io.BytesIO(body) if body is not None else None)
    return path


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _extract(archive: Path, into: Path) -> str:
    into.mkdir(exist_ok=True)
    log = io.StringIO()
    extract(archive, into, URI, Progress(log))
    return log.getvalue()


def test_tar_of_model_directory_extracts(tmp_path: Path) -> None:
    archive = _tar(
        tmp_path / "m.tar.gz",
        [_file("./1/model.py"), _file("config.pbtxt"), _link("1/alias.py", "model.py")],
        {"./1/model.py": b"print(1)\n", "config.pbtxt": b"x"},
    )
    log = _extract(archive, tmp_path / "model")
    assert (tmp_path / "model/1/model.py").read_bytes() == b"print(1)\n"
    assert (tmp_path / "model/1/alias.py").read_bytes() == b"print(1)\n"
    assert "1/model.py (9 B)" in log


def test_single_wrapping_folder_is_lifted(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "m.tgz", [_file("resnet/1/model.onnx")], {"resnet/1/model.onnx": b"onnx"})
    log = _extract(archive, tmp_path / "model")
    assert (tmp_path / "model/1/model.onnx").read_bytes() == b"onnx"
    assert "resnet/" in log


def test_version_folder_alone_is_not_lifted(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "m.tgz", [_file("1/model.onnx")], {"1/model.onnx": b"onnx"})
    _extract(archive, tmp_path / "model")
    assert (tmp_path / "model/1/model.onnx").exists()


@pytest.mark.parametrize(
    ("member", "says"),
    [
        (_file("../evil"), "outside the model directory"),
        (_file("1/../../evil"), "outside the model directory"),
        (_file("/etc/evil"), "absolute path"),
        (_link("1/escape", "../../evil"), "escapes the model directory"),
        (_link("1/escape", "/etc/passwd"), "escapes the model directory"),
        (_link("1/hard", "../evil", tarfile.LNKTYPE), "escapes the model directory"),
        (_link("dev", "", tarfile.CHRTYPE), "device or pipe"),
    ],
)
def test_tar_members_escaping_the_model_directory_are_refused(
    tmp_path: Path, member: tarfile.TarInfo, says: str
) -> None:
    archive = _tar(tmp_path / "evil.tar.gz", [_file("1/model.py"), member])
    with pytest.raises(FetchError) as caught:
        _extract(archive, tmp_path / "model")
    assert says in str(caught.value) and URI in str(caught.value)
    assert list((tmp_path / "model").iterdir()) == []  # checked before anything was written
    assert not (tmp_path / "evil").exists()


def test_zip_extracts_and_refuses_parent_paths(tmp_path: Path) -> None:
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("1/model.onnx", b"onnx")
        zf.writestr("1/", b"")
    _extract(good, tmp_path / "model")
    assert (tmp_path / "model/1/model.onnx").read_bytes() == b"onnx"

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../evil", b"x")
    with pytest.raises(FetchError, match="outside the model directory"):
        _extract(evil, tmp_path / "model2")
    assert not (tmp_path / "evil").exists()


def test_corrupt_archive_fails_clearly(tmp_path: Path) -> None:
    archive = tmp_path / "m.tar.gz"
    archive.write_bytes(b"not a tarball")
    with pytest.raises(FetchError, match="could not extract .* as a tar archive"):
        _extract(archive, tmp_path / "model")


@pytest.mark.parametrize(
    ("name", "expected"), [("./1/a", "1/a"), ("1//a", "1/a"), ("./", None), ("1\\a", "1/a")]
)
def test_member_path_normalises(name: str, expected: str | None) -> None:
    path = member_path(name, URI)
    assert (str(path) if path else None) == expected
