"""Certificates and keys for the local control plane: a CA, the API server's serving cert,
an admin client cert (system:masters), the service-account signing key, and the aggregation layer's
front-proxy CA with the client cert the API server presents to extension API servers (e.g. KEDA's)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALID = dt.timedelta(days=365)


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path
    front_proxy_ca_cert: Path
    """Signs front_proxy_client; extension API servers trust X-Remote-User headers only from its certs."""
    front_proxy_client_cert: Path
    """The API server's client cert when it proxies to an extension API server (CN FRONT_PROXY_CLIENT)."""
    front_proxy_client_key: Path


FRONT_PROXY_CLIENT = "front-proxy-client"  # the CN kube-apiserver's --requestheader-allowed-names lists


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _issue(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    usage: list[x509.ObjectIdentifier] | None = None,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALID)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def generate(directory: Path) -> Pki:
    """Write a fresh PKI into directory (reusing nothing: each sandbox gets its own CA)."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(
        *(
            directory / n
            for n in (
                "ca.crt",
                "ca.key",
                "apiserver.crt",
                "apiserver.key",
                "admin.crt",
                "admin.key",
                "sa.key",
                "sa.pub",
                "front-proxy-ca.crt",
                "front-proxy-client.crt",
                "front-proxy-client.key",
            )
        )
    )
    ca_key = _key()
    ca_name = _name("batchpilot-sandbox-ca")
    _write_key(pki.ca_key, ca_key)
    _write_cert(pki.ca_cert, _issue(ca_name, ca_key, ca_name, ca_key, ca=True))

    server_key = _key()
    sans: list[x509.GeneralName] = [
        x509.DNSName(n)
        for n in (
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        )
    ]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "10.96.0.1")]
    _write_key(pki.server_key, server_key)
    _write_cert(
        pki.server_cert,
        _issue(
            _name("kube-apiserver"),
            server_key,
            ca_name,
            ca_key,
            usage=[ExtendedKeyUsageOID.SERVER_AUTH],
            sans=sans,
        ),
    )

    admin_key = _key()
    _write_key(pki.admin_key, admin_key)
    _write_cert(
        pki.admin_cert,
        _issue(
            _name("batchpilot-admin", "system:masters"),
            admin_key,
            ca_name,
            ca_key,
            usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
        ),
    )

    # A CA of its own, as kubeadm does: a cert from the cluster CA must not be able to assert any user.
    fp_ca_key = _key()
    fp_ca_name = _name("batchpilot-sandbox-front-proxy-ca")
    _write_cert(pki.front_proxy_ca_cert, _issue(fp_ca_name, fp_ca_key, fp_ca_name, fp_ca_key, ca=True))
    fp_key = _key()
    _write_key(pki.front_proxy_client_key, fp_key)
    _write_cert(
        pki.front_proxy_client_cert,
        _issue(_name(FRONT_PROXY_CLIENT), fp_key, fp_ca_name, fp_ca_key, usage=[ExtendedKeyUsageOID.CLIENT_AUTH]),
    )

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(pki.sa_key, sa_key)
    pki.sa_pub.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki


def _load_ca(pki: Pki) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    return x509.load_pem_x509_certificate(pki.ca_cert.read_bytes()), ca_key


def issue_server(
    pki: Pki, directory: Path, name: str, cn: str, dns_names: list[str], ips: list[str]
) -> tuple[Path, Path]:
    """A serving certificate signed by the sandbox CA, also good as a client cert (KEDA's operator and
    metrics server use one certificate for both ends of their mutual-TLS gRPC link)."""
    ca_cert, ca_key = _load_ca(pki)
    key = _key()
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    directory.mkdir(parents=True, exist_ok=True)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    _write_key(key_path, key)
    _write_cert(
        cert_path,
        _issue(
            _name(cn),
            key,
            ca_cert.subject,
            ca_key,
            usage=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            sans=sans,
        ),
    )
    return cert_path, key_path


def issue_client(pki: Pki, directory: Path, name: str, cn: str, org: str | None = None) -> tuple[Path, Path]:
    """A client certificate signed by the sandbox CA (e.g. for a user bound by RBAC in tests)."""
    ca_cert, ca_key = _load_ca(pki)
    key = _key()
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    _write_key(key_path, key)
    _write_cert(
        cert_path,
        _issue(_name(cn, org), key, ca_cert.subject, ca_key, usage=[ExtendedKeyUsageOID.CLIENT_AUTH]),
    )
    return cert_path, key_path
