"""The preview Service (spec.preview; the decisions are core/preview.py's): created for a run,
selecting only green's pods, owned by the Migration, deleted when the run is over.

Only green's pods: the selector is green's pod labels, and green must carry a label that blue's
pods do not (the same test the replicas router's rollback window narrows its Service with,
``only_in``), so no blue pod can ever match it. Its ports are the user-facing Service's
(spec.traffic.service, else green's own Service), or green's container ports. The
ownerReference lets the garbage collector remove it with a deleted Migration.
"""

from __future__ import annotations

import logging
from typing import Any

from cutover import api
from cutover.core import preview as preview_rules
from cutover.kube import Kube
from cutover.routers.base import (
    Objects,
    Target,
    TrafficRouterError,
    format_labels,
    pod_labels,
)
from cutover.routers.replicas import only_in

log = logging.getLogger("cutover.previews")
# On the preview Service, next to the Migration's name: what it is, for `kubectl get -l`.
PREVIEW_LABEL = "cutover.io/preview"


def _owned_by(obj: dict[str, Any], uid: str) -> bool:
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(o.get("uid") == uid for o in owners)


class Previews:
    def __init__(self, kube: Kube) -> None:
        self._objects = Objects(kube)

    async def preflight(self, target: Target) -> list[str]:
        """Why the run's preview could not select only green's pods; no writes."""
        spec = target.spec
        if spec.preview is None:
            return []
        problems = preview_rules.name_problems(spec, target.name)
        ns = target.namespace
        blue = await self._objects.deployment(ns, spec.blue.deployment)
        green = await self._objects.deployment(ns, spec.green.deployment)
        if blue is not None and green is not None:
            green_labels, blue_labels = pod_labels(green), pod_labels(blue)
            if not only_in(green_labels, blue_labels):
                problems.append(
                    f"spec.preview: green's pod labels {format_labels(green_labels)} do not tell"
                    f" its pods from blue's {format_labels(blue_labels)} (e.g. a version label):"
                    " the preview Service must select only green's pods"
                )
        if not problems:
            name = preview_rules.service_name(spec, target.name)
            found = await self._objects.service(ns, name)
            if found is not None and not _owned_by(found, target.uid):
                problems.append(
                    f"spec.preview.service: Service {ns}/{name} exists and is not this"
                    " Migration's preview: name another one"
                )
        return problems

    async def create(self, target: Target, name: str) -> None:
        """Creates the preview Service, or puts an existing one of this Migration in shape."""
        ns, spec = target.namespace, target.spec
        green = await self._objects.require_deployment(ns, spec.green.deployment)
        blue = await self._objects.deployment(ns, spec.blue.deployment)
        selector = pod_labels(green)
        if blue is not None and not only_in(selector, pod_labels(blue)):
            raise TrafficRouterError(
                f"green's pod labels {format_labels(selector)} do not tell its pods from blue's:"
                f" preview Service {ns}/{name} would select blue's pods too"
            )
        wanted = {"selector": selector, "ports": await self._ports(target, green)}
        found = await self._objects.service(ns, name)
        kube = self._objects.kube
        if found is None:
            body = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": name,
                    "labels": {api.MIGRATION_LABEL: target.name, PREVIEW_LABEL: "true"},
                    "ownerReferences": [
                        {
                            "apiVersion": api.API_VERSION,
                            "kind": api.KIND,
                            "name": target.name,
                            "uid": target.uid,
                            "controller": True,
                            "blockOwnerDeletion": False,
                        }
                    ],
                },
                "spec": {"type": "ClusterIP", **wanted},
            }
            await kube.create("", "v1", "services", ns, body)
        elif not _owned_by(found, target.uid):
            raise TrafficRouterError(
                f"Service {ns}/{name} exists and is not this Migration's preview: set"
                " spec.preview.service to another name"
            )
        else:
            current = found.get("spec") or {}
            if current.get("selector") != selector or not current.get("ports"):
                # A merge patch replaces the selector map as a whole: no stray key survives.
                await kube.patch(
                    "", "v1", "services", ns, name, {"spec": wanted}, patch_type="merge"
                )
        log.info(
            "preview service in place",
            extra={
                "namespace": ns,
                "migration": target.name,
                "service": name,
                "selector": selector,
            },
        )

    async def delete(self, target: Target, name: str) -> None:
        found = await self._objects.service(target.namespace, name)
        if found is None or not _owned_by(found, target.uid):
            return  # gone already, or someone else's: never delete what we did not create
        await self._objects.kube.delete("", "v1", "services", target.namespace, name)
        log.info(
            "preview service deleted",
            extra={"namespace": target.namespace, "migration": target.name, "service": name},
        )

    async def _ports(self, target: Target, green: dict[str, Any]) -> list[dict[str, Any]]:
        """The user-facing Service's ports (its targetPorts name green's container ports too),
        else one port per container port of green's."""
        spec = target.spec
        for name in (spec.traffic.service, spec.green.service):
            if not name:
                continue
            service = await self._objects.service(target.namespace, name)
            ports = ((service or {}).get("spec") or {}).get("ports") or []
            if ports:
                keep = ("name", "port", "targetPort", "protocol", "appProtocol")
                return [{k: p[k] for k in keep if k in p} for p in ports]
        template = (green.get("spec") or {}).get("template") or {}
        containers = (template.get("spec") or {}).get("containers") or []
        found = [
            {
                **({"name": p["name"]} if p.get("name") else {}),
                "port": int(p["containerPort"]),
                "targetPort": int(p["containerPort"]),
                "protocol": p.get("protocol") or "TCP",
            }
            for c in containers
            for p in c.get("ports") or []
            if p.get("containerPort")
        ]
        if not found:
            name = preview_rules.service_name(spec, target.name)
            raise TrafficRouterError(
                f"preview Service {target.namespace}/{name}:"
                " no port to expose (no spec.traffic.service nor green Service with ports, and"
                " green's containers declare none)"
            )
        return found
