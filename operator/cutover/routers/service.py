"""The service router: classic blue-green, one Service switched from blue's pods to green's.

Green is scaled to full size by ``prepare``; ``set_weight`` then rewrites only the Service's
``spec.selector``, in one patch, to exactly the ``matchLabels`` of the Deployment that should get
all traffic. Only weights 0 and 100 exist (the spec validation forbids others).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from cutover.kube import Kube
from cutover.routers.base import (
    ORIGINAL_ANNOTATION,
    NoMirror,
    NotReady,
    Objects,
    Target,
    TrafficRouterError,
    annotations_of,
    available,
    dump_original,
    format_labels,
    keep_blue_scaled,
    load_original,
    match_labels,
    pod_labels,
    replicas,
    selector_patch,
    selects,
    service_selector,
)

log = logging.getLogger("cutover.routers.service")


class ServiceRouter(NoMirror):
    def __init__(self, kube: Kube) -> None:
        self._objects = Objects(kube)
        self._kube = kube

    def _service_name(self, target: Target) -> str:
        name = target.spec.traffic.service
        if not name:
            raise TrafficRouterError("the service router needs spec.traffic.service")
        return name

    async def _read(self, target: Target) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        ns = target.namespace
        service = await self._objects.require_service(ns, self._service_name(target))
        blue = await self._objects.require_deployment(ns, target.spec.blue.deployment)
        green = await self._objects.require_deployment(ns, target.spec.green.deployment)
        return service, blue, green

    async def _patch_service(
        self, target: Target, service: Mapping[str, Any], patch: dict[str, Any]
    ) -> dict[str, Any]:
        name = self._service_name(target)
        log.info(
            "service patched",
            extra={
                "namespace": target.namespace,
                "object": name,
                "migration": target.name,
                "selector": (patch.get("spec") or {}).get("selector"),
            },
        )
        return await self._kube.patch(
            "", "v1", "services", target.namespace, name, patch, patch_type="strategic"
        )

    async def preflight(self, target: Target) -> list[str]:
        ns, spec = target.namespace, target.spec
        problems: list[str] = []
        name = spec.traffic.service
        if not name:
            problems.append("the service router needs spec.traffic.service")
        elif await self._objects.service(ns, name) is None:
            problems.append(f"Service {ns}/{name} not found")
        found: dict[str, dict[str, Any]] = {}
        for role, ref in (("blue", spec.blue), ("green", spec.green)):
            obj = await self._objects.deployment(ns, ref.deployment)
            if obj is None:
                problems.append(f"{role} Deployment {ns}/{ref.deployment} not found")
                continue
            found[role] = obj
            selector = (obj.get("spec") or {}).get("selector") or {}
            if selector.get("matchExpressions") or not selector.get("matchLabels"):
                problems.append(
                    f"{role} Deployment {ns}/{ref.deployment} must select its pods with"
                    " spec.selector.matchLabels only: the Service is switched to those labels"
                )
        if len(found) == 2:
            blue, green = found["blue"], found["green"]
            blue_labels, green_labels = match_labels(blue), match_labels(green)
            if blue_labels == green_labels:
                problems.append(
                    f"blue and green Deployments select the same labels"
                    f" {format_labels(blue_labels)}: the Service cannot tell them apart"
                )
            else:
                for role, labels, other, other_obj in (
                    ("blue", blue_labels, "green", green),
                    ("green", green_labels, "blue", blue),
                ):
                    if selects(labels, pod_labels(other_obj)):
                        problems.append(
                            f"{role}'s labels {format_labels(labels)} also match {other}'s pods"
                            f" {format_labels(pod_labels(other_obj))}: switching the Service"
                            f" to {role} would still send traffic to {other}"
                        )
        return problems

    async def prepare(self, target: Target, total_replicas: int) -> None:
        service, _, green = await self._read(target)
        # The original goes on record before anything changes, so a crash in between is safe.
        if ORIGINAL_ANNOTATION not in annotations_of(service):
            original = dump_original({"selector": service_selector(service)})
            await self._patch_service(
                target, service, {"metadata": {"annotations": {ORIGINAL_ANNOTATION: original}}}
            )
        await self._objects.patch_deployment(green, replicas_to=max(total_replicas, 1))

    async def set_weight(self, target: Target, weight: int, total_replicas: int) -> None:
        if weight not in (0, 100):
            raise TrafficRouterError(
                f"Service {target.namespace}/{self._service_name(target)}: the service router"
                f" switches all traffic at once, weight {weight} is neither 0 nor 100"
            )
        # Only the Service is written, planned from a read of it; of the Deployments the switch
        # needs their (immutable) selectors and whether the receiving side has ready pods, which
        # the watch-fed index tells as well as it tells the core that green is ready.
        service = await self._objects.require_service(target.namespace, self._service_name(target))
        blue = await self._objects.require_known(target, target.spec.blue.deployment)
        green = await self._objects.require_known(target, target.spec.green.deployment)
        receiving, losing = (green, blue) if weight == 100 else (blue, green)
        wanted = match_labels(receiving)
        current = service_selector(service)
        if current == wanted:
            return
        if not wanted:
            raise TrafficRouterError(
                f"Deployment {target.namespace}/{receiving['metadata']['name']} has no"
                " spec.selector.matchLabels to switch Service"
                f" {target.namespace}/{self._service_name(target)} to"
            )
        if available(receiving) == 0 and available(losing) > 0:
            raise NotReady(
                f"Deployment {target.namespace}/{receiving['metadata']['name']} has no available"
                f" pod yet: Service {target.namespace}/{self._service_name(target)} is not"
                " switched to it until it has"
            )
        patch: dict[str, Any] = {"spec": {"selector": selector_patch(current, wanted)}}
        if ORIGINAL_ANNOTATION not in annotations_of(service):
            # prepare normally saved it; if it did not run, the switch must still be undoable.
            original = dump_original({"selector": current})
            patch["metadata"] = {"annotations": {ORIGINAL_ANNOTATION: original}}
        await self._patch_service(target, service, patch)

    async def get_weight(self, target: Target) -> int | None:
        ns = target.namespace
        service = await self._objects.service(ns, self._service_name(target))
        blue = await self._objects.deployment(ns, target.spec.blue.deployment)
        green = await self._objects.deployment(ns, target.spec.green.deployment)
        if service is None or blue is None or green is None:
            return None
        selector = service_selector(service)
        if selector and selector == match_labels(green):
            return 100
        if selector and selector == match_labels(blue):
            return 0
        return None

    async def restore(self, target: Target, total_replicas: int, scale_down_green: bool) -> None:
        service, blue, green = await self._read(target)
        saved = load_original(service) or {}
        original = saved.get("selector")
        blue_labels = match_labels(blue)
        if not isinstance(original, dict) or not original:
            original = blue_labels
        current = service_selector(service)
        # First write: exactly blue's labels, which alone puts all traffic on blue.
        if current != blue_labels:
            if available(blue) == 0 and available(green) > 0:
                raise NotReady(
                    f"Deployment {target.namespace}/{blue['metadata']['name']} has no available"
                    f" pod: Service {target.namespace}/{self._service_name(target)} stays on"
                    " green until it has"
                )
            service = await self._patch_service(
                target, service, {"spec": {"selector": selector_patch(current, blue_labels)}}
            )
            current = blue_labels
        if scale_down_green:
            green = await self._objects.patch_deployment(green, replicas_to=0)
        final = original
        if replicas(green) > 0 and selects(original, pod_labels(green)):
            # Putting back a selector that also picks green's running pods would undo the
            # rollback; blue's labels stay, and the log says why.
            log.warning(
                "original selector not restored: it also selects green's running pods",
                extra={"namespace": target.namespace, "object": self._service_name(target)},
            )
            final = blue_labels
        patch: dict[str, Any] = {}
        if current != final:
            patch["spec"] = {"selector": selector_patch(current, final)}
        if ORIGINAL_ANNOTATION in annotations_of(service):
            patch["metadata"] = {"annotations": {ORIGINAL_ANNOTATION: None}}
        if patch:
            await self._patch_service(target, service, patch)

    async def hold_blue(self, target: Target, total_replicas: int) -> None:
        # The Service selects only green's pods at 100 %, and blue was never scaled down.
        await keep_blue_scaled(self._objects, target, total_replicas)

    async def retire_blue(self, target: Target) -> None:
        service, blue, green = await self._read(target)
        if service_selector(service) != match_labels(green):
            raise TrafficRouterError(
                f"Service {target.namespace}/{self._service_name(target)} does not select green's"
                f" pods {format_labels(match_labels(green))}: blue is not retired"
            )
        await self._objects.patch_deployment(blue, replicas_to=0)
        if ORIGINAL_ANNOTATION in annotations_of(service):
            await self._patch_service(
                target, service, {"metadata": {"annotations": {ORIGINAL_ANNOTATION: None}}}
            )
