"""The resource registry and the discovery documents (/api, /apis, ...) rendered from it.

The discovery facts (kind, scope, verbs, short names, categories, subresources) are kept in
kmock's `ResourcesArray`/`ResourceInfo`, i.e. the emulator's own `resources` registry; the
sandbox-only facts (built-in or custom, printer columns) live next to it in `ResourceType`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import kmock

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    singular: str = ""
    shortnames: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    builtin: bool = True
    printer_columns: tuple[dict[str, Any], ...] = field(default=(), compare=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str]:
        """Objects are stored per group+plural: a CRD serves one version in this sandbox."""
        return (self.group, self.plural)

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


def _builtin(
    group: str,
    version: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    shortnames: tuple[str, ...] = (),
    status: bool = False,
    categories: tuple[str, ...] = (),
) -> ResourceType:
    return ResourceType(
        group=group,
        version=version,
        plural=plural,
        kind=kind,
        namespaced=namespaced,
        singular=kind.lower(),
        shortnames=shortnames,
        categories=categories,
        status_subresource=status,
    )


BUILTINS: tuple[ResourceType, ...] = (
    _builtin("", "v1", "pods", "Pod", shortnames=("po",), status=True, categories=("all",)),
    _builtin(
        "", "v1", "services", "Service", shortnames=("svc",), status=True, categories=("all",)
    ),
    _builtin("", "v1", "events", "Event", shortnames=("ev",)),
    _builtin("", "v1", "configmaps", "ConfigMap", shortnames=("cm",)),
    _builtin("", "v1", "secrets", "Secret"),
    _builtin("", "v1", "serviceaccounts", "ServiceAccount", shortnames=("sa",)),
    _builtin("", "v1", "endpoints", "Endpoints", shortnames=("ep",)),
    _builtin(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        shortnames=("pvc",),
        status=True,
    ),
    _builtin(
        "", "v1", "namespaces", "Namespace", namespaced=False, shortnames=("ns",), status=True
    ),
    _builtin("", "v1", "nodes", "Node", namespaced=False, shortnames=("no",), status=True),
    _builtin(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        shortnames=("deploy",),
        status=True,
        categories=("all",),
    ),
    _builtin(
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        shortnames=("rs",),
        status=True,
        categories=("all",),
    ),
    _builtin(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        shortnames=("sts",),
        status=True,
        categories=("all",),
    ),
    _builtin(
        "apps",
        "v1",
        "daemonsets",
        "DaemonSet",
        shortnames=("ds",),
        status=True,
        categories=("all",),
    ),
    _builtin("batch", "v1", "jobs", "Job", status=True, categories=("all",)),
    _builtin(
        "batch", "v1", "cronjobs", "CronJob", shortnames=("cj",), status=True, categories=("all",)
    ),
    _builtin("events.k8s.io", "v1", "events", "Event", shortnames=("ev",)),
    _builtin("coordination.k8s.io", "v1", "leases", "Lease"),
    _builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        shortnames=("crd", "crds"),
        status=True,
    ),
    _builtin("networking.k8s.io", "v1", "ingresses", "Ingress", shortnames=("ing",), status=True),
    _builtin("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", shortnames=("netpol",)),
)


def resource_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """Derive the served resource types of a CRD (one per served version)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    result: list[ResourceType] = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or spec.get("subresources") or {}
        columns = (
            version.get("additionalPrinterColumns") or spec.get("additionalPrinterColumns") or []
        )
        result.append(
            ResourceType(
                group=spec.get("group", ""),
                version=version["name"],
                plural=names.get("plural", ""),
                kind=names.get("kind", ""),
                singular=names.get("singular") or names.get("kind", "").lower(),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                shortnames=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status_subresource="status" in subresources,
                builtin=False,
                printer_columns=tuple(columns),
            )
        )
    return result


class ResourceRegistry:
    """Which resources are servable; mirrored into kmock's `ResourcesArray` for discovery."""

    def __init__(self, kmock_resources: kmock.ResourcesArray) -> None:
        self._kmock = kmock_resources
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        for builtin in BUILTINS:
            self.register(builtin)

    def register(self, rt: ResourceType) -> None:
        self._types[(rt.group, rt.version, rt.plural)] = rt
        self._kmock[kmock.resource(group=rt.group, version=rt.version, plural=rt.plural)] = (
            kmock.ResourceInfo(
                namespaced=rt.namespaced,
                kind=rt.kind,
                singular=rt.singular,
                verbs=set(VERBS),
                shortnames=set(rt.shortnames),
                categories=set(rt.categories),
                subresources={"status"} if rt.status_subresource else set(),
            )
        )

    def unregister(self, rt: ResourceType) -> None:
        self._types.pop((rt.group, rt.version, rt.plural), None)
        key = kmock.resource(group=rt.group, version=rt.version, plural=rt.plural)
        if key in self._kmock:
            del self._kmock[key]

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        for rt in self._types.values():
            if rt.api_version == api_version and rt.kind == kind:
                return rt
        return None

    def all(self) -> Iterable[ResourceType]:
        return list(self._types.values())

    # --- discovery documents -----------------------------------------------------------------

    def _groups(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for rt in self._types.values():
            versions = groups.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        return groups

    def api_versions(self) -> dict[str, Any]:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}
            ],
        }

    def _group_doc(self, group: str, versions: list[str]) -> dict[str, Any]:
        return {
            "name": group,
            "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
            "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]},
        }

    def api_group_list(self) -> dict[str, Any]:
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [self._group_doc(g, vs) for g, vs in sorted(self._groups().items()) if g],
        }

    def api_group(self, group: str) -> dict[str, Any] | None:
        versions = self._groups().get(group)
        if not group or not versions:
            return None
        return {"kind": "APIGroup", "apiVersion": "v1", **self._group_doc(group, versions)}

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        types = [rt for rt in self._types.values() if rt.group == group and rt.version == version]
        if not types:
            return None
        resources: list[dict[str, Any]] = []
        for rt in types:
            info = self._kmock[kmock.resource(group=rt.group, version=rt.version, plural=rt.plural)]
            assert isinstance(info, kmock.ResourceInfo)
            resources.append(
                {
                    "name": rt.plural,
                    "singularName": info.singular or rt.singular,
                    "namespaced": bool(info.namespaced),
                    "kind": info.kind or rt.kind,
                    "verbs": sorted(info.verbs),
                    "shortNames": sorted(info.shortnames),
                    "categories": sorted(info.categories),
                }
            )
            for sub in sorted(info.subresources):
                resources.append(
                    {
                        "name": f"{rt.plural}/{sub}",
                        "singularName": "",
                        "namespaced": bool(info.namespaced),
                        "kind": rt.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }
