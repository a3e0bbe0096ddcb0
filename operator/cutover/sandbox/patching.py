"""Patch application: JSON merge patch, JSON patch and a strategic merge patch subset.

The strategic merge patch is a pragmatic re-implementation of the parts that clients actually
send (kubectl apply, client libraries): list merging by the well-known merge keys of the built-in
kinds, `$patch: replace|delete`, `$setElementOrder/…` and `$deleteFromPrimitiveList/…`. The
`$retainKeys` directive is accepted and ignored. It is deliberately not schema-driven.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from cutover.sandbox.errors import api_error, bad_request

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

# Merge keys of the built-in kinds (from the `patchMergeKey` markers in k8s.io/api), by field name.
# `ports` is context-dependent: containers merge by containerPort, Services by port.
_MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}
# Primitive lists that the apiserver merges as sets instead of replacing.
_MERGED_PRIMITIVE_LISTS = {"finalizers"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: dicts merge recursively, `null` deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Any, patch: Any) -> Any:
    """RFC 6902 via the `jsonpatch` package; failed `test` ops become 422 like the apiserver."""
    if not isinstance(patch, list):
        raise bad_request("json patch must be a list of operations")
    try:
        return jsonpatch.apply_patch(copy.deepcopy(target), patch)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise api_error(422, "Invalid", f"the server rejected our request: {exc}") from exc
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise api_error(422, "Invalid", f"the server rejected our request: {exc}") from exc


def _merge_key(field: str, path: tuple[str, ...], items: list[Any]) -> str | None:
    if field == "ports":
        return "containerPort" if any(p.endswith("ontainers") for p in path) else "port"
    if field in _MERGE_KEYS:
        return _MERGE_KEYS[field]
    # Generic fallback for unknown lists: behave like a named-list merge when that is unambiguous.
    if items and all(isinstance(item, dict) and "name" in item for item in items):
        return "name"
    return None


def _merge_list(
    field: str,
    path: tuple[str, ...],
    target: list[Any],
    patch: list[Any],
) -> list[Any]:
    if field in _MERGED_PRIMITIVE_LISTS and all(not isinstance(x, dict) for x in patch):
        return list(target) + [item for item in patch if item not in target]
    non_directive = [item for item in patch if not (isinstance(item, dict) and "$patch" in item)]
    key = _merge_key(field, path, list(target) + non_directive)
    if key is None:
        if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
            return non_directive
        return copy.deepcopy(non_directive)
    result = [copy.deepcopy(item) for item in target]
    for item in patch:
        if not isinstance(item, dict):
            continue
        directive = item.get("$patch")
        if directive == "replace":
            # `[{"$patch": "replace"}, ...]` means: the list is exactly the rest of the patch.
            return [strip_directives(x) for x in non_directive]
        index = next(
            (
                i
                for i, existing in enumerate(result)
                if isinstance(existing, dict) and existing.get(key) == item.get(key)
            ),
            None,
        )
        if directive == "delete":
            if index is not None:
                result.pop(index)
            continue
        if index is None:
            result.append(strip_directives(item))
        else:
            result[index] = _strategic(result[index], item, (*path, field))
    return result


def strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: strip_directives(v)
            for k, v in value.items()
            if not k.startswith("$") and not k.startswith("$setElementOrder/")
        }
    if isinstance(value, list):
        return [strip_directives(v) for v in value]
    return value


def _strategic(target: Any, patch: Any, path: tuple[str, ...]) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return strip_directives({k: v for k, v in patch.items() if k != "$patch"})
    if patch.get("$patch") == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            existing = result.get(field)
            if isinstance(existing, list) and isinstance(value, list):
                result[field] = [item for item in existing if item not in value]
            continue
        if key.startswith("$"):
            continue  # $setElementOrder/…, $retainKeys: ordering/pruning hints we ignore
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(key, path, result[key], value)
        elif isinstance(value, dict):
            merged = _strategic(result.get(key), value, (*path, key))
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = strip_directives(copy.deepcopy(value))
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch must be a JSON object")
    return _strategic(target, patch, ())


def apply_patch(content_type: str, target: Any, patch: Any, *, builtin: bool) -> Any:
    """Dispatch by the request's Content-Type; raise 415 where the apiserver would."""
    if content_type == MERGE_PATCH:
        return merge_patch(target, patch)
    if content_type == JSON_PATCH:
        return json_patch(target, patch)
    if content_type == STRATEGIC_MERGE_PATCH:
        if not builtin:
            raise api_error(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}",
            )
        return strategic_merge_patch(target, patch)
    if content_type == APPLY_PATCH:
        # Server-side apply shortcut: no managed fields or ownership conflicts, just a merge of the
        # applied configuration (strategic for built-ins so that named lists are not clobbered).
        if not isinstance(patch, dict):
            raise bad_request("apply patch must be an object")
        if builtin:
            return strategic_merge_patch(target, patch)
        return merge_patch(target, patch)
    raise api_error(
        415,
        "UnsupportedMediaType",
        f"unsupported patch content type: {content_type!r}",
    )
