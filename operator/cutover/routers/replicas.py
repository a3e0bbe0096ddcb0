"""The replicas router: one Service selects blue's and green's pods; pods share the traffic.

Green's share follows the replica split of a fixed total (blue's size at the start) as computed
by ``replica_split``. Only ``spec.replicas`` of the two Deployments is written, with strategic
merge patches, always growing one side before shrinking the other so that capacity is added
before it is removed.

Nominal and effective weight: a split of few pods cannot carry every percentage (10 % of 4 pods
is 1 pod = 25 %). So ``set_weight`` records the nominal weight it applied in the
``cutover.io/weight`` annotation on green, in the same patch as green's replicas, and
``get_weight`` returns that nominal weight only while both replica counts still equal the split
it implies; anything else (a person scaled by hand, a half-applied move) reads as the effective
weight, the percentage of pods that are green's.
"""

from __future__ import annotations

import logging
from typing import Any

from cutover.core.plan import effective_weight, replica_split
from cutover.kube import Kube
from cutover.routers.base import (
    ORIGINAL_ANNOTATION,
    WEIGHT_ANNOTATION,
    NoMirror,
    NotReady,
    Objects,
    Target,
    TrafficRouterError,
    annotations_of,
    available,
    dump_original,
    format_labels,
    load_original,
    pod_labels,
    replicas,
    selects,
)

log = logging.getLogger("cutover.routers.replicas")
# The total the nominal weight was split from: a half-applied move then reads as unfinished.
TOTAL_ANNOTATION = "cutover.io/total"


def _split_matches(blue: int, green: int, weight: int, total: int | None) -> bool:
    """Whether the pods are exactly the split ``set_weight`` writes for ``weight``.

    With the run's total known (blue's size saved before the first write), a half-applied move
    -- green grown, blue not yet shrunk after a crash -- does not match, so it is written again.
    """
    if total is not None:
        return replica_split(total, weight) == (blue, green)
    if replica_split(blue + green, weight) == (blue, green):
        return True
    # With a total of one, every weight strictly between 0 and 100 is one pod each.
    return replica_split(1, weight) == (blue, green)


def _nominal(green: dict[str, Any]) -> int | None:
    raw = annotations_of(green).get(WEIGHT_ANNOTATION)
    if raw is None or not raw.strip().isdigit():
        return None
    value = int(raw)
    return value if 0 <= value <= 100 else None


def _total(green: dict[str, Any]) -> int | None:
    """The total the nominal weight was split from, written in the same patch as the weight."""
    raw = annotations_of(green).get(TOTAL_ANNOTATION, "")
    return int(raw) if raw.strip().isdigit() and int(raw) > 0 else None


def _original_if_absent(deployment: dict[str, Any]) -> dict[str, str | None]:
    if ORIGINAL_ANNOTATION in annotations_of(deployment):
        return {}
    return {ORIGINAL_ANNOTATION: dump_original({"replicas": replicas(deployment)})}


def _name(deployment: dict[str, Any]) -> str:
    meta = deployment.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


