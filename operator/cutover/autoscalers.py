"""Writes the floor a run gives green's HorizontalPodAutoscaler, and puts the owner's back.

The rules are in core/autoscaling.py; the HPAs come from the watch-fed store
(reconciler.Stores), so finding them costs no request. Like a router, every write here is
idempotent: the HPA's own ``minReplicas`` is saved once in its ``cutover.io/original`` annotation
before the first change, and ``release`` puts it back and removes the annotation.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from cutover.core.autoscaling import Autoscaler, pinned_min
from cutover.kube import Kube
from cutover.routers.base import ORIGINAL_ANNOTATION, annotations_of, dump_original

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
    """Each write starts from a fresh GET of the HPA (the store may lag a write of our own), so
    the owner's floor is saved once and never replaced by a floor a run set. The store only says
    which HPAs to read: without an HPA, no request at all."""

    def __init__(self, kube: Kube) -> None:
        self._kube = kube

    async def pin_green(self, namespace: str, names: Iterable[str], total_replicas: int) -> None:
        """Raises each named HPA's floor to blue's size, saving the owner's floor first."""
        for obj, hpa in await self._fresh(namespace, names):
            patch: dict[str, Any] = {}
            if ORIGINAL_ANNOTATION not in annotations_of(obj):
                original = dump_original({"minReplicas": hpa.min_replicas})
                patch["metadata"] = {"annotations": {ORIGINAL_ANNOTATION: original}}
            wanted = pinned_min(total_replicas, hpa)
            if hpa.min_replicas != wanted:
                patch["spec"] = {"minReplicas": wanted}
            await self._patch(namespace, hpa, patch)

    async def release(self, namespace: str, names: Iterable[str]) -> None:
        """Each named HPA's floor back to what its owner set, and the saved copy removed."""
        for obj, hpa in await self._fresh(namespace, names):
            if ORIGINAL_ANNOTATION not in annotations_of(obj):
                continue
            patch: dict[str, Any] = {"metadata": {"annotations": {ORIGINAL_ANNOTATION: None}}}
            if hpa.saved_min is not None and hpa.min_replicas != hpa.saved_min:
                patch["spec"] = {"minReplicas": hpa.saved_min}
            await self._patch(namespace, hpa, patch)

    async def _fresh(
        self, namespace: str, names: Iterable[str]
    ) -> list[tuple[dict[str, Any], Autoscaler]]:
        group, version, plural = RESOURCE
        found = []
        for name in sorted(set(names)):
            obj = await self._kube.get(group, version, plural, namespace, name)
            hpa = autoscaler(obj) if obj is not None else None
            if obj is not None and hpa is not None:
                found.append((obj, hpa))
        return found

    async def _patch(self, namespace: str, hpa: Autoscaler, patch: dict[str, Any]) -> None:
        if not patch:
            return
        # A merge patch of only the floor and our annotation: the HPA controller's status
        # writes in between change neither.
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
