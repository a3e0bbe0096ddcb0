"""Admission: the rules the operator's webhooks apply, its serving certificate, its CA bundle.

Two webhooks, both served by the operator (Kopf's ``@kopf.on.validate``/``@kopf.on.mutate``):

- **mutate** records who created or last changed a Migration's spec (the admission request's
  userInfo) in ``cutover.io/author``; metadata-only updates keep the recorded author;
- **validate** rejects a spec the pydantic models reject (with the field paths ``cutover lint``
  prints), and any author annotation that is not exactly what ``mutate`` would have written.

The operator trusts the annotation (to act with the author's rights, cutover.authority) only
because the validating webhook guarantees it. Both webhooks are opt-in for the process:
``CUTOVER_WEBHOOK_PORT`` turns them on (the chart's ``admission.enabled`` sets it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import enum
import ipaddress
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cutover import api
from cutover.kube import Kube, KubeError
from cutover.scaleout import shard_count, shard_label_patch

log = logging.getLogger("cutover.admission")

# The webhook configurations' paths: Kopf serves handler ``id`` at ``/<id>``.
VALIDATE_ID = "validate-migration"
MUTATE_ID = "mutate-migration"
# The serving certificate is renewed well before it expires; the CA lives as long as the process.
CERT_DAYS = 30
CA_DAYS = 3650
# CAs kept in a caBundle: one per replica, and room for replicas that restarted recently.
MAX_CAS = 8
# How often a running operator makes sure its CA is still published (another replica's start,
# or someone re-applying the chart, may have dropped it).
REPUBLISH_SECONDS = 60.0


class Rejection(enum.StrEnum):
    """Why admission refused a request (the first word of the message a user sees)."""

    invalid_spec = "InvalidSpec"
    author_set_by_user = "AuthorSetByUser"


class Rejected(Exception):
    def __init__(self, reason: Rejection, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class Author:
    """Who created or last changed a Migration's spec, as the API server authenticated them."""

    username: str
    groups: tuple[str, ...] = ()

    def encode(self) -> str:
        return json.dumps({"username": self.username, "groups": list(self.groups)}, sort_keys=True)

    @classmethod
    def decode(cls, raw: str | None) -> Author | None:
        """The recorded author, or None when the annotation is absent or unreadable."""
        if not raw:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("username"), str):
            return None
        groups = data.get("groups") or []
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            return None
        return cls(data["username"], tuple(groups))

    @classmethod
    def from_userinfo(cls, userinfo: Mapping[str, Any]) -> Author:
        return cls(str(userinfo.get("username") or ""), tuple(userinfo.get("groups") or ()))


def _annotation(body: Mapping[str, Any] | None) -> str | None:
    if not body:
        return None
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(api.AUTHOR_ANNOTATION)
    return None if value is None else str(value)


def _spec_changed(operation: str, old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    return (
        operation == "CREATE" or old is None or (old.get("spec") or {}) != (new.get("spec") or {})
    )


def validate_spec(body: Mapping[str, Any]) -> None:
    """Rejects what the reconciler would mark InvalidSpec, with the same field paths."""
    try:
        api.parse_spec(body.get("spec") or {})
    except api.SpecInvalid as error:
        raise Rejected(Rejection.invalid_spec, "; ".join(error.problems)) from None


def author_for(
    operation: str,
    userinfo: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any],
) -> str | None:
    """The annotation value the object must carry after this request (None: none at all)."""
    if _spec_changed(operation, old, new):
        return Author.from_userinfo(userinfo).encode()
    return _annotation(old)


def mutate_author(
    operation: str,
    userinfo: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any],
) -> str | None:
    """The value ``mutate`` writes, or None when the request already carries the right one.

    A request that sets the annotation itself (to anything but what is recorded) is refused,
    not silently corrected: the user learns the field is not theirs to write.
    """
    given = _annotation(new)
    recorded = _annotation(old) if operation != "CREATE" else None
    wanted = author_for(operation, userinfo, old, new)
    if given is not None and given != recorded and given != wanted:
        raise Rejected(
            Rejection.author_set_by_user,
            f"metadata.annotations[{api.AUTHOR_ANNOTATION!r}] is written by the admission webhook"
            " only; leave it out or unchanged",
        )
    return None if given == wanted else wanted


