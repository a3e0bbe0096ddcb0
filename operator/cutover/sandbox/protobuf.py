"""A minimal decoder for the Kubernetes protobuf envelope, for kubectl's typed requests.

kubectl 1.32 sends protobuf bodies (with no JSON fallback) from its typed generators such as
`kubectl create namespace|configmap|secret`. Full protobuf support would need every kind's
schema; we decode only the envelope and the handful of simple kinds those commands produce.
Anything else is answered with 415, which tells the user to use `kubectl apply/create -f`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

from cutover.sandbox.errors import api_error

PROTOBUF = "application/vnd.kubernetes.protobuf"
_MAGIC = b"k8s\x00"

# field number -> (json name, kind); kinds: str, bytes, int, bool, map, smap (str->bytes),
# rep (repeated str), or a nested schema name.
_SCHEMAS: dict[str, dict[int, tuple[str, str]]] = {
    "ObjectMeta": {
        1: ("name", "str"),
        2: ("generateName", "str"),
        3: ("namespace", "str"),
        11: ("labels", "map"),
        12: ("annotations", "map"),
        14: ("finalizers", "rep"),
    },
    "Namespace": {1: ("metadata", "ObjectMeta")},
    "ConfigMap": {
        1: ("metadata", "ObjectMeta"),
        2: ("data", "map"),
        3: ("binaryData", "smap"),
        4: ("immutable", "bool"),
    },
    "Secret": {
        1: ("metadata", "ObjectMeta"),
        2: ("data", "smap"),
        3: ("type", "str"),
        4: ("stringData", "map"),
        5: ("immutable", "bool"),
    },
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _map_entry(data: bytes) -> tuple[str, bytes]:
    key, value = "", b""
    for number, _, raw in _fields(data):
        if number == 1:
            key = raw.decode()
        elif number == 2:
            value = raw
    return key, value


def _decode(data: bytes, schema: str) -> dict[str, Any]:
    fields = _SCHEMAS[schema]
    result: dict[str, Any] = {}
    for number, _, raw in _fields(data):
        if number not in fields:
            continue  # unknown/ignored fields (status, managedFields, ...)
        name, kind = fields[number]
        if kind == "str":
            result[name] = raw.decode()
        elif kind == "bool":
            result[name] = bool(raw)
        elif kind == "int":
            result[name] = int(raw)
        elif kind == "rep":
            result.setdefault(name, []).append(raw.decode())
        elif kind in ("map", "smap"):
            key, value = _map_entry(raw)
            result.setdefault(name, {})[key] = (
                value.decode() if kind == "map" else base64.b64encode(value).decode()
            )
        else:
            result[name] = _decode(raw, kind)
    return result


def decode_object(body: bytes) -> dict[str, Any]:
    """Decode a `k8s\\0`-prefixed runtime.Unknown into a JSON-like object, or raise 415."""
    if not body.startswith(_MAGIC):
        raise api_error(415, "UnsupportedMediaType", "protobuf body without the k8s envelope")
    api_version = kind = ""
    raw = b""
    for number, _, value in _fields(body[len(_MAGIC) :]):
        if number == 1:
            for sub, _, text in _fields(value):
                if sub == 1:
                    api_version = text.decode()
                elif sub == 2:
                    kind = text.decode()
        elif number == 2:
            raw = value
    if kind not in _SCHEMAS or kind == "ObjectMeta":
        raise api_error(
            415,
            "UnsupportedMediaType",
            f"the sandbox cannot decode protobuf {kind or 'objects'}; "
            "send JSON instead (e.g. `kubectl create -f` or `kubectl apply -f`)",
        )
    return {"apiVersion": api_version, "kind": kind, **_decode(raw, kind)}
