"""Serving the admission webhooks: a CA per operator process, the certificate it signs
(renewed in place), and the caBundle every replica's CA is published in.

Apart from ``admission`` (what the webhooks decide) and imported only by a process that serves
them. The cryptography itself runs in a short-lived child process (``cutover.certauthority``):
the ``cryptography`` package is ~8 MiB of resident memory that a long-lived operator would
otherwise carry for the few seconds of its life it needs it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf

from cutover.admission import Settings
from cutover.kube import Kube, KubeError

log = logging.getLogger("cutover.admission")

# The serving certificate's life (cutover.certauthority issues it for this long); it is renewed
# halfway through.
CERT_DAYS = 30
# How often a running operator makes sure its CA is still published (another replica's start,
# or someone re-applying the chart, may have dropped it).
REPUBLISH_SECONDS = 60.0
# A child that has not answered by then is killed: an issue or a merge takes well under a second.
AUTHORITY_TIMEOUT = 60.0


@dataclass(frozen=True)
class Certificates:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


class AuthorityError(RuntimeError):
    """The certificate authority's child process failed (its one line of stderr says why)."""


class AuthorityProcess:
    """This operator's CA, its operations each run by ``python -m cutover.certauthority``. The
    CA is made by the first ``issue`` and kept here (its key in this process's memory only, as
    a PEM), so every later certificate is signed by the CA already published."""

    def __init__(self) -> None:
        self._ca: dict[str, str] | None = None

    @property
    def ca_pem(self) -> bytes:
        """The CA's certificate (PEM); empty before the first ``issue`` makes the CA."""
        return self._ca["cert"].encode() if self._ca else b""

    async def issue(self, hosts: Sequence[str]) -> Certificates:
        reply = await self._call(
            {"op": "issue", "hosts": list(hosts), "days": CERT_DAYS, "ca": self._ca}
        )
        self._ca = {"key": str(reply["ca"]["key"]), "cert": str(reply["ca"]["cert"])}
        return Certificates(
            ca_pem=self.ca_pem,
            cert_pem=str(reply["cert"]).encode(),
            key_pem=str(reply["key"]).encode(),
        )

    async def merge(self, own: bytes, bundles: Sequence[str | None]) -> list[str]:
        """Each caBundle with ``own`` first (``certauthority.merge_bundle``)."""
        reply = await self._call({"op": "merge", "own": own.decode(), "bundles": list(bundles)})
        return [str(bundle) for bundle in reply["bundles"]]

    async def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cutover.certauthority",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(
                child.communicate(json.dumps(request).encode()), AUTHORITY_TIMEOUT
            )
        except TimeoutError:
            child.kill()
            await child.wait()
            raise AuthorityError(f"no answer within {AUTHORITY_TIMEOUT:g}s") from None
        if child.returncode != 0:
            reason = err.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            raise AuthorityError(f"exit code {child.returncode}: {reason[0]}")
        try:
            reply: dict[str, Any] = json.loads(out)
        except ValueError:
            raise AuthorityError("an answer that is not JSON") from None
        return reply


_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL
)


def _certificates_in(pem: bytes) -> list[bytes]:
    """The DER of every certificate in a PEM bundle; ValueError for one that is unreadable."""
    return [ssl.PEM_cert_to_DER_cert(m.group().decode()) for m in _PEM_CERTIFICATE.finditer(pem)]


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


def has_ca(current: str | None, own: bytes) -> bool:
    """Whether the caBundle ``current`` (base64 PEM) holds the CA ``own`` (PEM). Read with the
    standard library: this check runs every minute, a merge only when it says no."""
    if not current:
        return False
    try:
        return ssl.PEM_cert_to_DER_cert(own.decode()) in _certificates_in(base64.b64decode(current))
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors too
        return False


WEBHOOK_KINDS = ("validatingwebhookconfigurations", "mutatingwebhookconfigurations")


async def publish_ca_bundle(
    kube: Kube, configuration: str, ca_pem: bytes, authority: AuthorityProcess
) -> list[str]:
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
            merged = await authority.merge(ca_pem, bundles)
            ops += [
                {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": bundle}
                for index, bundle in enumerate(merged)
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
        self._authority = AuthorityProcess()
        self._renewal: asyncio.Task[None] | None = None

    async def start(self) -> kopf.WebhookServer:
        certs = await self._authority.issue(self.settings.hosts)
        pem = write_certificates(self.settings.directory, certs)
        await self._publish()
        self._renewal = asyncio.create_task(self._maintain())
        return kopf.WebhookServer(
            addr=self.settings.addr,
            port=self.settings.port,
            host=self.settings.hosts[0] if self.settings.hosts else None,
            certfile=pem,
            pkeyfile=pem,
        )

    async def _publish(self) -> list[str]:
        return await publish_ca_bundle(
            self._kube, self.settings.configuration, self._authority.ca_pem, self._authority
        )

    async def _maintain(self) -> None:
        loop = asyncio.get_running_loop()
        # Halfway through its life, well before the API server would refuse it.
        renew_at = loop.time() + CERT_DAYS * 86400 / 2
        while True:
            await asyncio.sleep(REPUBLISH_SECONDS)
            try:
                if loop.time() >= renew_at:
                    await self.renew()
                    renew_at = loop.time() + CERT_DAYS * 86400 / 2
                await self._publish()
            except (KubeError, AuthorityError) as error:
                # The certificate in use is valid for half its life yet: next minute, again.
                log.warning("webhook certificate not maintained", extra={"error": str(error)})

    async def renew(self) -> Certificates:
        """A new serving certificate from the same CA: the published caBundle stays valid."""
        certs = await self._authority.issue(self.settings.hosts)
        write_certificates(self.settings.directory, certs)
        log.info("webhook certificate renewed")
        return certs

    async def stop(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal
