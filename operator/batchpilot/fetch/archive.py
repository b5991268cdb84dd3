"""Extract a tar or zip archive of a model directory, refusing members that would land outside it."""

from __future__ import annotations

import posixpath
import shutil
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from batchpilot.fetch.errors import FetchError
from batchpilot.fetch.progress import Progress

_FIX = "rebuild the archive with paths relative to the model directory (e.g. tar czf model.tar.gz -C model .)"


def member_path(name: str, uri: str) -> PurePosixPath | None:
    """Where an archive member goes, relative to the model directory; None for the root entry ('./')."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute():
        raise FetchError(f"archive {uri} holds absolute path {name!r}, which is refused: {_FIX}")
    if ".." in path.parts:
        raise FetchError(f"archive {uri} holds {name!r}, which points outside the model directory: {_FIX}")
    return path if path.parts else None


def _check_link(member: tarfile.TarInfo, path: PurePosixPath, uri: str) -> None:
    # A symlink's target is relative to its own folder; a hard link's to the archive root.
    base = str(path.parent) if member.issym() else "."
    target = posixpath.normpath(posixpath.join(base, member.linkname))
    if posixpath.isabs(member.linkname) or target == ".." or target.startswith("../"):
        raise FetchError(
            f"archive {uri} holds link {member.name!r} -> {member.linkname!r}, which escapes the "
            f"model directory: {_FIX}"
        )


def _extract_tar(archive: Path, into: Path, uri: str, progress: Progress) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            checked: list[tuple[tarfile.TarInfo, PurePosixPath]] = []
            for member in members:  # check all before writing any
                path = member_path(member.name, uri)
                if path is None:
                    continue
                if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
                    raise FetchError(
                        f"archive {uri} holds {member.name!r}, a device or pipe, which is refused: {_FIX}"
                    )
                if member.issym() or member.islnk():
                    _check_link(member, path, uri)
                checked.append((member, path))
            for member, path in checked:
                tar.extract(member, into, filter="data")  # the data filter is a second guard
                if member.isreg():
                    progress.file_done(str(path), member.size)
    except (tarfile.TarError, zlib.error, EOFError, OSError) as e:
        raise FetchError(
            f"could not extract {uri} as a tar archive ({e}): check that the file is a "
            f"complete .tar, .tar.gz or .tgz and that the volume has free space"
        ) from e


def _extract_zip(archive: Path, into: Path, uri: str, progress: Progress) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = [(info, member_path(info.filename, uri)) for info in zf.infolist()]  # check all first
            for info, path in infos:
                if path is None:
                    continue
                target = into.joinpath(*path.parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                progress.file_done(str(path), info.file_size)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        raise FetchError(
            f"could not extract {uri} as a zip archive ({e}): check that the file is a "
            f"complete .zip and that the volume has free space"
        ) from e


def extract(archive: Path, into: Path, uri: str, progress: Progress) -> None:
    """Unpack archive (.zip by name, otherwise tar with any compression) into the directory into."""
    if archive.name.lower().endswith(".zip"):
        _extract_zip(archive, into, uri, progress)
    else:
        _extract_tar(archive, into, uri, progress)
    _unwrap_single_folder(into, progress)


def _unwrap_single_folder(model: Path, progress: Progress) -> None:
    """An archive of 'resnet/1/...' holds the model directory one level down: lift it up."""
    entries = list(model.iterdir())
    if len(entries) != 1 or not entries[0].is_dir() or entries[0].is_symlink() or entries[0].name.isdigit():
        return
    wrapper = entries[0].rename(model / ".unwrapping")
    for child in wrapper.iterdir():
        child.rename(model / child.name)
    wrapper.rmdir()
    progress.note(f"the archive holds one folder, {entries[0].name}/: using it as the model directory")
