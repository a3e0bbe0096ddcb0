"""The demo's traffic simulator: pods that serve requests in the split the router has set.

Nothing in the demo's cluster serves requests (kwok's pods are fake; on a cluster of yours the
pods run a placeholder image), so this module plays the users. Every ``period`` seconds it reads
the namespace with the ``kubernetes`` client and works out which share of the
requests each Deployment would get, exactly as a cluster would route them:

* a Gateway API ``HTTPRoute`` (if the CRD exists and a route is there) splits traffic between
  its ``backendRefs`` by weight;
* each Service (the route's backends, or the demo's single Service) spreads its share over the
  Deployments its selector matches, in proportion to their ready pods -- so the ``replicas``
  router (moving pods) and the ``service`` router (moving the selector) both show up.

It then sets each Deployment's request rate on a :class:`TrafficExporter` (Prometheus scrapes
it), with an error ratio from the scenario's :class:`ErrorScript`.

``compute_shares`` is a pure function of the raw objects, unit-tested without a cluster.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from devtools.demo.exporter import TrafficExporter

log = logging.getLogger("devtools.demo.traffic")

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Shares:
    """Which fraction of all requests each Deployment serves, and why (for the live view)."""

    by_deployment: dict[str, float]
    source: str


def _labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    # An empty selector selects nothing for a Service (it means "managed elsewhere").
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def ready_pods(deployment: Obj) -> int:
    """Pods that receive traffic: ready ones, but never more than desired.

    A scaled-down Deployment stops receiving traffic at once (endpoints go first), while a
    scaled-up one only gets it when its new pods are ready -- hence the min.
    """
    desired = int((deployment.get("spec") or {}).get("replicas", 1) or 0)
    ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
    return max(0, min(desired, ready))


def _service_split(service: Obj | None, deployments: Sequence[Obj]) -> dict[str, float]:
    """Fractions of one Service's traffic per Deployment; empty when no pod is ready."""
    if service is None:
        return {}
    selector = (service.get("spec") or {}).get("selector") or {}
    pods: dict[str, int] = {}
    for deployment in deployments:
        template = ((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}
        if _labels_match(selector, template.get("labels") or {}):
            pods[deployment["metadata"]["name"]] = ready_pods(deployment)
    total = sum(pods.values())
    return {name: count / total for name, count in pods.items() if count} if total else {}


def _route_backends(routes: Sequence[Obj]) -> list[tuple[str, float]]:
    """(Service name, weight) of the first HTTPRoute's backendRefs, in all its rules."""
    for route in sorted(routes, key=lambda r: r["metadata"]["name"]):
        backends: list[tuple[str, float]] = []
        for rule in (route.get("spec") or {}).get("rules") or []:
            for ref in rule.get("backendRefs") or []:
                if ref.get("kind", "Service") == "Service" and ref.get("name"):
                    backends.append((str(ref["name"]), float(ref.get("weight", 1))))
        if backends:
            return backends
    return []


def compute_shares(
    service: str,
    deployments: Sequence[Obj],
    services: Sequence[Obj],
    routes: Sequence[Obj] = (),
) -> Shares:
    """The share of all requests each Deployment gets, as the cluster would route them."""
    by_name = {s["metadata"]["name"]: s for s in services}
    backends = _route_backends(routes)
    if backends:
        source = "HTTPRoute weights " + ", ".join(f"{n}={w:g}" for n, w in backends)
    else:
        selector = (by_name.get(service, {}).get("spec") or {}).get("selector") or {}
        shown = ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "-"
        source = f"Service {service} (selector {shown}) over ready pods"
        backends = [(service, 1.0)]
    # A backend with no ready pod would answer 503; the demo keeps it simple and sends its
    # share to the backends that can serve (as a retrying client or mesh would).
    splits = [(w, _service_split(by_name.get(name), deployments)) for name, w in backends]
    live = [(w, split) for w, split in splits if w > 0 and split]
    total_weight = sum(w for w, _ in live)
    shares: dict[str, float] = {}
    for weight, split in live:
        for name, fraction in split.items():
            shares[name] = shares.get(name, 0.0) + weight / total_weight * fraction
    return Shares(by_deployment=shares, source=source)


@dataclass
class ErrorScript:
    """Green's error ratio over the run: ``healthy`` until it carries ``bad_from`` of the traffic.

    Once tripped it stays bad (a broken release does not heal when traffic moves away), which
    is what makes the gate's failure and the rollback that follows believable.
    """

    healthy: float = 0.005
    bad: float | None = None
    bad_from: float = 0.45
    tripped: bool = False

    def green_error_ratio(self, green_share: float) -> float:
        if self.bad is not None and green_share >= self.bad_from:
            self.tripped = True
        return self.bad if self.tripped and self.bad is not None else self.healthy


@dataclass(frozen=True)
class TrafficSnapshot:
    """What the simulator did last, for the live view."""

    load: dict[str, DeploymentLoad] = field(default_factory=dict)
    source: str = "not read yet"
    read_errors: int = 0
    last_error: str | None = None


@dataclass(frozen=True)
class DeploymentLoad:
    """One Deployment's simulated traffic: requests per second, and the share that fail."""

    rps: float
    error_ratio: float


class TrafficSimulator:
    """A thread that re-reads the routing every ``period`` s and drives the exporter."""

    def __init__(
        self,
        exporter: TrafficExporter,
        kubeconfig: str,
        namespace: str,
        *,
        service: str,
        blue: str,
        green: str,
        script: ErrorScript,
        total_rps: float = 200.0,
        period: float = 0.5,
    ) -> None:
        self.exporter = exporter
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.service = service
        self.blue = blue
        self.green = green
        self.script = script
        self.total_rps = total_rps
        self.period = period
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._snapshot = TrafficSnapshot()
        self._thread = threading.Thread(target=self._run, name="traffic-simulator", daemon=True)
        self._routes_missing = False
        # Both versions' series exist from the start: ratio queries then have a denominator
        # (0 requests gives NaN, which the gate reads as "no data", not as an error).
        for name in (blue, green):
            exporter.set(name, rps=0.0, error_ratio=script.healthy)

    @property
    def snapshot(self) -> TrafficSnapshot:
        with self._lock:
            return self._snapshot

    def start(self) -> TrafficSimulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    # --- reading the cluster -----------------------------------------------------------------

    def _list(self, call: Any, *args: Any) -> list[dict[str, Any]]:
        # Raw JSON: the pure routing function works on plain dicts, like the API server sends.
        response = call(*args, _preload_content=False, _request_timeout=2)
        items: list[dict[str, Any]] = json.loads(response.data).get("items") or []
        return items

    def _routes(self, custom: Any) -> list[dict[str, Any]]:
        if self._routes_missing:
            return []
        from kubernetes.client.exceptions import ApiException

        try:
            return self._list(
                custom.list_namespaced_custom_object,
                "gateway.networking.k8s.io",
                "v1",
                self.namespace,
                "httproutes",
            )
        except ApiException as error:
            if error.status == 404:
                # No Gateway API CRD in this cluster: stop asking.
                self._routes_missing = True
            # Routes are optional: a failed read must not stop the Service-based split.
            return []

    def read_shares(self, apps: Any, core: Any, custom: Any) -> Shares:
        deployments = self._list(apps.list_namespaced_deployment, self.namespace)
        services = self._list(core.list_namespaced_service, self.namespace)
        return compute_shares(self.service, deployments, services, self._routes(custom))

    def _apply(self, shares: Shares) -> None:
        load: dict[str, DeploymentLoad] = {}
        names = dict.fromkeys([self.blue, self.green, *shares.by_deployment])
        for name in names:
            share = shares.by_deployment.get(name, 0.0)
            if name == self.green:
                ratio = self.script.green_error_ratio(share)
            else:
                ratio = self.script.healthy
            rps = self.total_rps * share
            self.exporter.set(name, rps=rps, error_ratio=ratio)
            load[name] = DeploymentLoad(rps=rps, error_ratio=ratio)
        with self._lock:
            self._snapshot = TrafficSnapshot(
                load=load,
                source=shares.source,
                read_errors=self._snapshot.read_errors,
            )

    def _run(self) -> None:
        from kubernetes import client, config

        api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=self.kubeconfig
        )
        apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
        custom = client.CustomObjectsApi(api_client)
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self._apply(self.read_shares(apps, core, custom))
                except Exception as error:  # keep the last split: a blip must not stop traffic
                    log.debug("reading the routing failed: %s", error)
                    with self._lock:
                        old = self._snapshot
                        self._snapshot = TrafficSnapshot(
                            old.load, old.source, old.read_errors + 1, str(error)[:200]
                        )
                self._stop.wait(max(0.0, self.period - (time.monotonic() - started)))
        finally:
            api_client.close()
