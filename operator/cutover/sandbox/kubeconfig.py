"""Kubeconfig rendering for clients (kubectl, the kubernetes client, kopf) of the sandbox."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

NAME = "cutover-sandbox"
DUMMY_TOKEN = "sandbox-token"  # the sandbox does no authentication; clients insist on a user


def render_kubeconfig(url: str, namespace: str = "default") -> str:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": NAME, "cluster": {"server": url}}],
        "users": [{"name": NAME, "user": {"token": DUMMY_TOKEN}}],
        "contexts": [
            {"name": NAME, "context": {"cluster": NAME, "user": NAME, "namespace": namespace}}
        ],
        "current-context": NAME,
        "preferences": {},
    }
    return yaml.safe_dump(config, sort_keys=False)


def write_kubeconfig(path: str | os.PathLike[str], url: str) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(render_kubeconfig(url))
    tmp.replace(target)  # atomic, so a polling reader never sees a half-written file
    return target
