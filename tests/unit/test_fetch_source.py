"""parse_uri maps accepted storageUris to sources and refuses bad ones naming the value and the fix."""

from __future__ import annotations

import pytest

from batchpilot.fetch import BadUri, BucketSource, HttpsSource, parse_uri


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("https://models.example.com/r/model.tar.gz", HttpsSource("models.example.com", "/r/model.tar.gz")),
        ("https://10.0.0.5:8443/model.onnx", HttpsSource("10.0.0.5:8443", "/model.onnx")),
        ("s3://models/resnet", BucketSource("s3", "models", "resnet/", "s3://models/resnet")),
        ("s3://models/resnet/", BucketSource("s3", "models", "resnet/", "s3://models/resnet/")),
        ("s3://models//a//b", BucketSource("s3", "models", "a/b/", "s3://models//a//b")),
        ("s3://models", BucketSource("s3", "models", "", "s3://models")),
        ("s3://models/", BucketSource("s3", "models", "", "s3://models/")),
        (
            "gs://my.bucket-1/team/resnet",
            BucketSource("gs", "my.bucket-1", "team/resnet/", "gs://my.bucket-1/team/resnet"),
        ),
    ],
)
def test_valid_uris_parse(uri: str, expected: object) -> None:
    assert parse_uri(uri) == expected


@pytest.mark.parametrize(
    ("name", "archive"),
    [
        ("model.tar.gz", True),
        ("model.tgz", True),
        ("model.tar", True),
        ("MODEL.ZIP", True),
        ("model.onnx", False),
        ("model.plan", False),
        ("model.gz", False),
    ],
)
def test_archive_is_known_by_suffix(name: str, archive: bool) -> None:
    source = parse_uri(f"https://host/{name}")
    assert isinstance(source, HttpsSource)
    assert source.is_archive is archive


def test_filename_is_percent_decoded() -> None:
    source = parse_uri("https://host/models/my%20model.onnx")
    assert isinstance(source, HttpsSource)
    assert source.filename == "my model.onnx"
    assert source.url == "https://host/models/my%20model.onnx"


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("http://host/model.tar.gz", "plain http"),
        ("ftp://host/model.tar.gz", "scheme 'ftp'"),
        ("models/resnet", "no scheme"),
        ("", "no scheme"),
        ("s3://Models/resnet", "not a bucket name"),
        ("s3://ab/resnet", "not a bucket name"),
        ("gs:///resnet", "not a bucket name"),
        ("https://host", "names no file"),
        ("https://host/models/", "names no file"),
        ("https://host/models/%2E%2E", "names no file"),
        ("https://host/a%2Fb", "names no file"),
        ("https://host/model.tar.gz?sig=1", "characters"),
        ("https://host/my model.onnx", "characters"),
        ("https://user@host/model.onnx", "characters"),
        ("s3://models/a b", "characters"),
        ("s3://models/resnet\n", "characters"),
        ("s3://models/a/../b", "'..'"),
    ],
)
def test_bad_uris_are_refused_with_the_value(uri: str, says: str) -> None:
    with pytest.raises(BadUri) as caught:
        parse_uri(uri)
    assert says in str(caught.value)
    assert repr(uri) in str(caught.value)
