"""Split a SQL migration script into statements, each with the line it starts on.

Scripts are written for a client (``psql -f``, ``mysql < file``), not for a parser: they hold
psql meta-commands (``\\set``, ``\\if``) and variables (``:'name'``), MySQL ``DELIMITER``
changes, dollar-quoted bodies and comments. This scanner knows just enough of both clients'
lexical rules to find where each statement starts and ends; what a statement *means* is
``cutover.sqlcompat``'s business. Pure: text in, statements out.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Dialect(enum.StrEnum):
    postgres = "postgres"
    mysql = "mysql"


@dataclass(frozen=True)
class Statement:
    text: str  # without its terminator; psql variables replaced by their names
    line: int  # 1-based line of its first character


_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")
_PSQL_VARIABLE = re.compile(
    r":(?:'([A-Za-z_][A-Za-z_0-9]*)'|\"([A-Za-z_][A-Za-z_0-9]*)\"|([A-Za-z_]\w*))"
)
_DELIMITER = re.compile(r"DELIMITER\s+(\S+)\s*$", re.IGNORECASE)


class _Scanner:
    def __init__(self, text: str, dialect: Dialect) -> None:
        self.text = text
        self.dialect = dialect
        self.pos = 0
        self.line = 1
        self.delimiter = ";"
        self.statements: list[Statement] = []
        self.buffer: list[str] = []
        self.start_line = 0  # 0: no statement started yet

    def advance(self, count: int) -> str:
        chunk = self.text[self.pos : self.pos + count]
        self.pos += len(chunk)
        self.line += chunk.count("\n")
        return chunk

    def at_line_start(self) -> bool:
        before = self.text[: self.pos]
        return before == "" or before.rsplit("\n", 1)[-1].strip() == ""

    def rest_of_line(self) -> str:
        end = self.text.find("\n", self.pos)
        return self.text[self.pos :] if end == -1 else self.text[self.pos : end]

    def emit(self) -> None:
        text = "".join(self.buffer).strip()
        if text:
            self.statements.append(Statement(text=text, line=self.start_line))
        self.buffer = []
        self.start_line = 0

    def keep(self, chunk: str, line: int) -> None:
        """Add to the statement; ``line`` is where ``chunk`` starts."""
        if not self.start_line and chunk.strip():
            self.start_line = line
        if self.start_line:
            self.buffer.append(chunk)

    def quoted(self, quote: str, backslash: bool) -> str:
        """From an opening quote to its closing one ('' doubles it)."""
        end = self.pos + 1
        while end < len(self.text):
            char = self.text[end]
            if backslash and char == "\\":
                end += 2
                continue
            if char == quote:
                if self.text.startswith(quote, end + 1):
                    end += 2
                    continue
                return self.advance(end + 1 - self.pos)
            end += 1
        return self.advance(len(self.text) - self.pos)

    def block_comment(self) -> str:
        depth, end = 0, self.pos
        while end < len(self.text):
            if self.text.startswith("/*", end):
                depth += 1
                end += 2
            elif self.text.startswith("*/", end):
                depth -= 1
                end += 2
                # PostgreSQL nests block comments; MySQL ends at the first */.
                if depth == 0 or self.dialect is Dialect.mysql:
                    break
            else:
                end += 1
        return self.advance(end - self.pos)

    def step(self) -> None:
        text, pos, line = self.text, self.pos, self.line
        postgres = self.dialect is Dialect.postgres
        char = text[pos]
        if postgres and char == "\\" and self.at_line_start():
            self.advance(len(self.rest_of_line()))  # a psql meta-command: client-side only
        elif (
            not postgres
            and not self.start_line
            and (found := _DELIMITER.match(self.rest_of_line()))
        ):
            self.delimiter = found.group(1)
            self.advance(len(self.rest_of_line()))
        elif text.startswith(self.delimiter, pos):
            self.advance(len(self.delimiter))
            self.emit()
        elif text.startswith("--", pos) or (not postgres and char == "#"):
            self.advance(len(self.rest_of_line()))
        elif text.startswith("/*", pos):
            self.block_comment()
            self.keep(" ", line)  # a comment between two words still separates them
        elif char == "'":
            escape_string = postgres and pos > 0 and text[pos - 1] in "eE"
            self.keep(self.quoted("'", backslash=escape_string or not postgres), line)
        elif char == '"' or (char == "`" and not postgres):
            self.keep(self.quoted(char, backslash=False), line)
        elif postgres and char == "$" and (tag := _DOLLAR_TAG.match(text, pos)):
            close = text.find(tag.group(0), tag.end())
            end = len(text) if close == -1 else close + len(tag.group(0))
            self.keep(self.advance(end - pos), line)
        elif postgres and char == ":" and (variable := self.psql_variable()):
            self.keep(variable, line)
        else:
            self.keep(self.advance(1), line)

    def psql_variable(self) -> str | None:
        """``:'v'``, ``:"v"`` or ``:v`` outside quotes, but not a ``::`` cast or a slice."""
        text, pos = self.text, self.pos
        if text.startswith("::", pos) or (pos > 0 and text[pos - 1] not in " \t\n(,=<>"):
            return None
        found = _PSQL_VARIABLE.match(text, pos)
        if found is None:
            return None
        self.advance(found.end() - pos)
        literal, identifier, bare = found.groups()
        if literal:
            return f"'{literal}'"
        return f'"{identifier}"' if identifier else str(bare)

    def run(self) -> list[Statement]:
        while self.pos < len(self.text):
            self.step()
        self.emit()
        return self.statements


def split_script(text: str, dialect: Dialect) -> list[Statement]:
    """The statements of a client script, in order; an unterminated last one counts too."""
    return _Scanner(text, dialect).run()
