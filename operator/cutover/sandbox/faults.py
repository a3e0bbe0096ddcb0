"""Seeded, opt-in fault injection for writes and watch streams (off by default)."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FaultDecision:
    delay: float = 0.0
    status: int | None = None  # 500/503/409/429 to fail the request with
    retry_after: int | None = None


@dataclass
class FaultInjector:
    """Rates are probabilities in [0, 1] per write request; checked in the order listed."""

    error_rate: float = 0.0  # 5xx (alternating 500/503 by the random draw)
    conflict_rate: float = 0.0  # 409 Conflict
    throttle_rate: float = 0.0  # 429 Too Many Requests with Retry-After
    retry_after: int = 1
    write_latency: float = 0.0  # seconds added to every write
    watch_drop_after: float | None = None  # close watch streams after N seconds
    resources: list[str] | None = None  # restrict faults to these plurals; None means all
    seed: int = 0
    _random: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._random.seed(self.seed)

    @property
    def enabled(self) -> bool:
        return bool(
            self.error_rate
            or self.conflict_rate
            or self.throttle_rate
            or self.write_latency
            or self.watch_drop_after
        )

    def decide_write(self, plural: str | None) -> FaultDecision:
        decision = FaultDecision(delay=self.write_latency)
        if self.resources is not None and plural not in self.resources:
            return FaultDecision()
        draw = self._random.random()
        if draw < self.error_rate:
            decision.status = 500 if self._random.random() < 0.5 else 503
        elif draw < self.error_rate + self.conflict_rate:
            decision.status = 409
        elif draw < self.error_rate + self.conflict_rate + self.throttle_rate:
            decision.status = 429
            decision.retry_after = self.retry_after
        return decision

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if not f.name.startswith("_")
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultInjector:
        known = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        return cls(**data)
