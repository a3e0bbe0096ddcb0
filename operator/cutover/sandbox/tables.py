"""`meta.k8s.io/v1` Table rendering, so that `kubectl get` shows printer columns.

kubectl asks for tables via the Accept header; without them it would print only NAME/AGE for
custom resources. JSONPath support covers what printer columns use in practice: dotted paths,
`[n]` indexes and `[?(@.field=="value")]` filters.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from cutover.sandbox.discovery import ResourceType

_TOKEN = re.compile(
    r"\.?([A-Za-z0-9_\-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*==\s*"
    r"[\"']([^\"']*)[\"']\)\]"
)


def jsonpath(obj: Any, path: str) -> Any:
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    nodes: list[Any] = [obj]
    pos = 0
    while pos < len(path):
        match = _TOKEN.match(path, pos)
        if not match:
            return None
        pos = match.end()
        key, index, filter_field, filter_value = match.groups()
        next_nodes: list[Any] = []
        for node in nodes:
            if key is not None and isinstance(node, dict) and key in node:
                next_nodes.append(node[key])
            elif index is not None and isinstance(node, list) and int(index) < len(node):
                next_nodes.append(node[int(index)])
            elif filter_field is not None and isinstance(node, list):
                for item in node:
                    if str(jsonpath(item, "." + filter_field)) == filter_value:
                        next_nodes.append(item)
        nodes = next_nodes
    if not nodes:
        return None
    return nodes[0] if len(nodes) == 1 else ",".join(str(n) for n in nodes)


def human_age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.UTC
        )
    except ValueError:
        return "<invalid>"
    seconds = int((datetime.datetime.now(tz=datetime.UTC) - then).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _column(
    name: str, type_: str = "string", fmt: str = "", priority: int = 0, description: str = ""
) -> dict[str, Any]:
    return {
        "name": name,
        "type": type_,
        "format": fmt,
        "description": description,
        "priority": priority,
    }


def _deployment_cells(obj: dict[str, Any]) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
    ]


def render_table(rt: ResourceType, items: list[dict[str, Any]], rv: str) -> dict[str, Any]:
    columns = [_column("Name", fmt="name", description="Name of the object")]
    extractors: list[Any] = []
    if rt.printer_columns:
        for col in rt.printer_columns:
            columns.append(
                _column(
                    col.get("name", ""),
                    col.get("type", "string"),
                    col.get("format", ""),
                    int(col.get("priority", 0)),
                    col.get("description", ""),
                )
            )
            path, is_date = col.get("jsonPath", ""), col.get("type") == "date"
            extractors.append(
                lambda o, p=path, d=is_date: human_age(jsonpath(o, p)) if d else jsonpath(o, p)
            )
    else:
        if rt.kind == "Deployment":
            columns += [
                _column("Ready"),
                _column("Up-to-date", "integer"),
                _column("Available", "integer"),
            ]
            extractors += [lambda o, i=i: _deployment_cells(o)[i] for i in range(3)]
        columns.append(_column("Age", fmt="", description="creation time"))
        extractors.append(lambda o: human_age(o["metadata"].get("creationTimestamp")))
    rows = []
    for obj in items:
        cells = [obj["metadata"]["name"]]
        for extract in extractors:
            value = extract(obj)
            cells.append("<none>" if value is None else value)
        rows.append(
            {
                "cells": cells,
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"],
                },
            }
        )
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": columns,
        "rows": rows,
    }


def wants_table(accept: str) -> bool:
    return "as=Table" in accept
