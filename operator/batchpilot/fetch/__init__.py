"""The model fetcher run by the init container: storageUri (https, s3, gs) into /models/<model-name>."""

from batchpilot.fetch.errors import FetchError, TransientError
from batchpilot.fetch.fetcher import fetch
from batchpilot.fetch.source import BadUri, BucketSource, HttpsSource, Source, parse_uri

__all__ = [
    "BadUri",
    "BucketSource",
    "FetchError",
    "HttpsSource",
    "Source",
    "TransientError",
    "fetch",
    "parse_uri",
]
