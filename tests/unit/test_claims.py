"""Two Migrations never drive the same Deployment at once (core/claims.py)."""

from __future__ import annotations

from cutover.api import Phase
from cutover.core.claims import Claimant, claimant, conflicts

from .specs import raw

SHOP = frozenset({"checkout-blue", "checkout-green"})  # the deployments of specs.raw()


def migration(
    name: str,
    phase: Phase,
    *,
    created: str = "2026-01-01T00:00:00Z",
    deployments: frozenset[str] | None = SHOP,
    deleting: bool = False,
) -> Claimant:
    return Claimant(name, f"uid-{name}", created, deleting, phase, deployments)


def check(me: Claimant, *others: Claimant) -> list[str]:
    return conflicts(me.uid, me.name, "shop", sorted(SHOP), [me, *others])


def test_a_running_migration_claims_its_deployments_and_says_which() -> None:
    me = migration("new", Phase.pending, created="2026-01-02T00:00:00Z")

    for phase in (Phase.progressing, Phase.paused, Phase.rolling_back):
        assert check(me, migration("old", phase)) == [
            f"Deployment shop/checkout-blue is already claimed by Migration old ({phase.value})",
            f"Deployment shop/checkout-green is already claimed by Migration old ({phase.value})",
        ]


def test_only_the_shared_deployment_is_named() -> None:
    me = migration("new", Phase.pending, created="2026-01-02T00:00:00Z")
    other = migration("old", Phase.progressing, deployments=frozenset({"checkout-green", "x"}))

    assert check(me, other) == [
        "Deployment shop/checkout-green is already claimed by Migration old (Progressing)"
    ]


def test_of_two_pending_migrations_the_older_starts_and_a_name_breaks_a_tie() -> None:
    older = migration("a", Phase.pending, created="2026-01-01T00:00:00Z")
    newer = migration("b", Phase.pending, created="2026-01-01T00:00:01Z")
    assert check(older, newer) == [] and len(check(newer, older)) == 2

    same_a = migration("a", Phase.pending)
    same_b = migration("b", Phase.pending)
    assert check(same_a, same_b) == [] and len(check(same_b, same_a)) == 2


def test_ended_deleted_and_invalid_migrations_claim_nothing() -> None:
    me = migration("new", Phase.pending, created="2026-01-02T00:00:00Z")
    for phase in (Phase.succeeded, Phase.rolled_back, Phase.failed):
        assert check(me, migration("old", phase)) == []
    assert check(me, migration("old", Phase.progressing, deleting=True)) == []
    assert check(me, migration("old", Phase.progressing, deployments=None)) == []


def test_without_its_own_entry_in_the_list_only_running_migrations_count() -> None:
    # Just created and not yet in the list: a Pending neighbour cannot be shown to be older.
    me = migration("new", Phase.pending)
    pending = migration("old", Phase.pending, created="2020-01-01T00:00:00Z")
    assert conflicts(me.uid, me.name, "shop", sorted(SHOP), [pending]) == []
    running = migration("old", Phase.progressing)
    assert len(conflicts(me.uid, me.name, "shop", sorted(SHOP), [running])) == 2


def test_every_other_migration_is_weighed_whatever_the_order_of_the_list() -> None:
    me = migration("b", Phase.pending, created="2026-01-02T00:00:00Z")
    younger = migration("c", Phase.pending, created="2026-01-03T00:00:00Z")
    invalid = migration("d", Phase.progressing, deployments=None)
    running = migration("a", Phase.progressing)
    for listed in ([younger, invalid, running], [invalid, younger, running]):
        found = conflicts(me.uid, me.name, "shop", sorted(SHOP), [me, *listed])
        assert found and all("Migration a (Progressing)" in line for line in found), listed


def test_age_is_this_migrations_own_not_the_first_listed() -> None:
    late = migration("z", Phase.succeeded, created="2026-12-31T00:00:00Z", deployments=None)
    me = migration("a", Phase.pending, created="2026-01-01T00:00:00Z")
    younger = migration("b", Phase.pending, created="2026-01-02T00:00:00Z")

    assert conflicts(me.uid, me.name, "shop", sorted(SHOP), [late, me, younger]) == []


def test_a_migration_as_the_api_returns_it_is_read_field_by_field() -> None:
    obj = {
        "metadata": {
            "name": "orders",
            "uid": "u-1",
            "creationTimestamp": "2026-01-03T00:00:00Z",
            "deletionTimestamp": "2026-01-04T00:00:00Z",
        },
        "spec": raw(),
        "status": {"phase": "Paused"},
    }
    assert claimant(obj) == Claimant(
        name="orders",
        uid="u-1",
        created="2026-01-03T00:00:00Z",
        deleting=True,
        phase=Phase.paused,
        deployments=SHOP,
    )


def test_what_cannot_be_read_claims_as_little_as_it_may() -> None:
    # No status yet, a phase this version does not know, an invalid spec, no metadata at all.
    assert claimant({"spec": raw()}) == Claimant("", "", "", False, Phase.pending, SHOP)
    unknown = claimant({"metadata": {"name": "x"}, "spec": raw(), "status": {"phase": "Baking"}})
    assert unknown.phase is Phase.pending and unknown.deleting is False
    invalid = claimant({"metadata": {"name": "x"}, "spec": {"blue": {}}, "status": {}})
    assert invalid.deployments is None
    assert claimant({}).deployments is None
