"""Manual requests (promote, pause, resume, abort, retry, undo): whether the operator would act
on one now, what it would do, and setting the request annotation.

The one path every client takes, so that ``cutover pause`` and the dashboard's Pause button are
refused, described and recorded identically.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cutover import api
from cutover.cli.client import CliError, Cluster, request_id
from cutover.core import rollback as rollback_rules
from cutover.core.observations import RequestVerb
from cutover.core.transitions import Reason

ALLOWED: dict[RequestVerb, set[api.Phase]] = {
    RequestVerb.promote: {api.Phase.progressing, api.Phase.paused},
    RequestVerb.promote_full: {api.Phase.progressing, api.Phase.paused},
    RequestVerb.pause: {api.Phase.progressing},
    RequestVerb.resume: {api.Phase.paused},
    RequestVerb.abort: {api.Phase.pending, api.Phase.progressing, api.Phase.paused},
    RequestVerb.retry: {api.Phase.rolled_back, api.Phase.failed},
    RequestVerb.undo: {api.Phase.succeeded},
}


def _in_window(raw_status: Mapping[str, Any]) -> bool:
    return raw_status.get("phase") == api.Phase.succeeded and bool(
        raw_status.get("rollbackWindowEndsAt")
    )


def refusal(verb: RequestVerb, obj: dict[str, Any]) -> str | None:
    """Why the operator would ignore ``verb`` now (its rules in core/machine.py), or None."""
    raw_status = obj.get("status") or {}
    if verb is RequestVerb.undo:
        return rollback_rules.undo_refusal(api.parse_status(raw_status))
    if verb is RequestVerb.promote and _in_window(raw_status):
        return None  # closes the rollback window now
    phase = api.Phase(raw_status.get("phase") or api.Phase.pending.value)
    if phase not in ALLOWED[verb]:
        allowed = ", ".join(sorted(p.value for p in ALLOWED[verb]))
        return f"{verb.value} has no effect in phase {phase.value} (possible in: {allowed})"
    spec_paused = bool((obj.get("spec") or {}).get("paused"))
    if spec_paused and verb in (RequestVerb.promote, RequestVerb.promote_full, RequestVerb.resume):
        return f"{verb.value} has no effect while spec.paused is true: set it to false instead"
    return None


def effect(verb: RequestVerb, obj: dict[str, Any]) -> str:
    spec = obj.get("spec") or {}
    raw_status = obj.get("status") or {}
    blue = (spec.get("blue") or {}).get("deployment", "blue")
    green = (spec.get("green") or {}).get("deployment", "green")
    steps = spec.get("steps") or []
    index = int(raw_status.get("currentStepIndex") or 0)
    weight = int(raw_status.get("weight") or 0)
    if verb is RequestVerb.undo:
        scale_down = (spec.get("rollback") or {}).get("scaleDownGreen", True)
        extra = f", {green} scaled to 0" if scale_down else ""
        return (
            f"all traffic will return to blue ({blue}), still at full size{extra};"
            " the run ends RolledBack"
        )
    if verb is RequestVerb.promote and _in_window(raw_status):
        return f"the rollback window closes now: blue ({blue}) is retired"
    if verb is RequestVerb.abort:
        scale_down = (spec.get("rollback") or {}).get("scaleDownGreen", True)
        extra = f", {green} scaled to 0" if scale_down else ""
        return f"all traffic will return to blue ({blue}){extra}"
    if verb is RequestVerb.retry:
        return f"a new run will start from step 1 of {len(steps)} ({blue} -> {green})"
    if verb is RequestVerb.pause:
        return f"the run will hold at {weight}% on green ({green}); gates keep running"
    if verb is RequestVerb.promote_full:
        return (
            f"all remaining steps and gates will be skipped: 100% to green ({green}),"
            f" then blue ({blue}) retired"
        )
    if verb is RequestVerb.resume and raw_status.get("reason") != Reason.pause_step:
        return f"the run will go on from step {min(index + 1, len(steps))} of {len(steps)}"
    following = index + 1
    if following >= len(steps):
        return f"the last step is skipped: 100% to green ({green}), then blue ({blue}) retired"
    step = steps[following]
    what = "a pause"
    if isinstance(step, dict) and "setWeight" in step:
        what = f"setWeight {step['setWeight']}%"
    elif isinstance(step, dict) and "setMirror" in step:
        what = "a mirror step"
    return f"the run will skip to step {following + 1} of {len(steps)} ({what})"


@dataclass(frozen=True)
class Sent:
    """A request set on a Migration: what to tell the person who asked."""

    request_id: str
    value: str  # the annotation's value, "<verb>:<id>"
    effect: str
    replaced: str | None  # a request the operator had not handled yet, now overwritten


def send_request(cluster: Cluster, verb: RequestVerb, name: str) -> Sent:
    """Refuse what the operator would ignore, else set the request annotation on ``name``."""
    obj = cluster.get(name)
    why = refusal(verb, obj)
    if why is not None:
        raise CliError(f"{name}: {why}")
    pending = (obj.get("metadata") or {}).get("annotations", {}).get(api.REQUEST_ANNOTATION)
    rid = request_id()
    value = f"{verb.value}:{rid}"
    what = effect(verb, obj)
    cluster.request(name, value)
    return Sent(request_id=rid, value=value, effect=what, replaced=pending or None)
