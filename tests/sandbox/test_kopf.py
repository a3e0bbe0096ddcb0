"""A real kopf operator (subprocess, `kopf run --standalone`) against the sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cutover.sandbox.process import SandboxProcess
from tests.sandbox.helpers import WIDGET_CRD, wait_for

OPERATOR = """
import kopf

@kopf.on.startup()
def configure(settings, **_):
    settings.persistence.finalizer = "example.io/kopf-finalizer"
    settings.watching.server_timeout = 10
    settings.posting.enabled = True

@kopf.on.create("example.io", "v1", "widgets")
def created(spec, patch, **_):
    patch.status["phase"] = "Created"
    patch.status["doubled"] = spec.get("size", 0) * 2

@kopf.on.delete("example.io", "v1", "widgets")
def deleted(name, logger, **_):
    logger.info("deleted %s", name)
"""


@pytest.mark.integration
def test_kopf_operator_handles_widgets(
    sandbox: SandboxProcess, custom: Any, tmp_path: Path
) -> None:
    sandbox.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    module = tmp_path / "widget_operator.py"
    module.write_text(OPERATOR)
    log_path = tmp_path / "kopf.log"
    env = {**os.environ, "KUBECONFIG": sandbox.kubeconfig}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kopf",
                "run",
                "--standalone",
                "--namespace",
                "default",
                "--verbose",
                str(module),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        custom.create_namespaced_custom_object(
            "example.io",
            "v1",
            "default",
            "widgets",
            {
                "apiVersion": "example.io/v1",
                "kind": "Widget",
                "metadata": {"name": "kopf-w"},
                "spec": {"size": 21},
            },
        )

        def handled() -> dict[str, Any] | None:
            obj: dict[str, Any] = custom.get_namespaced_custom_object(
                "example.io", "v1", "default", "widgets", "kopf-w"
            )
            return obj if (obj.get("status") or {}).get("phase") == "Created" else None

        obj = wait_for(handled, timeout=20)
        assert obj["status"]["doubled"] == 42
        assert "example.io/kopf-finalizer" in obj["metadata"]["finalizers"]

        custom.delete_namespaced_custom_object("example.io", "v1", "default", "widgets", "kopf-w")

        def gone() -> bool:
            objs = custom.list_namespaced_custom_object("example.io", "v1", "default", "widgets")[
                "items"
            ]
            return all(o["metadata"]["name"] != "kopf-w" for o in objs)

        wait_for(gone, timeout=20)
        writes = [e for e in sandbox.requests() if e["name"] == "kopf-w"]
        assert any(e["subresource"] == "status" for e in writes)  # kopf used /status
        assert writes[-1]["code"] == 200
    except BaseException:
        print(log_path.read_text(errors="replace")[-5000:])
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
