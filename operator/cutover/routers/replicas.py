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

The rollback window (``spec.rollback.window``): at 100 % blue would take traffic again as soon as
it had pods, so ``hold_blue`` first narrows the shared Service to green's pods (the labels only
green's pods carry, added to its selector; the original saved on the Service), then gives blue its
size back and marks it ``cutover.io/held``. A rollback in the window is then one Service write
(narrowed to blue's pods instead) with blue's pods already running; retiring blue scales it to
zero before the Service gets its original selector back.
"""

from __future__ import annotations

import logging
from typing import Any

from cutover.core.plan import effective_weight, replica_split
from cutover.durations import parse_duration
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
    fresh_on_stale,
    load_original,
    pod_labels,
    replicas,
    selector_patch,
    selects,
    service_selector,
)

log = logging.getLogger("cutover.routers.replicas")
# The total the nominal weight was split from: a half-applied move then reads as unfinished.
TOTAL_ANNOTATION = "cutover.io/total"
# On blue while it is kept at full size out of traffic (the rollback window): get_weight then
# asks the Service which version it selects, as the replica counts no longer tell.
HELD_ANNOTATION = "cutover.io/held"


def only_in(own: dict[str, str], other: dict[str, str]) -> dict[str, str]:
    """The pod labels of one version that the other's pods do not carry: added to a selector,
    they keep the other version's pods out of it."""
    return {k: v for k, v in own.items() if other.get(k) != v}


def _original_selector(service: dict[str, Any]) -> dict[str, str]:
    """The selector the Service had before the router narrowed it (its current one if never)."""
    saved = load_original(service) or {}
    original = saved.get("selector")
    if isinstance(original, dict) and original:
        return {str(k): str(v) for k, v in original.items()}
    return service_selector(service)


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
        """Blue and green to plan a write from: the watch's copies when it has them."""
        blue = await self._objects.require_known(target, target.spec.blue.deployment)
        green = await self._objects.require_known(target, target.spec.green.deployment)
        return blue, green

    async def preflight(self, target: Target) -> list[str]:
        ns, spec = target.namespace, target.spec
        problems: list[str] = []
        found: dict[str, dict[str, Any]] = {}
        for role, ref in (("blue", spec.blue), ("green", spec.green)):
            obj = await self._objects.known(target, ref.deployment)
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
                # A Service still narrowed by the last run's rollback window is judged by the
                # selector it gets back.
                selector = _original_selector(service)
                for role, obj in found.items():
                    labels = pod_labels(obj)
                    if not selects(selector, labels):
                        problems.append(
                            f"Service {ns}/{service_name} selector {format_labels(selector)} does"
                            f" not match the pod labels {format_labels(labels)} of {role}"
                            f" Deployment {_name(obj)}: the replicas router needs one Service"
                            " in front of both versions"
                        )
        if parse_duration(spec.rollback.window) > 0 and len(found) == 2:
            blue_labels, green_labels = pod_labels(found["blue"]), pod_labels(found["green"])
            if not only_in(blue_labels, green_labels) or not only_in(green_labels, blue_labels):
                problems.append(
                    f"rollback.window: blue's pod labels {format_labels(blue_labels)} and"
                    f" green's {format_labels(green_labels)} need a label that tells them apart"
                    " (e.g. version): the replicas router narrows the Service to one version's"
                    " pods while blue is kept at full size"
                )
        return problems

    async def prepare(self, target: Target, total_replicas: int) -> None:
        await fresh_on_stale(target, lambda t: self._prepare(t, total_replicas))

    async def _prepare(self, target: Target, total_replicas: int) -> None:
        blue, green = await self._pair(target)
        for obj in (blue, green):
            await self._objects.patch_deployment(obj, set_annotations=_original_if_absent(obj))

    async def set_weight(self, target: Target, weight: int, total_replicas: int) -> None:
        if not 0 <= weight <= 100:
            raise TrafficRouterError(f"weight {weight} is outside 0..100")
        await fresh_on_stale(target, lambda t: self._set_weight(t, weight, total_replicas))

    async def _set_weight(self, target: Target, weight: int, total_replicas: int) -> None:
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
        if HELD_ANNOTATION in annotations_of(blue):
            narrowed = await self._narrowed_to(target, blue, green)
            if narrowed is not None:
                return narrowed
        b, g = replicas(blue), replicas(green)
        nominal = _nominal(green)
        total = _total(green)
        if nominal is not None and _split_matches(b, g, nominal, total):
            return nominal
        return effective_weight(b, g)

    async def _narrowed(self, target: Target) -> dict[str, Any] | None:
        """The shared Service while hold_blue has narrowed it (its original saved), else None."""
        name = target.spec.traffic.service
        if not name:
            return None
        service = await self._objects.service(target.namespace, name)
        if service is None or ORIGINAL_ANNOTATION not in annotations_of(service):
            return None
        return service

    async def _narrowed_to(
        self, target: Target, blue: dict[str, Any], green: dict[str, Any]
    ) -> int | None:
        """100 or 0 while the Service selects only green's or only blue's pods; else None."""
        service = await self._narrowed(target)
        if service is None:
            return None
        selector = service_selector(service)
        on_blue, on_green = (
            selects(selector, pod_labels(blue)),
            selects(selector, pod_labels(green)),
        )
        if on_green and not on_blue:
            return 100
        if on_blue and not on_green:
            return 0
        return None

    async def _select(
        self, target: Target, service: dict[str, Any], wanted: dict[str, str], keep: bool
    ) -> dict[str, Any]:
        """The Service's selector set to ``wanted``; its saved original kept or removed."""
        current = service_selector(service)
        patch: dict[str, Any] = {}
        if current != wanted:
            patch["spec"] = {"selector": selector_patch(current, wanted)}
        if keep and ORIGINAL_ANNOTATION not in annotations_of(service):
            # Saved in the same write that narrows it, so the original is never lost.
            patch["metadata"] = {
                "annotations": {ORIGINAL_ANNOTATION: dump_original({"selector": current})}
            }
        if not keep and ORIGINAL_ANNOTATION in annotations_of(service):
            patch["metadata"] = {"annotations": {ORIGINAL_ANNOTATION: None}}
        if not patch:
            return service
        meta = service.get("metadata") or {}
        log.info(
            "service patched",
            extra={
                "namespace": target.namespace,
                "object": meta.get("name"),
                "migration": target.name,
                "selector": wanted,
            },
        )
        return await self._objects.kube.patch(
            "",
            "v1",
            "services",
            target.namespace,
            str(meta.get("name")),
            patch,
            patch_type="strategic",
        )

    async def hold_blue(self, target: Target, total_replicas: int) -> None:
        await fresh_on_stale(target, lambda t: self._hold_blue(t, total_replicas))

    async def _hold_blue(self, target: Target, total_replicas: int) -> None:
        ns = target.namespace
        blue, green = await self._pair(target)
        name = target.spec.traffic.service
        if not name:
            raise TrafficRouterError(
                "the replicas router keeps blue out of traffic through spec.traffic.service"
            )
        service = await self._objects.require_service(ns, name)
        pin = only_in(pod_labels(green), pod_labels(blue))
        if not pin:
            raise TrafficRouterError(
                f"green's pod labels {format_labels(pod_labels(green))} do not tell its pods"
                f" from blue's {format_labels(pod_labels(blue))}: Service {ns}/{name} cannot"
                " be narrowed to green while blue is kept at full size"
            )
        # First the Service sees only green (it has every pod at 100 %), then blue grows.
        await self._select(target, service, {**_original_selector(service), **pin}, keep=True)
        await self._objects.patch_deployment(
            blue,
            replicas_to=self._blue_size(blue, total_replicas),
            set_annotations={HELD_ANNOTATION: name, **_original_if_absent(blue)},
        )

    @staticmethod
    def _blue_size(blue: dict[str, Any], total_replicas: int) -> int:
        saved = load_original(blue) or {}
        size = saved.get("replicas")
        return size if isinstance(size, int) and size >= 1 else max(total_replicas, 1)

    async def restore(self, target: Target, total_replicas: int, scale_down_green: bool) -> None:
        # scale_down_green cannot be honoured as False here: any green pod behind the shared
        # Service takes a share of traffic, so "all traffic on blue" means green at zero.
        await fresh_on_stale(target, lambda t: self._restore(t, total_replicas))

    async def _restore(self, target: Target, total_replicas: int) -> None:
        ns = target.namespace
        blue = await self._objects.require_known(target, target.spec.blue.deployment)
        # A deleted green takes no traffic: the rollback then only gives blue its size back.
        green = await self._objects.known(target, target.spec.green.deployment)
        blue_size = self._blue_size(blue, total_replicas)
        narrowed = await self._narrowed(target)
        if narrowed is not None and green is not None:
            # The rollback window: one write, the Service narrowed to blue's running pods.
            if available(blue) == 0 and available(green) > 0:
                await self._objects.patch_deployment(blue, replicas_to=blue_size)
                raise NotReady(
                    f"Deployment {_name(blue)} has no available pod yet: Service"
                    f" {ns}/{target.spec.traffic.service} stays on green until it has"
                )
            only_blue = only_in(pod_labels(blue), pod_labels(green))
            if only_blue:
                narrowed = await self._select(
                    target, narrowed, {**_original_selector(narrowed), **only_blue}, keep=True
                )
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
            blue,
            replicas_to=blue_size,
            set_annotations={ORIGINAL_ANNOTATION: None, HELD_ANNOTATION: None},
        )
        if narrowed is not None:
            # Green has no pods left: the original selector sends everything to blue.
            await self._select(target, narrowed, _original_selector(narrowed), keep=False)
        log.info(
            "traffic restored to blue",
            extra={"namespace": target.namespace, "migration": target.name, "blue": blue_size},
        )

    async def retire_blue(self, target: Target) -> None:
        await fresh_on_stale(target, self._retire_blue)

    async def _retire_blue(self, target: Target) -> None:
        green = await self._objects.require_known(target, target.spec.green.deployment)
        # Blue deleted during the rollback window: only the Service is left to put back.
        blue = await self._objects.known(target, target.spec.blue.deployment)
        if blue is not None:
            self._check_not_emptied(blue, 0, green)
        await self._objects.patch_deployment(
            green,
            set_annotations={
                WEIGHT_ANNOTATION: None,
                TOTAL_ANNOTATION: None,
                ORIGINAL_ANNOTATION: None,
            },
        )
        if blue is not None:
            await self._objects.patch_deployment(
                blue,
                replicas_to=0,
                set_annotations={ORIGINAL_ANNOTATION: None, HELD_ANNOTATION: None},
            )
        narrowed = await self._narrowed(target)
        if narrowed is not None:
            # Only once blue has no pods: the original selector picks both versions' labels.
            await self._select(target, narrowed, _original_selector(narrowed), keep=False)
