"""What every traffic router implements, and the small object helpers they share.

A router is the only code that moves traffic. Its contract, relied on by the reconciler:

* every method is idempotent and reads before it writes, so a retried or repeated action (after
  a crash, a conflict or a restart) changes nothing the second time;
* it patches only the fields it owns (replicas, a Service selector, its own annotations), so
  edits by people or other controllers to anything else survive;
* the original state of what it changes is saved once, as JSON in the ``cutover.io/original``
  annotation on the changed object, and put back (and the annotation removed) by ``restore``;
* the weight is read back from the cluster, never from memory, so a restarted operator
  continues from what is really there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cutover.api import MigrationSpec
from cutover.kube import Kube

log = logging.getLogger("cutover.routers")

ORIGINAL_ANNOTATION = "cutover.io/original"
WEIGHT_ANNOTATION = "cutover.io/weight"


@dataclass(frozen=True)
class Target:
    """What a router needs to know about one Migration."""

    namespace: str
    name: str  # the Migration's name
    uid: str
    spec: MigrationSpec


class TrafficRouterError(Exception):
    """The router cannot do what was asked; the message names the object at fault."""


class NotReady(TrafficRouterError):
    """The move would leave no ready pod behind the traffic yet; try again shortly.

    Raised after the safe part of the move was done (e.g. the side that must take traffic was
    scaled up), so a retry continues where this one stopped.
    """


class TrafficRouter(Protocol):
    async def preflight(self, target: Target) -> list[str]:
        """Problems that must stop the run before any traffic moves; [] if fine. No writes."""
        ...

    async def prepare(self, target: Target, total_replicas: int) -> None:
        """Gets green ready to take any weight; saves the original state (once)."""
        ...

    async def set_weight(self, target: Target, weight: int, total_replicas: int) -> None:
        """Sends ``weight`` percent of traffic to green; writes only what differs."""
        ...

    async def get_weight(self, target: Target) -> int | None:
        """Green's share as read from the cluster; None when it cannot be told."""
        ...

    async def verify(self, target: Target, weight: int) -> bool | None:
        """Whether the cluster now carries ``weight``; None when it cannot be told."""
        ...

    async def restore(self, target: Target, total_replicas: int, scale_down_green: bool) -> None:
        """All traffic back to blue with the first write, then the original state put back."""
        ...

    async def retire_blue(self, target: Target, total_replicas: int) -> None:
        """After success: blue scaled to zero, the saved original removed."""
        ...


# --- shared object helpers ----------------------------------------------------------------


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def load_original(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The state saved by ``prepare``; None when absent or unreadable (then callers fall back)."""
    raw = annotations_of(obj).get(ORIGINAL_ANNOTATION)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        meta = obj.get("metadata") or {}
        log.warning(
            "unreadable original annotation ignored",
            extra={"namespace": meta.get("namespace"), "object": meta.get("name")},
        )
        return None
    return value if isinstance(value, dict) else None


def dump_original(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), sort_keys=True, separators=(",", ":"))


def match_labels(deployment: Mapping[str, Any]) -> dict[str, str]:
    selector = (deployment.get("spec") or {}).get("selector") or {}
    return dict(selector.get("matchLabels") or {})


def pod_labels(deployment: Mapping[str, Any]) -> dict[str, str]:
    template = (deployment.get("spec") or {}).get("template") or {}
    return dict((template.get("metadata") or {}).get("labels") or {})


def replicas(deployment: Mapping[str, Any]) -> int:
    # The API server defaults an unset spec.replicas to 1.
    value = (deployment.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def available(deployment: Mapping[str, Any]) -> int:
    return int((deployment.get("status") or {}).get("availableReplicas") or 0)


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether an equality selector picks pods with ``labels`` (an empty one picks nothing)."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def format_labels(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"


class Objects:
    """Reads and minimal writes of the Deployments and Services the routers touch."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.kube.get("apps", "v1", "deployments", namespace, name)

    async def require_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        obj = await self.deployment(namespace, name)
        if obj is None:
            raise TrafficRouterError(f"Deployment {namespace}/{name} not found")
        return obj

    async def service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.kube.get("", "v1", "services", namespace, name)

    async def require_service(self, namespace: str, name: str) -> dict[str, Any]:
        obj = await self.service(namespace, name)
        if obj is None:
            raise TrafficRouterError(f"Service {namespace}/{name} not found")
        return obj

    async def patch_deployment(
        self,
        deployment: Mapping[str, Any],
        *,
        replicas_to: int | None = None,
        set_annotations: Mapping[str, str | None] | None = None,
    ) -> dict[str, Any]:
        """One strategic-merge patch of only what differs; returns the (new) object.

        ``set_annotations`` values of None remove the key. Nothing differs: no request at all.
        """
        meta = deployment.get("metadata") or {}
        patch: dict[str, Any] = {}
        if replicas_to is not None and replicas(deployment) != replicas_to:
            patch["spec"] = {"replicas": replicas_to}
        changes = annotation_changes(deployment, set_annotations or {})
        if changes:
            patch["metadata"] = {"annotations": changes}
        if not patch:
            return dict(deployment)
        log.info(
            "deployment patched",
            extra={
                "namespace": meta.get("namespace"),
                "object": meta.get("name"),
                "replicas": replicas_to,
                "annotations": sorted(changes),
            },
        )
        return await self.kube.patch(
            "apps",
            "v1",
            "deployments",
            str(meta.get("namespace")),
            str(meta.get("name")),
            patch,
            patch_type="strategic",
        )


def annotation_changes(
    obj: Mapping[str, Any], wanted: Mapping[str, str | None]
) -> dict[str, str | None]:
    """The subset of ``wanted`` that differs from the object's annotations (None: remove)."""
    current = annotations_of(obj)
    changes: dict[str, str | None] = {}
    for key, value in wanted.items():
        if value is None:
            if key in current:
                changes[key] = None
        elif current.get(key) != value:
            changes[key] = value
    return changes
