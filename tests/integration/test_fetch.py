"""The init container's fetcher, run as `python -m batchpilot.fetch` against a real HTTPS server and a real
S3 API (moto_server): files land, config.pbtxt is skipped, a failure is one line and leaves dest as it was."""

from __future__ import annotations

import io
import os
import ssl
import subprocess
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

import boto3
import pytest
from botocore.config import Config

from batchpilot.sandbox import certs
from batchpilot.sandbox.process import free_port, spawn, stop_process, tail

SECRET_AUTH = "Bearer t0ken-that-must-not-be-printed"
SECRET_KEY = "secret-key-that-must-not-be-printed"
MODEL_PY = b"import triton_python_backend_utils as pb_utils\n"


def _tar_gz(files: dict[str, bytes]) -> bytes:
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
    redirects: dict[str, str] = field(default_factory=dict)
    """path -> URL it redirects to ({base} and {port} filled in)."""
    seen: list[tuple[str, str | None]] = field(default_factory=list)


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
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

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> certs.Pki:
    return certs.generate(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def site(pki: certs.Pki) -> Iterator[Site]:
    """An HTTPS server on 127.0.0.1 with a certificate from a CA of its own (the sandbox's cert helpers)."""
    model = {"1/model.py": MODEL_PY, "config.pbtxt": b'backend: "python"\n'}
    site = Site(
        "",
        {
            "/models/model.tar.gz": _tar_gz(model),
            "/models/model.onnx": b"onnx-bytes",
            "/models/evil.tar.gz": _tar_gz({"1/model.py": MODEL_PY, "../evil": b"owned"}),
            "/private/model.tar.gz": _tar_gz(model),
        },
        private={"/private/model.tar.gz"},
        redirects={
            "/moved/model.tar.gz": "{base}/private/model.tar.gz",
            "/other-host/model.tar.gz": "https://localhost:{port}/private/model.tar.gz",
            "/downgrade/model.tar.gz": "http://127.0.0.1:{port}/models/model.tar.gz",
        },
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    site.base = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield site
    server.shutdown()
    server.server_close()


def run_fetch(uri: str, dest: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The fetcher as the init container runs it, with only the given variables (no host AWS config)."""
    base = {
        "PATH": os.environ["PATH"],
        "HOME": str(dest.parent),
        "NO_PROXY": "127.0.0.1,localhost",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    result = subprocess.run(
        [sys.executable, "-m", "batchpilot.fetch", "--uri", uri, "--dest", str(dest)],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    for secret in (SECRET_AUTH, SECRET_KEY):
        assert secret not in result.stderr + result.stdout, "a credential was printed"
    return result


def failure_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed fetch ends with (exit code 1)."""
    assert result.returncode == 1, result.stderr
    failures = [line for line in result.stderr.splitlines() if line.startswith("fetch failed:")]
    assert len(failures) == 1 and result.stderr.rstrip().endswith(failures[0]), result.stderr
    return failures[0]


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_https_archive_lands_without_its_config(site: Site, pki: certs.Pki, tmp_path: Path) -> None:
    dest = tmp_path / "models" / "echo"
    result = run_fetch(f"{site.base}/models/model.tar.gz", dest, CA_BUNDLE=pki.ca_cert.read_text())
    assert result.returncode == 0, result.stderr
    assert tree(dest) == {"1/model.py": MODEL_PY}
    assert "skipped config.pbtxt" in result.stderr
    assert "done: 1 file," in result.stderr
    assert [p.name for p in dest.parent.iterdir()] == ["echo"]


def test_https_plain_file_becomes_version_1(site: Site, pki: certs.Pki, tmp_path: Path) -> None:
    dest = tmp_path / "onnx"
    result = run_fetch(f"{site.base}/models/model.onnx", dest, CA_BUNDLE=pki.ca_cert.read_text())
    assert result.returncode == 0, result.stderr
    assert tree(dest) == {"1/model.onnx": b"onnx-bytes"}


def test_https_untrusted_certificate_fails_clearly(site: Site, tmp_path: Path) -> None:
    other_ca = certs.generate(tmp_path / "other-pki").ca_cert.read_text()
    dest = tmp_path / "echo"
    line = failure_line(run_fetch(f"{site.base}/models/model.tar.gz", dest, CA_BUNDLE=other_ca))
    assert "not trusted" in line and "CA_BUNDLE" in line and f"{site.base}/models/model.tar.gz" in line
    assert not dest.exists()


def test_https_404_leaves_dest_unchanged(site: Site, pki: certs.Pki, tmp_path: Path) -> None:
    dest = tmp_path / "echo"
    (dest / "1").mkdir(parents=True)
    (dest / "1" / "model.py").write_bytes(b"previous")
    line = failure_line(
        run_fetch(f"{site.base}/models/missing.tar.gz", dest, CA_BUNDLE=pki.ca_cert.read_text())
    )
    assert "404" in line and "/models/missing.tar.gz" in line and "check the path in storageUri" in line
    assert tree(dest) == {"1/model.py": b"previous"}
    assert [p.name for p in tmp_path.iterdir()] == ["echo"]


def test_https_authorization_header_is_sent(site: Site, pki: certs.Pki, tmp_path: Path) -> None:
    uri = f"{site.base}/private/model.tar.gz"
    line = failure_line(run_fetch(uri, tmp_path / "a", CA_BUNDLE=pki.ca_cert.read_text()))
    assert "401" in line and "HTTP_AUTHORIZATION" in line
    result = run_fetch(uri, tmp_path / "b", CA_BUNDLE=pki.ca_cert.read_text(), HTTP_AUTHORIZATION=SECRET_AUTH)
    assert result.returncode == 0, result.stderr
    assert ("/private/model.tar.gz", SECRET_AUTH) in site.seen
    assert tree(tmp_path / "b") == {"1/model.py": MODEL_PY}


def test_https_redirects_keep_authorization_on_the_same_host_only(
    site: Site, pki: certs.Pki, tmp_path: Path
) -> None:
    env = {"CA_BUNDLE": pki.ca_cert.read_text(), "HTTP_AUTHORIZATION": SECRET_AUTH}
    result = run_fetch(f"{site.base}/moved/model.tar.gz", tmp_path / "same", **env)
    assert result.returncode == 0, result.stderr
    line = failure_line(run_fetch(f"{site.base}/other-host/model.tar.gz", tmp_path / "other", **env))
    assert (
        "401" in line and "redirected to https://localhost:" in line and "never sent to another host" in line
    )
    assert [auth for path, auth in site.seen if path == "/private/model.tar.gz"][-1] is None


def test_https_redirect_to_plain_http_is_refused(site: Site, pki: certs.Pki, tmp_path: Path) -> None:
    line = failure_line(
        run_fetch(f"{site.base}/downgrade/model.tar.gz", tmp_path / "m", CA_BUNDLE=pki.ca_cert.read_text())
    )
    assert "redirects to http://127.0.0.1:" in line and "plain http is refused" in line


def test_https_tar_with_parent_path_is_refused(site: Site, pki: certs.Pki, tmp_path: Path) -> None:
    dest = tmp_path / "models" / "echo"
    line = failure_line(run_fetch(f"{site.base}/models/evil.tar.gz", dest, CA_BUNDLE=pki.ca_cert.read_text()))
    assert "'../evil'" in line and "outside the model directory" in line
    assert (
        not dest.exists() and not (tmp_path / "models" / "evil").exists() and not (tmp_path / "evil").exists()
    )


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto_server on a free loopback port; fails (never skips) when it cannot start."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log)
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
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}),
        )
        s3.create_bucket(Bucket="models")
        for key, body in {
            "resnet/1/model.onnx": b"onnx",
            "resnet/1/labels/names.txt": b"cat\n",
            "resnet/config.pbtxt": b"platform: x\n",
            "resnet/2/": b"",
            "resnet50/1/model.onnx": b"other model",
        }.items():
            s3.put_object(Bucket="models", Key=key, Body=body)
        yield endpoint
    finally:
        stop_process(proc)


