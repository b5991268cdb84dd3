"""Bucket sources pick their endpoint and region from the environment, and map keys to safe paths."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from batchpilot.fetch.bucket import GCS_ENDPOINT, ClientSettings, client_settings, key_path
from batchpilot.fetch.errors import FetchError
from batchpilot.fetch.source import BucketSource

S3 = BucketSource("s3", "models", "resnet/", "s3://models/resnet")
GS = BucketSource("gs", "models", "resnet/", "gs://models/resnet")


@pytest.mark.parametrize(
    ("source", "env", "expected"),
    [
        (S3, {}, ClientSettings(None, "us-east-1", strict_checksums=True)),
        (S3, {"AWS_REGION": "eu-west-1"}, ClientSettings(None, "eu-west-1", strict_checksums=True)),
        (S3, {"AWS_DEFAULT_REGION": "eu-west-2"}, ClientSettings(None, "eu-west-2", strict_checksums=True)),
        (
            S3,
            {"AWS_ENDPOINT_URL": "http://minio:9000"},
            ClientSettings("http://minio:9000", "us-east-1", strict_checksums=True),
        ),
        (
            S3,
            {"AWS_ENDPOINT_URL": "http://a", "AWS_ENDPOINT_URL_S3": "http://b"},
            ClientSettings("http://b", "us-east-1", strict_checksums=True),
        ),
        (GS, {}, ClientSettings(GCS_ENDPOINT, "auto", strict_checksums=False)),
        (GS, {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, ClientSettings("http://127.0.0.1:9", "auto", False)),
    ],
)
def test_client_settings(source: BucketSource, env: dict[str, str], expected: ClientSettings) -> None:
    assert client_settings(source, env) == expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("resnet/1/model.onnx", PurePosixPath("1/model.onnx")),
        ("resnet/config.pbtxt", PurePosixPath("config.pbtxt")),
        ("resnet//1/x", PurePosixPath("1/x")),
        ("resnet/1/", None),
        ("resnet/", None),
    ],
)
def test_key_path(key: str, expected: PurePosixPath | None) -> None:
    assert key_path(key, "resnet/", "s3://models/resnet") == expected


@pytest.mark.parametrize("key", ["resnet/../evil", "resnet/1/./x"])
def test_key_with_dot_segments_is_refused(key: str) -> None:
    with pytest.raises(FetchError, match="s3://models/resnet"):
        key_path(key, "resnet/", "s3://models/resnet")
