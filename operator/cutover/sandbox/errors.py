"""Kubernetes-style API errors, rendered as `Status` objects by the server.

They reuse kmock's `KubernetesError` so that the emulator's own error rendering and any kmock
reactions treat them the same way.
"""

from __future__ import annotations

from typing import Any

from kmock import KubernetesError


def status_body(code: int, reason: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure" if code >= 400 else "Success",
        "code": code,
        "reason": reason,
        "message": message,
    }
    if details:
        body["details"] = details
    return body


def api_error(code: int, reason: str, message: str, details: Any = None) -> KubernetesError:
    return KubernetesError(status=code, reason=reason, message=message, details=details)


def bad_request(message: str) -> KubernetesError:
    return api_error(400, "BadRequest", message)


def not_found(kind_plural: str, name: str, group: str = "") -> KubernetesError:
    qualified = f"{kind_plural}.{group}" if group else kind_plural
    return api_error(
        404,
        "NotFound",
        f'{qualified} "{name}" not found',
        {"name": name, "group": group, "kind": kind_plural},
    )


def already_exists(kind_plural: str, name: str, group: str = "") -> KubernetesError:
    qualified = f"{kind_plural}.{group}" if group else kind_plural
    return api_error(
        409,
        "AlreadyExists",
        f'{qualified} "{name}" already exists',
        {"name": name, "group": group, "kind": kind_plural},
    )


def conflict(kind_plural: str, name: str, group: str = "") -> KubernetesError:
    qualified = f"{kind_plural}.{group}" if group else kind_plural
    return api_error(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        {"name": name, "group": group, "kind": kind_plural},
    )


def render_error(exc: KubernetesError) -> dict[str, Any]:
    return status_body(
        exc.status, exc.reason or "InternalError", exc.message or repr(exc), exc.details
    )
