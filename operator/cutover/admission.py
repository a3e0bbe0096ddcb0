"""Admission: the rules the operator's webhooks apply (serving them: ``cutover.webcerts``).

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

import enum
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf

from cutover import api, environment
from cutover.scaleout import shard_count, shard_label_patch

log = logging.getLogger("cutover.admission")

# The webhook configurations' paths: Kopf serves handler ``id`` at ``/<id>``.
VALIDATE_ID = "validate-migration"
MUTATE_ID = "mutate-migration"


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
    def from_environment(cls, environ: Mapping[str, str]) -> Settings | None:
        port = environment.port(environ, "CUTOVER_WEBHOOK_PORT")
        if port is None:
            return None
        hosts = environ.get("CUTOVER_WEBHOOK_HOSTS") or "localhost,127.0.0.1"
        return cls(
            port=port,
            addr=environ.get("CUTOVER_WEBHOOK_ADDR") or "0.0.0.0",
            hosts=tuple(h.strip() for h in hosts.split(",") if h.strip()),
            configuration=environ.get("CUTOVER_WEBHOOK_CONFIGURATION") or "cutover",
            directory=Path(tempfile.mkdtemp(prefix="cutover-webhook-")),
        )


def enabled() -> bool:
    """Whether this operator process serves admission webhooks (decided at import time)."""
    return bool(os.environ.get("CUTOVER_WEBHOOK_PORT"))


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
    """The mutating webhook: records the spec's author, puts the operator's finalizer on a new
    Migration and, with shards, adds the Migration's shard label (so that the process owning
    it sees it at once)."""
    try:
        value = mutate_author(operation, userinfo, old, new)
    except Rejected as error:
        raise kopf.AdmissionError(str(error), code=422) from None
    if value is not None:
        patch.setdefault("metadata", {}).setdefault("annotations", {})[api.AUTHOR_ANNOTATION] = (
            value
        )
    meta = new.get("metadata") or {}
    finalizers = list(meta.get("finalizers") or [])
    if operation == "CREATE" and api.FINALIZER not in finalizers:
        # On from the first instant: a new run waits for it before any write (Reconciler.drive),
        # and Kopf, finding it there, sends no PATCH of its own (a request and a round trip).
        patch.setdefault("metadata", {})["finalizers"] = [*finalizers, api.FINALIZER]
    shard = shard_label_patch(
        str(meta.get("namespace") or ""), meta.get("labels"), shard_count(os.environ)
    )
    if shard is not None:
        patch.setdefault("metadata", {}).setdefault("labels", {}).update(shard)
