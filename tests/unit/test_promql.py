"""Tests for cutover.core.promql: templating and string-literal escaping."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from cutover.core.promql import (
    TemplateError,
    escape_string_literal,
    render_query,
    syntax_problem,
    variables_in,
)

PROMTOOL = shutil.which("promtool")
INJECTIONS = [
    '"}) or vector(1) #',
    '"} or vector(1) or up{x="',
    "\\",
    '\\"',
    '\\\\"}',
    "'} or vector(1) #",
    "`} or vector(1) #",
    "a\nb",
    "\r\n\t\x00\x1b\x7f",
    "\u0085\u2028\u2029\u200b\ufeff",
    "日本語 😀 ñ",
    "{{green}}",
    "$1 ${1} %s",
    "",
]


# -- a tiny PromQL string-literal lexer + Go unescape, independent of the implementation -----

_SIMPLE = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def read_literal(text: str, pos: int) -> tuple[str, int]:
    """Lex a PromQL "..." or '...' literal at ``text[pos]``; return (decoded value, end).

    Follows Prometheus' lexer (lexString/lexEscape) and Go's strconv.Unquote: only the
    opening quote may be backslash-escaped; \\x and octal escapes yield bytes.
    """
    quote = text[pos]
    assert quote in "\"'"
    out = bytearray()
    i = pos + 1
    while True:
        if i >= len(text):
            raise ValueError("unterminated quoted string")
        ch = text[i]
        if ch == quote:
            return out.decode("utf-8"), i + 1
        if ch == "\n":
            raise ValueError("newline in quoted string")
        if ch != "\\":
            out += ch.encode("utf-8")
            i += 1
            continue
        esc = text[i + 1]
        i += 2
        if esc in _SIMPLE:
            out += _SIMPLE[esc].encode()
        elif esc == quote:
            out += quote.encode()
        elif esc in "01234567":
            digits = text[i - 1 : i + 2]
            assert re.fullmatch("[0-7]{3}", digits), digits
            value = int(digits, 8)
            assert value <= 255
            out.append(value)
            i += 2
        elif esc in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[esc]
            digits = text[i : i + width]
            assert re.fullmatch(f"[0-9a-fA-F]{{{width}}}", digits), digits
            value = int(digits, 16)
            i += width
            if esc == "x":
                out.append(value)
            else:
                assert value <= 0x10FFFF and not 0xD800 <= value < 0xE000
                out += chr(value).encode("utf-8")
        else:
            raise ValueError(f"unknown escape sequence {esc!r}")


def label_value(rendered: str, prefix: str = "up{x=", suffix: str = "}") -> str:
    """Decode the single label value of ``up{x="..."}``; anything after must be ``suffix``."""
    assert rendered.startswith(prefix)
    value, end = read_literal(rendered, len(prefix))
    assert rendered[end:] == suffix, f"text escaped the literal: {rendered[end:]!r}"
    return value


# -- variables_in ---------------------------------------------------------------------------


def test_variables_in() -> None:
    template = (
        'sum(rate(x{ns="{{namespace}}", d="{{ green }}", a="{{args.foo-bar}}"}[{{args.w}}]))'
        " / {{blue}}"
    )
    assert variables_in(template) == {"namespace", "green", "args.foo-bar", "args.w", "blue"}
    assert variables_in("up") == set()
    assert variables_in('up{a="{{x}}"} + up{a="{{x}}"}') == {"x"}


@pytest.mark.parametrize(
    "template",
    ['up{x="{{green"}', "{{", "up{{", 'x{a="{{ green }"}', "{{ }}", "{{1abc}}", "{{a b}}"],
)
def test_malformed_placeholders(template: str) -> None:
    with pytest.raises(TemplateError):
        variables_in(template)
    with pytest.raises(TemplateError):
        render_query(template, {"green": "g", "a": "a"})


def test_unclosed_message() -> None:
    with pytest.raises(TemplateError, match=r"unclosed '\{\{' at offset 6"):
        render_query('up{x="{{green', {"green": "x"})


# -- render_query ---------------------------------------------------------------------------


def test_render_basic() -> None:
    template = (
        'sum(rate(http_requests_total{namespace="{{namespace}}",deployment="{{ green }}",'
        'code=~"5.."}[{{args.window}}]))'
    )
    rendered = render_query(
        template, {"namespace": "prod", "green": "shop-v2", "args.window": "30s", "blue": "x"}
    )
    assert rendered == (
        'sum(rate(http_requests_total{namespace="prod",deployment="shop-v2",code=~"5.."}[30s]))'
    )


def test_unknown_variables_are_listed_sorted() -> None:
    with pytest.raises(TemplateError) as info:
        render_query('up{a="{{zeta}}",b="{{green}}",c="{{alpha}}",d="{{args.x}}"}', {"green": "g"})
    message = str(info.value)
    assert "alpha, args.x, zeta" in message
    assert isinstance(info.value, ValueError)


def test_values_are_not_re_expanded() -> None:
    assert render_query('up{x="{{a}}"}', {"a": "{{b}}"}) == 'up{x="{{b}}"}'


def test_escaping_examples() -> None:
    assert escape_string_literal('a"b') == 'a\\"b'
    assert escape_string_literal("a\\b") == "a\\\\b"
    assert escape_string_literal("a'b`c") == "a\\x27b\\x60c"
    assert escape_string_literal("a'b", "'") == "a\\'b"
    assert escape_string_literal('a"b', "'") == "a\\x22b"
    assert escape_string_literal("\n\r\t\x00\x7f") == "\\n\\r\\t\\x00\\x7f"
    assert escape_string_literal("\u2028\u0085") == "\\u2028\\u0085"
    assert escape_string_literal("é 日") == "é 日"


def test_injection_stays_inside_the_literal() -> None:
    rendered = render_query('up{x="{{v}}"}', {"v": '"}) or vector(1) #'})
    assert rendered == 'up{x="\\"}) or vector(1) #"}'
    assert label_value(rendered) == '"}) or vector(1) #'


def test_single_quoted_context() -> None:
    rendered = render_query("up{x='{{v}}'}", {"v": 'it\'s "q"'})
    assert rendered == "up{x='it\\'s \\x22q\\x22'}"
    assert label_value(rendered) == 'it\'s "q"'


def test_quote_context_tracks_escaped_quotes_and_other_literals() -> None:
    # the \" inside the first literal does not close it; the ' inside "..." opens nothing
    template = 'up{a="x\\"y\'", b="{{v}}", c=\'"\', d="{{w}}"}'
    rendered = render_query(template, {"v": '"', "w": "1 or 2"})
    assert rendered == 'up{a="x\\"y\'", b="\\"", c=\'"\', d="1 or 2"}'


def test_code_position_accepts_plain_tokens_only() -> None:
    template = "rate(x[{{w}}]) > {{t}}"
    assert render_query(template, {"w": "5m", "t": "0.05"}) == "rate(x[5m]) > 0.05"
    assert render_query(template, {"w": "1h30m", "t": "-1e-3"}) == "rate(x[1h30m]) > -1e-3"
    for bad in ["5m]) or vector(1", "", "1 or 2", '"x"', "a\nb"]:
        with pytest.raises(TemplateError, match="outside a string literal"):
            render_query(template, {"w": bad, "t": "1"})


def test_raw_string_context_is_rejected() -> None:
    with pytest.raises(TemplateError, match="raw"):
        render_query("up{x=`{{v}}`}", {"v": "safe"})


def test_comment_context() -> None:
    template = 'up{x="{{v}}"} # by {{v}}\n'
    assert render_query(template, {"v": "abc"}) == 'up{x="abc"} # by abc\n'
    with pytest.raises(TemplateError):
        render_query(template, {"v": "a\nor vector(1)"})
    # quotes inside a comment do not open a literal
    assert render_query("up # it's\n{{v}}", {"v": "1"}) == "up # it's\n1"


def test_lone_surrogate_is_rejected() -> None:
    with pytest.raises(TemplateError, match="surrogate"):
        render_query('up{x="{{v}}"}', {"v": "a\ud800"})


def test_non_string_value_is_rejected() -> None:
    with pytest.raises(TemplateError, match="must be a string"):
        render_query('up{x="{{v}}"}', {"v": 3})  # type: ignore[dict-item]


# -- properties -----------------------------------------------------------------------------


@given(st.text())
@example('"}) or vector(1) #')
@example("\\")
@example('\\"')
@example("'`\"\\\n\r\t\x00\x1f\x7f\u0085\u2028")
def test_roundtrip_double_quoted(value: str) -> None:
    rendered = render_query('up{x="{{v}}"}', {"v": value})
    assert label_value(rendered) == value
    assert "\n" not in rendered and "\r" not in rendered


@given(st.text())
def test_roundtrip_single_quoted(value: str) -> None:
    rendered = render_query("up{x='{{v}}'}", {"v": value})
    assert label_value(rendered, prefix="up{x=") == value


@given(st.text(), st.text())
def test_two_values_stay_in_their_literals(a: str, b: str) -> None:
    rendered = render_query('up{a="{{a}}",b="{{b}}"}', {"a": a, "b": b})
    got_a, end = read_literal(rendered, len("up{a="))
    assert rendered[end : end + 3] == ",b="
    got_b, end = read_literal(rendered, end + 3)
    assert (got_a, got_b, rendered[end:]) == (a, b, "}")


@given(st.text(alphabet=st.sampled_from("\"'`\\{}#\n x()|")))
def test_injection_alphabet(value: str) -> None:
    assert label_value(render_query('up{x="{{v}}"}', {"v": value})) == value


# -- promtool: the real PromQL parser --------------------------------------------------------

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)"
)


def _promtool_check(tmp_path: Path, exprs: list[str]) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    lines = ["groups:", "  - name: rendered", "    rules:"]
    for i, expr in enumerate(exprs):
        lines += [
            f"      - record: test:rendered:{i}",
            f"        expr: {json.dumps(expr, ensure_ascii=False)}",
        ]
    path = tmp_path / "rules.yml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return subprocess.run(
        [PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )


def _random_values(n: int, seed: int = 20261126) -> list[str]:
    rng = random.Random(seed)
    tricky = "\"'`\\{}#\n\r\t\x00\x1b\x7f\u0085\u2028é日😀 ()|=~,"
    values = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(0, 24)):
            if rng.random() < 0.6:
                chars.append(rng.choice(tricky))
            else:
                cp = rng.randint(0, 0x10FFFF)
                if 0xD800 <= cp <= 0xDFFF:
                    cp = 0x41
                chars.append(chr(cp))
        values.append("".join(chars))
    return values


@needs_promtool
def test_promtool_accepts_rendered_queries(tmp_path: Path) -> None:
    templates = [
        'up{x="{{v}}"}',
        "up{x='{{v}}'}",
        'sum(rate(http_requests_total{deployment="{{v}}",code=~"5.."}[1m]))'
        ' / sum(rate(http_requests_total{deployment="{{v}}"}[1m]))',
        'label_replace(vector(1), "v", "{{v}}", "", "")',
    ]
    values = INJECTIONS + _random_values(200)
    exprs = [render_query(t, {"v": v}) for t in templates for v in values]
    result = _promtool_check(tmp_path, exprs)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(exprs)} rules found" in result.stdout


@needs_promtool
def test_promtool_rejects_unescaped_injection(tmp_path: Path) -> None:
    # control: the same substitution without escaping is a parse error
    naive = 'up{x="{{v}}"}'.replace("{{v}}", '"}) or vector(1) #')
    result = _promtool_check(tmp_path, [naive])
    assert result.returncode != 0
    assert "parse error" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ('sum(rate(http_requests_total{code=~"5.."}[1m]))', None),
        ("sum(rate(x[1m])", "unclosed left parenthesis"),
        ("rate(x[1m]) >", "invalid promql query"),
    ],
)
def test_syntax_problem_parses_offline(query: str, problem: str | None) -> None:
    found = syntax_problem(query)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_every_broken_operand_of_one_query_is_reported_not_only_the_first() -> None:
    problem = syntax_problem("rate(y{a=}[5m]) / on(a) group_left sum(z{b=}) > bool 0.5")

    assert problem is not None and problem.startswith("PromQL syntax: 2 errors:"), problem
    assert "`rate(y{a=}[5m])`" in problem and "`sum(z{b=})`" in problem, problem


def test_operators_inside_strings_numbers_and_brackets_do_not_split_a_query() -> None:
    query = 'sum(rate(x{a="b+c"}[5m] offset 1m)) / on(a) group_left(b) sum(y) > bool 1e-3'

    assert syntax_problem(query) is None
    assert syntax_problem(query + " + z{") == "PromQL syntax: unexpected end of input inside braces"
