"""The chaos driver and the write-log checks shared by the reliability tests.

A *scenario* is a Migration plus what the driver does to it while it runs (nothing, an abort at a
random weight, an unpause, a promote) and what must come out: the final phase and the exact
sequence of replica patches the cluster may have received for it.
"""

from __future__ import annotations

import collections
import json
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cutover.core.plan import replica_split
from devtools.controlplane import ControlPlane
from devtools.controlplane.faultproxy import Injected
from tests.integration.harness import (
    INTERRUPTED,
    OperatorProcess,
    apply_text,
    same_request,
    took_effect,
)
from tests.support import manifests
from tests.support.controlplane import operator_kubeconfig
from tests.support.manifests import migration_body
from tests.support.patches import replicas_patched

SOAK = os.environ.get("CUTOVER_SOAK", "") not in ("", "0")
TOTAL = 4  # blue's replicas at the start: the "total" every split is computed from
TERMINAL = {"Succeeded", "RolledBack", "Failed"}


def scale(short: int, soak: int) -> int:
    return soak if SOAK else short


def chaos_seed() -> int:
    raw = os.environ.get("CUTOVER_CHAOS_SEED")
    return int(raw) if raw else random.SystemRandom().randrange(1, 2**31)


# --- manifests ---------------------------------------------------------------------------------


def app_manifest(app: str, blue: int = TOTAL) -> str:
    """``<app>-blue`` serving, ``<app>-green`` at zero, and one Service selecting both."""
    return manifests.app_manifest(app, blue)


def migration_manifest(name: str, app: str, spec: dict[str, Any]) -> str:
    return json.dumps(migration_body(name, app, {"progressDeadline": "5m"} | spec))


def job_template(outcome: str, after: float = 0.3) -> dict[str, Any]:
    """A hook Job whose pod kwok ends as ``outcome`` (succeed/fail) after ``after`` seconds."""
    return {
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {
                    "annotations": {
                        "hook.cutover.test/outcome": outcome,
                        "hook.cutover.test/delay": f"{int(after * 1000)}ms",
                    }
                },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "hook", "image": "busybox", "command": ["true"]}],
                },
            },
        },
    }


def paced_steps(pause: str, *, hold: tuple[int, str] | None = None) -> list[dict[str, Any]]:
    """Weights 25, 50, 100 with a timed pause of ``pause`` between them; ``hold`` (weight,
    pause) makes the pause after that weight longer."""
    steps: list[dict[str, Any]] = []
    for weight in (25, 50):
        held = hold[1] if hold is not None and hold[0] == weight else pause
        steps += [{"setWeight": weight}, {"pause": {"duration": held}}]
    return [*steps, {"setWeight": 100}]


STEPS = paced_steps("1s")


def ideal(weights: Iterable[int], total: int = TOTAL) -> list[tuple[str, int]]:
    """The replica patches of a clean run through ``weights`` (green grows before blue shrinks)."""
    out: list[tuple[str, int]] = []
    blue, green = total, 0
    for weight in weights:
        want_blue, want_green = replica_split(total, weight)
        if want_green >= green:
            moves = [("green", want_green), ("blue", want_blue)]
        else:
            moves = [("blue", want_blue), ("green", want_green)]
        for side, count in moves:
            if (blue if side == "blue" else green) != count:
                out.append((side, count))
                blue, green = (count, green) if side == "blue" else (blue, count)
    return out


@dataclass
class Scenario:
    kind: str  # healthy | abort | hookfail | paused | promote
    name: str
    spec: dict[str, Any]
    expect_phase: str
    weights: list[int]
    abort_at: int | None = None
    fired: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def rolls_back(self) -> bool:
        return self.expect_phase == "RolledBack"


KINDS = ("healthy", "abort", "hookfail", "paused", "promote")


def make_scenario(kind: str, index: int, rng: random.Random) -> Scenario:
    name = f"m{index:03d}"
    if kind == "healthy":
        spec = {
            "steps": STEPS,
            "hooks": {"preShift": [{"name": "expand", "jobTemplate": job_template("succeed")}]},
        }
        return Scenario(kind, name, spec, "Succeeded", [25, 50, 100])
    if kind == "abort":
        # The driver must see the weight and its abort must land before the run moves past it:
        # a loaded machine's driver can take seconds for both, so the pause at the abort's
        # weight is long (the abort ends it, so it costs nothing when all goes well).
        abort_at = rng.choice([25, 50])
        slow = paced_steps("4s", hold=(abort_at, "60s"))
        return Scenario(kind, name, {"steps": slow}, "RolledBack", [25, 50, 100], abort_at=abort_at)
    if kind == "hookfail":
        spec = {
            "steps": STEPS,
            "hooks": {"afterStep": [{"name": "check", "jobTemplate": job_template("fail")}]},
        }
        return Scenario(kind, name, spec, "RolledBack", [25])
    if kind == "paused":
        return Scenario(kind, name, {"steps": STEPS, "paused": True}, "Succeeded", [25, 50, 100])
    if kind == "promote":
        steps = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 100}]
        return Scenario(kind, name, {"steps": steps}, "Succeeded", [25, 100])
    raise ValueError(kind)