def check_author(
    operation: str,
    userinfo: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any],
) -> None:
    """The final object carries exactly the author ``mutate`` decides (whatever ran after it)."""
    if _annotation(new) != author_for(operation, userinfo, old, new):
        raise Rejected(
            Rejection.author_set_by_user,
            f"metadata.annotations[{api.AUTHOR_ANNOTATION!r}] does not match the author of the"
            " spec; it is written by the admission webhook only",
        )


# --- the webhook server's certificate and the CA bundle the API server verifies it with ---


@dataclass(frozen=True)
class Settings:
    """The operator's webhook settings, from its environment (the chart sets them)."""

    port: int
    addr: str
    hosts: tuple[str, ...]  # names and IPs the API server reaches the operator at
    configuration: str  # the Validating/MutatingWebhookConfiguration whose caBundle we own
    directory: Path

    @classmethod
    def from_environment(cls) -> Settings | None:
        port = os.environ.get("CUTOVER_WEBHOOK_PORT")
        if not port:
            return None
        hosts = os.environ.get("CUTOVER_WEBHOOK_HOSTS") or "localhost,127.0.0.1"
        return cls(
            port=int(port),
            addr=os.environ.get("CUTOVER_WEBHOOK_ADDR") or "0.0.0.0",
            hosts=tuple(h.strip() for h in hosts.split(",") if h.strip()),
            configuration=os.environ.get("CUTOVER_WEBHOOK_CONFIGURATION") or "cutover",
            directory=Path(tempfile.mkdtemp(prefix="cutover-webhook-")),
        )


def enabled() -> bool:
    """Whether this operator process serves admission webhooks (decided at import time)."""
    return bool(os.environ.get("CUTOVER_WEBHOOK_PORT"))


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


WEBHOOK_KINDS = ("validatingwebhookconfigurations", "mutatingwebhookconfigurations")


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


def _has_ca(current: str | None, own: bytes) -> bool:
    if not current:
        return False
    try:
        certs = x509.load_pem_x509_certificates(base64.b64decode(current))
    except ValueError:
        return False
    return x509.load_pem_x509_certificate(own) in certs


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
            if all(_has_ca(bundle, ca_pem) for bundle in bundles):
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


def review_validate(
    operation: str,
    userinfo: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any],
) -> None:
    """The validating webhook: a bad spec or a forged author is refused (HTTP 422 in the
    AdmissionReview, which kubectl prints with the message)."""
    try:
        validate_spec(new)
        check_author(operation, userinfo, old, new)
    except Rejected as error:
        raise kopf.AdmissionError(str(error), code=422) from None


def review_mutate(
    operation: str,
    userinfo: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any],
    patch: kopf.Patch,
) -> None:
    """The mutating webhook: records the spec's author and, with shards, the Migration's
    shard label (so that the process owning it sees it at once)."""
    try:
        value = mutate_author(operation, userinfo, old, new)
    except Rejected as error:
        raise kopf.AdmissionError(str(error), code=422) from None
    if value is not None:
        patch.setdefault("metadata", {}).setdefault("annotations", {})[api.AUTHOR_ANNOTATION] = (
            value
        )
    meta = new.get("metadata") or {}
    shard = shard_label_patch(
        str(meta.get("namespace") or ""), meta.get("labels"), shard_count(os.environ)
    )
    if shard is not None:
        patch.setdefault("metadata", {}).setdefault("labels", {}).update(shard)


WebhookServer = kopf.WebhookServer


class Webhooks:
    """The serving certificate's life: issued at start, its CA published to the webhook
    configurations, renewed in place (Kopf's server reloads changed files) while running."""

    def __init__(self, settings: Settings, kube: Kube) -> None:
        self.settings = settings
        self._kube = kube
        self._authority = Authority()
        self._ca_pem = self._authority.ca.public_bytes(serialization.Encoding.PEM)
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
