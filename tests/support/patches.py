"""What an audited PATCH of a Deployment asked for, whatever its patch type: a strategic merge
patch (``{"spec": {"replicas": N}}``, the routers' writes after a read) or a JSON patch (a list of
ops behind ``test`` ops, their writes planned from the watch-fed index)."""

from __future__ import annotations

from typing import Any


def replicas_patched(body: Any) -> int | None:
    """The ``spec.replicas`` the patch sets; None if it leaves it alone."""
    if isinstance(body, dict):
        value = (body.get("spec") or {}).get("replicas")
        return int(value) if value is not None else None
    if isinstance(body, list):
        for op in body:
            if (
                isinstance(op, dict)
                and op.get("op") in ("add", "replace")
                and op.get("path") == "/spec/replicas"
            ):
                return int(op["value"])
    return None