# --- reading the write log ---------------------------------------------------------------------


def ok_writes(entries: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """The operator's and anyone's writes in ``namespace`` that took effect."""
    return took_effect(
        [
            e
            for e in entries
            if e.get("namespace") == namespace
            and e.get("method") in ("POST", "PUT", "PATCH", "DELETE")
        ],
        same_request,
    )


def _replica_write(entry: dict[str, Any]) -> tuple[str, int] | None:
    count = replicas_patched(entry.get("body"))
    return (str(entry.get("name")), count) if count is not None else None


def replica_patches(
    entries: list[dict[str, Any]], namespace: str, app: str
) -> list[tuple[str, int]]:
    """The replica writes that took effect, in order, as (blue|green, replicas)."""
    candidates = [
        e
        for e in entries
        if e.get("namespace") == namespace
        and e.get("method") == "PATCH"
        and e.get("resource") == "deployments"
        and _replica_write(e) is not None
        and str(e.get("name")).startswith(f"{app}-")
    ]
    out = []
    for entry in took_effect(candidates, _replica_write):
        name, count = _replica_write(entry) or ("", 0)
        out.append((name.removeprefix(f"{app}-"), count))
    return out


def sequence_anomalies(
    patches: list[tuple[str, int]], scenario: Scenario, total: int = TOTAL
) -> list[str]:
    """Problems with one Migration's replica patches, compared with its scenario's ideal."""
    problems: list[str] = []
    state = {"blue": total, "green": 0}
    for side, count in patches:
        if state[side] == count:
            problems.append(f"repeated write {side}={count} in {patches}")
        state[side] = count
    full = ideal(scenario.weights, total)
    prefix = 0
    while prefix < min(len(patches), len(full)) and patches[prefix] == full[prefix]:
        prefix += 1
    rest = patches[prefix:]
    if not scenario.rolls_back:
        if patches != full:
            problems.append(f"patches {patches} != ideal {full}")
        return problems
    if scenario.kind == "hookfail" and prefix != len(full):
        problems.append(f"hook failure after step 1, but forward patches {patches[:prefix]}")
    # The rollback: green to 0 and blue back to the total, each at most once.
    allowed = {("green", 0), ("blue", total)}
    if any(p not in allowed for p in rest) or len(rest) != len(set(rest)):
        problems.append(f"rollback part {rest} of {patches} is not a single return to blue")
    return problems


def job_duplicates(entries: list[dict[str, Any]], namespace: str) -> list[str]:
    created: collections.Counter[str] = collections.Counter()
    existing: set[str] = set()
    for entry in ok_writes(entries, namespace):
        if entry.get("resource") != "jobs":
            continue
        if entry.get("method") == "DELETE":
            existing.discard(str(entry.get("name")))
        if entry.get("method") != "POST":
            continue
        name = str(((entry.get("body") or {}).get("metadata") or {}).get("name"))
        if entry.get("code") == INTERRUPTED and name in existing:
            # A create cut short by the SIGKILL counts as applied when in doubt (ok_writes), but
            # one of a Job that exists could only have been refused (409): not a second Job.
            continue
        created[name] += 1
        existing.add(name)
    return [f"Job {name} created {n} times" for name, n in created.items() if n > 1]


def list_json(cluster: ControlPlane, namespace: str, kind: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "-n", namespace, kind, "-o", "json").stdout
    return list(json.loads(out).get("items") or [])


def traffic_anomalies(
    deployments: dict[str, dict[str, Any]], scenario: Scenario, app: str, total: int = TOTAL
) -> list[str]:
    blue = int(deployments[f"{app}-blue"]["spec"].get("replicas", 0))
    green = int(deployments[f"{app}-green"]["spec"].get("replicas", 0))
    want = (0, total) if scenario.expect_phase == "Succeeded" else (total, 0)
    if (blue, green) != want:
        return [f"final replicas blue={blue} green={green}, want {want}"]
    return []


# --- the driver --------------------------------------------------------------------------------


@dataclass
class ChaosReport:
    seed: int
    migrations: int
    kills: int
    anomalies: list[str]
    phases: dict[str, str]
    seconds: float
    writes: int
    # Faults the proxy injected (the kube-apiserver never saw those requests).
    injected: list[Injected] = field(default_factory=list)

    def line(self, label: str) -> str:
        return (
            f"[{label}] seed={self.seed} migrations={self.migrations} kills={self.kills}"
            f" writes={self.writes} anomalies={len(self.anomalies)} time={self.seconds:.0f}s"
        )


def drive(
    cluster: ControlPlane,
    namespace: str,
    *,
    count: int,
    seed: int,
    max_kills: int,
    kill_every: tuple[float, float] = (1.0, 4.0),
    timeout: float = 180.0,
    operator_env: dict[str, str] | None = None,
    on_tick: Callable[[], None] | None = None,
    faults: dict[str, Any] | None = None,
) -> ChaosReport:
    """Runs ``count`` Migrations of mixed scenarios, SIGKILLing the operator at random instants."""
    rng = random.Random(seed)
    scenarios = [make_scenario(KINDS[i % len(KINDS)], i, rng) for i in range(count)]
    rng.shuffle(scenarios)
    since = cluster.stats()["last_seq"]
    # With faults, the operator talks to the real kube-apiserver through the fault proxy.
    proxy = cluster.fault_proxy().start() if faults else None
    kubeconfig = (
        operator_kubeconfig(cluster, namespace, cluster.workdir / "operators", server=proxy.url)
        if proxy
        else None
    )
    operator = OperatorProcess(cluster, namespace, env=operator_env, kubeconfig=kubeconfig).start()
    started = time.monotonic()
    kills = 0
    try:
        for s in scenarios:
            apply_text(cluster, namespace, app_manifest(s.name))
            apply_text(cluster, namespace, migration_manifest(s.name, s.name, s.spec))
        if proxy is not None and faults:
            proxy.set_faults(**faults)
        # The first kill comes sooner than the next ones: the runs created first progress while
        # the rest are applied, and on a fast machine all of them had finished by a first kill
        # 1-4 s after the last was applied (a chaos run with no crash in it).
        next_kill = time.monotonic() + rng.uniform(0.0, kill_every[0])
        phases: dict[str, str] = {}
        while time.monotonic() - started < timeout:
            items = {m["metadata"]["name"]: m for m in list_json(cluster, namespace, "mig")}
            phases = {n: str((m.get("status") or {}).get("phase")) for n, m in items.items()}
            for s in scenarios:
                _trigger(cluster, namespace, s, items.get(s.name))
            if on_tick is not None:
                on_tick()
            if all(p in TERMINAL for p in phases.values()) and len(phases) == count:
                break
            if kills < max_kills and time.monotonic() >= next_kill:
                operator.kill()
                kills += 1
                operator.start()
                next_kill = time.monotonic() + rng.uniform(*kill_every)
            time.sleep(0.15)
        # Nothing may happen after the end: give a late duplicate write the chance to show.
        time.sleep(1.0)
    finally:
        if proxy is not None:
            proxy.set_faults()
        operator.stop()
        if proxy is not None:
            proxy.stop()
    entries = cluster.requests(since=since)
    deployments = {d["metadata"]["name"]: d for d in list_json(cluster, namespace, "deployments")}
    anomalies: list[str] = []
    for s in scenarios:
        found = [
            f"{s.name} ({s.kind}): {p}" for p in _check(s, phases, entries, namespace, deployments)
        ]
        anomalies += found
    anomalies += job_duplicates(entries, namespace)
    return ChaosReport(
        seed=seed,
        migrations=count,
        kills=kills,
        anomalies=anomalies,
        phases=phases,
        seconds=time.monotonic() - started,
        writes=len(ok_writes(entries, namespace)),
        injected=proxy.injected_since(0) if proxy else [],
    )


def _check(
    s: Scenario,
    phases: dict[str, str],
    entries: list[dict[str, Any]],
    namespace: str,
    deployments: dict[str, dict[str, Any]],
) -> list[str]:
    problems = []
    if phases.get(s.name) != s.expect_phase:
        problems.append(f"phase {phases.get(s.name)}, want {s.expect_phase}")
    problems += sequence_anomalies(replica_patches(entries, namespace, s.name), s)
    if phases.get(s.name) in TERMINAL:
        problems += traffic_anomalies(deployments, s, s.name)
    return problems


def _trigger(
    cluster: ControlPlane, namespace: str, s: Scenario, obj: dict[str, Any] | None
) -> None:
    """Fires the scenario's action once; a write the fault injector failed is tried again."""
    if obj is None or s.fired:
        return
    status = obj.get("status") or {}
    phase, weight = status.get("phase"), int(status.get("weight") or 0)
    args: list[str] | None = None
    if s.kind == "abort" and s.abort_at is not None and weight >= s.abort_at:
        args = ["annotate", f"mig/{s.name}", f"cutover.io/request=abort:a-{s.name}", "--overwrite"]
    elif s.kind == "paused" and phase == "Paused" and status.get("reason") == "PausedBySpec":
        args = ["patch", f"mig/{s.name}", "--type=merge", "-p", '{"spec": {"paused": false}}']
    elif s.kind == "promote" and phase == "Paused" and status.get("currentStepIndex") == 1:
        args = [
            "annotate",
            f"mig/{s.name}",
            f"cutover.io/request=promote:p-{s.name}",
            "--overwrite",
        ]
    if args is not None:
        s.fired = cluster.kubectl(*args, "-n", namespace, check=False).returncode == 0
