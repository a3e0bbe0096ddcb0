"""What to tell notifiers, decided from a status write: which events happened, who hears them,
and what the bodies say. Pure: the reconciler hands the result to ``cutover.notify``, which
sends it in the background.

Events come from comparing the status before a write with the status written, so each one is
derived once per write that makes it happen: a phase change, a gate going past its limits, the
point of no return (``status.pointOfNoReturn`` becoming set) and a rollback starting. Every
notification carries an id built from the Migration's uid, the run, the kind, the generation,
the step and what changed, so a receiver can drop the repeats at-least-once delivery makes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cutover.api import (
    GateOutcome,
    GateStatus,
    MigrationStatus,
    Notifier,
    NotifyEvent,
    Phase,
)

__all__ = [
    "SIGNATURE_HEADER",
    "Notification",
    "Subject",
    "derive",
    "effective_notifiers",
    "encode",
    "sign",
    "slack_body",
    "wanted",
    "webhook_body",
]

SIGNATURE_HEADER = "X-Cutover-Signature"
# Outcomes of a gate that has gone past its limits (the run is stopped, held or rolled back).
_BREACHED = frozenset({GateOutcome.failed, GateOutcome.error, GateOutcome.inconclusive})


@dataclass(frozen=True)
class Subject:
    """The Migration a notification is about."""

    namespace: str
    name: str
    uid: str
    generation: int


@dataclass(frozen=True)
class Notification:
    id: str
    kind: NotifyEvent
    time: datetime
    subject: Subject
    run_id: str | None
    phase: Phase
    previous_phase: Phase
    reason: str | None
    message: str
    step: str | None
    step_index: int
    weight: int
    gate: GateStatus | None = None
    rollback_reason: str | None = None
    point_of_no_return: str | None = None

    @property
    def headline(self) -> str:
        """One line for people: what happened."""
        match self.kind:
            case NotifyEvent.phase_changed:
                why = f" ({self.reason})" if self.reason else ""
                return f"{self.previous_phase.value} -> {self.phase.value}{why}"
            case NotifyEvent.gate_failed:
                assert self.gate is not None
                dry = " (dry run)" if self.gate.dry_run else ""
                return f"gate {self.gate.name}{dry} {self.gate.outcome.value}"
            case NotifyEvent.point_of_no_return:
                return "point of no return passed: rollback is no longer automatic"
            case NotifyEvent.rollback_started:
                return f"rolling back ({self.reason or 'unknown reason'})"

    @property
    def detail(self) -> str:
        match self.kind:
            case NotifyEvent.gate_failed:
                assert self.gate is not None
                return self.gate.last_message or ""
            case NotifyEvent.point_of_no_return:
                return self.point_of_no_return or ""
            case NotifyEvent.rollback_started:
                return self.rollback_reason or self.message
            case _:
                return self.message


def derive(
    before: MigrationStatus, after: MigrationStatus, subject: Subject, now: datetime
) -> list[Notification]:
    """The events that writing ``after`` over ``before`` makes happen, in the order a reader
    expects them: a gate's failure before the rollback it causes, the rollback last."""

    def make(kind: NotifyEvent, detail: str, **extra: Any) -> Notification:
        parts = [
            subject.uid,
            after.run_id or "-",
            kind.value,
            f"g{after.observed_generation or subject.generation}",
            f"s{after.current_step_index}",
            detail,
        ]
        return Notification(
            id="/".join(parts),
            kind=kind,
            time=now,
            subject=subject,
            run_id=after.run_id,
            phase=after.phase,
            previous_phase=before.phase,
            reason=after.reason,
            message=after.message,
            step=after.step,
            step_index=after.current_step_index,
            weight=after.weight,
            rollback_reason=after.rollback_reason,
            point_of_no_return=after.point_of_no_return,
            **extra,
        )

    found: list[Notification] = []
    for gate in _newly_breached(before, after):
        checks = gate.failed + gate.inconclusive + gate.errors
        found.append(
            make(NotifyEvent.gate_failed, f"{gate.name}.{gate.outcome.value}.{checks}", gate=gate)
        )
    if after.point_of_no_return and not (
        before.point_of_no_return and before.run_id == after.run_id
    ):
        found.append(make(NotifyEvent.point_of_no_return, "irreversible"))
    if after.phase is not before.phase:
        # Entering the same phase twice in one step (pause, resume, pause) is told apart by when.
        found.append(make(NotifyEvent.phase_changed, f"{after.phase.value}@{_entered(after)}"))
        if after.phase is Phase.rolling_back:
            found.append(make(NotifyEvent.rollback_started, after.reason or "-"))
    return found


