"""Serving the admission webhooks: an in-memory CA per operator process, the certificate it
signs (renewed in place), and the caBundle every replica's CA is published in.

Apart from ``admission`` (what the webhooks decide) and imported only by a process that serves
them: the ``cryptography`` package it needs is ~8 MB of resident memory that an operator without
webhooks (the default) would otherwise carry."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cutover.admission import Settings
from cutover.kube import Kube, KubeError

log = logging.getLogger("cutover.admission")

# The serving certificate is renewed well before it expires; the CA lives as long as the process.
CERT_DAYS = 30
CA_DAYS = 3650
# CAs kept in a caBundle: one per replica, and room for replicas that restarted recently.
MAX_CAS = 8
# How often a running operator makes sure its CA is still published (another replica's start,
# or someone re-applying the chart, may have dropped it).
REPUBLISH_SECONDS = 60.0


@dataclass(frozen=True)
class Certificates:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


class Authority:
    """An in-memory CA that signs the serving certificate; a new one on every operator start,
    so a private key never outlives the process that made it."""

    def __init__(self, now: dt.datetime | None = None) -> None:
        now = now or dt.datetime.now(dt.UTC)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = _name("cutover-webhook-ca")
        self.ca = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
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

    @property
    def ca_pem(self) -> bytes:
        return self.ca.public_bytes(serialization.Encoding.PEM)

    def issue(self, hosts: Sequence[str], now: dt.datetime | None = None) -> Certificates:
        now = now or dt.datetime.now(dt.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(hosts[0] if hosts else "cutover-webhook"))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return Certificates(
            ca_pem=self.ca.public_bytes(serialization.Encoding.PEM),
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            key_pem=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )


def write_certificates(directory: Path, certs: Certificates) -> Path:
    """Writes the serving key and certificate into one file, readable by the operator only, and
    replaces it in one step: Kopf's server reloads a changed file (that is how a renewal takes
    effect) and must never read a new key next to an old certificate."""
    target = directory / "tls.pem"
    staging = directory / "tls.pem.new"
    staging.unlink(missing_ok=True)
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(certs.key_pem + certs.cert_pem)
    os.replace(staging, target)
    return target


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
    pem = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in kept[:MAX_CAS])
    return base64.b64encode(pem).decode("ascii")


def has_ca(current: str | None, own: bytes) -> bool:
    if not current:
        return False
    try:
        certs = x509.load_pem_x509_certificates(base64.b64decode(current))
    except ValueError:
        return False
    return x509.load_pem_x509_certificate(own) in certs


WEBHOOK_KINDS = ("validatingwebhookconfigurations", "mutatingwebhookconfigurations")


async def publish_ca_bundle(kube: Kube, configuration: str, ca_pem: bytes) -> list[str]:
    """Puts this process's CA into every webhook's caBundle of the two configurations named
    ``configuration`` (a no-op where it is already there); returns the kinds it patched. A
    missing configuration is logged, not fatal: the chart may register only one of them."""
    patched = []
    for plural in WEBHOOK_KINDS:
        for _attempt in range(5):
            current = await kube.get(
                "admissionregistration.k8s.io", "v1", plural, None, configuration
            )
            if not current:
                log.warning(
                    "webhook configuration not found",
                    extra={"kind": plural, "configuration": configuration},
                )
                break
            webhooks = current.get("webhooks") or []
            bundles = [(w.get("clientConfig") or {}).get("caBundle") for w in webhooks]
            if all(has_ca(bundle, ca_pem) for bundle in bundles):
                break
            # Another replica may publish at the same moment: the test makes the later one
            # read again instead of dropping the other's CA.
            version = (current.get("metadata") or {}).get("resourceVersion")
            ops: list[dict[str, Any]] = [
                {"op": "test", "path": "/metadata/resourceVersion", "value": version}
            ]
            ops += [
                {
                    "op": "add",
                    "path": f"/webhooks/{index}/clientConfig/caBundle",
                    "value": merge_bundle(bundle, ca_pem),
                }
                for index, bundle in enumerate(bundles)
            ]
            try:
                await kube.patch(
                    "admissionregistration.k8s.io",
                    "v1",
                    plural,
                    None,
                    configuration,
                    ops,
                    patch_type="json",
                )
            except KubeError as error:
                log.info("webhook CA bundle raced, again", extra={"error": str(error)})
                continue
            patched.append(plural)
            break
    if patched:
        log.info(
            "webhook CA bundle published",
            extra={"configuration": configuration, "kinds": patched},
        )
    return patched


# --- what the Kopf layer calls ---


class Webhooks:
    """The serving certificate's life: issued at start, its CA published to the webhook
    configurations, renewed in place (Kopf's server reloads changed files) while running."""

    def __init__(self, settings: Settings, kube: Kube) -> None:
        self.settings = settings
        self._kube = kube
        self._authority = Authority()
        self._ca_pem = self._authority.ca_pem
        self._renewal: asyncio.Task[None] | None = None

    async def start(self) -> kopf.WebhookServer:
        certs = self._authority.issue(self.settings.hosts)
        pem = write_certificates(self.settings.directory, certs)
        await publish_ca_bundle(self._kube, self.settings.configuration, certs.ca_pem)
        self._renewal = asyncio.create_task(self._maintain())
        return kopf.WebhookServer(
            addr=self.settings.addr,
            port=self.settings.port,
            host=self.settings.hosts[0] if self.settings.hosts else None,
            certfile=pem,
            pkeyfile=pem,
        )

    async def _maintain(self) -> None:
        loop = asyncio.get_running_loop()
        # Halfway through its life, well before the API server would refuse it.
        renew_at = loop.time() + CERT_DAYS * 86400 / 2
        while True:
            await asyncio.sleep(REPUBLISH_SECONDS)
            if loop.time() >= renew_at:
                self.renew()
                renew_at = loop.time() + CERT_DAYS * 86400 / 2
            try:
                await publish_ca_bundle(self._kube, self.settings.configuration, self._ca_pem)
            except KubeError as error:
                log.warning("webhook CA bundle not checked", extra={"error": str(error)})

    def renew(self) -> Certificates:
        """A new serving certificate from the same CA: the published caBundle stays valid."""
        certs = self._authority.issue(self.settings.hosts)
        write_certificates(self.settings.directory, certs)
        log.info("webhook certificate renewed")
        return certs

    async def stop(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal
