"""Validating objects against the generated CRD's OpenAPI schema with ``jsonschema``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml

CRD_PATH = Path(__file__).resolve().parent.parent / "crds" / "migrations.cutover.io.yaml"


def to_json_schema(node: Any) -> Any:
    """OpenAPI v3.0 ``nullable``/boolean ``exclusiveMinimum`` -> JSON Schema draft 7 spellings."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if out.pop("exclusiveMinimum", False) is True:
        out["exclusiveMinimum"] = out.pop("minimum")
    if out.pop("exclusiveMaximum", False) is True:
        out["exclusiveMaximum"] = out.pop("maximum")
    if out.get("format") == "date-time":
        out.pop("format")
    return out


def schema(crd: dict[str, Any] | None = None) -> dict[str, Any]:
    crd = crd or yaml.safe_load(CRD_PATH.read_text())
    openapi = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return to_json_schema(openapi)  # type: ignore[no-any-return]


def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(schema())
