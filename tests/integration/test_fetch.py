"""The init container's fetcher, run as `python -m batchpilot.fetch` against a real HTTPS server and a real
S3 API (moto_server): files land, config.pbtxt is skipped, a failure is one line and leaves dest as it was."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchpilot_sandbox.cluster import certs
from storage_servers import (
    SECRET_AUTH,
    SECRET_KEY,
    Site,
    echoing_s3,
    https_site,
    moto_s3,
    s3_client,
    tar_gz,
    upload,
)

MODEL_PY = b"import triton_python_backend_utils as pb_utils\n"


@pytest.fixture(scope="module")
def site(pki: certs.Pki) -> Iterator[Site]:
    """An HTTPS server on 127.0.0.1 with a certificate from a CA of its own (the sandbox's cert helpers)."""
    model = {"1/model.py": MODEL_PY, "config.pbtxt": b'backend: "python"\n'}
    site = Site(
        "",
        {
            "/models/model.tar.gz": tar_gz(model),
            "/models/model.onnx": b"onnx-bytes",
            "/models/evil.tar.gz": tar_gz({"1/model.py": MODEL_PY, "../evil": b"owned"}),
            "/private/model.tar.gz": tar_gz(model),
        },
        private={"/private/model.tar.gz"},
        redirects={
            "/moved/model.tar.gz": "{base}/private/model.tar.gz",
            "/other-host/model.tar.gz": "https://localhost:{port}/private/model.tar.gz",
            "/downgrade/model.tar.gz": "http://127.0.0.1:{port}/models/model.tar.gz",
        },
    )
    with https_site(pki, site):
        yield site


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
    assert tree(dest) == {"1/model.py": MODEL_PY, "config.pbtxt": b""}  # the rendered one's mount point
    assert "skipped config.pbtxt" in result.stderr
    assert "done: 1 file," in result.stderr
    assert [p.name for p in dest.parent.iterdir()] == ["echo"]


def test_https_plain_file_becomes_version_1(site: Site, pki: certs.Pki, tmp_path: Path) -> None:
    dest = tmp_path / "onnx"
    result = run_fetch(f"{site.base}/models/model.onnx", dest, CA_BUNDLE=pki.ca_cert.read_text())
    assert result.returncode == 0, result.stderr
    assert tree(dest) == {"1/model.onnx": b"onnx-bytes", "config.pbtxt": b""}


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
    assert tree(tmp_path / "b") == {"1/model.py": MODEL_PY, "config.pbtxt": b""}


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
    with moto_s3(tmp_path_factory.mktemp("moto")) as endpoint:
        upload(
            s3_client(endpoint),
            "models",
            {
                "resnet/1/model.onnx": b"onnx",
                "resnet/1/labels/names.txt": b"cat\n",
                "resnet/config.pbtxt": b"platform: x\n",
                "resnet/2/": b"",
                "resnet50/1/model.onnx": b"other model",
            },
        )
        yield endpoint


def _aws(endpoint: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": SECRET_KEY}


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_bucket_prefix_lands_without_its_config(s3_endpoint: str, tmp_path: Path, scheme: str) -> None:
    dest = tmp_path / "resnet"
    result = run_fetch(f"{scheme}://models/resnet", dest, **_aws(s3_endpoint))
    assert result.returncode == 0, result.stderr
    assert tree(dest) == {"1/labels/names.txt": b"cat\n", "1/model.onnx": b"onnx", "config.pbtxt": b""}
    assert "skipped config.pbtxt" in result.stderr and f"endpoint {s3_endpoint}" in result.stderr
    assert "done: 2 files, 8 B" in result.stderr


def test_bucket_empty_prefix_fails_naming_the_uri(s3_endpoint: str, tmp_path: Path) -> None:
    line = failure_line(run_fetch("s3://models/nothing-here", tmp_path / "m", **_aws(s3_endpoint)))
    assert "no objects under s3://models/nothing-here" in line
    assert not (tmp_path / "m").exists()


def test_missing_bucket_fails_naming_it(s3_endpoint: str, tmp_path: Path) -> None:
    line = failure_line(run_fetch("s3://no-such-bucket/resnet", tmp_path / "m", **_aws(s3_endpoint)))
    assert "bucket no-such-bucket does not exist" in line


def test_credentials_a_server_quotes_back_are_redacted(tmp_path: Path) -> None:
    """The fetcher prints no credential itself; one that a server's error message quotes is scrubbed too."""
    key_id, token = "AKIAQUOTEDBACK000001", "session-token-quoted-back-by-the-server"
    with echoing_s3() as endpoint:
        result = run_fetch("s3://models/resnet", tmp_path / "m", AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID=key_id,
                           AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_SESSION_TOKEN=token)
    line = failure_line(result)
    assert "InvalidArgument" in line and "cannot use the request signed as AWS4-HMAC-SHA256 Credential=[redacted]/" \
        in line and " [redacted]): check storageUri" in line
    assert key_id not in result.stderr and token not in result.stderr
