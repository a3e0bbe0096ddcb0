"""The istio router: weights of two destinations in one http route of a ``VirtualService``.

``spec.traffic.istio.virtualService`` names the VirtualService; its http route ``route`` (or the
only one, or the only one naming both versions) has one destination for blue and one for
green. A destination is blue's when its ``subset`` is ``blue`` (green's: ``green``), with the
subsets defined in a DestinationRule, or else when its ``host`` is ``spec.blue.service``
(``spec.green.service``), short or fully qualified. The router writes their ``weight`` (summing
to 100) with JSON patches whose ``test`` ops guard the routes they touch.

A ``setMirror`` step sets the weighted route's ``mirror`` (green's destination) and
``mirrorPercentage``; the next step, a rollback or a deletion removes both. A route that already
mirrors somewhere else is refused before the run starts (it has one ``mirror`` only).

Header matches and stickiness add an http route named ``cutover-match`` just before the
weighted one (Istio evaluates http routes in order, first match wins). It carries each of the
weighted route's match conditions narrowed by one header (or ``cookie`` regex), so it takes no
traffic the weighted route would not have had. Stickiness sets the cookie through
``headers.response.add`` on green's destination (Flagger's session affinity model).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from cutover.routers.base import (
    MANAGED_RULE,
    RouteTableRouter,
    Target,
    cookie_regex,
    header_value_regex,
    is_sticky_set_cookie,
    sticky_value,
)


def _host_is(host: Any, service: str | None, namespace: str) -> bool:
    if not isinstance(host, str) or not service:
        return False
    return host in (service, f"{service}.{namespace}") or host.startswith(
        f"{service}.{namespace}.svc"
    )


def _header_matches(target: Target) -> list[tuple[str, dict[str, str]]]:
    found: list[tuple[str, dict[str, str]]] = []
    for match in target.spec.traffic.match:
        value = header_value_regex(match.exact, match.regex)
        if match.cookie:
            found.append(("cookie", {"regex": cookie_regex(match.name, value)}))
        elif match.exact is not None:
            found.append((match.name.lower(), {"exact": match.exact}))
        else:
            found.append((match.name.lower(), {"regex": value}))
    sticky = target.spec.traffic.stickiness
    if sticky is not None:
        pattern = cookie_regex(sticky.cookie.name, header_value_regex(sticky_value(target), None))
        found.append(("cookie", {"regex": pattern}))
    return found


class IstioRouter(RouteTableRouter):
    resource = ("networking.istio.io", "v1beta1", "virtualservices")
    kind = "VirtualService"
    router = "istio"
    rules_key = "http"
    entries_key = "route"
    rule_word = "http route"
    owned_entry_keys = ("weight", "headers")

    def object_name(self, target: Target) -> str:
        settings = target.spec.traffic.istio
        assert settings is not None  # the spec validation requires the block for this router
        return settings.virtual_service

    def wanted_rule(self, target: Target) -> str | None:
        settings = target.spec.traffic.istio
        return settings.route if settings is not None else None

    def role_of(self, entry: Mapping[str, Any], target: Target) -> str | None:
        destination = entry.get("destination") or {}
        subset = destination.get("subset")
        if subset in ("blue", "green"):
            return str(subset)
        if subset is None:
            for role, ref in (("blue", target.spec.blue), ("green", target.spec.green)):
                if _host_is(destination.get("host"), ref.service, target.namespace):
                    return role
        return None

    def describe_entry(self, role: str, target: Target) -> str:
        ref = target.spec.blue if role == "blue" else target.spec.green
        return f"{role} (destination host {ref.service} or subset {role})"

    @staticmethod
    def _weight(entry: Mapping[str, Any]) -> int:
        # Istio: an unset weight is 0 when there are several destinations.
        return int(entry.get("weight") or 0)

    def with_sticky(self, entry: dict[str, Any], set_cookie: str) -> dict[str, Any]:
        result = copy.deepcopy(entry)
        headers = result.setdefault("headers", {})
        response = headers.setdefault("response", {})
        add = response.setdefault("add", {})
        add["Set-Cookie"] = set_cookie
        return result

    def without_sticky(self, entry: dict[str, Any], target: Target) -> dict[str, Any]:
        result = copy.deepcopy(entry)
        headers = result.get("headers") or {}
        response = headers.get("response") or {}
        add = response.get("add") or {}
        if is_sticky_set_cookie(add.get("Set-Cookie"), target):
            del add["Set-Cookie"]
            for parent, key, child in ((response, "add", add), (headers, "response", response)):
                if not child:
                    parent.pop(key, None)
            if not headers:
                result.pop("headers", None)
        return result

    def match_conditions(self, rule: Mapping[str, Any], target: Target) -> list[dict[str, Any]]:
        headers = _header_matches(target)
        if not headers:
            return []
        bases = [m for m in rule.get("match") or [] if isinstance(m, dict)] or [{}]
        return [
            {
                **copy.deepcopy(base),
                "headers": {**copy.deepcopy(base.get("headers") or {}), name: cond},
            }
            for base in bases
            for name, cond in headers
        ]

    def _mirrors_to_green(self, rule: Mapping[str, Any], target: Target) -> bool:
        mirror = rule.get("mirror")
        return isinstance(mirror, dict) and self.role_of({"destination": mirror}, target) == "green"

    def mirror_of(self, rule: Mapping[str, Any], target: Target) -> int:
        if not self._mirrors_to_green(rule, target):
            return 0
        # Istio mirrors every request when mirrorPercentage is unset.
        value = (rule.get("mirrorPercentage") or {}).get("value", 100)
        return round(float(value))

    def with_mirror(
        self, rule: Mapping[str, Any], green: Mapping[str, Any], percent: int
    ) -> dict[str, Any]:
        destination = green.get("destination") or {}
        mirror = {
            k: copy.deepcopy(destination[k]) for k in ("host", "subset", "port") if k in destination
        }
        return {
            **copy.deepcopy(dict(rule)),
            "mirror": mirror,
            "mirrorPercentage": {"value": percent},
        }

    def without_mirror(self, rule: Mapping[str, Any], target: Target) -> dict[str, Any]:
        result = copy.deepcopy(dict(rule))
        if self._mirrors_to_green(result, target):
            result.pop("mirror", None)
            result.pop("mirrorPercentage", None)
        return result

    def mirror_conflict(self, rule: Mapping[str, Any], target: Target) -> str | None:
        mirror = rule.get("mirror")
        if mirror is None or self._mirrors_to_green(rule, target):
            return None
        host = mirror.get("host") if isinstance(mirror, dict) else mirror
        return (
            f"VirtualService {target.namespace}/{self.object_name(target)} already mirrors its"
            f" http route to {host}: a setMirror step would replace that mirror (Istio keeps one"
            " per route); remove it or the setMirror steps"
        )

    def match_rule(
        self, rule: Mapping[str, Any], green: Mapping[str, Any], conditions: list[dict[str, Any]]
    ) -> dict[str, Any]:
        # Timeouts, retries, rewrites of the weighted route apply to the matched requests too.
        extra = {
            k: copy.deepcopy(v) for k, v in rule.items() if k not in ("name", "match", "route")
        }
        destination = {"destination": copy.deepcopy(green.get("destination") or {}), "weight": 100}
        return {"name": MANAGED_RULE, "match": conditions, **extra, "route": [destination]}
