"""The nginx router: ingress-nginx canary Ingress, created and owned by the router.

The stable Ingress (``spec.traffic.nginx.ingress``) is not changed during the run, except for the
``cutover.io/original`` annotation. The router creates ``<ingress>-cutover-canary``: a copy of the
stable Ingress reduced to the paths whose backend is ``spec.blue.service``, pointed at
``spec.green.service``, with ``nginx.ingress.kubernetes.io/canary: "true"`` and ``canary-weight``,
and an owner reference to the Migration (a deleted Migration takes it along). Labels and
annotations are copied without Argo CD's tracking ones, so Argo CD neither prunes it nor shows it
as part of the application.

On rollback the canary is deleted: that one write puts all traffic back on blue. On success the
stable Ingress' backends are switched from blue's Service to green's (JSON patch with ``test``
ops on each name), and only then the canary is deleted, so no request ever reaches blue again.
Note for GitOps users: after success the stable Ingress differs from Git until Git says green.

Header matches map to ingress-nginx's canary annotations, which allow one header
(``canary-by-header`` with ``-value`` or ``-pattern``) and one cookie (``canary-by-cookie``, where
ingress-nginx sends the request to the canary when the cookie's value is ``always``). Stickiness
uses ingress-nginx session affinity on the canary (``affinity: cookie``, with the default
``affinity-canary-behavior: sticky``): a client sent to green gets the affinity cookie and stays.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from cutover.durations import parse_duration
from cutover.kube import Kube
from cutover.routers.base import (
    ORIGINAL_ANNOTATION,
    JsonOp,
    NoMirror,
    NotReady,
    Objects,
    Target,
    TrafficRouterError,
    WrittenObjects,
    annotation_ops,
    annotations_of,
    available,
    deployment_problems,
    dump_original,
    fresh_on_stale,
    json_patch_converge,
    keep_blue_scaled,
    load_original,
    migration_owner,
    pointer,
    scale_down,
    scale_green_up,
    service_problems,
)

log = logging.getLogger("cutover.routers.nginx")

INGRESS = ("networking.k8s.io", "v1", "ingresses")
CANARY_SUFFIX = "-cutover-canary"
NGINX = "nginx.ingress.kubernetes.io/"
# Every annotation the router may set on the canary; the ones not wanted now are removed.
OWNED = tuple(
    NGINX + key
    for key in (
        "canary",
        "canary-weight",
        "canary-by-header",
        "canary-by-header-value",
        "canary-by-header-pattern",
        "canary-by-cookie",
        "affinity",
        "affinity-canary-behavior",
        "session-cookie-name",
        "session-cookie-max-age",
    )
)
# Argo CD tracks resources by these; a copy carrying them would be pruned or shown as drift.
_TRACKING_ANNOTATIONS = ("argocd.argoproj.io/", "kubectl.kubernetes.io/last-applied-configuration")
_TRACKING_LABELS = ("app.kubernetes.io/instance", "argocd.argoproj.io/instance")


def _backends(spec: Mapping[str, Any]) -> Iterator[tuple[tuple[str | int, ...], str | None]]:
    """(JSON pointer parts of ``backend.service.name``, the name) for every backend."""
    default = ((spec.get("defaultBackend") or {}).get("service") or {}).get("name")
    if spec.get("defaultBackend") is not None:
        yield ("spec", "defaultBackend", "service", "name"), default
    for i, rule in enumerate(spec.get("rules") or []):
        for j, path in enumerate(((rule or {}).get("http") or {}).get("paths") or []):
            name = (((path or {}).get("backend") or {}).get("service") or {}).get("name")
            yield ("spec", "rules", i, "http", "paths", j, "backend", "service", "name"), name


def _canary_spec(stable: Mapping[str, Any], blue: str, green: str) -> dict[str, Any]:
    """The stable spec reduced to blue's backends, each pointed at green."""
    spec = copy.deepcopy(stable.get("spec") or {})
    default = spec.get("defaultBackend")
    if default is not None:
        if ((default.get("service") or {}).get("name")) == blue:
            default["service"]["name"] = green
        else:
            spec.pop("defaultBackend")
    rules = []
    for rule in spec.get("rules") or []:
        http = (rule or {}).get("http")
        if not http:
            continue
        paths = []
        for path in http.get("paths") or []:
            service = ((path or {}).get("backend") or {}).get("service") or {}
            if service.get("name") == blue:
                service["name"] = green
                paths.append(path)
        if paths:
            http["paths"] = paths
            rules.append(rule)
    if rules:
        spec["rules"] = rules
    else:
        spec.pop("rules", None)
    return spec