def _aws(endpoint: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": SECRET_KEY}


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_bucket_prefix_lands_without_its_config(s3_endpoint: str, tmp_path: Path, scheme: str) -> None:
    dest = tmp_path / "resnet"
    result = run_fetch(f"{scheme}://models/resnet", dest, **_aws(s3_endpoint))
    assert result.returncode == 0, result.stderr
    assert tree(dest) == {"1/labels/names.txt": b"cat\n", "1/model.onnx": b"onnx"}
    assert "skipped config.pbtxt" in result.stderr and f"endpoint {s3_endpoint}" in result.stderr
    assert "done: 2 files, 8 B" in result.stderr


def test_bucket_empty_prefix_fails_naming_the_uri(s3_endpoint: str, tmp_path: Path) -> None:
    line = failure_line(run_fetch("s3://models/nothing-here", tmp_path / "m", **_aws(s3_endpoint)))
    assert "no objects under s3://models/nothing-here" in line
    assert not (tmp_path / "m").exists()


def test_missing_bucket_fails_naming_it(s3_endpoint: str, tmp_path: Path) -> None:
    line = failure_line(run_fetch("s3://no-such-bucket/resnet", tmp_path / "m", **_aws(s3_endpoint)))
    assert "bucket no-such-bucket does not exist" in line
