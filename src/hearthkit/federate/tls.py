"""TLS for the coordinator's gRPC link: a self-signed certificate authority and a server certificate it signs.

Sites check the coordinator against the CA certificate (ca.pem) handed over with their config, so a machine in
between can neither read the weights nor pose as the coordinator. Sites are authenticated by their update
signatures (signing.py), not by client certificates.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from hearthkit.errors import HearthError

CA, CERT, KEY, CA_KEY = "ca.pem", "server.pem", "server.key", "ca.key"
DAYS = 825  # below the 825-day ceiling clients apply to server certificates


def _write(path: Path, data: bytes, private: bool) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _san(host: str):
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return x509.DNSName(host)


def make_tls(folder: Path, hosts: list[str]) -> Path:
    """Write a new CA and a server certificate for HOSTS (plus localhost and 127.0.0.1) into FOLDER; FOLDER/ca.pem."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = Path(folder)
    if (folder / CERT).exists() or (folder / CA).exists():
        raise HearthError(f"{folder}: already holds a certificate; sites trust its ca.pem — use another folder "
                          "or remove it knowingly")
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hearthkit federation CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=DAYS))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    names = list(dict.fromkeys([*hosts, "localhost", "127.0.0.1"]))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=DAYS))
            .add_extension(x509.SubjectAlternativeName([_san(h) for h in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    private = {"encoding": pem, "format": serialization.PrivateFormat.PKCS8,
               "encryption_algorithm": serialization.NoEncryption()}
    _write(folder / CA_KEY, ca_key.private_bytes(**private), True)
    _write(folder / KEY, key.private_bytes(**private), True)
    _write(folder / CERT, cert.public_bytes(pem), False)
    _write(folder / CA, ca.public_bytes(pem), False)  # last: its presence means the folder is complete
    return folder / CA


def server_certificates(folder: Path) -> tuple[bytes, bytes, bytes]:
    """(CA certificate, server certificate, server key) as Flower's start_server takes them."""
    try:
        return tuple((Path(folder) / n).read_bytes() for n in (CA, CERT, KEY))  # type: ignore[return-value]
    except OSError as exc:
        raise HearthError(f"{folder}: TLS files unreadable ({exc}); `hearth federate init-tls` writes them") from None
