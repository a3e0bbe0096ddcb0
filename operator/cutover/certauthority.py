"""The webhooks' certificate authority, run as a short-lived child process of the operator:
``python -m cutover.certauthority`` reads one JSON request on stdin and writes one answer.

Why a child: the ``cryptography`` package is ~8 MiB of resident memory once imported, and a
process never gives it back. The operator needs it at start, once per certificate renewal and
when a caBundle has to be merged; the child holds it for the second that takes.

Requests (PEMs as ASCII strings):

* ``{"op": "issue", "hosts": [...], "days": N, "ca": null | {"key": PEM, "cert": PEM}}``: a
  serving certificate for ``hosts``, valid ``days``, signed by ``ca`` (a new CA when null). Answers
  ``{"ca": {"key", "cert"}, "cert": PEM, "key": PEM}``.
* ``{"op": "merge", "own": PEM, "bundles": [base64 PEM bundle or null, ...]}``: each bundle
  with ``own`` first (``merge_bundle``). Answers ``{"bundles": [...]}``.

A failure exits non-zero with one line on stderr, never key material.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import sys
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The CA lives as long as the operator process that asked for it; the serving certificate as
# long as the request says (the operator renews it halfway).
CA_DAYS = 3650
# CAs kept in a caBundle: one per replica, and room for replicas that restarted recently.
MAX_CAS = 8

CA_NAME = "cutover-webhook-ca"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class Authority:
    """A CA that signs serving certificates: a new one (``Authority()``), or the operator's own
    brought back from its PEMs (``Authority.load``) so a renewal keeps the published CA."""

    def __init__(
        self,
        now: dt.datetime | None = None,
        *,
        key: ec.EllipticCurvePrivateKey | None = None,
        ca: x509.Certificate | None = None,
    ) -> None:
        if key is not None and ca is not None:
            self._key, self.ca = key, ca
            return
        now = now or dt.datetime.now(dt.UTC)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.ca = (
            x509.CertificateBuilder()
            .subject_name(_name(CA_NAME))
            .issuer_name(_name(CA_NAME))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
            .sign(self._key, hashes.SHA256())
        )

    @classmethod
    def load(cls, key_pem: bytes, ca_pem: bytes) -> Authority:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the CA key is not an EC key")
        return cls(key=key, ca=x509.load_pem_x509_certificate(ca_pem))

    @property
    def ca_pem(self) -> bytes:
        return _pem(self.ca)

    @property
    def key_pem(self) -> bytes:
        return _private_pem(self._key)

    def issue(
        self, hosts: Sequence[str], days: int, now: dt.datetime | None = None
    ) -> tuple[bytes, bytes]:
        """A serving certificate for ``hosts``, valid ``days``, and its key, as PEMs."""
        now = now or dt.datetime.now(dt.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(hosts[0] if hosts else "cutover-webhook"))
            .issuer_name(self.ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return _pem(cert), _private_pem(key)


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def merge_bundle(current: str | None, own: bytes, now: dt.datetime | None = None) -> str:
    """The caBundle (base64 PEM) with ``own`` CA first, then the other CAs already there that
    have not expired, at most ``MAX_CAS`` in all. Replicas each have a CA of their own and the
    API server may call any of them: a bundle of all of them, not the last one started. CAs of
    replicas that are gone drift to the end and fall off as live ones assert theirs again."""
    now = now or dt.datetime.now(dt.UTC)
    own_cert = x509.load_pem_x509_certificate(own)
    others: list[x509.Certificate] = []
    if current:
        try:
            others = x509.load_pem_x509_certificates(base64.b64decode(current))
        except ValueError:
            others = []  # unreadable: replaced by ours
    kept = [own_cert] + [
        cert for cert in others if cert != own_cert and cert.not_valid_after_utc > now
    ]
    pem = b"".join(_pem(cert) for cert in kept[:MAX_CAS])
    return base64.b64encode(pem).decode("ascii")


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """One request's answer (the module's docstring lists them)."""
    op = request.get("op")
    if op == "issue":
        ca = request.get("ca")
        authority = Authority.load(ca["key"].encode(), ca["cert"].encode()) if ca else Authority()
        hosts = [str(host) for host in request.get("hosts") or []]
        cert_pem, key_pem = authority.issue(hosts, int(request["days"]))
        return {
            "ca": {"key": authority.key_pem.decode(), "cert": authority.ca_pem.decode()},
            "cert": cert_pem.decode(),
            "key": key_pem.decode(),
        }
    if op == "merge":
        own = str(request["own"]).encode()
        return {"bundles": [merge_bundle(bundle, own) for bundle in request.get("bundles") or []]}
    raise ValueError(f"unknown operation {op!r}")


def main() -> int:
    try:
        reply = answer(json.load(sys.stdin))
    except Exception as error:  # the parent reports it: one line, no traceback
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    json.dump(reply, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
