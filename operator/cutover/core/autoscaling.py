"""HorizontalPodAutoscalers on blue or green: whether a run may start, and the bounds it sets.

An HPA owns its Deployment's ``spec.replicas``: whatever else writes them is undone at the HPA's
next sync, and two writers fight. So Cutover never writes replicas an HPA would overwrite:

* the replicas router sizes blue and green at every step, which is exactly the HPA's job: a
  run with an HPA on either is refused before any traffic moves (``HPAConflict``);
* the weighted and switch routers (gatewayapi, istio, nginx, service) scale green once to blue's
  size and move requests, not pods. With an HPA on green the run raises that HPA's
  ``minReplicas`` to blue's size instead (the original saved on the HPA), so the HPA itself
  keeps green there and may still grow it with load; the original floor comes back when the run
  ends (success, rollback or deletion). An HPA whose ``maxReplicas`` is below blue's size could
  never hold that floor: refused, naming the HPA and the size it needs. An HPA on blue is left
  alone: blue keeps serving its share, and at success blue is scaled to zero, where Kubernetes
  stops autoscaling a Deployment.

Pure: the shell (cutover.autoscalers) reads the HPAs and writes the bounds this module decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cutover.api import MigrationSpec, Shift


@dataclass(frozen=True)
class Autoscaler:
    """An autoscaling/v2 HorizontalPodAutoscaler whose scaleTargetRef is a Deployment."""

    name: str
    deployment: str
    min_replicas: int
    max_replicas: int
    # minReplicas as it was before Cutover raised it (saved on the HPA); None: not raised.
    saved_min: int | None = None

    @property
    def own_min(self) -> int:
        """The floor the HPA's owner chose, whatever a run did to it."""
        return self.saved_min if self.saved_min is not None else self.min_replicas


def targeting(autoscalers: Iterable[Autoscaler], deployment: str) -> list[Autoscaler]:
    return [a for a in autoscalers if a.deployment == deployment]


def conflicts(spec: MigrationSpec, total: int, autoscalers: Iterable[Autoscaler]) -> list[str]:
    """Why a run with these HPAs must not start; [] when Cutover and the HPAs can share."""
    found = list(autoscalers)
    problems: list[str] = []
    if spec.traffic.router.capabilities.shift is Shift.pods:
        for role, ref in (("blue", spec.blue), ("green", spec.green)):
            for hpa in targeting(found, ref.deployment):
                problems.append(
                    f"HorizontalPodAutoscaler {hpa.name} scales {role} Deployment"
                    f" {ref.deployment}, and the {spec.traffic.router.value} router sets its"
                    " replicas at every step: the two would fight. Use a router that moves"
                    " requests instead of pods (gatewayapi, istio, nginx or service), where the"
                    " HPA keeps scaling, or remove the HPA for the run"
                )
        return problems
    wanted = max(total, 1)
    for hpa in targeting(found, spec.green.deployment):
        if hpa.max_replicas < wanted:
            problems.append(
                f"HorizontalPodAutoscaler {hpa.name} caps green Deployment"
                f" {spec.green.deployment} at maxReplicas {hpa.max_replicas}, below blue's"
                f" {wanted} replicas: green could not carry blue's traffic. Raise its"
                f" maxReplicas to at least {wanted}"
            )
    return problems


def pinned_min(total: int, hpa: Autoscaler) -> int:
    """green's HPA floor during a run: blue's size, or the owner's floor when that is higher."""
    return min(max(hpa.own_min, total, 1), hpa.max_replicas)
