"""The one builder of the test and benchmark manifests: Deployments, a blue/green app behind one
Service, and Migrations between an app's ``<app>-blue`` and ``<app>-green``."""

from __future__ import annotations

import json
from typing import Any

API_VERSION = "cutover.io/v1alpha1"


def deployment(name: str, replicas: int, labels: dict[str, str], image: str) -> dict[str, Any]:
    """A Deployment whose pods carry ``labels`` (the Deployment itself has none)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def app_manifest(app: str, blue_replicas: int) -> str:
    """``<app>-blue`` (serving), ``<app>-green`` (at zero) and one Service selecting both."""
    docs: list[dict[str, Any]] = []
    for version, count in (("blue", blue_replicas), ("green", 0)):
        labels = {"app": app, "version": version}
        doc = deployment(f"{app}-{version}", count, labels, f"{app}:{version}")
        doc["metadata"]["labels"] = labels
        docs.append(doc)
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": app},
            "spec": {"selector": {"app": app}, "ports": [{"port": 80}]},
        }
    )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})


def migration(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A Migration object with exactly ``spec``."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Migration",
        "metadata": {"name": name},
        "spec": spec,
    }


def migration_body(name: str, app: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A Migration of ``app`` on the replicas router (its Service named ``app``); ``spec`` adds
    to (or overrides) blue, green and traffic."""
    return migration(
        name,
        {
            "blue": {"deployment": f"{app}-blue"},
            "green": {"deployment": f"{app}-green"},
            "traffic": {"router": "replicas", "service": app},
            **spec,
        },
    )
