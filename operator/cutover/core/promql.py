"""Pure PromQL query templating.

Templates reference variables as ``{{name}}`` (whitespace inside the braces is allowed,
``{{ green }}``).  Names match ``[A-Za-z_][A-Za-z0-9_.-]*``; user arguments are passed by the
caller with keys such as ``"args.window"`` and referenced as ``{{args.window}}``.

Every substituted value is escaped so that it cannot break out of the PromQL string literal
it is placed in.  PromQL string literals follow Go escaping rules, with one PromQL-specific
restriction: inside ``"..."`` only ``\\"`` (not ``\\'``) is a valid quote escape, and inside
``'...'`` only ``\\'``.  The escaper therefore writes the enclosing quote as ``\\"`` / ``\\'``
and every other quote-like character (``'``, ``"``, backtick) as a ``\\xHH`` escape, which is
valid in both kinds of literal.

The template is scanned with a small PromQL-aware lexer, so the renderer knows where each
placeholder sits:

* inside a ``"..."`` or ``'...'`` literal: the value is escaped (any text is allowed, except
  lone UTF-16 surrogates, which PromQL cannot represent);
* inside a raw backtick literal: rejected (raw strings have no escapes, nothing can be made
  safe there) -- use double quotes;
* outside any literal (e.g. a range ``[{{window}}]`` or a threshold): the value must be a
  plain token (``[A-Za-z0-9_.:+-]+``: durations, numbers, metric names); anything else is
  rejected, since escaping cannot protect code position.

This module is pure: no I/O, no clocks, no third-party imports.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum

__all__ = ["TemplateError", "escape_string_literal", "render_query", "variables_in"]

_NAME = r"[A-Za-z_][A-Za-z0-9_.\-]*"
_PLACEHOLDER = re.compile(r"\{\{\s*(" + _NAME + r")\s*\}\}")
_BARE_TOKEN = re.compile(r"[A-Za-z0-9_.:+\-]+")


class TemplateError(ValueError):
    """A query template is malformed, references unknown variables, or a value is unsafe."""


class _Context(Enum):
    CODE = "code"
    DOUBLE = '"'
    SINGLE = "'"
    RAW = "`"
    COMMENT = "#"


@dataclass(frozen=True)
class _Token:
    """Either literal template text (``name is None``) or a placeholder."""

    text: str
    name: str | None
    context: _Context
    offset: int


def _snippet(template: str, offset: int) -> str:
    return repr(template[offset : offset + 30])


def _tokenize(template: str) -> Iterator[_Token]:
    """Split ``template`` into text and placeholders, tracking the PromQL lexical context."""
    context = _Context.CODE
    i = 0
    start = 0
    n = len(template)
    while i < n:
        if template.startswith("{{", i):
            match = _PLACEHOLDER.match(template, i)
            if match is None:
                close = template.find("}}", i + 2)
                if close == -1:
                    raise TemplateError(f"unclosed '{{{{' at offset {i}: {_snippet(template, i)}")
                raise TemplateError(
                    f"invalid placeholder at offset {i}: {template[i : close + 2]!r} "
                    f"(variable names must match {_NAME})"
                )
            if start < i:
                yield _Token(template[start:i], None, context, start)
            yield _Token(match.group(0), match.group(1), context, i)
            i = start = match.end()
            continue
        ch = template[i]
        if context is _Context.CODE:
            if ch in "\"'`":
                context = _Context(ch)
            elif ch == "#":  # PromQL comment: runs to the end of the line
                context = _Context.COMMENT
        elif context is _Context.COMMENT:
            if ch == "\n":
                context = _Context.CODE
        elif context is _Context.RAW:
            if ch == "`":
                context = _Context.CODE
        else:
            if ch == "\\":
                i += 2  # skip the escaped character
                continue
            if ch == context.value:
                context = _Context.CODE
        i += 1
    if start < n:
        yield _Token(template[start:], None, context, start)


def variables_in(template: str) -> set[str]:
    """Return the variable names referenced by ``template``.

    Raises :class:`TemplateError` on malformed placeholders (e.g. an unclosed ``{{``).
    """
    return {tok.name for tok in _tokenize(template) if tok.name is not None}


def _escape_char(ch: str, quote: str) -> str:
    code = ord(ch)
    if ch == "\\":
        return "\\\\"
    if ch == quote:
        return "\\" + quote
    if ch in "\"'`":
        return f"\\x{code:02x}"
    if ch == "\n":
        return "\\n"
    if ch == "\r":
        return "\\r"
    if ch == "\t":
        return "\\t"
    if 0xD800 <= code <= 0xDFFF:
        raise TemplateError(
            f"value contains a lone surrogate U+{code:04X}, which PromQL cannot represent"
        )
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if ch == " " or ch.isprintable():
        return ch
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_string_literal(value: str, quote: str = '"') -> str:
    """Escape ``value`` for use inside a PromQL string literal delimited by ``quote``.

    The result contains no raw quote characters, backslashes (other than escapes),
    newlines or control characters, and unescapes (Go rules) back to ``value``.
    """
    if quote not in ("'", '"'):
        raise ValueError(f"quote must be ' or \", not {quote!r}")
    return "".join(_escape_char(ch, quote) for ch in value)


def render_query(template: str, variables: Mapping[str, str]) -> str:
    """Substitute ``{{name}}`` placeholders in ``template`` with escaped values.

    Raises :class:`TemplateError` if the template is malformed, if any variable is unknown
    (all unknown names are listed, sorted), or if a value cannot be placed safely.
    """
    tokens = list(_tokenize(template))
    unknown = sorted({t.name for t in tokens if t.name is not None and t.name not in variables})
    if unknown:
        known = ", ".join(sorted(variables)) or "none"
        raise TemplateError(f"unknown template variable(s): {', '.join(unknown)} (known: {known})")
    out: list[str] = []
    for tok in tokens:
        if tok.name is None:
            out.append(tok.text)
            continue
        value = variables[tok.name]
        if not isinstance(value, str):
            raise TemplateError(
                f"value of {tok.name!r} must be a string, not {type(value).__name__}"
            )
        if tok.context in (_Context.DOUBLE, _Context.SINGLE):
            out.append(escape_string_literal(value, tok.context.value))
        elif tok.context is _Context.RAW:
            raise TemplateError(
                f"variable {tok.name!r} is inside a raw `...` string literal, where it cannot "
                'be escaped; use a double-quoted string "..." instead'
            )
        elif _BARE_TOKEN.fullmatch(value):
            out.append(value)
        else:
            raise TemplateError(
                f"variable {tok.name!r} is used outside a string literal, so its value must be "
                f"a plain token matching {_BARE_TOKEN.pattern} (got {value!r}); "
                'put it inside double quotes, e.g. {label="{{' + tok.name + '}}"}'
            )
    return "".join(out)


# Binary operators split a query into operands; the vector-matching modifiers that may follow an
# operator belong to it, not to the next operand.
_BINARY_OPERATOR = re.compile(
    r"(==|!=|>=|<=|[-+*/%^<>]|\b(?:and|or|unless|atan2)\b)"
    r"(\s*\bbool\b)?"
    r"(\s*\b(?:on|ignoring)\s*\([^)]*\))?"
    r"(\s*\b(?:group_left|group_right)\b(\s*\([^)]*\))?)?"
)
_OPENERS = {"(": ")", "[": "]", "{": "}"}


def _operands(query: str) -> list[str]:
    """The top-level operands of ``query``: split at binary operators outside brackets and
    string literals. A unary minus yields an empty operand, which callers skip."""
    operands: list[str] = []
    closers: list[str] = []
    quote: str | None = None
    start = index = 0
    while index < len(query):
        ch = query[index]
        if quote is not None:
            if ch == "\\" and quote != "`":
                index += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'`":
            quote = ch
        elif ch in _OPENERS:
            closers.append(_OPENERS[ch])
        elif closers and ch == closers[-1]:
            closers.pop()
        elif not closers and not query[max(0, index - 1) : index].isalnum():
            match = _BINARY_OPERATOR.match(query, index)
            # "e-3" inside a number and "-" in "offset -5m" are not operators worth splitting on
            # for error reports; a spurious split only costs a less precise message.
            if match:
                operands.append(query[start:index])
                start = index = match.end()
                continue
        index += 1
    operands.append(query[start:])
    return [operand.strip() for operand in operands]


def syntax_problem(query: str) -> str | None:
    """Why ``query`` (rendered, no placeholders left) is not valid PromQL, or None. The same
    parser serves `cutover lint`/`plan` offline and the operator's preflight.

    The parser stops at its first error, so a broken query is parsed again operand by operand
    and every broken operand is named: one lint run shows every mistake."""
    first = _parse_error(query)
    if first is None:
        return None
    broken = [
        (operand, error)
        for operand in _operands(query)
        if operand and (error := _parse_error(operand)) is not None
    ]
    if len(broken) < 2:
        return f"PromQL syntax: {first}"
    listed = "; ".join(f"`{operand}`: {error}" for operand, error in broken)
    return f"PromQL syntax: {len(broken)} errors: {listed}"


def _parse_error(query: str) -> str | None:
    import promql_parser

    try:
        promql_parser.parse(query)
    except ValueError as error:
        return str(error)
    return None
