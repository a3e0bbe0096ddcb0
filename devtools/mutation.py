"""Mutation testing of the decision core with mutmut: ``make mutation`` (all of core/) and
``make mutation-ci`` (the subset CI keeps a floor on).

mutmut looks for the code to mutate only at the top of a project (``./``, ``src/``, ``source/``)
and names mutants after file paths, while our package lives under ``operator/``, which must never
be importable (it shadows the standard library). So the run happens in a work tree,
``build/mutation/`` (``build/mutation-ci/`` for the subset), where the package sits at the top
as ``cutover/``. The work tree keeps mutmut's ``mutants/`` between runs, so a second run only
re-checks what changed.

The score is killed / (all - equivalent): mutants listed in ``devtools/mutation-equivalent.txt``
change no behaviour (each line says why) and are left out; every other survivor is a gap in the
tests. Property tests run with fewer, derandomised examples here (CUTOVER_HYPOTHESIS_SCALE), so
that a mutant is judged the same way on every run.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENT = ROOT / "devtools" / "mutation-equivalent.txt"
COPIED = ("tests", "devtools", "crds", "charts", "examples", "docs", "bench")
CORE = "cutover/core"
# The subset CI runs: the rules that decide rollbacks, gate outcomes, what a spec change and a
# deletion do, and which Migration may drive a Deployment.
CI_SOURCES = ("gates.py", "rollback.py", "speccheck.py", "deletion.py", "claims.py")
TESTS = ("tests/unit/",)
KILLED = {"killed", "timeout", "segfault", "suspicious"}
NOT_RUN = {"not checked", "skipped"}
_RESULT = re.compile(r"^\s*(?P<name>\S+): (?P<status>.+?)\s*$")


@dataclass(frozen=True)
class Score:
    killed: int
    survived: list[str]
    equivalent: list[str]
    not_run: int

    @property
    def judged(self) -> int:
        return self.killed + len(self.survived)

    @property
    def percent(self) -> float:
        return 100.0 * self.killed / self.judged if self.judged else 100.0


def equivalent_mutants() -> dict[str, str]:
    """Mutant name (or fnmatch pattern) -> why it changes no behaviour."""
    listed: dict[str, str] = {}
    for line in EQUIVALENT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, why = line.partition(" ")
        listed[name] = why.strip()
    return listed


def tests_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted((ROOT / "tests").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def prepare(work: Path, sources: list[str]) -> None:
    """The work tree: a fresh copy of the project with the package at the top.

    mutmut keeps a mutant's result while the mutated function is unchanged, even when the tests
    changed; a weakened test would leave a stale "killed". So a change to the tests starts the
    mutants over."""
    work.mkdir(parents=True, exist_ok=True)
    stamp = work / "tests.sha256"
    fingerprint = tests_fingerprint()
    if not stamp.exists() or stamp.read_text() != fingerprint:
        shutil.rmtree(work / "mutants", ignore_errors=True)
    stamp.write_text(fingerprint)
    for name in (*COPIED, "cutover"):
        shutil.rmtree(work / name, ignore_errors=True)
    for name in COPIED:
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        ROOT / "operator" / "cutover",
        work / "cutover",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    also_copy = [f"{name}/" for name in (*COPIED, "cutover")]
    config = "\n".join(
        [
            "",
            "[tool.mutmut]",
            f"source_paths = {json.dumps(sources)}",
            f"pytest_add_cli_args_test_selection = {json.dumps(list(TESTS))}",
            f"also_copy = {json.dumps(also_copy)}",
            "",
        ]
    )
    (work / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + config)


def mutmut(work: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).with_name("mutmut")
    return subprocess.run(
        [str(executable), *args], cwd=work, env=env, text=True, capture_output=True, check=False
    )


def score(results: str, equivalent: dict[str, str]) -> Score:
    killed, not_run = 0, 0
    survived: list[str] = []
    skipped_as_equivalent: list[str] = []
    for line in results.splitlines():
        match = _RESULT.match(line)
        if not match:
            continue
        name, status = match["name"], match["status"]
        if status in NOT_RUN:
            not_run += 1
        elif status in KILLED:
            killed += 1
        elif any(fnmatch.fnmatchcase(name, pattern) for pattern in equivalent):
            skipped_as_equivalent.append(name)
        else:
            survived.append(name)
    return Score(killed, survived, skipped_as_equivalent, not_run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ci", action="store_true", help=f"only core/{{{','.join(CI_SOURCES)}}} (what CI runs)"
    )
    parser.add_argument("--floor", type=float, default=0.0, help="fail below this % killed")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--work", type=Path, help="work tree (default build/mutation[-ci])")
    args = parser.parse_args(argv)
    work: Path = args.work or ROOT / "build" / ("mutation-ci" if args.ci else "mutation")
    report = work / "report.json"

    names = (
        CI_SOURCES
        if args.ci
        else sorted(p.name for p in (ROOT / "operator/cutover/core").glob("*.py"))
    )
    sources = [f"{CORE}/{name}" for name in names if name != "__init__.py"]
    started = time.monotonic()
    prepare(work, sources)
    env = {
        **os.environ,
        # The package is imported from the work tree's copy, never from operator/.
        "PYTHONPATH": "",
        "CUTOVER_HYPOTHESIS_SCALE": "0.2",
        "CUTOVER_HYPOTHESIS_PROFILE": "mutation",
    }
    run = mutmut(work, "run", "--max-children", str(args.jobs), env=env)
    if run.returncode != 0:
        print(run.stdout[-4000:], run.stderr[-4000:], sep="\n", file=sys.stderr)
        print(f"mutmut run failed with exit code {run.returncode}", file=sys.stderr)
        return 2
    results = mutmut(work, "results", "--all", "true", env=env).stdout
    result = score(results, equivalent_mutants())
    seconds = time.monotonic() - started
    report.write_text(
        json.dumps(
            {
                "sources": sources,
                "killed": result.killed,
                "survived": result.survived,
                "equivalent": result.equivalent,
                "not_run": result.not_run,
                "percent_killed": round(result.percent, 1),
                "seconds": round(seconds),
            },
            indent=2,
        )
    )
    for name in result.survived:
        print(f"survived: {name}   (mutmut show {name}, in {work})")
    print(
        f"mutation score on {', '.join(sources)}: {result.percent:.1f}% killed"
        f" ({result.killed} of {result.judged}; {len(result.equivalent)} equivalent left out,"
        f" {result.not_run} not run) in {seconds:.0f}s; report {report}"
    )
    if result.percent < args.floor:
        print(f"below the floor of {args.floor:.0f}%", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
