"""Trust for the fetcher's TLS connections: the default store plus a private CA from CA_BUNDLE."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path

import certifi

from batchpilot.fetch.errors import FetchError


def _bundle(env: Mapping[str, str]) -> str:
    return env.get("CA_BUNDLE", "").strip()


def tls_context(env: Mapping[str, str]) -> ssl.SSLContext:
    """The default trust store plus the PEM certificates in CA_BUNDLE, if any."""
    context = ssl.create_default_context()
    if _bundle(env):
        try:
            context.load_verify_locations(cadata=_bundle(env))
        except (ssl.SSLError, ValueError) as e:
            raise FetchError(
                f"CA_BUNDLE holds no usable PEM certificate ({e.__class__.__name__}): put the CA "
                f"certificate(s) in the Secret as PEM text, -----BEGIN CERTIFICATE----- included"
            ) from e
    return context


def ca_file(env: Mapping[str, str], directory: Path) -> Path | None:
    """A CA file of the public roots plus CA_BUNDLE (for clients that take a path); None without CA_BUNDLE."""
    if not _bundle(env):
        return None
    tls_context(env)  # refuses a CA_BUNDLE that is not PEM, with the same message
    path = directory / "ca-bundle.pem"
    path.write_text(Path(certifi.where()).read_text() + "\n" + _bundle(env) + "\n")
    return path
