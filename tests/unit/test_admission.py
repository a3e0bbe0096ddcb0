"""The admission rules: field-path errors for bad specs, and an author annotation only the
webhook writes (the webhook server itself is exercised in tests/integration/test_admission.py)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import kopf
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cutover.admission import (
    Author,
    Rejected,
    Rejection,
    Settings,
    check_author,
    mutate_author,
    review_mutate,
    review_validate,
    validate_spec,
)
from cutover.api import AUTHOR_ANNOTATION
from cutover.certauthority import CA_DAYS, MAX_CAS, Authority, merge_bundle
from cutover.kube import KubeError
from cutover.scaleout import SHARD_LABEL, shard_of
from cutover.webcerts import (
    WEBHOOK_KINDS,
    AuthorityError,
    AuthorityProcess,
    Webhooks,
    has_ca,
    publish_ca_bundle,
    write_certificates,
)

from .specs import raw

ALICE = {"username": "alice", "groups": ["devs", "system:authenticated"]}
BOB = {"username": "bob", "groups": ["system:authenticated"]}


def body(
    spec: dict[str, Any] | None = None, author: str | None = None, **annotations: str
) -> dict[str, Any]:
    if author is not None:
        annotations[AUTHOR_ANNOTATION] = author
    return {"metadata": {"name": "m", "annotations": annotations}, "spec": spec or raw()}


def alice() -> str:
    return Author.from_userinfo(ALICE).encode()


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"steps": [{"setWeight": 50}, {"setWeight": 10}]}, "spec.steps"),
        ({"traffic": {"router": "carrier-pigeon", "service": "s"}}, "spec.traffic.router"),
        ({"progressDeadline": "ten minutes"}, "spec.progressDeadline"),
    ],
)
def test_a_bad_spec_is_refused_with_its_field_path(changes: dict[str, Any], path: str) -> None:
    with pytest.raises(Rejected) as caught:
        validate_spec(body(raw(**changes)))
    assert caught.value.reason is Rejection.invalid_spec
    assert path in str(caught.value)


def test_a_good_spec_passes() -> None:
    validate_spec(body())


def test_create_records_the_requester() -> None:
    value = mutate_author("CREATE", ALICE, None, body())
    assert Author.decode(value) == Author("alice", ("devs", "system:authenticated"))


def test_a_spec_change_records_the_new_author() -> None:
    old = body(author=alice())
    new = body(raw(paused=True), author=alice())
    assert Author.decode(mutate_author("UPDATE", BOB, old, new)) == Author(
        "bob", ("system:authenticated",)
    )


def test_a_metadata_only_update_keeps_the_recorded_author() -> None:
    old = body(author=alice())
    new = body(author=alice(), **{"cutover.io/request": "abort:1"})
    assert mutate_author("UPDATE", BOB, old, new) is None
    check_author("UPDATE", BOB, old, new)


def test_an_annotation_dropped_by_a_metadata_update_is_put_back() -> None:
    old = body(author=alice())
    assert mutate_author("UPDATE", BOB, old, body()) == alice()


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
def test_a_user_set_author_is_refused(operation: str) -> None:
    forged = Author("admin", ("system:masters",)).encode()
    old = body(author=alice()) if operation == "UPDATE" else None
    with pytest.raises(Rejected) as caught:
        mutate_author(operation, BOB, old, body(author=forged))
    assert caught.value.reason is Rejection.author_set_by_user
    with pytest.raises(Rejected):
        check_author(operation, BOB, old, body(author=forged))


def test_validation_alone_refuses_an_author_that_is_not_the_spec_changer() -> None:
    # e.g. another mutating webhook ran after ours: the final object is what counts.
    old = body(author=alice())
    with pytest.raises(Rejected):
        check_author("UPDATE", BOB, old, body(raw(paused=True), author=alice()))


def test_kopf_handlers_answer_with_an_admission_error_and_a_patch() -> None:
    with pytest.raises(kopf.AdmissionError) as caught:
        review_validate("CREATE", ALICE, None, body(raw(steps=[]), author=alice()))
    assert "spec.steps" in str(caught.value)
    patch = kopf.Patch()
    review_mutate("CREATE", ALICE, None, body(), patch)
    assert patch["metadata"]["annotations"][AUTHOR_ANNOTATION] == alice()


def test_with_shards_the_mutating_webhook_labels_a_migration_with_its_shard(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    new = body()
    new["metadata"]["namespace"] = "shop"
    patch = kopf.Patch()
    review_mutate("CREATE", ALICE, None, new, patch)
    assert "labels" not in patch["metadata"]  # no shards: no label
    monkeypatch.setenv("CUTOVER_SHARDS", "4")
    patch = kopf.Patch()
    review_mutate("CREATE", ALICE, None, new, patch)
    assert patch["metadata"]["labels"] == {SHARD_LABEL: str(shard_of("shop", 4))}


@pytest.mark.parametrize("raw_value", [None, "", "not json", '{"groups": []}', '{"username": 1}'])
def test_an_unreadable_author_is_no_author(raw_value: str | None) -> None:
    assert Author.decode(raw_value) is None


def test_the_serving_certificate_verifies_against_the_published_ca(tmp_path: Path) -> None:
    certs = asyncio.run(AuthorityProcess().issue(["cutover-webhook.ns.svc", "127.0.0.1"]))
    handshake(write_certificates(tmp_path, certs), certs.ca_pem)


def test_a_renewed_certificate_replaces_the_file_and_keeps_the_ca(tmp_path: Path) -> None:
    settings = Settings(9443, "127.0.0.1", ("cutover-webhook.ns.svc",), "cutover", tmp_path)
    webhooks = Webhooks(settings, kube=None)  # type: ignore[arg-type]
    first = asyncio.run(webhooks.renew())
    before = (tmp_path / "tls.pem").read_bytes()
    second = asyncio.run(webhooks.renew())
    assert (tmp_path / "tls.pem").read_bytes() != before
    assert second.ca_pem == first.ca_pem
    handshake(tmp_path / "tls.pem", first.ca_pem)


def test_an_operator_serving_webhooks_never_loads_cryptography(tmp_path: Path) -> None:
    """~8 MiB of resident memory a process never gives back: only the CA's child loads it."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        from cutover.webcerts import AuthorityProcess
        authority = AuthorityProcess()
        certs = asyncio.run(authority.issue(["a.svc"]))
        asyncio.run(authority.merge(certs.ca_pem, [None]))
        print("cryptography" in sys.modules, certs.cert_pem.startswith(b"-----BEGIN"))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == ["False", "True"]


