"""What every traffic router implements, and the small object helpers they share.

A router is the only code that moves traffic. Its contract, relied on by the reconciler:

* every method is idempotent and plans from the current state before it writes, so a retried or
  repeated action (after a crash, a conflict or a restart) changes nothing the second time. The
  current state is read, or taken from the watch-fed index (``Target.deployments``) when the
  write is sent behind test ops on what the plan read: a copy the cluster has moved past is
  refused by the API server and the move planned again from a read (``Stale``);
* it patches only the fields it owns (replicas, a Service selector, its own annotations), so
  edits by people or other controllers to anything else survive;
* the original state of what it changes is saved once, as JSON in the ``cutover.io/original``
  annotation on the changed object, and put back (and the annotation removed) by ``restore``;
* ``get_weight`` reads the cluster, never memory, so a restarted operator continues from what
  is really there; a move that returns has done all it was asked, so the reconciler knows the
  weight it left without reading it back.
"""

from __future__ import annotations

import asyncio
import copy
import enum
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from cutover.api import API_VERSION, KIND, DeploymentRef, MigrationSpec
from cutover.core.observations import DeploymentState
from cutover.durations import parse_duration
from cutover.kube import Kube, KubeError

log = logging.getLogger("cutover.routers")

ORIGINAL_ANNOTATION = "cutover.io/original"
WEIGHT_ANNOTATION = "cutover.io/weight"


# (namespace, name) -> the Deployment as the watch last showed it; None: not (yet) seen.
DeploymentLookup = Callable[[str, str], DeploymentState | None]
OWN_PREFIX = "cutover.io/"


@dataclass(frozen=True)
class Target:
    """What a router needs to know about one Migration."""

    namespace: str
    name: str  # the Migration's name
    uid: str
    spec: MigrationSpec
    # The watch-fed Deployment index: routers write from it without a GET first (None: read).
    deployments: DeploymentLookup | None = field(default=None, compare=False, repr=False)

    def reading(self) -> Target:
        """The same target with the index set aside: every Deployment is read from the cluster."""
        return replace(self, deployments=None)


class Move(enum.StrEnum):
    """What a route-table write is for; each leaves the route in a different shape."""

    set = "set"  # green gets the weight (and the sticky/match rules)
    restore = "restore"  # the original entries back, all traffic on blue
    retire = "retire"  # the original entries back, all traffic on green
    mirror = "mirror"  # copies of the weighted rule's requests to green, or none (percent 0)


class TrafficRouterError(Exception):
    """The router cannot do what was asked; the message names the object at fault."""


class Stale(TrafficRouterError):
    """A write planned from the watch's copy of a Deployment found it out of date (or found
    nothing to write, which only a read can confirm); the caller plans again from a read."""


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
        """Gets green ready to take any weight. The original state of what the router changes
        is on record no later than the write that first changes it."""
        ...

    async def set_weight(self, target: Target, weight: int, total_replicas: int) -> None:
        """Sends ``weight`` percent of traffic to green; writes only what differs."""
        ...

    async def get_weight(self, target: Target) -> int | None:
        """Green's share as read from the cluster; None when it cannot be told."""
        ...

    async def set_mirror(self, target: Target, percent: int) -> None:
        """Copies ``percent`` of live requests to green (answers dropped); 0 removes the mirror.
        Routers without the ``mirrors`` capability accept only 0."""
        ...

    async def get_mirror(self, target: Target) -> int | None:
        """The percent of requests mirrored to green as read from the cluster; None: cannot tell."""
        ...

    async def restore(self, target: Target, total_replicas: int, scale_down_green: bool) -> None:
        """All traffic back to blue with the first write (any mirror gone with it), then the
        original state put back."""
        ...

    async def hold_blue(self, target: Target, total_replicas: int) -> None:
        """Before the rollback window: blue at full size, with no traffic (all stays on green),
        so that ``restore`` puts traffic back on it with one write and no pod to start."""
        ...

    async def retire_blue(self, target: Target) -> None:
        """After success (or the rollback window): blue scaled to zero, the saved original
        removed."""
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


def own_annotations(annotations: Mapping[str, str]) -> dict[str, str]:
    """The operator's own annotations (``cutover.io/``): all a router reads of the rest."""
    return {k: v for k, v in annotations.items() if k.startswith(OWN_PREFIX)}


def original_replicas(annotations: Mapping[str, str]) -> int | None:
    """The replica count ``prepare`` saved on a Deployment, if any: the size a run started from."""
    try:
        saved = json.loads(annotations.get(ORIGINAL_ANNOTATION, ""))
    except ValueError:
        return None
    value = saved.get("replicas") if isinstance(saved, dict) else None
    return value if isinstance(value, int) and value >= 0 else None


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


def service_selector(service: Mapping[str, Any]) -> dict[str, str]:
    return dict((service.get("spec") or {}).get("selector") or {})


