"""Throwaway X.509 material for TLS tests: a CA, a server certificate for 127.0.0.1/localhost,
client certificates, and a second CA that signed none of them (the "wrong CA" case).

Made with `cryptography` in a few milliseconds (EC P-256 keys); written as PEM files with the
permissions the servers and libpq insist on (keys 0600)."""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertFiles:
    """A certificate and its key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """Everything a TLS test needs, in `directory`."""

    directory: Path
    ca: Path
    """The CA bundle that signed the server and client certificates."""
    other_ca: Path
    """A CA that signed nothing here: verifying the server against it must fail."""
    server: CertFiles
    """For 127.0.0.1 and localhost (the SAN), signed by `ca`."""
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate

    def client(self, common_name: str) -> CertFiles:
        """A client certificate for `common_name` (PostgreSQL's cert auth maps CN to the role)."""
        return _issue(
            self.directory,
            f"client-{common_name}",
            common_name,
            self.ca_cert,
            self.ca_key,
            server=False,
        )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _make_ca(
    directory: Path, name: str
) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def _issue(
    directory: Path,
    stem: str,
    common_name: str,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    server: bool,
) -> CertFiles:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    files = CertFiles(directory / f"{stem}.crt", directory / f"{stem}.key")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(files.key, key)
    return files


def make_pki(directory: Path) -> Pki:
    """A fresh CA, a server certificate for 127.0.0.1/localhost and an unrelated CA."""
    directory.mkdir(parents=True, exist_ok=True)
    # The servers (PostgreSQL as the postgres user) read the files too.
    os.chmod(directory, 0o755)  # noqa: S103 - certificates; keys are 0600 inside
    ca, ca_key, ca_cert = _make_ca(directory, "lifeboat-test-ca")
    other_ca, _, _ = _make_ca(directory, "unrelated-ca")
    server = _issue(directory, "server", "localhost", ca_cert, ca_key, server=True)
    return Pki(directory, ca, other_ca, server, ca_key, ca_cert)
