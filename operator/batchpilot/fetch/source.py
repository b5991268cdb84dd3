"""Parse a storageUri into where the model comes from (pure: no I/O)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from batchpilot.api.spec import STORAGE_URI_PATTERN
from batchpilot.fetch.errors import FetchError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
_EXAMPLES = "https://host/path/model.tar.gz, s3://bucket/prefix or gs://bucket/prefix"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class BadUri(FetchError, ValueError):
    """A storageUri the fetcher cannot use; the message names the value and the fix."""


@dataclass(frozen=True)
class HttpsSource:
    """One file served over https: an archive of the model directory or a single model file."""

    host: str
    """host or host:port."""
    path: str
    """URL path as written (percent-encoded), starting with /."""

    @property
    def url(self) -> str:
        return f"https://{self.host}{self.path}"

    @property
    def filename(self) -> str:
        """Last path segment, percent-decoded."""
        return unquote(self.path.rsplit("/", 1)[-1])

    @property
    def is_archive(self) -> bool:
        return self.filename.lower().endswith(ARCHIVE_SUFFIXES)


@dataclass(frozen=True)
class BucketSource:
    """Every object under a prefix of an S3 bucket (gs: Cloud Storage through its S3-compatible API)."""

    scheme: Literal["s3", "gs"]
    bucket: str
    prefix: str
    """Key prefix ending in / (a folder), or "" for the whole bucket."""
    uri: str
    """The storageUri as written, for messages."""


Source = HttpsSource | BucketSource


def parse_uri(uri: str) -> Source:
    """Map a storageUri to its source; raise BadUri naming the value and the fix."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise BadUri(f"storageUri {uri!r} has no scheme: use {_EXAMPLES}")
    if scheme == "http":
        raise BadUri(
            f"storageUri {uri!r} uses plain http, which is refused (credentials and model files would "
            f"travel in clear): use https:// (a private CA's PEM goes in CA_BUNDLE)"
        )
    if scheme not in ("https", "s3", "gs"):
        raise BadUri(f"storageUri {uri!r} has scheme {scheme!r}: use {_EXAMPLES}")
    authority, _, path = rest.partition("/")
    if scheme in ("s3", "gs") and not _BUCKET.match(authority):
        raise BadUri(
            f"storageUri {uri!r}: {authority!r} is not a bucket name (3-63 characters: lowercase "
            f"letters, digits, dots and dashes): write {scheme}://bucket/prefix"
        )
    if not re.fullmatch(STORAGE_URI_PATTERN, uri):
        raise BadUri(
            f"storageUri {uri!r} has characters the fetcher does not accept (whitespace, quotes, '?', "
            f"'#' or a host with other than letters, digits, dots, dashes): use {_EXAMPLES}"
        )
    if scheme == "https":
        source = HttpsSource(authority, "/" + path)
        if source.filename in ("", ".", "..") or "/" in source.filename:
            raise BadUri(
                f"storageUri {uri!r} names no file: point it at the file, e.g. "
                f"https://{authority}/models/model.tar.gz"
            )
        return source
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise BadUri(f"storageUri {uri!r} has '.' or '..' in its prefix: write the prefix out in full")
    prefix = "/".join(parts) + "/" if parts else ""
    return BucketSource("s3" if scheme == "s3" else "gs", authority, prefix, uri)
