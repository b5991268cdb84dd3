"""Errors of the model fetcher: each message says what failed, the URI and the fix."""

from __future__ import annotations


class FetchError(Exception):
    """A fetch that cannot succeed as configured; printed as one line and exit code 1."""


class TransientError(FetchError):
    """A failure worth retrying (connection reset, timeout, HTTP 5xx/429, throttling)."""
