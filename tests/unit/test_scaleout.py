"""How a process finds its shard and its peering priority, and which label a Migration gets."""

from __future__ import annotations

import zlib

import kopf
import pytest

from cutover.scaleout import (
    SHARD_LABEL,
    ConfigurationError,
    Shard,
    configure,
    peering_priority,
    shard_from_environment,
    shard_label_patch,
    shard_of,
)


def test_a_namespace_always_lands_on_the_same_shard() -> None:
    # crc32, not Python's salted hash: every process and every restart agrees.
    assert shard_of("shop", 3) == zlib.crc32(b"shop") % 3
    spread = {shard_of(f"team-{n}", 4) for n in range(40)}
    assert spread == {0, 1, 2, 3}


@pytest.mark.parametrize("shards", [2, 3, 4])
@pytest.mark.parametrize("pattern", ["team-{:02d}", "tenant-{:04d}", "ns-{}"])
def test_namespaces_numbered_in_sequence_spread_over_every_shard(shards: int, pattern: str) -> None:
    # Tenants are often numbered. A hash whose shard follows its top bits (the API server's
    # FNV-1a ranges, bench/shard_spread.py) puts all 60 of team-00..team-59 on one shard.
    names = [pattern.format(n) for n in range(60)]
    per_shard = [sum(shard_of(name, shards) == index for name in names) for index in range(shards)]
    assert min(per_shard) >= 0.5 * len(names) / shards, per_shard


def test_the_shard_comes_from_the_environment_or_the_statefulset_ordinal() -> None:
    assert shard_from_environment({}) is None
    assert shard_from_environment({"CUTOVER_SHARDS": "1"}) is None
    assert shard_from_environment({"CUTOVER_SHARDS": "3", "CUTOVER_SHARD": "2"}) == Shard(2, 3)
    assert shard_from_environment({"CUTOVER_SHARDS": "3", "POD_ID": "cutover-1"}) == Shard(1, 3)
    # An explicit shard wins over the pod name.
    env = {"CUTOVER_SHARDS": "3", "CUTOVER_SHARD": "0", "POD_ID": "cutover-2"}
    assert shard_from_environment(env) == Shard(0, 3)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"CUTOVER_SHARDS": "three"}, "CUTOVER_SHARDS must be a whole number >= 1"),
        ({"CUTOVER_SHARDS": "0"}, "CUTOVER_SHARDS must be a whole number >= 1"),
        ({"CUTOVER_SHARDS": "²"}, "CUTOVER_SHARDS must be a whole number >= 1"),
        ({"CUTOVER_SHARDS": "3", "CUTOVER_SHARD": "3"}, "not one of 0..2"),
        ({"CUTOVER_SHARDS": "3", "CUTOVER_SHARD": "-1"}, "CUTOVER_SHARD must be a whole number"),
        ({"CUTOVER_SHARDS": "3", "POD_ID": "cutover-7"}, "not one of 0..2"),
        ({"CUTOVER_SHARDS": "3", "POD_ID": "cutover-abc"}, "which shard"),
    ],
)
def test_a_malformed_shard_setting_is_refused(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        shard_from_environment(env)


def test_the_older_process_has_the_higher_peering_priority() -> None:
    older = peering_priority({}, started=1_800_000_000.0)
    younger = peering_priority({}, started=1_800_000_000.5)
    assert older > younger > 0
    assert peering_priority({"CUTOVER_PEERING_PRIORITY": "7"}) == 7
    with pytest.raises(ConfigurationError, match="integer"):
        peering_priority({"CUTOVER_PEERING_PRIORITY": "high"})


def test_configure_sets_kopf_peering_and_the_migration_selector() -> None:
    settings = kopf.OperatorSettings()
    shard = configure(
        settings,
        {"CUTOVER_SHARDS": "2", "CUTOVER_SHARD": "1", "CUTOVER_PEERING_LIFETIME": "15"},
    )
    assert shard == Shard(1, 2)
    assert settings.peering.lifetime == 15
    assert settings.peering.priority > 0
    assert list(settings.watching.label_selectors.values()) == [f"{SHARD_LABEL}=1"]
    unsharded = kopf.OperatorSettings()
    assert configure(unsharded, {}) is None
    assert list(unsharded.watching.label_selectors.values()) == []
    with pytest.raises(ConfigurationError, match="seconds"):
        configure(kopf.OperatorSettings(), {"CUTOVER_PEERING_LIFETIME": "1"})


def test_a_migration_gets_the_label_of_its_namespace_shard_unless_it_has_a_valid_one() -> None:
    want = {SHARD_LABEL: str(shard_of("shop", 3))}
    assert shard_label_patch("shop", None, 3) == want
    assert shard_label_patch("shop", {"app": "x"}, 3) == want
    # A label naming no live shard (the count shrank, or a typo) would hide it from every shard.
    assert shard_label_patch("shop", {SHARD_LABEL: "5"}, 3) == want
    assert shard_label_patch("shop", {SHARD_LABEL: "two"}, 3) == want
    # A valid label is the owner's choice (moving a Migration between shards), kept as it is.
    assert shard_label_patch("shop", {SHARD_LABEL: "2"}, 3) is None
    assert shard_label_patch("shop", None, 1) is None


def test_a_migration_gone_since_the_list_does_not_stop_the_others_being_labelled() -> None:
    """A Migration whose namespace is being deleted is still listed, but its PATCH is a 404:
    the sweep labels the rest (it used to give up, and no shard saw the others' runs)."""
    import asyncio
    from typing import Any, cast

    from cutover.kube import Kube, KubeError
    from cutover.scaleout import LabelSweeper, Shard

    class Cluster:
        def __init__(self) -> None:
            self.labelled: list[str] = []

        async def list(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
            return [
                {"metadata": {"namespace": "gone", "name": "a"}},
                {"metadata": {"namespace": "shop", "name": "b"}},
            ]

        async def patch(
            self, group: str, version: str, plural: str, ns: str, name: str, body: Any
        ) -> None:
            if ns == "gone":
                raise KubeError('namespaces "gone" not found', status=404)
            self.labelled.append(name)

    cluster = Cluster()
    sweeper = LabelSweeper(cast(Kube, cluster), Shard(index=0, count=3), None)
    assert asyncio.run(sweeper.sweep()) == 1
    assert cluster.labelled == ["b"]
