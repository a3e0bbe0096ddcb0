"""The in-memory object store with the apiserver's write semantics and watch fan-out.

Everything here is synchronous and runs on the event loop thread: with no `await` between
reading and writing, each operation is atomic without locks, and a watcher that subscribes
and snapshots the history in one go can never miss or duplicate an event.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import datetime
import random
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from cutover.sandbox import patching
from cutover.sandbox.discovery import ResourceRegistry, ResourceType, resource_from_crd
from cutover.sandbox.errors import (
    already_exists,
    api_error,
    bad_request,
    conflict,
    not_found,
)
from cutover.sandbox.selectors import Predicate

Obj = dict[str, Any]
StoreKey = tuple[str, str]  # (group, plural)
ObjKey = tuple[str, str]  # (namespace or "", name)

# Events kept per resource for watches resuming from a resourceVersion; older ones get 410 Gone.
HISTORY_PER_RESOURCE = 10_000


def now_iso() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Event:
    type: str  # ADDED / MODIFIED / DELETED
    rv: int
    rt: ResourceType
    obj: Obj
    old: Obj | None = None


@dataclass(eq=False)
class Watcher:
    """A subscription of one watch stream; the server drains `queue`."""

    key: StoreKey
    namespace: str | None
    predicate: Predicate
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)


Listener = Callable[[Event], None]


def _spec_part(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What counts as the "spec" for generation bumps: anything outside metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


class ObjectStore:
    def __init__(self, registry: ResourceRegistry) -> None:
        self.registry = registry
        self._objects: dict[StoreKey, dict[ObjKey, Obj]] = collections.defaultdict(dict)
        self._history: dict[StoreKey, collections.deque[Event]] = collections.defaultdict(
            lambda: collections.deque(maxlen=HISTORY_PER_RESOURCE)
        )
        self._watchers: dict[StoreKey, set[Watcher]] = collections.defaultdict(set)
        self._listeners: list[Listener] = []
        # The newest resourceVersion per resource that fell out of the bounded history.
        self._evicted_rv: dict[StoreKey, int] = {}
        self._rv = 0
        self._random = random.Random()
        # Namespaces exist in a fresh real cluster; `kube-system` is cheap to pretend too.
        for ns in ("default", "kube-system"):
            rt = self._rt("", "v1", "namespaces")
            self.create(rt, None, {"metadata": {"name": ns}})

    # --- helpers -------------------------------------------------------------------------------

    def _rt(self, group: str, version: str, plural: str) -> ResourceType:
        rt = self.registry.lookup(group, version, plural)
        assert rt is not None
        return rt

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _emit(self, event: Event) -> None:
        history = self._history[event.rt.key]
        if len(history) == history.maxlen:
            self._evicted_rv[event.rt.key] = history[0].rv
        history.append(event)
        for watcher in self._watchers.get(event.rt.key, ()):
            watcher.queue.put_nowait(event)
        for listener in self._listeners:
            listener(event)

    @staticmethod
    def _okey(rt: ResourceType, namespace: str | None, name: str) -> ObjKey:
        return ((namespace or "") if rt.namespaced else "", name)

    # --- reads ---------------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self._objects[rt.key].get(self._okey(rt, namespace, name))
        if obj is None:
            raise not_found(rt.plural, name, rt.group)
        return obj

    def find(self, rt: ResourceType, namespace: str | None, name: str) -> Obj | None:
        return self._objects[rt.key].get(self._okey(rt, namespace, name))

    def query(
        self,
        rt: ResourceType,
        namespace: str | None,
        predicate: Predicate | None = None,
    ) -> list[Obj]:
        items = self._objects[rt.key]
        result: list[Obj] = []
        for (ns, _), obj in items.items():
            if namespace and rt.namespaced and ns != namespace:
                continue
            if predicate is None or predicate(obj):
                result.append(obj)
        return result

    def iter_all(self) -> Iterator[tuple[StoreKey, Obj]]:
        for key, items in self._objects.items():
            for obj in items.values():
                yield key, obj

    # --- watches -------------------------------------------------------------------------------

    def subscribe(
        self,
        rt: ResourceType,
        namespace: str | None,
        predicate: Predicate,
        since: str | None,
    ) -> tuple[Watcher, list[Event]]:
        """Register a watcher and return the backlog it must send first.

        With no/zero resourceVersion, the backlog is synthetic ADDED events for the current
        state ("get state and start at most recent"); otherwise it is the history after `since`.
        """
        watcher = Watcher(key=rt.key, namespace=namespace, predicate=predicate)
        backlog: list[Event]
        if not since or since == "0":
            backlog = [
                Event("ADDED", int(obj["metadata"]["resourceVersion"]), rt, obj)
                for obj in self.query(rt, namespace)
            ]
        else:
            try:
                start = int(since)
            except ValueError as exc:
                raise bad_request(f"invalid resourceVersion {since!r}") from exc
            if start < self._evicted_rv.get(rt.key, 0):
                raise api_error(410, "Expired", f"too old resource version: {start}")
            backlog = [event for event in self._history[rt.key] if event.rv > start]
        self._watchers[rt.key].add(watcher)
        return watcher, backlog

    def unsubscribe(self, watcher: Watcher) -> None:
        self._watchers[watcher.key].discard(watcher)

    def close_all_watchers(self) -> None:
        for watchers in self._watchers.values():
            for watcher in watchers:
                watcher.queue.put_nowait(None)

    # --- writes --------------------------------------------------------------------------------

    def _random_suffix(self) -> str:
        alphabet = "bcdfghjklmnpqrstvwxz2456789"  # the apiserver avoids vowels and confusables
        return "".join(self._random.choice(alphabet) for _ in range(5))

    def create(
        self,
        rt: ResourceType,
        namespace: str | None,
        body: Any,
        *,
        dry_run: bool = False,
    ) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        obj: Obj = copy.deepcopy(body)
        obj["apiVersion"] = obj.get("apiVersion") or rt.api_version
        obj["kind"] = obj.get("kind") or rt.kind
        meta: dict[str, Any] = obj.setdefault("metadata", {}) or {}
        obj["metadata"] = meta
        name = meta.get("name")
        if not name:
            prefix = meta.get("generateName")
            if not prefix:
                raise api_error(
                    422,
                    "Invalid",
                    "metadata.name: Required value: name or generateName is required",
                )
            name = prefix + self._random_suffix()
            while self.find(rt, namespace, name) is not None:
                name = prefix + self._random_suffix()
            meta["name"] = name
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if namespace and body_ns and body_ns != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the "
                    "namespace sent on the request"
                )
            # Namespaces need not exist: objects may be created in any namespace name.
            meta["namespace"] = namespace or body_ns or "default"
        else:
            meta.pop("namespace", None)
        okey = self._okey(rt, meta.get("namespace"), name)
        if okey in self._objects[rt.key]:
            raise already_exists(rt.plural, name, rt.group)
        if rt.status_subresource:
            obj.pop("status", None)  # status is only writable through /status
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_iso()
        meta["generation"] = 1
        self._default(rt, obj)
        if rt.group == "apiextensions.k8s.io" and rt.plural == "customresourcedefinitions":
            self._validate_crd(obj)
        if dry_run:
            return obj
        rv = self._next_rv()
        meta["resourceVersion"] = str(rv)
        self._objects[rt.key][okey] = obj
        if rt.plural == "customresourcedefinitions" and rt.group == "apiextensions.k8s.io":
            for crd_rt in resource_from_crd(obj):
                self.registry.register(crd_rt)
        self._emit(Event("ADDED", rv, rt, obj))
        return obj

    def _default(self, rt: ResourceType, obj: Obj) -> None:
        """The few server-side defaults that clients and the sandbox controllers rely on."""
        spec = obj.get("spec")
        if rt.kind == "Namespace" and rt.group == "":
            obj["status"] = {"phase": "Active"}
        elif rt.kind == "Deployment" and isinstance(spec, dict):
            spec.setdefault("replicas", 1)
        elif rt.kind == "Service" and rt.group == "" and isinstance(spec, dict):
            spec.setdefault("type", "ClusterIP")
            if spec["type"] != "ExternalName":
                spec.setdefault(
                    "clusterIP",
                    f"10.96.{self._random.randint(0, 255)}.{self._random.randint(1, 254)}",
                )
        elif rt.kind == "CustomResourceDefinition":
            names = (spec or {}).get("names") or {}
            obj["status"] = {
                "acceptedNames": names,
                "storedVersions": [
                    v.get("name") for v in (spec or {}).get("versions") or [] if v.get("storage")
                ],
                "conditions": [
                    {
                        "type": t,
                        "status": "True",
                        "reason": r,
                        "message": "",
                        "lastTransitionTime": now_iso(),
                    }
                    for t, r in (
                        ("NamesAccepted", "NoConflicts"),
                        ("Established", "InitialNamesAccepted"),
                    )
                ],
            }

    def _validate_crd(self, obj: Obj) -> None:
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        if (
            not spec.get("group")
            or not names.get("plural")
            or not names.get("kind")
            or not spec.get("versions")
        ):
            raise api_error(
                422,
                "Invalid",
                "CustomResourceDefinition needs spec.group, "
                "spec.names.plural/kind and spec.versions",
            )
        expected = f"{names['plural']}.{spec['group']}"
        if obj["metadata"]["name"] != expected:
            raise api_error(
                422,
                "Invalid",
                f'metadata.name: must be spec.names.plural+"."+spec.group: {expected!r}',
            )

    def replace(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        current = self.get(rt, namespace, name)
        body_meta = body.get("metadata") or {}
        if body_meta.get("name") not in (None, name):
            raise bad_request("the name of the object does not match the name on the URL")
        rv = body_meta.get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise conflict(rt.plural, name, rt.group)
        return self._commit_update(rt, current, copy.deepcopy(body), subresource, dry_run)

    def patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        content_type: str,
        patch: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        current = self.find(rt, namespace, name)
        if current is None:
            if content_type == patching.APPLY_PATCH and subresource is None:
                # Server-side apply creates missing objects.
                body = copy.deepcopy(patch)
                body.setdefault("metadata", {})["name"] = name
                return self.create(rt, namespace, body, dry_run=dry_run)
            raise not_found(rt.plural, name, rt.group)
        candidate = patching.apply_patch(content_type, current, patch, builtin=rt.builtin)
        if not isinstance(candidate, dict):
            raise api_error(422, "Invalid", "the patch produced a non-object")
        new_rv = (candidate.get("metadata") or {}).get("resourceVersion")
        if new_rv and new_rv != current["metadata"]["resourceVersion"]:
            raise conflict(rt.plural, name, rt.group)
        return self._commit_update(rt, current, candidate, subresource, dry_run)

    def _commit_update(
        self,
        rt: ResourceType,
        current: Obj,
        candidate: Obj,
        subresource: str | None,
        dry_run: bool,
    ) -> Obj:
        if subresource not in (None, "status"):
            raise api_error(404, "NotFound", f"subresource {subresource!r} is not supported")
        if subresource == "status":
            if not rt.status_subresource:
                raise api_error(
                    404,
                    "NotFound",
                    f"the server could not find the requested resource ({rt.plural}/status)",
                )
            new = copy.deepcopy(current)
            if "status" in candidate:
                new["status"] = candidate["status"]
            else:
                new.pop("status", None)
        else:
            new = candidate
            if rt.status_subresource:
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
                else:
                    new.pop("status", None)
        meta: dict[str, Any] = new.get("metadata") or {}
        new["metadata"] = meta
        cur_meta = current["metadata"]
        # Identity and lifecycle fields are owned by the server and cannot be patched away.
        for key in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ):
            if key in cur_meta:
                meta[key] = cur_meta[key]
            else:
                meta.pop(key, None)
        new["apiVersion"] = current.get("apiVersion", rt.api_version)
        new["kind"] = current.get("kind", rt.kind)
        if new == current:
            return current  # a no-op write does not bump resourceVersion, like the apiserver
        if _spec_part(new) != _spec_part(current):
            meta["generation"] = int(cur_meta.get("generation", 1)) + 1
        if dry_run:
            return new
        if cur_meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(rt, new)
        rv = self._next_rv()
        meta["resourceVersion"] = str(rv)
        self._objects[rt.key][self._okey(rt, meta.get("namespace"), meta["name"])] = new
        if rt.plural == "customresourcedefinitions" and rt.group == "apiextensions.k8s.io":
            for crd_rt in resource_from_crd(current):
                self.registry.unregister(crd_rt)
            for crd_rt in resource_from_crd(new):
                self.registry.register(crd_rt)
        self._emit(Event("MODIFIED", rv, rt, new, current))
        return new

    def _remove(self, rt: ResourceType, obj: Obj) -> Obj:
        meta = obj["metadata"]
        self._objects[rt.key].pop(self._okey(rt, meta.get("namespace"), meta["name"]), None)
        rv = self._next_rv()
        final = {**obj, "metadata": {**meta, "resourceVersion": str(rv)}}
        self._emit(Event("DELETED", rv, rt, final))
        if rt.plural == "customresourcedefinitions" and rt.group == "apiextensions.k8s.io":
            self._drop_crd(obj)
        return final

    def _drop_crd(self, crd: Obj) -> None:
        for crd_rt in resource_from_crd(crd):
            for obj in [*self._objects[crd_rt.key].values()]:
                self._remove(crd_rt, obj)
            self.registry.unregister(crd_rt)

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        *,
        dry_run: bool = False,
        precondition_uid: str | None = None,
        precondition_rv: str | None = None,
    ) -> Obj:
        current = self.get(rt, namespace, name)
        meta = current["metadata"]
        if precondition_uid and precondition_uid != meta.get("uid"):
            raise conflict(rt.plural, name, rt.group)
        if precondition_rv and precondition_rv != meta.get("resourceVersion"):
            raise conflict(rt.plural, name, rt.group)
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return current  # already terminating; waiting for the finalizers
            new = copy.deepcopy(current)
            new["metadata"]["deletionTimestamp"] = now_iso()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            if dry_run:
                return new
            rv = self._next_rv()
            new["metadata"]["resourceVersion"] = str(rv)
            self._objects[rt.key][self._okey(rt, namespace, name)] = new
            self._emit(Event("MODIFIED", rv, rt, new, current))
            return new
        if dry_run:
            return current
        return self._remove(rt, current)