def _entered(status: MigrationStatus) -> str:
    entry = next((h for h in reversed(status.history) if h.phase is status.phase), None)
    return entry.time.isoformat(timespec="seconds") if entry is not None else "-"


def _newly_breached(before: MigrationStatus, after: MigrationStatus) -> list[GateStatus]:
    # A new run starts its gates afresh: the last run's outcomes say nothing about this one.
    old = {g.name: g for g in before.gates} if before.run_id == after.run_id else {}
    return [
        g
        for g in after.gates
        if g.outcome in _BREACHED and (g.name not in old or old[g.name].outcome is not g.outcome)
    ]


def effective_notifiers(defaults: Sequence[Notifier], own: Sequence[Notifier]) -> list[Notifier]:
    """The operator's default notifiers followed by the Migration's; a Migration's notifier
    named like a default one replaces it (to filter its events, say, or point it elsewhere)."""
    mine = {n.name for n in own}
    return [n for n in defaults if n.name not in mine] + list(own)


def wanted(notifier: Notifier, notifications: Iterable[Notification]) -> list[Notification]:
    return [n for n in notifications if n.kind in notifier.events]


# --- bodies -------------------------------------------------------------------------------------


def webhook_body(notification: Notification) -> dict[str, Any]:
    """The generic JSON body: every field a receiver may route or dedupe on."""
    n = notification
    body: dict[str, Any] = {
        "id": n.id,
        "kind": n.kind.value,
        "time": n.time.isoformat(),
        "migration": {
            "namespace": n.subject.namespace,
            "name": n.subject.name,
            "uid": n.subject.uid,
            "generation": n.subject.generation,
        },
        "runId": n.run_id,
        "phase": n.phase.value,
        "previousPhase": n.previous_phase.value,
        "reason": n.reason,
        "message": n.message,
        "step": n.step,
        "stepIndex": n.step_index,
        "weight": n.weight,
        "summary": n.headline,
    }
    if n.gate is not None:
        body["gate"] = {
            "name": n.gate.name,
            "outcome": n.gate.outcome.value,
            "lastValue": n.gate.last_value,
            "lastMessage": n.gate.last_message,
            "dryRun": n.gate.dry_run,
        }
    if n.kind is NotifyEvent.rollback_started:
        body["rollbackReason"] = n.rollback_reason
    if n.point_of_no_return:
        body["pointOfNoReturn"] = n.point_of_no_return
    return body


def slack_body(notification: Notification) -> dict[str, Any]:
    """A body Slack's incoming webhooks (and Mattermost, Rocket.Chat) accept: ``text`` for
    notifications and clients without blocks, ``blocks`` for the message itself."""
    n = notification
    where = f"{n.subject.namespace}/{n.subject.name}"
    text = f"{where}: {n.headline}"
    detail = n.detail
    section = f"*{_escape(where)}*: {_escape(n.headline)}"
    if detail:
        section += f"\n{_escape(detail)}"
    context = [f"phase {n.phase.value}", f"weight {n.weight}%"]
    if n.step:
        context.append(f"step {n.step}")
    if n.run_id:
        context.append(f"run {n.run_id}")
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": section}},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": _escape(" · ".join(context))}],
            },
        ],
    }


def _escape(text: str) -> str:
    """Slack's mrkdwn treats these three as markup (links, mentions)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def encode(body: dict[str, Any]) -> bytes:
    """The bytes sent and signed: compact, keys sorted, so a body has one encoding."""
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign(key: bytes, payload: bytes) -> str:
    """The ``X-Cutover-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of the bytes sent."""
    return "sha256=" + hmac.new(key, payload, hashlib.sha256).hexdigest()