def selector_patch(current: Mapping[str, str], wanted: Mapping[str, str]) -> dict[str, Any]:
    """Strategic merge merges maps key by key: keys only in ``current`` must be nulled out for
    the result to equal ``wanted`` exactly."""
    patch: dict[str, Any] = {k: v for k, v in wanted.items() if current.get(k) != v}
    patch.update({k: None for k in current if k not in wanted})
    return patch


def format_labels(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"


class Indexed(dict[str, Any]):
    """A Deployment rebuilt from the watch-fed index: only the fields routers use, and the
    spec's ``generation``. A write planned from it is sent only if what the plan read still
    holds (see ``Objects.patch_deployment``)."""


def indexed_deployment(namespace: str, name: str, state: DeploymentState) -> Indexed:
    return Indexed(
        metadata={
            "name": name,
            "namespace": namespace,
            "generation": state.generation,
            "annotations": dict(state.annotations),
        },
        spec={
            "replicas": state.replicas,
            "selector": copy.deepcopy(dict(state.selector)),
            "template": {"metadata": {"labels": dict(state.pod_labels)}},
        },
        status={"availableReplicas": state.available},
    )


async def fresh_on_stale(target: Target, move: Callable[[Target], Awaitable[object]]) -> None:
    """``move`` planned from the index; planned once more from reads if the index was stale.
    Router moves are idempotent, so the parts the first attempt did are no-ops the second time."""
    try:
        await move(target)
    except Stale as stale:
        log.info(
            "index stale, reading",
            extra={"namespace": target.namespace, "migration": target.name, "why": str(stale)},
        )
        await move(target.reading())


class Objects:
    """Reads and minimal writes of the Deployments and Services the routers touch."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.kube.get("apps", "v1", "deployments", namespace, name)

    async def known(self, target: Target, name: str) -> dict[str, Any] | None:
        """A Deployment to plan a write from: the index's copy when it has one (no request),
        else read. Writes from the copy are guarded (see ``patch_deployment``)."""
        lookup = target.deployments
        state = lookup(target.namespace, name) if lookup is not None else None
        if state is None or state.generation <= 0:
            return await self.deployment(target.namespace, name)
        return indexed_deployment(target.namespace, name, state)

    async def require_known(self, target: Target, name: str) -> dict[str, Any]:
        obj = await self.known(target, name)
        if obj is None:
            raise TrafficRouterError(f"Deployment {target.namespace}/{name} not found")
        return obj

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

    async def _confirmed(self, copy_: Mapping[str, Any]) -> dict[str, Any]:
        """The Deployment as read now, if it is still what ``copy_`` (from the index) says: the
        copy may predate a write of ours, so "nothing to write" needs one read to be true."""
        meta = copy_.get("metadata") or {}
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        current = await self.deployment(namespace, name)
        if (
            current is None
            or (current.get("metadata") or {}).get("generation") != meta.get("generation")
            or own_annotations(annotations_of(current)) != annotations_of(copy_)
        ):
            raise Stale(f"Deployment {namespace}/{name} changed since the index's copy")
        return current

    async def patch_deployment(
        self,
        deployment: Mapping[str, Any],
        *,
        replicas_to: int | None = None,
        set_annotations: Mapping[str, str | None] | None = None,
    ) -> dict[str, Any]:
        """One strategic-merge patch of only what differs; returns the (new) object.

        ``set_annotations`` values of None remove the key. Nothing differs: no request at all
        (one read when ``deployment`` is the index's copy). From that copy, the write is sent
        behind test ops (``guarded_ops``) and a refusal raises ``Stale``.
        """
        meta = deployment.get("metadata") or {}
        patch: dict[str, Any] = {}
        if replicas_to is not None and replicas(deployment) != replicas_to:
            patch["spec"] = {"replicas": replicas_to}
        changes = annotation_changes(deployment, set_annotations or {})
        if changes:
            patch["metadata"] = {"annotations": changes}
        guarded = isinstance(deployment, Indexed)
        if not patch:
            if guarded:
                return await self._confirmed(deployment)
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
        if not guarded:
            return await self.kube.patch(
                "apps",
                "v1",
                "deployments",
                str(meta.get("namespace")),
                str(meta.get("name")),
                patch,
                patch_type="strategic",
            )
        try:
            return await self.kube.patch(
                "apps",
                "v1",
                "deployments",
                str(meta.get("namespace")),
                str(meta.get("name")),
                guarded_ops(deployment, replicas_to, changes),
                patch_type="json",
            )
        except KubeError as error:
            # 422: a test op failed (the API server's answer); 409: a conflicting write; 404:
            # deleted since (a read then says so in the router's own words).
            if error.status in (404, 409, 422):
                raise Stale(str(error)) from error
            raise


def guarded_ops(
    deployment: Mapping[str, Any],
    replicas_to: int | None,
    changes: Mapping[str, str | None],
) -> list[JsonOp]:
    """The write as JSON patch ops behind ``test`` ops on what its plan read from the index.

    The spec's generation changes with every spec write (ours, an HPA's, a person's) and not
    with the Deployment controller's status updates, which a resourceVersion would also catch
    (then nearly every write planned after a scale-down would be refused). The operator's own
    annotations are tested by value. One the index lacks may only be one our previous write
    added: a watch delivers events in order, so a copy that has seen any later spec change has
    seen it, and the only such write with no spec change saves blue's size unchanged.
    """
    meta = deployment.get("metadata") or {}
    ops: list[JsonOp] = [
        {"op": "test", "path": "/metadata/generation", "value": meta.get("generation")}
    ]
    for key, seen in sorted(annotations_of(deployment).items()):
        ops.append({"op": "test", "path": pointer("metadata", "annotations", key), "value": seen})
    if replicas_to is not None and replicas(deployment) != replicas_to:
        ops.append({"op": "replace", "path": "/spec/replicas", "value": replicas_to})
    for key, value in changes.items():
        path = pointer("metadata", "annotations", key)
        ops.append(
            {"op": "remove", "path": path}
            if value is None
            else {"op": "add", "path": path, "value": value}
        )
    return ops


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


# --- shared by the weighted routers (gatewayapi, istio, nginx) -----------------------------------

MANAGED_RULE = "cutover-match"
# How often a JSON patch whose ``test`` ops failed (someone else wrote in between) is re-planned
# from a fresh read before the router gives up and lets the reconciler retry later.
PATCH_ATTEMPTS = 5

JsonOp = dict[str, Any]


def pointer(*parts: str | int) -> str:
    """An RFC 6901 JSON pointer; ``/`` and ``~`` in keys (annotation names) are escaped."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def annotation_ops(obj: Mapping[str, Any], wanted: Mapping[str, str | None]) -> list[JsonOp]:
    """JSON patch ops setting (or, for None, removing) only the annotations that differ."""
    changes = annotation_changes(obj, wanted)
    if not changes:
        return []
    current = (obj.get("metadata") or {}).get("annotations")
    if current is None:
        added = {k: v for k, v in changes.items() if v is not None}
        return [{"op": "add", "path": "/metadata/annotations", "value": added}] if added else []
    ops: list[JsonOp] = []
    for key, value in changes.items():
        path = pointer("metadata", "annotations", key)
        if value is None:
            ops.append({"op": "remove", "path": path})
        else:
            ops.append({"op": "add", "path": path, "value": value})
    return ops


def unchanged_since(obj: Mapping[str, Any]) -> list[JsonOp]:
    """A ``test`` op refusing the patch if the object changed at all since ``obj`` was read:
    the original a run records must be the object as it is, even when planned from a copy.
    The resourceVersion, not the generation as in ``guarded_ops``: the same write may add the
    whole annotations map, which would replace annotations someone added since. A status
    update in between only costs a read: this guards one write per run, not every step."""
    version = (obj.get("metadata") or {}).get("resourceVersion")
    if not version:
        return []
    return [{"op": "test", "path": "/metadata/resourceVersion", "value": version}]


class WrittenObjects:
    """Route objects as the API server last returned them to this process (a write's answer,
    or a read's).

    A run's next step plans its write from that copy instead of reading the route again: the
    plan guards what it read with ``test`` ops, so a copy someone has since edited only gets
    the write refused, and the route is read and the write planned again. Bounded: past
    ``limit`` objects the oldest is forgotten (a read each, once more)."""

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}

    def get(self, key: tuple[str, str, str]) -> dict[str, Any] | None:
        return self._objects.get(key)

    def keep(self, key: tuple[str, str, str], obj: dict[str, Any]) -> None:
        """Kept without its managedFields: no plan reads them, and they are about half of a
        route as the API server returns it, kept for every run going."""
        metadata = obj.get("metadata") or {}
        if "managedFields" in metadata:
            metadata = {k: v for k, v in metadata.items() if k != "managedFields"}
            obj = {**obj, "metadata": metadata}
        self._objects.pop(key, None)
        self._objects[key] = obj
        if len(self._objects) > self._limit:
            del self._objects[next(iter(self._objects))]

    def forget(self, key: tuple[str, str, str]) -> None:
        self._objects.pop(key, None)


async def json_patch_converge(
    kube: Kube,
    resource: tuple[str, str, str],
    namespace: str,
    name: str,
    plan: Any,
    *,
    what: str,
    written: WrittenObjects | None = None,
) -> dict[str, Any]:
    """Reads the object, asks ``plan(obj)`` for JSON patch ops, and sends them if any.

    The plan guards every list element it touches with a ``test`` op, so a write by someone else
    in between (which may have shifted indexes) fails the patch instead of clobbering their
    edit; then the object is read again and the plan made again. No ops: no request at all.

    With ``written``, the first plan is made from the copy our last write returned, when there
    is one (no read); "nothing to write" from that copy is only believed after a read.
    """
    group, version, plural = resource
    key = (plural, namespace, name)
    copy_ = written.get(key) if written is not None else None
    last: Exception | None = None
    for _ in range(PATCH_ATTEMPTS):
        remembered, copy_ = copy_, None
        obj = remembered or await kube.get(group, version, plural, namespace, name)
        if obj is None:
            raise TrafficRouterError(f"{what} {namespace}/{name} not found")
        ops: list[JsonOp] = plan(obj)
        if not ops:
            if remembered is not None:
                continue  # the copy may predate someone else's write: read once to be sure
            if written is not None:
                written.keep(key, obj)
            return obj
        try:
            result = await kube.patch(
                group, version, plural, namespace, name, ops, patch_type="json"
            )
        except KubeError as error:
            if written is not None:
                written.forget(key)  # whatever went wrong, the next plan starts from a read
            # 422: a failed test op (the apiserver's answer); 409: a conflicting write; 404
            # for a copy: the route was deleted since (the read says so in our words).
            if error.status in (409, 422) or (error.status == 404 and remembered is not None):
                last = error
                continue
            raise
        if written is not None:
            written.keep(key, result)
        log.info(
            "route patched",
            extra={
                "namespace": namespace,
                "object": name,
                "resource": plural,
                "paths": sorted({op["path"] for op in ops if op["op"] != "test"}),
            },
        )
        return result
    raise TrafficRouterError(
        f"{what} {namespace}/{name} kept changing while it was being patched: {last}"
    )


def regex_literal(text: str) -> str:
    """Escapes only RE2's metacharacters (``re.escape`` also escapes ``-``, which reads badly)."""
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", text)


def header_value_regex(exact: str | None, regex: str | None) -> str:
    if exact is not None:
        return regex_literal(exact)
    return regex if regex is not None else ".*"


def cookie_regex(name: str, value_regex: str) -> str:
    """An RE2 pattern for a ``Cookie`` header carrying ``name=value`` anywhere in it.

    Anchored and padded with ``.*`` so that it means the same under full-match (Envoy) and
    partial-match implementations; the value stops at the next ``;``.
    """
    value = "[^;]*" if value_regex == ".*" else value_regex
    if "|" in value:
        value = f"(?:{value})"  # alternation is the one operator that binds looser than `name=`
    return f"^(.*;\\s*)?{regex_literal(name)}={value}(;.*)?$"


def sticky_value(target: Target) -> str:
    """The sticky cookie's value: tied to the Migration so another Migration's cookie differs."""
    return (target.uid.split("-")[0] or "1")[:16]


def sticky_set_cookie(target: Target) -> str | None:
    """The ``Set-Cookie`` value green's responses carry, or None without stickiness."""
    sticky = target.spec.traffic.stickiness
    if sticky is None:
        return None
    seconds = int(parse_duration(sticky.cookie.max_age))
    return f"{sticky.cookie.name}={sticky_value(target)}; Max-Age={seconds}; Path=/"


def is_sticky_set_cookie(value: Any, target: Target) -> bool:
    sticky = target.spec.traffic.stickiness
    name = sticky.cookie.name if sticky is not None else None
    return isinstance(value, str) and name is not None and value.startswith(f"{name}=")


def share_of_green(blue_weight: int, green_weight: int) -> int | None:
    total = blue_weight + green_weight
    if total <= 0:
        return None
    return round(100 * green_weight / total)


async def service_problems(objects: Objects, target: Target, router: str) -> list[str]:
    """spec.blue.service / spec.green.service: set, and the Services exist (read together:
    a run's start waits for these reads, and 1,000 starting at once queue behind each other)."""
    ns, spec = target.namespace, target.spec
    roles = (("blue", spec.blue), ("green", spec.green))
    found = await asyncio.gather(
        *(objects.service(ns, ref.service) for _, ref in roles if ref.service)
    )
    present = iter(found)
    problems: list[str] = []
    for role, ref in roles:
        if not ref.service:
            problems.append(
                f"the {router} router needs spec.{role}.service: the Service that selects only"
                f" {role}'s pods"
            )
        elif next(present) is None:
            problems.append(f"{role} Service {ns}/{ref.service} not found")
    if spec.blue.service and spec.blue.service == spec.green.service:
        problems.append(f"blue and green name the same Service {spec.blue.service!r}")
    return problems


async def deployment_problems(objects: Objects, target: Target) -> list[str]:
    """Blue and green exist: the watch-fed index says so, or a read where it has no entry."""
    ns, spec = target.namespace, target.spec
    roles = (("blue", spec.blue), ("green", spec.green))
    found = await asyncio.gather(*(objects.known(target, ref.deployment) for _, ref in roles))
    return [
        f"{role} Deployment {ns}/{ref.deployment} not found"
        for (role, ref), obj in zip(roles, found, strict=True)
        if obj is None
    ]


class NoMirror:
    """What a router that cannot copy requests answers; the spec validation keeps setMirror
    steps away from it (``mirrors`` capability), so only "no mirror" is ever asked."""

    async def set_mirror(self, target: Target, percent: int) -> None:
        if percent:
            raise TrafficRouterError(
                f"the {target.spec.traffic.router.value} router cannot mirror requests to green"
            )

    async def get_mirror(self, target: Target) -> int | None:
        return 0


async def scale_green_up(objects: Objects, target: Target, total_replicas: int) -> dict[str, Any]:
    """Green at full size (never shrunk here): weighted routers move requests, not pods. From
    the index's copy (``Stale`` when the cluster has moved past it: see ``fresh_on_stale``)."""
    green = await objects.require_known(target, target.spec.green.deployment)
    wanted = max(total_replicas, 1)
    if replicas(green) >= wanted:
        return green
    return await objects.patch_deployment(green, replicas_to=wanted)


async def keep_blue_scaled(objects: Objects, target: Target, total_replicas: int) -> None:
    """Blue at full size (never shrunk here), for routers whose route sends it nothing at 100 %."""
    blue = await objects.require_known(target, target.spec.blue.deployment)
    wanted = max(total_replicas, 1)
    if replicas(blue) < wanted:
        await objects.patch_deployment(blue, replicas_to=wanted)


async def scale_down(objects: Objects, target: Target, version: DeploymentRef) -> None:
    """``version``'s Deployment to 0 pods, from the index's copy; gone already: nothing to do."""
    obj = await objects.known(target, version.deployment)
    if obj is not None:
        await objects.patch_deployment(obj, replicas_to=0)


def migration_owner(target: Target) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": target.name,
        "uid": target.uid,
        "controller": True,
        "blockOwnerDeletion": False,
    }


