"""The CustomResourceDefinition, generated from the pydantic models in ``cutover.api``.

pydantic emits JSON Schema 2020-12; a Kubernetes API server accepts only *structural* OpenAPI v3
schemas: no ``$ref``/``$defs``, every field typed, ``nullable`` instead of ``anyOf [.., null]``,
boolean ``exclusiveMinimum``. ``structural`` does that translation; ``crd`` wraps the result.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from pydantic import BaseModel

from cutover import api

_DROP = {"title", "default", "examples"}
# The list of conditions is a map keyed by type, so server-side apply merges it correctly.
_LIST_MAP_KEYS = {"conditions": ["type"], "gates": ["name"]}


def _deref(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        target = dict(defs[name])
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        target.update(extra)
        return target
    return schema


def structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    schema = _deref(schema, defs)
    out: dict[str, Any] = {}
    any_of = schema.get("anyOf")
    if any_of is not None:
        options = [o for o in any_of if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union of {len(options)} types structurally")
        inner = structural(options[0], defs)
        inner["nullable"] = True
        for key in ("description",):
            if key in schema:
                inner[key] = schema[key]
        _describe_default(inner, schema)
        return inner
    for key, value in schema.items():
        if key in _DROP or key in {"$defs", "additionalProperties", "anyOf"}:
            continue
        if key == "properties":
            out["properties"] = {
                name: _with_list_keys(name, structural(prop, defs)) for name, prop in value.items()
            }
        elif key == "items":
            out["items"] = structural(value, defs)
        elif key == "const":
            out["enum"] = [value]
        elif key == "exclusiveMinimum":
            out["minimum"] = value
            out["exclusiveMinimum"] = True
        elif key == "exclusiveMaximum":
            out["maximum"] = value
            out["exclusiveMaximum"] = True
        else:
            out[key] = value
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        out["additionalProperties"] = structural(additional, defs)
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if (
        out.get("type") == "object"
        and "properties" not in out
        and "additionalProperties" not in out
    ):
        out["x-kubernetes-preserve-unknown-fields"] = True
    _describe_default(out, schema)
    return out


def _with_list_keys(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    # Only lists of objects are maps (spec.preview.gates is a list of gate names).
    items = schema.get("items") or {}
    if name in _LIST_MAP_KEYS and schema.get("type") == "array" and items.get("type") == "object":
        schema["x-kubernetes-list-type"] = "map"
        schema["x-kubernetes-list-map-keys"] = _LIST_MAP_KEYS[name]
    return schema


def _describe_default(out: dict[str, Any], source: dict[str, Any]) -> None:
    """Defaults are applied by the operator, not the API server; ``kubectl explain`` shows them."""
    default = source.get("default")
    if default is None or default in ("", [], {}):
        return
    text = json.dumps(default) if not isinstance(default, str) else default
    description = out.get("description", "")
    if "Default:" not in description:
        out["description"] = f"{description} Default: {text}.".strip()


def _model_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return structural(raw, defs)


def openapi_schema() -> dict[str, Any]:
    spec = _model_schema(api.MigrationSpec)
    spec["description"] = "The desired migration: versions, traffic router, steps and gates."
    status = _model_schema(api.MigrationStatus)
    status["description"] = "What the operator observed and did; written only by the operator."
    return {
        "type": "object",
        "description": "A blue-green Migration: shifts traffic from blue to green in steps, "
        "checks health gates and rolls back on a breach.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


def _definition(names: dict[str, Any], scope: str, version: dict[str, Any]) -> dict[str, Any]:
    """A CRD of the group with one version, served and stored."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{names['plural']}.{api.GROUP}"},
        "spec": {
            "group": api.GROUP,
            "scope": scope,
            "names": names,
            "versions": [{"name": api.VERSION, "served": True, "storage": True, **version}],
        },
    }


def crd() -> dict[str, Any]:
    names = {
        "kind": api.KIND,
        "listKind": f"{api.KIND}List",
        "plural": api.PLURAL,
        "singular": api.SINGULAR,
        "shortNames": list(api.SHORT_NAMES),
        "categories": ["all"],
    }
    version = {
        "subresources": {"status": {}},
        "additionalPrinterColumns": [
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {
                "name": "Step",
                "type": "string",
                "jsonPath": ".status.step",
                "description": "Current step of all steps, counted from 1.",
            },
            {
                "name": "Weight",
                "type": "integer",
                "jsonPath": ".status.weight",
                "description": "Percent of traffic on green.",
            },
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            {
                "name": "Window",
                "type": "string",
                "jsonPath": ".status.rollbackWindowEndsAt",
                "description": (
                    "While set, the rollback window after success is open until"
                    " then: blue is kept at full size, `cutover undo` brings it back."
                ),
            },
            {"name": "Message", "type": "string", "jsonPath": ".status.message"},
        ],
        "schema": {"openAPIV3Schema": openapi_schema()},
    }
    return _definition(names, "Namespaced", version)


def template_crd(kind: api.GateTemplateKind) -> dict[str, Any]:
    """GateTemplate (namespaced) or ClusterGateTemplate (cluster-scoped): the same spec."""
    spec = _model_schema(api.GateTemplateSpec)
    spec["description"] = "A gate without its name, and the args a gate using it gives."
    where = "in its namespace" if kind.namespaced else "in every namespace"
    names = {
        "kind": kind.value,
        "listKind": f"{kind.value}List",
        "plural": kind.plural,
        "singular": kind.value.lower(),
        "categories": ["cutover"],
    }
    openapi = {
        "type": "object",
        "description": (
            f"A reusable gate for Migrations {where}: a gate names it with templateRef and"
            " gives its args."
        ),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
        },
    }
    version = {
        "additionalPrinterColumns": [
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
        ],
        "schema": {"openAPIV3Schema": openapi},
    }
    return _definition(names, "Namespaced" if kind.namespaced else "Cluster", version)


def crds() -> dict[str, dict[str, Any]]:
    """Every CRD of the group by file name under ``crds/``."""
    found = {f"{api.PLURAL}.{api.GROUP}.yaml": crd()}
    for kind in api.GateTemplateKind:
        found[f"{kind.plural}.{api.GROUP}.yaml"] = template_crd(kind)
    return found


class _PlainDumper(yaml.SafeDumper):
    """No YAML anchors: shared sub-schemas are written out in full, as kubectl users expect."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def crd_yaml(kind: str = api.KIND) -> str:
    """The CRD of ``kind`` (Migration, GateTemplate or ClusterGateTemplate) as a file."""
    body = crd() if kind == api.KIND else template_crd(api.GateTemplateKind(kind))
    header = "# Generated by `make crds` from operator/cutover/api.py. Do not edit by hand.\n"
    return header + yaml.dump(body, Dumper=_PlainDumper, sort_keys=False, width=100)
