"""Model stores for the fetcher's tests, on 127.0.0.1 in the test process: an HTTPS site with a certificate
from a CA of its own (the sandbox's cert helpers) and a real S3 API (moto_server).

Context managers rather than fixtures, so each test module serves its own content with the scope it needs.
"""

from __future__ import annotations

import contextlib
import io
import os
import ssl
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import boto3
import pytest
from botocore.config import Config

from batchpilot_sandbox.cluster import certs
from batchpilot_sandbox.process import free_port, spawn, stop_process, tail

SECRET_AUTH = "Bearer t0ken-that-must-not-be-printed"
"""The Authorization header the site's private paths require."""
SECRET_KEY = "secret-key-that-must-not-be-printed"
"""The secret access key the S3 clients use (moto accepts any)."""


def tar_gz(files: dict[str, bytes]) -> bytes:
    """A .tar.gz holding files (relative path -> body)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


@dataclass
class Site:
    """What the HTTPS server serves (path -> body) and the Authorization header of each request it saw."""

    base: str
    files: dict[str, bytes]
    private: set[str]
    """Paths answered 401 unless the request carries SECRET_AUTH."""
    redirects: dict[str, str] = field(default_factory=dict)
    """path -> URL it redirects to ({base} and {port} filled in)."""
    seen: list[tuple[str, str | None]] = field(default_factory=list)


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            auth = self.headers.get("Authorization")
            site.seen.append((self.path, auth))
            if self.path in site.redirects:
                port = site.base.rsplit(":", 1)[1]
                self.send_response(302)
                self.send_header("Location", site.redirects[self.path].format(base=site.base, port=port))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = site.files.get(self.path)
            status = (
                404 if body is None else 401 if self.path in site.private and auth != SECRET_AUTH else 200
            )
            payload = body if status == 200 and body is not None else b"no\n"
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@contextlib.contextmanager
def https_site(pki: certs.Pki, site: Site) -> Iterator[Site]:
    """Serve site over HTTPS on 127.0.0.1 (pki's server certificate names it) in a thread; fills site.base."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    site.base = f"https://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def moto_s3(log_dir: Path, authenticate: bool = False) -> Iterator[str]:
    """moto_server on a free port of 127.0.0.1; yields its endpoint URL. Fails (never skips) when it cannot
    start. authenticate: every request is checked against moto's IAM, so an unknown access key is refused
    (403 InvalidAccessKeyId) as a real S3 would; otherwise moto accepts any key."""
    port = free_port()
    log = log_dir / "moto.log"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"} if authenticate else None
    proc = spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log, env=env)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except (urllib.error.URLError, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not start on {endpoint} (exit {proc.poll()}):\n{tail(log)}")
                time.sleep(0.2)
        yield endpoint
    finally:
        stop_process(proc)


@contextlib.contextmanager
def echoing_s3() -> Iterator[str]:
    """An S3-compatible endpoint (plain HTTP on 127.0.0.1, in a thread) that refuses every request with 400
    InvalidArgument and quotes the request's Authorization and X-Amz-Security-Token headers in its error
    message, as a careless server might; yields its endpoint URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            quoted = f"{self.headers.get('Authorization')} {self.headers.get('X-Amz-Security-Token')}"
            body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidArgument</Code>"
                    f"<Message>cannot use the request signed as {escape(quoted)}</Message></Error>").encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def s3_client(endpoint: str, region: str = "us-east-1") -> Any:
    """A boto3 S3 client for the moto endpoint (path-style addressing, key id "test", SECRET_KEY)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="test",
        aws_secret_access_key=SECRET_KEY,
        config=Config(s3={"addressing_style": "path"}),
    )


def upload(s3: Any, bucket: str, objects: dict[str, bytes]) -> None:
    """Create bucket (us-east-1) and put objects (key -> body) into it."""
    s3.create_bucket(Bucket=bucket)
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
