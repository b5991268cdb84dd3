"""Fetch every object under a bucket prefix: s3:// through S3, gs:// through Cloud Storage's S3 API."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from batchpilot.fetch.errors import FetchError, TransientError
from batchpilot.fetch.progress import Progress
from batchpilot.fetch.retry import retrying
from batchpilot.fetch.source import BucketSource
from batchpilot.fetch.staging import Workspace
from batchpilot.fetch.tls import ca_file

GCS_ENDPOINT = "https://storage.googleapis.com"
CHUNK = 1 << 20
_CREDENTIALS_FIX = (
    "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in credentialsSecret (for gs://, an HMAC key "
    "of an account that may read the bucket)"
)
_DENIED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}
_TRANSIENT_CODES = {
    "SlowDown",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
    "RequestTimeTooSkewed",
}


@dataclass(frozen=True)
class ClientSettings:
    """Where and how to talk to the bucket's S3 API."""

    endpoint: str | None
    """None: AWS S3 itself."""
    region: str
    strict_checksums: bool
    """False for Cloud Storage, which does not speak S3's newer checksum headers."""


def client_settings(source: BucketSource, env: Mapping[str, str]) -> ClientSettings:
    """AWS_ENDPOINT_URL(_S3) wins; gs:// defaults to Cloud Storage's XML API; region default us-east-1."""
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if source.scheme == "gs":
        return ClientSettings(endpoint or GCS_ENDPOINT, region or "auto", strict_checksums=False)
    return ClientSettings(endpoint, region or "us-east-1", strict_checksums=True)


def key_path(key: str, prefix: str, uri: str) -> PurePosixPath | None:
    """Where an object goes under the model directory; None for a folder marker ('prefix/sub/')."""
    parts = [p for p in key[len(prefix) :].split("/") if p]
    if not parts or key.endswith("/"):
        return None
    if any(p in (".", "..") for p in parts):
        raise FetchError(
            f"object {key!r} under {uri} has '.' or '..' in its key, which would land outside the "
            f"model directory: rename the object"
        )
    return PurePosixPath(*parts)


def _client(source: BucketSource, env: Mapping[str, str], work: Workspace, progress: Progress) -> Any:
    settings = client_settings(source, env)
    if bool(env.get("AWS_ACCESS_KEY_ID")) != bool(env.get("AWS_SECRET_ACCESS_KEY")):
        raise FetchError(
            f"only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set for {source.uri}: set "
            f"both in credentialsSecret"
        )
    session = boto3.session.Session(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
        region_name=settings.region,
    )
    options: dict[str, Any] = {
        "retries": {"mode": "standard", "max_attempts": 3},
        "connect_timeout": 20,
        "read_timeout": 60,
    }
    if settings.endpoint:
        options["s3"] = {"addressing_style": "path"}  # custom endpoints rarely have per-bucket DNS names
    if not settings.strict_checksums:
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    try:
        anonymous = session.get_credentials() is None
    except PartialCredentialsError as e:
        raise FetchError(f"incomplete credentials for {source.uri} ({e}): {_CREDENTIALS_FIX}") from e
    if anonymous:
        progress.note(f"no credentials found (AWS_ACCESS_KEY_ID is unset): reading {source.uri} anonymously")
        options["signature_version"] = UNSIGNED
    if settings.endpoint:
        progress.note(f"endpoint {settings.endpoint}")
    verify = ca_file(env, work.scratch)
    return session.client(
        "s3", endpoint_url=settings.endpoint, config=Config(**options), verify=str(verify) if verify else None
    )


def _error(e: Exception, what: str, source: BucketSource) -> FetchError:
    """A botocore failure as a FetchError for people (TransientError where a retry may help)."""
    if isinstance(e, ClientError):
        code = str(e.response.get("Error", {}).get("Code", ""))
        status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code == "NoSuchBucket":
            return FetchError(
                f"{what}: bucket {source.bucket} does not exist: check the bucket in storageUri"
            )
        if code in _DENIED_CODES or status in (401, 403):
            return FetchError(f"{what}: access denied ({code or status}): {_CREDENTIALS_FIX}")
        if code == "NoSuchKey":
            return TransientError(f"{what}: the object was removed while fetching")
        if code in _TRANSIENT_CODES or status >= 500:
            return TransientError(f"{what}: {code or status}")
        return FetchError(f"{what}: {code or status} ({e}): check storageUri and the endpoint")
    if isinstance(e, SSLError):
        return FetchError(
            f"{what}: TLS with the endpoint failed ({e}): put the PEM of the CA that signed its "
            f"certificate in CA_BUNDLE in credentialsSecret"
        )
    if isinstance(e, BotoConnectionError | HTTPClientError | IncompleteReadError):
        return TransientError(f"{what}: {e}: check AWS_ENDPOINT_URL and that the pod can reach the endpoint")
    if isinstance(e, NoCredentialsError):
        return FetchError(f"{what}: no credentials: {_CREDENTIALS_FIX}")
    return FetchError(f"{what}: {e.__class__.__name__}: {e}")


def _list(client: Any, source: BucketSource) -> list[str]:
    def pages() -> Iterator[dict[str, Any]]:
        yield from client.get_paginator("list_objects_v2").paginate(
            Bucket=source.bucket, Prefix=source.prefix
        )

    try:
        return [obj["Key"] for page in pages() for obj in page.get("Contents", [])]
    except (ClientError, BotoCoreError) as e:
        raise _error(e, f"listing {source.uri}", source) from e


def _get(client: Any, source: BucketSource, key: str, target: Path, label: str, progress: Progress) -> None:
    try:
        resp = client.get_object(Bucket=source.bucket, Key=key)
        total, done = int(resp.get("ContentLength") or 0) or None, 0
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            for chunk in resp["Body"].iter_chunks(CHUNK):
                out.write(chunk)
                done += len(chunk)
                progress.advance(label, done, total)
    except (ClientError, BotoCoreError) as e:
        raise _error(e, f"reading {source.scheme}://{source.bucket}/{key}", source) from e
    except OSError as e:
        raise FetchError(
            f"writing {label} from {source.uri} failed ({e}): check the volume's free space, "
            f"and that no object key is also a folder of other keys"
        ) from e


def fetch_bucket(source: BucketSource, work: Workspace, env: Mapping[str, str], progress: Progress) -> None:
    """Download every object under source.prefix; keys relative to the prefix become paths in the model."""
    uri = source.uri
    client = _client(source, env, work, progress)
    keys = retrying(lambda: _list(client, source), progress)
    placed = [(key, path) for key in keys if (path := key_path(key, source.prefix, uri)) is not None]
    if not placed:
        raise FetchError(
            f"no objects under {uri}: check the bucket and prefix in storageUri (the prefix is the "
            f"model directory, holding e.g. 1/model.onnx)"
        )
    progress.note(f"{len(placed)} objects under {uri}")
    for key, path in placed:
        target = work.model.joinpath(*path.parts)
        retrying(partial(_get, client, source, key, target, str(path), progress), progress)
        progress.file_done(str(path), target.stat().st_size)
