"""Reading the manifests given with ``-f``: files, directories or ``-`` (stdin).

Each document keeps the file it came from and, for ConfigMaps, the line each ``data`` value
starts on, so that a finding in SQL a ConfigMap holds can name the line of the manifest.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cutover.cli.client import CliError

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Document:
    path: str
    body: dict[str, Any]
    # ConfigMap data key -> the file line (1-based) of the value's first line.
    data_lines: dict[str, int] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return str(self.body.get("kind") or "")

    @property
    def name(self) -> str:
        return str((self.body.get("metadata") or {}).get("name", "<unnamed>"))


def _read(path: Path) -> str:
    try:
        return sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror}") from None


def _value_lines(node: yaml.Node | None) -> dict[str, int]:
    """Where each value of a ConfigMap's ``data`` starts, from the YAML node tree."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    data = next(
        (v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == "data"), None
    )
    if not isinstance(data, yaml.MappingNode):
        return {}
    lines = {}
    for key, value in data.value:
        if isinstance(key, yaml.ScalarNode) and isinstance(value, yaml.ScalarNode):
            # A block scalar (| or >) starts on the line after its indicator.
            block = value.style in ("|", ">")
            lines[str(key.value)] = value.start_mark.line + (2 if block else 1)
    return lines


def parse_documents(text: str, path: str) -> list[Document]:
    try:
        bodies = list(yaml.safe_load_all(text))
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        what = error.problem or error.context or "parse error"
        raise CliError(f"{path} is not valid YAML:{where} {what}") from None
    except yaml.YAMLError as error:
        first = str(error).splitlines()[0] if str(error) else "parse error"
        raise CliError(f"{path} is not valid YAML: {first}") from None
    documents = []
    for body, node in zip(bodies, nodes, strict=False):
        if isinstance(body, dict):
            lines = _value_lines(node) if body.get("kind") == "ConfigMap" else {}
            documents.append(Document(path=path, body=body, data_lines=lines))
    return documents


def _expand_paths(paths: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix in MANIFEST_SUFFIXES))
        else:
            found.append(path)
    return found


def read_manifests(paths: Iterable[Path]) -> list[Document]:
    """Every mapping document of the files (a directory: its *.yaml, *.yml and *.json)."""
    documents: list[Document] = []
    for path in _expand_paths(paths):
        documents.extend(parse_documents(_read(path), str(path)))
    return documents
