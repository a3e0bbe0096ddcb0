"""The demo's scenarios: which Migration to apply, how green behaves, and what must happen."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cutover.api import Phase
from devtools.demo.traffic import ErrorScript

# The repository root: the demo is a development tool and uses the checked-out examples/ and
# crds/ (the installed wheel does not ship them).
REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples" / "demo"
# Every CRD of cutover.io (the operator watches Migrations and gate templates).
CRD = REPO_ROOT / "crds"

SERVICE = "checkout"
BLUE = "checkout-blue"
GREEN = "checkout-green"
MIGRATION = "checkout"
GATE = "error-rate"
HEALTHY_ERRORS = 0.005
BAD_ERRORS = 0.30


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    manifest: str | None  # file in examples/demo; None: set up, apply nothing, wait
    expect: Phase | None  # with gates
    bad_green: bool = False

    def script(self) -> ErrorScript:
        # Green goes bad once it carries half the traffic: the second setWeight step.
        return ErrorScript(healthy=HEALTHY_ERRORS, bad=BAD_ERRORS if self.bad_green else None)

    def expected(self, gates: bool) -> Phase | None:
        # Without gates nothing watches green's error rate: a bad green is promoted anyway.
        return self.expect if gates or self.expect is None else Phase.succeeded


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="good",
            title="green is healthy (0.5 % errors): the run should succeed",
            manifest="migration-good.yaml",
            expect=Phase.succeeded,
        ),
        Scenario(
            name="bad-green",
            title=(
                "green fails 30 % of requests once it takes half the traffic:"
                " the error-rate gate should roll it back"
            ),
            manifest="migration-bad-green.yaml",
            expect=Phase.rolled_back,
            bad_green=True,
        ),
        Scenario(
            name="playground",
            title="the cluster, Prometheus, traffic and operator, for your own Migrations",
            manifest=None,
            expect=None,
        ),
    )
}
ALL = ("good", "bad-green")
