"""Running the operator from source as ``kopf run``, for the tests, the demo and the benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

SOURCE_ROOT = Path(__file__).resolve().parents[1] / "operator"


def launch_operator(
    namespace: str | None,
    kubeconfig: str | os.PathLike[str],
    log: IO[bytes],
    env: Mapping[str, str] | None = None,
    *,
    peering: str | None = None,
    verbose: bool = True,
    liveness: str | None = None,
) -> subprocess.Popen[bytes]:
    """``kopf run -m cutover.handlers --standalone --namespace NS`` with ``kubeconfig``, logging
    to ``log``, in a session of its own (so a group signal reaches it and nothing else).

    ``namespace=None`` watches every namespace; ``peering`` replaces ``--standalone`` with Kopf's
    peering through the (Cluster)KopfPeering object of that name."""
    environment = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "PYTHONPATH": os.pathsep.join(
            [str(SOURCE_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kopf",
            "run",
            "-m",
            "cutover.handlers",
            *(["--peering", peering] if peering else ["--standalone"]),
            *(["--namespace", namespace] if namespace else ["--all-namespaces"]),
            *(["--verbose"] if verbose else []),
            *([f"--liveness={liveness}"] if liveness else []),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=environment,
        cwd=SOURCE_ROOT.parent,
        start_new_session=True,
    )