class ReplicasRouter(NoMirror):
    def __init__(self, kube: Kube) -> None:
        self._objects = Objects(kube)

    async def _pair(self, target: Target) -> tuple[dict[str, Any], dict[str, Any]]:
        ns = target.namespace
        blue = await self._objects.require_deployment(ns, target.spec.blue.deployment)
        green = await self._objects.require_deployment(ns, target.spec.green.deployment)
        return blue, green

    async def preflight(self, target: Target) -> list[str]:
        ns, spec = target.namespace, target.spec
        problems: list[str] = []
        found: dict[str, dict[str, Any]] = {}
        for role, ref in (("blue", spec.blue), ("green", spec.green)):
            obj = await self._objects.deployment(ns, ref.deployment)
            if obj is None:
                problems.append(f"{role} Deployment {ns}/{ref.deployment} not found")
            else:
                found[role] = obj
        service_name = spec.traffic.service
        if service_name:
            service = await self._objects.service(ns, service_name)
            if service is None:
                problems.append(f"Service {ns}/{service_name} not found")
            else:
                selector = dict((service.get("spec") or {}).get("selector") or {})
                for role, obj in found.items():
                    labels = pod_labels(obj)
                    if not selects(selector, labels):
                        problems.append(
                            f"Service {ns}/{service_name} selector {format_labels(selector)} does"
                            f" not match the pod labels {format_labels(labels)} of {role}"
                            f" Deployment {_name(obj)}: the replicas router needs one Service"
                            " in front of both versions"
                        )
        return problems

    async def prepare(self, target: Target, total_replicas: int) -> None:
        blue, green = await self._pair(target)
        for obj in (blue, green):
            await self._objects.patch_deployment(obj, set_annotations=_original_if_absent(obj))

    async def set_weight(self, target: Target, weight: int, total_replicas: int) -> None:
        if not 0 <= weight <= 100:
            raise TrafficRouterError(f"weight {weight} is outside 0..100")
        blue, green = await self._pair(target)
        want_blue, want_green = replica_split(total_replicas, weight)
        # The nominal weight rides in the same patch as green's replicas: never one without the
        # other, so get_weight cannot report a weight whose pods were not asked for.
        green_notes = {
            WEIGHT_ANNOTATION: str(weight),
            TOTAL_ANNOTATION: str(total_replicas),
            **_original_if_absent(green),
        }
        blue_notes = _original_if_absent(blue)
        if want_green >= replicas(green):
            green = await self._objects.patch_deployment(
                green, replicas_to=want_green, set_annotations=green_notes
            )
            self._check_not_emptied(blue, want_blue, green)
            await self._objects.patch_deployment(
                blue, replicas_to=want_blue, set_annotations=blue_notes
            )
        else:
            blue = await self._objects.patch_deployment(
                blue, replicas_to=want_blue, set_annotations=blue_notes
            )
            self._check_not_emptied(green, want_green, blue)
            await self._objects.patch_deployment(
                green, replicas_to=want_green, set_annotations=green_notes
            )

    @staticmethod
    def _check_not_emptied(shrinking: dict[str, Any], to: int, other: dict[str, Any]) -> None:
        """Refuses to take the last serving pods away while the other side has none ready."""
        if to == 0 and available(shrinking) > 0 and available(other) == 0:
            raise NotReady(
                f"Deployment {_name(other)} has no available pod yet: Deployment"
                f" {_name(shrinking)} keeps its pods until it has"
            )

    async def get_weight(self, target: Target) -> int | None:
        ns = target.namespace
        blue = await self._objects.deployment(ns, target.spec.blue.deployment)
        green = await self._objects.deployment(ns, target.spec.green.deployment)
        if blue is None or green is None:
            return None
        b, g = replicas(blue), replicas(green)
        nominal = _nominal(green)
        total = _total(green)
        if nominal is not None and _split_matches(b, g, nominal, total):
            return nominal
        return effective_weight(b, g)

    async def restore(self, target: Target, total_replicas: int, scale_down_green: bool) -> None:
        # scale_down_green cannot be honoured as False here: any green pod behind the shared
        # Service takes a share of traffic, so "all traffic on blue" means green at zero.
        ns = target.namespace
        blue = await self._objects.require_deployment(ns, target.spec.blue.deployment)
        # A deleted green takes no traffic: the rollback then only gives blue its size back.
        green = await self._objects.deployment(ns, target.spec.green.deployment)
        saved = load_original(blue) or {}
        blue_size = saved.get("replicas")
        if not isinstance(blue_size, int) or blue_size < 1:
            blue_size = max(total_replicas, 1)
        if green is not None and available(blue) == 0 and available(green) > 0:
            # Green still serves everything (e.g. rolled back at 100 %): blue needs a ready pod
            # before green's go, or the rollback itself is an outage.
            await self._objects.patch_deployment(blue, replicas_to=blue_size)
            raise NotReady(
                f"Deployment {_name(blue)} has no available pod yet: Deployment {_name(green)}"
                " keeps serving until it has"
            )
        if green is not None:
            # First write: green to zero, which alone puts all traffic on blue.
            await self._objects.patch_deployment(
                green,
                replicas_to=0,
                set_annotations={
                    WEIGHT_ANNOTATION: None,
                    TOTAL_ANNOTATION: None,
                    ORIGINAL_ANNOTATION: None,
                },
            )
        await self._objects.patch_deployment(
            blue, replicas_to=blue_size, set_annotations={ORIGINAL_ANNOTATION: None}
        )
        log.info(
            "traffic restored to blue",
            extra={"namespace": target.namespace, "migration": target.name, "blue": blue_size},
        )

    async def retire_blue(self, target: Target) -> None:
        blue, green = await self._pair(target)
        self._check_not_emptied(blue, 0, green)
        await self._objects.patch_deployment(
            green,
            set_annotations={
                WEIGHT_ANNOTATION: None,
                TOTAL_ANNOTATION: None,
                ORIGINAL_ANNOTATION: None,
            },
        )
        await self._objects.patch_deployment(
            blue, replicas_to=0, set_annotations={ORIGINAL_ANNOTATION: None}
        )
