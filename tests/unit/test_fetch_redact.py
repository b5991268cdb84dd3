"""The fetcher's lines are scrubbed of credentialsSecret's values, whatever quotes them."""

from __future__ import annotations

import io

import pytest

from batchpilot.fetch.progress import Progress, credential_values, redact

ENV = {
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY000001",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_SESSION_TOKEN": "",
    "HTTP_AUTHORIZATION": "Bearer abcdefgh12345678",
    "AWS_ENDPOINT_URL": "https://minio.internal:9000",
    "CA_BUNDLE": "-----BEGIN CERTIFICATE-----",
}


def test_credential_values_are_the_secret_keys_and_the_bare_bearer_token() -> None:
    assert set(credential_values(ENV)) == {"AKIAEXAMPLEKEY000001", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                                           "Bearer abcdefgh12345678", "abcdefgh12345678"}


@pytest.mark.parametrize(("env", "text", "want"), [
    pytest.param(ENV, "denied for AKIAEXAMPLEKEY000001 at https://minio.internal:9000",
                 "denied for [redacted] at https://minio.internal:9000", id="key-id-not-the-endpoint"),
    pytest.param(ENV, "got 'Bearer abcdefgh12345678'", "got '[redacted]'", id="header-whole"),
    pytest.param(ENV, "token abcdefgh12345678 expired", "token [redacted] expired", id="token-alone"),
    pytest.param({"AWS_ACCESS_KEY_ID": "test"}, "a test key", "a test key", id="too-short-to-scrub"),
])
def test_redact(env: dict[str, str], text: str, want: str) -> None:
    assert redact(text, credential_values(env)) == want


def test_progress_scrubs_notes_and_the_failure_line() -> None:
    out = io.StringIO()
    progress = Progress(out, hidden=credential_values(ENV))
    progress.note("signed with AKIAEXAMPLEKEY000001")
    progress.fail("server said wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY is wrong")
    assert out.getvalue().splitlines() == ["fetch: signed with [redacted]",
                                           "fetch failed: server said [redacted] is wrong"]
