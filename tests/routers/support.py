"""Helpers shared by the router tests: the operator's writes as the audit log shows them, and
waiting for real Deployments (kube-controller-manager, kwok pods) to settle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cutover.kube import Kube
from devtools.controlplane import ControlPlane

# Generous: the controllers and kwok usually settle a Deployment in about a second, but a
# loaded machine must not turn into a flaky test. Only an upper bound, never a timing assertion.
SETTLE_TIMEOUT = 60.0
# Annotations the Deployment controller keeps on every Deployment (the rollout revision).
CONTROLLER_ANNOTATIONS = ("deployment.kubernetes.io/",)


@dataclass(frozen=True)
class Audit:
    """The kube-apiserver's audit log, narrowed to one namespace and the operator's identity."""

    plane: ControlPlane
    namespace: str
    user: str

    def mark(self) -> int:
        return int(self.plane.stats()["last_seq"])

    def attempts(self, since: int, resources: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The operator's writes (POST/PUT/PATCH/DELETE) after ``since``, refused ones too."""
        wanted = None if resources is None else set(resources)
        return [
            entry
            for entry in self.plane.requests(since)
            if entry["namespace"] == self.namespace
            and entry["user"] == self.user
            and (wanted is None or entry["resource"] in wanted)
        ]

    def reads(self, since: int) -> list[tuple[str, str]]:
        """(verb, resource) of the operator's GETs and LISTs after ``since``."""
        return [
            (str(e["verb"]), str(e["resource"]))
            for e in self.plane.reads(since)
            if e["namespace"] == self.namespace
            and e["user"] == self.user
            and e["verb"] in ("get", "list")
        ]

    def writes(self, since: int, resources: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The operator's successful writes after ``since``."""
        return [e for e in self.attempts(since, resources) if e["code"] < 300]


def deployment_settled(obj: dict[str, Any]) -> bool:
    """The controller saw the latest spec and every wanted pod is updated, ready and available
    (none left over from a scale-down or an older template)."""
    want = int(obj["spec"].get("replicas", 1))
    status = obj.get("status") or {}
    return (
        status.get("observedGeneration") == obj["metadata"].get("generation")
        and int(status.get("replicas") or 0) == want
        and int(status.get("updatedReplicas") or 0) == want
        and int(status.get("readyReplicas") or 0) == want
        and int(status.get("availableReplicas") or 0) == want
    )


async def settle(
    kube: Kube, namespace: str, names: Iterable[str], timeout: float = SETTLE_TIMEOUT
) -> None:
    """Polls the Deployments' real status until each one is settled (a missing one is skipped)."""
    names = list(names)
    deadline = time.monotonic() + timeout
    while True:
        pending = []
        for name in names:
            obj = await kube.get("apps", "v1", "deployments", namespace, name)
            if obj is not None and not deployment_settled(obj):
                pending.append((name, obj.get("status")))
        if not pending:
            return
        assert time.monotonic() < deadline, f"not settled within {timeout}s: {pending}"
        await asyncio.sleep(0.1)


def user_annotations(obj: dict[str, Any]) -> dict[str, str]:
    """The object's annotations without the ones a Kubernetes controller maintains."""
    notes = dict(obj["metadata"].get("annotations") or {})
    return {k: v for k, v in notes.items() if not k.startswith(CONTROLLER_ANNOTATIONS)}
