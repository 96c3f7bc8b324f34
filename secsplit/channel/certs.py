"""A small certificate authority for mutual TLS between parties (``secsplit certs init``).

Each party gets a key and a certificate whose common name *and* DNS subject-alternative name are
the party's name ("client", "server", ...). Peers check that name, not a host name: a server knows
which client it expects, and a client dials an address but verifies the certificate says "server".
Keys are written with mode 0600; the CA key stays with whoever issues certificates.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from secsplit.atomic import atomic_write
from secsplit.errors import ConfigError, SecsplitError

CA_CERT, CA_KEY = "ca.pem", "ca.key"


class CertificateError(SecsplitError):
    """Certificates are missing, unreadable, expired or do not name the expected party."""


@dataclass(frozen=True)
class PartyCredentials:
    """PEM bytes a party needs for mutual TLS: its key and certificate, and the CA that signs peers."""

    name: str
    key: bytes
    certificate: bytes
    ca: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, data: bytes, *, secret: bool = False) -> None:
    atomic_write(path, data)  # created 0600; certificates are public
    os.chmod(path, 0o600 if secret else 0o644)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def create_ca(directory: str | Path, *, days: int = 365, name: str = "secsplit CA") -> None:
    """Write ``ca.pem`` and ``ca.key`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write(directory / CA_KEY, _key_pem(key), secret=True)
    _write(directory / CA_CERT, cert.public_bytes(serialization.Encoding.PEM))


def issue(directory: str | Path, party: str, *, days: int = 365, hosts: Sequence[str] = (),
          not_before: dt.datetime | None = None) -> None:
    """Write ``<party>.pem`` / ``<party>.key`` signed by the CA in ``directory``.

    ``hosts``: extra DNS names or IP addresses for the certificate (the party name is always in it).
    ``not_before`` (and a negative ``days``) exist so tests can make expired certificates.
    """
    _check_party_name(party)
    directory = Path(directory)
    ca_key = serialization.load_pem_private_key(_read(directory / CA_KEY, "CA key"), password=None)
    ca_cert = x509.load_pem_x509_certificate(_read(directory / CA_CERT, "CA certificate"))
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    names: list[x509.GeneralName] = [x509.DNSName(party)]
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (x509.CertificateBuilder().subject_name(_name(party)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(directory / f"{party}.key", _key_pem(key), secret=True)
    _write(directory / f"{party}.pem", cert.public_bytes(serialization.Encoding.PEM))


def init_pki(directory: str | Path, parties: Sequence[str], *, days: int = 365, hosts: Sequence[str] = ()) -> list[Path]:
    """A fresh CA plus one certificate per party; returns the files written."""
    if not parties:
        raise ConfigError("certs init needs at least one party name")
    create_ca(directory, days=days)
    for party in parties:
        issue(directory, party, days=days, hosts=hosts)
    directory = Path(directory)
    return [directory / CA_CERT, directory / CA_KEY, *[directory / f"{p}{s}" for p in parties for s in (".pem", ".key")]]


def _check_party_name(party: str) -> None:
    if not party or not all(c.isalnum() or c in "-_." for c in party):
        raise ConfigError(f"party name {party!r} must be non-empty letters, digits, '-', '_' or '.'")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CertificateError(f"{what} not found: {path} (create certificates with `secsplit certs init`)") from None
    except OSError as error:
        raise CertificateError(f"cannot read {what} {path}: {error.strerror}") from None


def load_credentials(directory: str | Path, party: str) -> PartyCredentials:
    """Read ``party``'s key and certificate and the CA from ``directory``, checking the certificate first.

    Refuses, naming the file: missing files, unparsable PEM, a certificate whose common name is not
    ``party``, one that is expired or not yet valid, or one the CA did not sign.
    """
    directory = Path(directory)
    cert_pem = _read(directory / f"{party}.pem", f"certificate of {party!r}")
    key_pem = _read(directory / f"{party}.key", f"key of {party!r}")
    ca_pem = _read(directory / CA_CERT, "CA certificate")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
        serialization.load_pem_private_key(key_pem, password=None)
    except ValueError as error:
        raise CertificateError(f"unreadable PEM in {directory} for {party!r}: {error}") from None
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [party]:
        raise CertificateError(f"{directory / (party + '.pem')} names {names}, not party {party!r}")
    now = dt.datetime.now(dt.timezone.utc)
    if now > cert.not_valid_after_utc:
        raise CertificateError(f"certificate of {party!r} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; "
                               f"issue a new one (`secsplit certs issue`)")
    if now < cert.not_valid_before_utc:
        raise CertificateError(f"certificate of {party!r} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception) as error:  # InvalidSignature has no common base beyond Exception
        raise CertificateError(f"certificate of {party!r} was not signed by {directory / CA_CERT} ({type(error).__name__})") from None
    return PartyCredentials(name=party, key=key_pem, certificate=cert_pem, ca=ca_pem)
