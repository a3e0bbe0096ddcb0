"""The chart's admission webhook configurations for an operator serving on this machine: the
test of the webhooks and their benchmark register them the same way."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "cutover"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def webhook_configurations(namespace: str, port: int) -> list[dict[str, Any]]:
    """The chart's two webhook configurations for a release watching ``namespace`` (named as
    ``chart_rbac`` names it), pointed at the operator's local port instead of the in-cluster
    Service: the only difference from `helm install`."""
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(
            values={"watchNamespace": namespace},
            name=f"cutover-{namespace}",
            namespace=namespace,
            is_install=True,
        )
    docs = [d for d in yaml.safe_load_all(files["cutover/templates/admission.yaml"]) if d]
    configurations = [d for d in docs if d["kind"].endswith("WebhookConfiguration")]
    for doc in configurations:
        for webhook in doc["webhooks"]:
            path = webhook["clientConfig"].pop("service")["path"]
            webhook["clientConfig"]["url"] = f"https://127.0.0.1:{port}{path}"
    return configurations


def operator_env(namespace: str, port: int) -> dict[str, str]:
    """What makes the operator serve the webhooks on 127.0.0.1:``port`` and publish its CA."""
    return {
        "CUTOVER_WEBHOOK_PORT": str(port),
        "CUTOVER_WEBHOOK_ADDR": "127.0.0.1",
        "CUTOVER_WEBHOOK_HOSTS": "127.0.0.1",
        "CUTOVER_WEBHOOK_CONFIGURATION": f"cutover-{namespace}",
    }