class RouteTableRouter:
    """A route object holding an ordered list of rules, one of which splits traffic between a
    blue and a green entry by integer weights: Gateway API ``HTTPRoute.spec.rules[].backendRefs``
    and Istio ``VirtualService.spec.http[].route``. Subclasses say where things live.

    Owned fields: the ``weight`` (and the sticky-cookie response header) of the blue and green
    entries of the weighted rule, one rule named ``cutover-match`` inserted just before it, and
    the ``cutover.io/original`` annotation. Everything else (other rules, filters, timeouts,
    matches, other entries' fields, other annotations) is never written.
    """

    resource: tuple[str, str, str]
    kind: str  # for messages: "HTTPRoute", "VirtualService"
    router: str  # "gatewayapi", "istio"
    rules_key: str  # "rules", "http"
    entries_key: str  # "backendRefs", "route"
    rule_word: str  # "rule", "http route"
    owned_entry_keys: tuple[str, ...]  # the entry fields restored from the original

    def __init__(self, kube: Kube) -> None:
        self._kube = kube
        self._objects = Objects(kube)
        self._written = WrittenObjects()

    # --- what subclasses define ---

    def object_name(self, target: Target) -> str:
        raise NotImplementedError

    def wanted_rule(self, target: Target) -> str | None:
        raise NotImplementedError

    def role_of(self, entry: Mapping[str, Any], target: Target) -> str | None:
        """ "blue", "green" or None for an entry of the weighted rule."""
        raise NotImplementedError

    def with_sticky(self, entry: dict[str, Any], set_cookie: str) -> dict[str, Any]:
        raise NotImplementedError

    def without_sticky(self, entry: dict[str, Any], target: Target) -> dict[str, Any]:
        raise NotImplementedError

    def match_conditions(self, rule: Mapping[str, Any], target: Target) -> list[dict[str, Any]]:
        """The weighted rule's own conditions, each narrowed by every header/cookie match."""
        raise NotImplementedError

    def match_rule(
        self, rule: Mapping[str, Any], green: Mapping[str, Any], conditions: list[dict[str, Any]]
    ) -> dict[str, Any]:
        raise NotImplementedError

    def describe_entry(self, role: str, target: Target) -> str:
        raise NotImplementedError

    def mirror_of(self, rule: Mapping[str, Any], target: Target) -> int:
        """The percent of the rule's requests copied to green (0: none)."""
        raise NotImplementedError

    def with_mirror(
        self, rule: Mapping[str, Any], green: Mapping[str, Any], percent: int
    ) -> dict[str, Any]:
        """The rule (without our mirror) copying ``percent`` of its requests to ``green``."""
        raise NotImplementedError

    def without_mirror(self, rule: Mapping[str, Any], target: Target) -> dict[str, Any]:
        """The rule with our mirror to green gone and everything else as it was."""
        raise NotImplementedError

    def mirror_conflict(self, rule: Mapping[str, Any], target: Target) -> str | None:
        """Why the rule cannot take our mirror (e.g. it mirrors elsewhere already); None: fine."""
        return None

    # --- locating ---

    def _rules(self, obj: Mapping[str, Any]) -> list[Any]:
        rules = (obj.get("spec") or {}).get(self.rules_key)
        return list(rules) if isinstance(rules, list) else []

    def _locate(self, obj: Mapping[str, Any], target: Target) -> tuple[int, int, int]:
        """(rule index, blue entry index, green entry index); raises naming what is wrong."""
        where = f"{self.kind} {target.namespace}/{self.object_name(target)}"
        rules = self._rules(obj)
        candidates = [
            (i, r)
            for i, r in enumerate(rules)
            if isinstance(r, dict) and r.get("name") != MANAGED_RULE
        ]
        wanted = self.wanted_rule(target)
        if wanted is not None:
            chosen = [i for i, r in candidates if r.get("name") == wanted]
            if not chosen:
                raise TrafficRouterError(f"{where} has no {self.rule_word} named {wanted!r}")
        elif len(candidates) == 1:
            chosen = [candidates[0][0]]
        else:
            chosen = [i for i, r in candidates if self._pair(r, target) is not None]
            if len(chosen) != 1:
                raise TrafficRouterError(
                    f"{where} has {len(candidates)} {self.rule_word}s and"
                    f" {len(chosen)} of them name both blue and green: set the"
                    f" {self.rule_word}'s name in spec.traffic"
                )
        index = chosen[0]
        pair = self._pair(rules[index], target)
        if pair is None:
            missing = [
                self.describe_entry(role, target)
                for role in ("blue", "green")
                if sum(1 for e in self._entries(rules[index]) if self.role_of(e, target) == role)
                != 1
            ]
            raise TrafficRouterError(
                f"{where} {self.rule_word} {index} needs exactly one entry for each of"
                f" {' and '.join(missing)}"
            )
        return index, pair[0], pair[1]

    def _entries(self, rule: Mapping[str, Any]) -> list[Any]:
        entries = rule.get(self.entries_key)
        return list(entries) if isinstance(entries, list) else []

    def _pair(self, rule: Mapping[str, Any], target: Target) -> tuple[int, int] | None:
        roles = [
            self.role_of(e, target) if isinstance(e, dict) else None for e in self._entries(rule)
        ]
        if roles.count("blue") != 1 or roles.count("green") != 1:
            return None
        return roles.index("blue"), roles.index("green")

    @staticmethod
    def _weight(entry: Mapping[str, Any]) -> int:
        raise NotImplementedError

    # --- planning ---

    def _original_entries(
        self, obj: Mapping[str, Any], target: Target
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        saved = load_original(obj)
        spec = saved.get("spec") if saved else None
        if not isinstance(spec, dict):
            return None
        try:
            index, b, g = self._locate({"spec": spec}, target)
        except TrafficRouterError:
            return None
        entries = self._entries(self._rules({"spec": spec})[index])
        return dict(entries[b]), dict(entries[g])

    def _restored(self, entry: Mapping[str, Any], original: Mapping[str, Any]) -> dict[str, Any]:
        """``entry`` with the owned keys exactly as they were (absent stays absent)."""
        result = dict(entry)
        for key in self.owned_entry_keys:
            if key in original:
                result[key] = copy.deepcopy(original[key])
            else:
                result.pop(key, None)
        return result

    def plan(self, obj: Mapping[str, Any], target: Target, move: Move, weight: int) -> list[JsonOp]:
        """JSON patch ops bringing the object to what ``move`` asks (``weight``: for set)."""
        meta_ops: dict[str, str | None]
        guard: list[JsonOp] = []
        if move in (Move.set, Move.mirror):
            # The route's first change carries its original: one write, so the record is the
            # route exactly as that change found it (an edit since the read fails the guard).
            meta_ops = {}
            if ORIGINAL_ANNOTATION not in annotations_of(obj):
                meta_ops[ORIGINAL_ANNOTATION] = dump_original({"spec": obj.get("spec") or {}})
                guard = unchanged_since(obj)
        else:
            meta_ops = {ORIGINAL_ANNOTATION: None}
        ops = guard + annotation_ops(obj, meta_ops)
        rules = self._rules(obj)
        index, b, g = self._locate(obj, target)
        rule = rules[index]
        if move is Move.mirror:
            return self._mirror_ops(rule, index, g, target, weight) + ops
        # Restoring (either way) ends any mirror in the same write; setting keeps it.
        new_rule = copy.deepcopy(rule) if move is Move.set else self.without_mirror(rule, target)
        entries = self._entries(new_rule)
        blue, green = dict(entries[b]), dict(entries[g])
        managed: dict[str, Any] | None = None
        if move is Move.set:
            blue["weight"], green["weight"] = 100 - weight, weight
            set_cookie = sticky_set_cookie(target)
            if set_cookie is not None:
                green = self.with_sticky(green, set_cookie)
            conditions = self.match_conditions(rule, target)
            if conditions:
                # Requests the match rule sends to green need no copy to green.
                managed = self.match_rule(self.without_mirror(rule, target), green, conditions)
        else:
            original = self._original_entries(obj, target)
            if original is None:
                blue, green = self.without_sticky(blue, target), self.without_sticky(green, target)
            else:
                blue, green = self._restored(blue, original[0]), self._restored(green, original[1])
            if move is Move.retire:
                blue["weight"], green["weight"] = 0, 100
            elif share_of_green(self._weight(blue), self._weight(green)) != 0:
                # Restoring must leave all traffic on blue, whatever the route said before.
                log.warning(
                    "original weights not restored: they send traffic to green",
                    extra={"namespace": target.namespace, "object": self.object_name(target)},
                )
                blue["weight"], green["weight"] = 100, 0
        entries[b], entries[g] = blue, green
        new_rule[self.entries_key] = entries
        return self._list_ops(rules, index, rule, new_rule, managed) + ops

    def _mirror_ops(
        self, rule: Any, index: int, green_index: int, target: Target, percent: int
    ) -> list[JsonOp]:
        green = self._entries(rule)[green_index]
        new_rule = (
            self.with_mirror(self.without_mirror(rule, target), green, percent)
            if percent > 0
            else self.without_mirror(rule, target)
        )
        if new_rule == rule:
            return []
        path = pointer("spec", self.rules_key, index)
        return [
            {"op": "test", "path": path, "value": rule},
            {"op": "replace", "path": path, "value": new_rule},
        ]

    def _list_ops(
        self,
        rules: list[Any],
        index: int,
        rule: Any,
        new_rule: dict[str, Any],
        managed: dict[str, Any] | None,
    ) -> list[JsonOp]:
        base = ("spec", self.rules_key)
        present = [
            k for k, r in enumerate(rules) if isinstance(r, dict) and r.get("name") == MANAGED_RULE
        ]
        keep_managed = (
            managed is not None and present == [index - 1] and rules[index - 1] == managed
        )
        changes: list[JsonOp] = []
        tests: list[JsonOp] = []
        if new_rule != rule:
            changes.append({"op": "replace", "path": pointer(*base, index), "value": new_rule})
        if not keep_managed and (present or managed is not None):
            for k in sorted(present, reverse=True):
                tests.append({"op": "test", "path": pointer(*base, k), "value": rules[k]})
                changes.append({"op": "remove", "path": pointer(*base, k)})
            if managed is not None:
                at = index - sum(1 for k in present if k < index)
                changes.append({"op": "add", "path": pointer(*base, at), "value": managed})
        if not changes:
            return []
        # The weighted rule is tested whole: if anyone changed it (or shifted it) since the
        # read, the patch fails and is planned again, so their edit is never overwritten.
        return [{"op": "test", "path": pointer(*base, index), "value": rule}, *tests, *changes]

    async def _converge(self, target: Target, move: Move, weight: int = 0) -> dict[str, Any]:
        name = self.object_name(target)
        ending = move not in (Move.set, Move.mirror)
        if ending:
            # A run's end plans from a read: what it restores must be from the route as it is.
            # (A run's first change may plan from the start checks' read: the original it
            # records is guarded by the route's resourceVersion, see ``plan``.) Nor is what it
            # wrote kept: a run's next start plans from its own checks' read.
            self._written.forget(self._written_key(target))
        return await json_patch_converge(
            self._kube,
            self.resource,
            target.namespace,
            name,
            lambda obj: self.plan(obj, target, move, weight),
            what=self.kind,
            written=None if ending else self._written,
        )

    def _written_key(self, target: Target) -> tuple[str, str, str]:
        """The route's key in ``self._written`` (as ``json_patch_converge`` keeps it)."""
        return (self.resource[2], target.namespace, self.object_name(target))

    async def _route(self, target: Target) -> dict[str, Any] | None:
        group, version, plural = self.resource
        return await self._kube.get(
            group, version, plural, target.namespace, self.object_name(target)
        )

    async def _route_or_problem(self, target: Target) -> tuple[dict[str, Any] | None, str | None]:
        """The route (None: not found), or why it could not be read."""
        try:
            return await self._route(target), None
        except KubeError as error:
            # 404 on the whole kind (CRD not installed) comes back as None; others end here.
            return None, f"{self.kind} {target.namespace}/{self.object_name(target)}: {error}"

    # --- the contract ---

    async def preflight(self, target: Target) -> list[str]:
        # Together: a start waits for all of them before its first write.
        deployments, services, (route, unreadable) = await asyncio.gather(
            deployment_problems(self._objects, target),
            service_problems(self._objects, target, self.router),
            self._route_or_problem(target),
        )
        problems = [*deployments, *services]
        if unreadable is not None:
            return [*problems, unreadable]
        if route is None:
            return [
                *problems,
                f"{self.kind} {target.namespace}/{self.object_name(target)} not found",
            ]
        # The run's first route write (its first weight or mirror, with the original on
        # record) is planned from this read.
        self._written.keep(self._written_key(target), route)
        if problems:
            return problems
        try:
            index, _, _ = self._locate(route, target)
        except TrafficRouterError as error:
            return [str(error)]
        if any(step.set_mirror is not None for step in target.spec.steps):
            conflict = self.mirror_conflict(self._rules(route)[index], target)
            if conflict is not None:
                return [conflict]
        return []

    async def prepare(self, target: Target, total_replicas: int) -> None:
        # The route is not written yet: its original goes on record with its first change
        # (``plan``), so a start sends one request fewer before green's scale-up. A crash or a
        # rollback before that change finds the route as the team wrote it: nothing to restore.
        await fresh_on_stale(target, lambda t: scale_green_up(self._objects, t, total_replicas))

    async def set_weight(self, target: Target, weight: int, total_replicas: int) -> None:
        if not 0 <= weight <= 100:
            raise TrafficRouterError(f"weight {weight} is outside 0..100")
        await fresh_on_stale(target, lambda t: self._set_weight(t, weight, total_replicas))

    async def _set_weight(self, target: Target, weight: int, total_replicas: int) -> None:
        green = await scale_green_up(self._objects, target, total_replicas)
        if weight > 0 and available(green) == 0 and await self.get_weight(target) != weight:
            raise NotReady(
                f"Deployment {target.namespace}/{target.spec.green.deployment} has no"
                f" available pod yet: {self.kind} {target.namespace}/"
                f"{self.object_name(target)} sends it no traffic until it has"
            )
        await self._converge(target, Move.set, weight)

    async def _weighted_rule(
        self, target: Target, *, remembered: bool = False
    ) -> tuple[dict[str, Any], int, int] | None:
        """The weighted rule as the cluster has it, with blue's and green's entry indexes; None
        when the route or the rule cannot be found (then nothing can be told). ``remembered``:
        from the route as this process last wrote or read it, when it holds one."""
        key = self._written_key(target)
        route = self._written.get(key) if remembered else None
        if route is None:
            route = await self._route(target)
            if route is not None and remembered:
                # After a restart, one read serves the wake-ups that follow (and the next
                # write's plan, whose guards refuse it if the route changes meanwhile).
                self._written.keep(key, route)
        if route is None:
            return None
        try:
            index, b, g = self._locate(route, target)
        except TrafficRouterError:
            return None
        return self._rules(route)[index], b, g

    async def get_weight(self, target: Target) -> int | None:
        # The route as our last write (or read) returned it, like the steps' writes are planned
        # from: a run waiting for green's pods is woken by every change of its Deployments, and
        # reads each time cost ~6 GETs per run with 1,000 at once. Read after a restart (no
        # copy), and after a failed route write (the copy is dropped); an edit by someone else
        # since is found by the next write's guard, as for the steps.
        found = await self._weighted_rule(target, remembered=True)
        if found is None:
            return None
        rule, b, g = found
        entries = self._entries(rule)
        return share_of_green(self._weight(entries[b]), self._weight(entries[g]))

    async def set_mirror(self, target: Target, percent: int) -> None:
        if not 0 <= percent <= 100:
            raise TrafficRouterError(f"mirror percent {percent} is outside 0..100")
        # Green was scaled to full size by prepare; copies reaching a pod still starting are
        # dropped, which costs nothing (their answers are thrown away anyway), and the run
        # waits for green to be ready before the step counts as in place.
        await self._converge(target, Move.mirror, percent)

    async def get_mirror(self, target: Target) -> int | None:
        found = await self._weighted_rule(target)
        return None if found is None else self.mirror_of(found[0], target)

    async def restore(self, target: Target, total_replicas: int, scale_down_green: bool) -> None:
        # One write: blue's weight back (all traffic on blue), the match rule, the mirror and
        # the sticky header gone, the annotation removed. Only then is green scaled down.
        await self._converge(target, Move.restore)
        if scale_down_green:
            await fresh_on_stale(target, lambda t: scale_down(self._objects, t, t.spec.green))

    async def hold_blue(self, target: Target, total_replicas: int) -> None:
        # At 100 % the route sends blue nothing, and blue was never scaled down.
        await fresh_on_stale(target, lambda t: keep_blue_scaled(self._objects, t, total_replicas))

    async def retire_blue(self, target: Target) -> None:
        await self._converge(target, Move.retire)
        await fresh_on_stale(target, lambda t: scale_down(self._objects, t, t.spec.blue))
