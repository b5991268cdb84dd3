"""Fetch one file over https: extract an archive of the model directory, or save a file as version 1."""

from __future__ import annotations

import http.client
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from batchpilot.fetch.archive import extract
from batchpilot.fetch.errors import FetchError, TransientError
from batchpilot.fetch.progress import Progress, human_bytes
from batchpilot.fetch.retry import retrying
from batchpilot.fetch.source import HttpsSource
from batchpilot.fetch.staging import Workspace
from batchpilot.fetch.tls import tls_context

TIMEOUT_S = 60.0
CHUNK = 1 << 20
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


def _no_query(url: str) -> str:
    """scheme://host/path of url: a redirect's query may hold a signature, which is never printed."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to https only, and never carry Authorization to another host."""

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is None:
            return None
        if urlsplit(newurl).scheme != "https":
            raise FetchError(
                f"{_no_query(req.full_url)} redirects to {_no_query(newurl)}, and plain http is "
                f"refused: have the server redirect to https"
            )
        if urlsplit(newurl).netloc != urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


def _status_error(e: urllib.error.HTTPError, url: str, sent_auth: bool) -> FetchError:
    final = _no_query(e.geturl() or url)
    moved_host = urlsplit(final).netloc != urlsplit(url).netloc
    via = "" if final == url else f" (redirected to {final})"
    what = f"GET {url}{via} answered {e.code} {e.reason}"
    if e.code in _TRANSIENT_STATUS:
        return TransientError(what)
    if e.code in (401, 403) and sent_auth and moved_host:
        return FetchError(
            f"{what}: HTTP_AUTHORIZATION is never sent to another host after a redirect; point "
            f"storageUri at {final}"
        )
    if e.code in (401, 403):
        given = "the one given was refused" if sent_auth else "none was given"
        return FetchError(
            f"{what}: put a valid Authorization header value in HTTP_AUTHORIZATION in "
            f"credentialsSecret ({given})"
        )
    if e.code in (404, 410):
        return FetchError(f"{what}: check the path in storageUri")
    return FetchError(f"{what}: check storageUri and the server")


def _download(
    opener: urllib.request.OpenerDirector,
    source: HttpsSource,
    headers: dict[str, str],
    target: Path,
    progress: Progress,
) -> None:
    url = source.url
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            done = 0
            with target.open("wb") as out:
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    progress.advance(source.filename, done, total)
            if total is not None and done != total:
                raise TransientError(f"GET {url} ended after {human_bytes(done)} of {human_bytes(total)}")
    except urllib.error.HTTPError as e:
        raise _status_error(e, url, "Authorization" in headers) from e
    except urllib.error.URLError as e:
        if isinstance(e.reason, ssl.SSLCertVerificationError):
            raise FetchError(
                f"GET {url}: the server's TLS certificate is not trusted ({e.reason.verify_message}): "
                f"put the PEM of the CA that signed it in CA_BUNDLE in credentialsSecret (or, on a host name "
                f"mismatch, give the server a certificate for that host)"
            ) from e
        raise TransientError(
            f"GET {url}: cannot connect ({e.reason}): check the host in storageUri and that "
            f"the pod can reach it"
        ) from e
    except ssl.SSLError as e:
        raise TransientError(f"GET {url}: TLS failed ({e})") from e
    except (ConnectionError, TimeoutError, http.client.HTTPException) as e:
        raise TransientError(f"GET {url}: connection failed ({e.__class__.__name__}: {e})") from e


def fetch_https(source: HttpsSource, work: Workspace, env: Mapping[str, str], progress: Progress) -> None:
    """Download source.url; an archive is extracted into the model directory, a file saved as 1/<name>."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=tls_context(env)), _HttpsOnlyRedirects()
    )
    headers = {"User-Agent": "batchpilot-fetch"}
    if env.get("HTTP_AUTHORIZATION"):
        headers["Authorization"] = env["HTTP_AUTHORIZATION"]
    if source.is_archive:
        target = work.scratch / source.filename
    else:
        (work.model / "1").mkdir()
        target = work.model / "1" / source.filename
    retrying(lambda: _download(opener, source, headers, target, progress), progress)
    size = target.stat().st_size
    if source.is_archive:
        progress.note(f"downloaded {source.filename} ({human_bytes(size)}), extracting")
        extract(target, work.model, source.url, progress)
        target.unlink()
    else:
        progress.file_done(f"1/{source.filename}", size)
