"""Builds the operator image and runs it the way the chart does: non-root, read-only, no network.

Runs only where a Docker engine answers (`docker info`). The base image is, in order:
``$CUTOVER_TEST_BASE_IMAGE``; ``python:3.11-slim`` if it is already present locally; the
``cutover-test-base:bookworm`` image made by ``tests/image/build-base.sh`` (which this module runs
itself when the image is missing and ``debootstrap`` is installed and we are root). The test never
pulls or installs anything but the Python packages the build itself fetches from PyPI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TAG = "cutover:pytest"
TEST_BASE = "cutover-test-base:bookworm"
RUN = ["run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp"]


def docker(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def engine_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        info = subprocess.run(
            ["docker", "info"], capture_output=True, text=True, timeout=20, check=False
        )
    except subprocess.TimeoutExpired:
        return "`docker info` timed out"
    if info.returncode != 0:
        return f"no usable Docker engine (`docker info`: {info.stderr.strip()[:200]})"
    return None


def has_image(ref: str) -> bool:
    return (
        subprocess.run(
            ["docker", "image", "inspect", ref], capture_output=True, timeout=30, check=False
        ).returncode
        == 0
    )


def base_image() -> str:
    if explicit := os.environ.get("CUTOVER_TEST_BASE_IMAGE"):
        return explicit
    for candidate in ("python:3.11-slim", TEST_BASE):
        if has_image(candidate):
            return candidate
    if shutil.which("debootstrap") is None or os.geteuid() != 0:
        pytest.skip(
            "no base image: python:3.11-slim is not present and cannot be pulled here; "
            "run tests/image/build-base.sh (root, debootstrap) or set CUTOVER_TEST_BASE_IMAGE"
        )
    subprocess.run(
        [str(ROOT / "tests" / "image" / "build-base.sh"), TEST_BASE], check=True, timeout=900
    )
    return TEST_BASE


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    if problem := engine_problem():
        pytest.skip(problem)
    base = base_image()
    env = dict(os.environ)
    buildx = subprocess.run(
        ["docker", "buildx", "version"], capture_output=True, timeout=30, check=False
    )
    if buildx.returncode != 0:
        # Without the buildx plugin a current client refuses BuildKit builds; the classic builder
        # still works and needs nothing beyond the engine.
        env["DOCKER_BUILDKIT"] = "0"
    # Host network for the build only: pip fetches the dependencies from PyPI.
    docker(
        "build",
        "--network",
        "host",
        "--build-arg",
        f"BASE_IMAGE={base}",
        "--tag",
        TAG,
        str(ROOT),
        timeout=1500,
        env=env,
    )
    yield TAG


def project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        version: str = tomllib.load(handle)["project"]["version"]
    return version


pytestmark = pytest.mark.timeout(1800)


def test_reports_its_version(image: str) -> None:
    out = docker(
        *RUN, "--entrypoint", "python", image, "-c", "import cutover; print(cutover.__version__)"
    )
    assert out.strip() == project_version()


def test_runs_as_a_numeric_non_root_user(image: str) -> None:
    config = json.loads(docker("image", "inspect", image))[0]["Config"]
    assert config["User"] == "65532:65532"
    out = docker(
        *RUN, "--entrypoint", "python", image, "-c", "import os; print(os.getuid(), os.getgid())"
    )
    assert out.split() == ["65532", "65532"]


def test_entrypoint_is_kopf_in_exec_form(image: str) -> None:
    config = json.loads(docker("image", "inspect", image))[0]["Config"]
    assert config["Entrypoint"] == [
        "kopf",
        "run",
        "-m",
        "cutover.handlers",
        "--liveness=http://0.0.0.0:8080/healthz",
    ]
    assert config["Cmd"] == ["--all-namespaces"]
    assert config["Env"] and "HOME=/tmp" in config["Env"]
    assert "PYTHONDONTWRITEBYTECODE=1" in config["Env"]


def test_kopf_starts_on_a_read_only_root(image: str) -> None:
    out = docker(*RUN, "--entrypoint", "kopf", image, "--version")
    assert "kopf" in out


def test_the_handlers_module_imports_with_the_image_dependencies(image: str) -> None:
    # Catches a dependency missing from pyproject (the dev venv may have it by accident).
    docker(*RUN, "--entrypoint", "python", image, "-c", "import cutover.handlers, cutover.metrics")


def test_no_pip_left_at_run_time(image: str) -> None:
    out = docker(
        *RUN,
        "--entrypoint",
        "python",
        image,
        "-c",
        "import importlib.util; print(importlib.util.find_spec('pip') is None)",
    )
    assert out.strip() == "True"
