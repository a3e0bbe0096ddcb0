"""Reads the HorizontalPodAutoscalers of blue and green and writes the floor a run gives green's.

The rules are in core/autoscaling.py. Like a router, every write here is idempotent: the HPA's
own ``minReplicas`` is saved once in its ``cutover.io/original`` annotation before the first
change, and ``release`` puts it back and removes the annotation.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from cutover.core.autoscaling import Autoscaler, pinned_min
from cutover.kube import Kube
from cutover.routers.base import ORIGINAL_ANNOTATION, Target, annotations_of, dump_original

log = logging.getLogger("cutover.autoscalers")

RESOURCE = ("autoscaling", "v2", "horizontalpodautoscalers")


def _saved_min(obj: Mapping[str, Any]) -> int | None:
    try:
        saved = json.loads(annotations_of(obj).get(ORIGINAL_ANNOTATION, ""))
    except ValueError:
        return None
    value = saved.get("minReplicas") if isinstance(saved, dict) else None
    return value if isinstance(value, int) and value >= 0 else None


def autoscaler(obj: Mapping[str, Any]) -> Autoscaler | None:
    """An HPA as the API returns it; None unless it scales a Deployment."""
    spec = obj.get("spec") or {}
    ref = spec.get("scaleTargetRef") or {}
    if ref.get("kind") != "Deployment" or not str(ref.get("apiVersion", "")).startswith("apps/"):
        return None
    return Autoscaler(
        name=str((obj.get("metadata") or {}).get("name")),
        deployment=str(ref.get("name")),
        # The API server defaults minReplicas to 1.
        min_replicas=int(spec.get("minReplicas") or 1),
        max_replicas=int(spec.get("maxReplicas") or 1),
        saved_min=_saved_min(obj),
    )


class Autoscalers:
    def __init__(self, kube: Kube) -> None:
        self._kube = kube

    async def _read(self, namespace: str) -> list[tuple[dict[str, Any], Autoscaler]]:
        group, version, plural = RESOURCE
        found = []
        for obj in await self._kube.list(group, version, plural, namespace):
            hpa = autoscaler(obj)
            if hpa is not None:
                found.append((obj, hpa))
        return found

    async def of(self, target: Target) -> list[Autoscaler]:
        """The HPAs scaling blue or green."""
        names = {target.spec.blue.deployment, target.spec.green.deployment}
        return [hpa for _, hpa in await self._read(target.namespace) if hpa.deployment in names]

    async def pin_green(self, target: Target, total_replicas: int) -> None:
        """Raises green's HPA floor to blue's size, saving the owner's floor first (once)."""
        for obj, hpa in await self._read(target.namespace):
            if hpa.deployment != target.spec.green.deployment:
                continue
            wanted = pinned_min(total_replicas, hpa)
            patch: dict[str, Any] = {}
            if ORIGINAL_ANNOTATION not in annotations_of(obj):
                original = dump_original({"minReplicas": hpa.min_replicas})
                patch["metadata"] = {"annotations": {ORIGINAL_ANNOTATION: original}}
            if hpa.min_replicas != wanted:
                patch["spec"] = {"minReplicas": wanted}
            await self._patch(target.namespace, hpa, patch)

    async def release(self, target: Target) -> None:
        """Green's HPA floor back to what its owner set, and the saved copy removed."""
        for _, hpa in await self._read(target.namespace):
            if hpa.deployment != target.spec.green.deployment or hpa.saved_min is None:
                continue
            patch: dict[str, Any] = {"metadata": {"annotations": {ORIGINAL_ANNOTATION: None}}}
            if hpa.min_replicas != hpa.saved_min:
                patch["spec"] = {"minReplicas": hpa.saved_min}
            await self._patch(target.namespace, hpa, patch)

    async def _patch(self, namespace: str, hpa: Autoscaler, patch: dict[str, Any]) -> None:
        if not patch:
            return
        group, version, plural = RESOURCE
        await self._kube.patch(group, version, plural, namespace, hpa.name, patch)
        log.info(
            "autoscaler bounds written",
            extra={
                "namespace": namespace,
                "object": hpa.name,
                "minReplicas": (patch.get("spec") or {}).get("minReplicas"),
            },
        )