class NginxRouter(NoMirror):
    def __init__(self, kube: Kube) -> None:
        self._kube = kube
        self._objects = Objects(kube)
        self._written = WrittenObjects()

    @staticmethod
    def _stable_name(target: Target) -> str:
        settings = target.spec.traffic.nginx
        assert settings is not None  # the spec validation requires the block for this router
        return settings.ingress

    def _canary_name(self, target: Target) -> str:
        return f"{self._stable_name(target)}{CANARY_SUFFIX}"

    def _services(self, target: Target) -> tuple[str, str]:
        blue, green = target.spec.blue.service, target.spec.green.service
        if not blue or not green:
            raise TrafficRouterError(
                "the nginx router needs spec.blue.service and spec.green.service"
            )
        return blue, green

    async def _ingress(self, target: Target, name: str) -> dict[str, Any] | None:
        group, version, plural = INGRESS
        return await self._kube.get(group, version, plural, target.namespace, name)

    def _match_problems(self, target: Target) -> list[str]:
        headers = [m for m in target.spec.traffic.match if not m.cookie]
        cookies = [m for m in target.spec.traffic.match if m.cookie]
        problems = []
        if len(headers) > 1:
            problems.append("spec.traffic.match: ingress-nginx canaries match at most one header")
        if len(cookies) > 1:
            problems.append("spec.traffic.match: ingress-nginx canaries match at most one cookie")
        for cookie in cookies:
            if cookie.regex is not None or cookie.exact not in (None, "always"):
                problems.append(
                    f"spec.traffic.match cookie {cookie.name!r}: ingress-nginx sends a request to"
                    " the canary only when the cookie's value is 'always'; omit exact/regex"
                )
        return problems

    def _annotations(self, target: Target, weight: int) -> dict[str, str | None]:
        wanted: dict[str, str | None] = dict.fromkeys(OWNED)
        wanted[NGINX + "canary"] = "true"
        wanted[NGINX + "canary-weight"] = str(weight)
        for match in target.spec.traffic.match:
            if match.cookie:
                wanted[NGINX + "canary-by-cookie"] = match.name
            else:
                wanted[NGINX + "canary-by-header"] = match.name
                if match.exact is not None:
                    wanted[NGINX + "canary-by-header-value"] = match.exact
                elif match.regex is not None:
                    wanted[NGINX + "canary-by-header-pattern"] = match.regex
        sticky = target.spec.traffic.stickiness
        if sticky is not None:
            wanted[NGINX + "affinity"] = "cookie"
            wanted[NGINX + "affinity-canary-behavior"] = "sticky"
            wanted[NGINX + "session-cookie-name"] = sticky.cookie.name
            wanted[NGINX + "session-cookie-max-age"] = str(
                int(parse_duration(sticky.cookie.max_age))
            )
        return wanted

    def _canary_body(
        self, stable: Mapping[str, Any], target: Target, weight: int
    ) -> dict[str, Any]:
        blue, green = self._services(target)
        meta = stable.get("metadata") or {}
        labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in _TRACKING_LABELS}
        annotations = {
            k: v
            for k, v in (meta.get("annotations") or {}).items()
            if not k.startswith(_TRACKING_ANNOTATIONS)
            and k != ORIGINAL_ANNOTATION
            and not k.startswith(NGINX + "canary")
        }
        annotations.update({k: v for k, v in self._annotations(target, weight).items() if v})
        metadata: dict[str, Any] = {
            "name": self._canary_name(target),
            "namespace": target.namespace,
            "annotations": annotations,
            "ownerReferences": [migration_owner(target)],
        }
        if labels:
            metadata["labels"] = labels
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": metadata,
            "spec": _canary_spec(stable, blue, green),
        }

    # --- the contract ---

    async def preflight(self, target: Target) -> list[str]:
        ns = target.namespace
        problems = await deployment_problems(self._objects, target)
        problems += await service_problems(self._objects, target, "nginx")
        problems += self._match_problems(target)
        stable = await self._ingress(target, self._stable_name(target))
        if stable is None:
            problems.append(f"Ingress {ns}/{self._stable_name(target)} not found")
        elif target.spec.blue.service:
            names = [name for _, name in _backends(stable.get("spec") or {})]
            if target.spec.blue.service not in names:
                problems.append(
                    f"Ingress {ns}/{self._stable_name(target)} has no backend for blue's Service"
                    f" {target.spec.blue.service}: nothing to send to green"
                )
        return problems

    async def _stable_converge(self, target: Target, plan: Any) -> dict[str, Any]:
        return await json_patch_converge(
            self._kube, INGRESS, target.namespace, self._stable_name(target), plan, what="Ingress"
        )

    @staticmethod
    def _save_original(stable: Mapping[str, Any]) -> list[JsonOp]:
        if ORIGINAL_ANNOTATION in annotations_of(stable):
            return []
        original = dump_original({"spec": stable.get("spec") or {}})
        return annotation_ops(stable, {ORIGINAL_ANNOTATION: original})

    async def prepare(self, target: Target, total_replicas: int) -> None:
        self._services(target)
        await self._stable_converge(target, self._save_original)
        await fresh_on_stale(target, lambda t: scale_green_up(self._objects, t, total_replicas))

    async def set_weight(self, target: Target, weight: int, total_replicas: int) -> None:
        if not 0 <= weight <= 100:
            raise TrafficRouterError(f"weight {weight} is outside 0..100")
        await fresh_on_stale(target, lambda t: self._set_weight(t, weight, total_replicas))

    def _canary_key(self, target: Target) -> tuple[str, str, str]:
        return (INGRESS[2], target.namespace, self._canary_name(target))

    async def _set_weight(self, target: Target, weight: int, total_replicas: int) -> None:
        green = await scale_green_up(self._objects, target, total_replicas)
        stable = await self._stable_converge(target, self._save_original)
        # The canary is ours alone: the copy our last write returned plans this one (guarded).
        key = self._canary_key(target)
        canary = self._written.get(key)
        if canary is None:
            canary = await self._ingress(target, self._canary_name(target))
            if canary is not None:
                self._written.keep(key, canary)
        if weight > 0 and available(green) == 0 and await self.get_weight(target) != weight:
            raise NotReady(
                f"Deployment {target.namespace}/{target.spec.green.deployment} has no available"
                f" pod yet: Ingress {target.namespace}/{self._canary_name(target)} sends it no"
                " traffic until it has"
            )
        wanted = self._canary_body(stable, target, weight)
        group, version, plural = INGRESS
        if canary is None:
            created = await self._kube.create(group, version, plural, target.namespace, wanted)
            self._written.keep(key, created)
            log.info(
                "canary ingress created",
                extra={"namespace": target.namespace, "object": wanted["metadata"]["name"]},
            )
            return

        def plan(current: dict[str, Any]) -> list[JsonOp]:
            ops = annotation_ops(current, self._annotations(target, weight))
            if current.get("spec") != wanted["spec"]:
                # The canary's spec is ours alone: replaced whole, guarded by what was read.
                ops = [
                    {"op": "test", "path": "/spec", "value": current.get("spec")},
                    {"op": "replace", "path": "/spec", "value": wanted["spec"]},
                    *ops,
                ]
            return ops

        await json_patch_converge(
            self._kube,
            INGRESS,
            target.namespace,
            self._canary_name(target),
            plan,
            what="Ingress",
            written=self._written,
        )

    async def get_weight(self, target: Target) -> int | None:
        canary = await self._ingress(target, self._canary_name(target))
        if canary is not None:
            notes = annotations_of(canary)
            if notes.get(NGINX + "canary") == "true":
                raw = notes.get(NGINX + "canary-weight", "0")
                return int(raw) if raw.isdigit() and int(raw) <= 100 else None
        stable = await self._ingress(target, self._stable_name(target))
        if stable is None:
            return None
        names = {name for _, name in _backends(stable.get("spec") or {})}
        blue, green = target.spec.blue.service, target.spec.green.service
        if green in names and blue not in names:
            return 100  # after success: the stable Ingress itself points at green
        return 0 if blue in names else None

    def _switch(self, stable: Mapping[str, Any], source: str, to: str) -> list[JsonOp]:
        ops: list[JsonOp] = []
        for parts, name in _backends(stable.get("spec") or {}):
            if name == source:
                path = pointer(*parts)
                ops += [
                    {"op": "test", "path": path, "value": source},
                    {"op": "replace", "path": path, "value": to},
                ]
        return ops

    @staticmethod
    def _switch_back(stable: Mapping[str, Any], blue: str, green: str) -> list[JsonOp]:
        """Backends that were blue's in the saved original and are green's now, back to blue."""
        saved = load_original(stable) or {}
        before = (
            dict(_backends(saved.get("spec") or {})) if isinstance(saved.get("spec"), dict) else {}
        )
        ops: list[JsonOp] = []
        for parts, name in _backends(stable.get("spec") or {}):
            if name == green and before.get(parts) == blue:
                path = pointer(*parts)
                ops += [
                    {"op": "test", "path": path, "value": green},
                    {"op": "replace", "path": path, "value": blue},
                ]
        return ops

    async def restore(self, target: Target, total_replicas: int, scale_down_green: bool) -> None:
        blue, green = self._services(target)
        group, version, plural = INGRESS
        # First: the stable Ingress on blue (it only differs after a half-done retire), then
        # the canary gone, which alone puts all traffic back on blue.
        await self._stable_converge(target, lambda s: self._switch_back(s, blue, green))
        self._written.forget(self._canary_key(target))
        await self._kube.delete(group, version, plural, target.namespace, self._canary_name(target))
        await self._stable_converge(
            target, lambda s: annotation_ops(s, {ORIGINAL_ANNOTATION: None})
        )
        if scale_down_green:
            await fresh_on_stale(target, lambda t: scale_down(self._objects, t, t.spec.green))

    async def hold_blue(self, target: Target, total_replicas: int) -> None:
        # At 100 % the canary takes everything, and blue was never scaled down.
        await fresh_on_stale(target, lambda t: keep_blue_scaled(self._objects, t, total_replicas))

    async def retire_blue(self, target: Target) -> None:
        blue, green = self._services(target)
        group, version, plural = INGRESS
        # The stable Ingress takes over green's traffic before the canary goes.
        await self._stable_converge(
            target,
            lambda s: self._switch(s, blue, green) + annotation_ops(s, {ORIGINAL_ANNOTATION: None}),
        )
        self._written.forget(self._canary_key(target))
        await self._kube.delete(group, version, plural, target.namespace, self._canary_name(target))
        await fresh_on_stale(target, lambda t: scale_down(self._objects, t, t.spec.blue))