def test_a_failing_authority_says_why() -> None:
    with pytest.raises(AuthorityError, match="exit code 1: ValueError"):
        asyncio.run(AuthorityProcess().merge(b"not a certificate", [None]))


def test_a_bundle_has_the_ca_only_when_one_of_its_certificates_is_it() -> None:
    own, other = Authority().ca_pem, Authority().ca_pem
    assert has_ca(merge_bundle(merge_bundle(None, own), other), own)
    assert not has_ca(merge_bundle(None, other), own)
    for unreadable in (None, "", "not base64!", base64.b64encode(b"no pem").decode()):
        assert not has_ca(unreadable, own)


def handshake(pem: Path, ca_pem: bytes) -> None:
    """A TLS handshake with the server's file against a client trusting only ``ca_pem``."""
    assert pem.stat().st_mode & 0o077 == 0
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pem, pem)  # how Kopf's server loads it
    client = ssl.create_default_context(cadata=ca_pem.decode())
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(incoming, outgoing, server_hostname="cutover-webhook.ns.svc")
    s = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):  # drive the handshake by hand: no sockets needed
        for side in (c, s):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(outgoing.read())
        incoming.write(s_out.read())
    assert c.version() is not None


def pems(bundle: str) -> list[bytes]:
    certs = x509.load_pem_x509_certificates(base64.b64decode(bundle))
    return [c.public_bytes(serialization.Encoding.PEM) for c in certs]


def test_every_replica_keeps_its_ca_in_the_bundle() -> None:
    first, second = Authority().ca_pem, Authority().ca_pem
    bundle = merge_bundle(None, first)
    bundle = merge_bundle(bundle, second)
    assert pems(bundle) == [second, first]  # the newest first, the other replica's kept
    assert pems(merge_bundle(bundle, first)) == [first, second]  # asserting again: no duplicate


def test_the_bundle_drops_expired_and_old_cas() -> None:
    now = dt.datetime.now(dt.UTC)
    expired = Authority(now - dt.timedelta(days=CA_DAYS + 1)).ca_pem
    many = [Authority().ca_pem for _ in range(MAX_CAS + 2)]
    bundle = merge_bundle(None, expired, now=now - dt.timedelta(days=CA_DAYS + 2))
    for ca in many:
        bundle = merge_bundle(bundle, ca)
    assert expired not in pems(bundle)
    assert pems(bundle) == many[::-1][:MAX_CAS]


class FakeConfigurations:
    """Two webhook configurations; the first patch loses a race once if asked to."""

    def __init__(self, bundle: str | None = None, race: bool = False) -> None:
        self.objects = {
            kind: {
                "metadata": {"resourceVersion": "1"},
                "webhooks": [{"clientConfig": {"caBundle": bundle} if bundle else {}}],
            }
            for kind in WEBHOOK_KINDS
        }
        self.race = race
        self.patches = 0

    async def get(self, *args: Any) -> dict[str, Any] | None:
        return json.loads(json.dumps(self.objects[args[2]]))

    async def patch(self, *args: Any, patch_type: str) -> dict[str, Any]:
        if self.race:
            self.race = False
            raise KubeError("the test operation failed", status=422)
        obj = self.objects[args[2]]
        for op in args[5]:
            if op["op"] == "add":
                obj["webhooks"][0]["clientConfig"]["caBundle"] = op["value"]
        self.patches += 1
        return obj


def test_publishing_retries_a_race_and_skips_a_bundle_that_has_the_ca() -> None:
    ca, authority = Authority().ca_pem, AuthorityProcess()
    kube = FakeConfigurations(race=True)
    published = publish_ca_bundle(kube, "cutover", ca, authority)  # type: ignore[arg-type]
    assert asyncio.run(published) == list(WEBHOOK_KINDS)
    assert kube.patches == 2
    for obj in kube.objects.values():
        assert pems(obj["webhooks"][0]["clientConfig"]["caBundle"]) == [ca]
    again = publish_ca_bundle(kube, "cutover", ca, authority)  # type: ignore[arg-type]
    assert asyncio.run(again) == []
    assert kube.patches == 2
