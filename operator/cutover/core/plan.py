"""The schedule a spec implies: replica splits, holds and the shortest possible run."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cutover.api import Gate, MigrationSpec, Shift
from cutover.durations import parse_duration


def replica_split(total: int, green_weight: int) -> tuple[int, int]:
    """(blue, green) replicas that carry ``green_weight`` percent of traffic out of ``total``.

    A version that should get any traffic gets at least one pod, so a split can exceed ``total``
    by one when ``total`` is 1 (one pod each) -- the only way to send some traffic to both.
    """
    if not 0 <= green_weight <= 100:
        raise ValueError(f"weight {green_weight} is outside 0..100")
    total = max(total, 1)
    if green_weight == 0:
        return total, 0
    if green_weight == 100:
        return 0, total
    if total == 1:
        return 1, 1
    green = min(max(round(total * green_weight / 100), 1), total - 1)
    return total - green, green


def effective_weight(blue: int, green: int) -> int:
    """Green's share of traffic (percent, rounded) when pods share traffic evenly."""
    if blue + green == 0:
        return 0
    return round(100 * green / (blue + green))


class StepKind(enum.StrEnum):
    """A step's kind, named as the spec names it."""

    set_weight = "setWeight"
    pause = "pause"
    set_mirror = "setMirror"


@dataclass(frozen=True)
class PlannedStep:
    index: int
    weight: int
    hold_seconds: float | None  # None: waits for `cutover promote`
    gates: tuple[str, ...]  # gates that must pass before the next step
    kind: StepKind
    mirror: int = 0  # percent of live requests copied to green during this step

    @property
    def indefinite(self) -> bool:
        return self.hold_seconds is None


@dataclass(frozen=True)
class Schedule:
    steps: tuple[PlannedStep, ...]
    bake_seconds: float
    minimum_seconds: float  # until Succeeded (the rollback window comes after)
    waits_for_promotion: bool
    # After success, blue kept at full size this long (spec.rollback.window); 0: retired at once.
    window_seconds: float = 0.0
    # spec.preview: the gates checked at weight 0 before the first step, and how long that takes
    # at least once green is ready (one interval of the slowest); None: no preview.
    preview_gates: tuple[str, ...] = ()
    preview_seconds: float | None = None


def preview_gate_names(spec: MigrationSpec) -> tuple[str, ...]:
    """The gates checked only in the preview, before any user traffic (core.preview)."""
    return tuple(spec.preview.gates) if spec.preview is not None else ()


def step_gates(spec: MigrationSpec) -> list[Gate]:
    """The gates checked while traffic moves: every gate but the preview's."""
    preview = preview_gate_names(spec)
    return [g for g in spec.gates if g.name not in preview]


def gate_wait(spec: MigrationSpec) -> float:
    """How long a step with traffic on green waits at least: one interval of the slowest gate."""
    return max((parse_duration(g.interval) for g in step_gates(spec)), default=0.0)


def preview_wait(spec: MigrationSpec) -> float:
    """How long the preview checks green at least once it is ready: one interval of the slowest
    preview gate (0 without gates)."""
    preview = preview_gate_names(spec)
    return max((parse_duration(g.interval) for g in spec.gates if g.name in preview), default=0.0)


def mirror_at(spec: MigrationSpec, index: int) -> int:
    """The percent of requests mirrored to green during step ``index`` (0 once the steps end).

    A setMirror step sets it; it lasts through pauses and ends at the next setWeight step.
    """
    mirror = 0
    for step in spec.steps[: index + 1]:
        if step.set_mirror is not None:
            mirror = step.set_mirror.percent
        elif step.set_weight is not None:
            mirror = 0
    return mirror if index < len(spec.steps) else 0


def schedule(spec: MigrationSpec) -> Schedule:
    weight = 0
    planned: list[PlannedStep] = []
    minimum = preview_wait(spec) if spec.preview is not None else 0.0
    gate_names = tuple(g.name for g in step_gates(spec))
    for index, step in enumerate(spec.steps):
        mirror = mirror_at(spec, index)
        if step.set_weight is not None:
            weight = step.set_weight
            gated = gate_names if weight > 0 else ()
            hold = gate_wait(spec) if gated else 0.0
            planned.append(PlannedStep(index, weight, hold, gated, StepKind.set_weight))
        elif step.set_mirror is not None:
            # Like a setWeight that keeps the weight: done once the mirror is in place.
            gated = gate_names if weight > 0 else ()
            hold = gate_wait(spec) if gated else 0.0
            planned.append(PlannedStep(index, weight, hold, gated, StepKind.set_mirror, mirror))
        else:
            assert step.pause is not None
            hold_or_none = (
                parse_duration(step.pause.duration) if step.pause.duration is not None else None
            )
            gated = gate_names if weight > 0 else ()
            planned.append(PlannedStep(index, weight, hold_or_none, gated, StepKind.pause, mirror))
            hold = hold_or_none or 0.0
            if gated:
                hold = max(hold, gate_wait(spec))
        minimum += hold
    bake = parse_duration(spec.bake)
    minimum += max(bake, gate_wait(spec)) if bake > 0 else 0.0
    return Schedule(
        steps=tuple(planned),
        bake_seconds=bake,
        minimum_seconds=minimum,
        waits_for_promotion=any(s.indefinite for s in planned),
        window_seconds=parse_duration(spec.rollback.window),
        preview_gates=preview_gate_names(spec),
        preview_seconds=preview_wait(spec) if spec.preview is not None else None,
    )


def green_replicas_needed(spec: MigrationSpec, total: int, weight: int, mirror: int = 0) -> int:
    """Green pods that must be available before ``weight`` percent of traffic (and ``mirror``
    percent of copies) may reach green."""
    if spec.traffic.router.capabilities.shift is Shift.pods:
        return replica_split(total, weight)[1]
    # Other routers send traffic by weight to a green scaled to full size up front; copies of
    # live requests need as many pods as the requests themselves would.
    return max(total, 1) if weight > 0 or mirror > 0 else 0
