"""The part of IoT Hub's query language that deployments, their metrics and target conditions use.

    SELECT * | <path>[, <path>...] FROM devices | devices.modules [WHERE <condition>]

A condition is comparisons joined with AND; a comparison is `<operand> = <operand>` or `!=`; an
operand is a dotted path, whose segments may be escaped as [[...]] (configurations.[[my-id]].status),
or a literal: 'string', number, true or false. Keywords are case-insensitive. A target condition is
a condition, or `*` for every device. Anything else is refused with 400 rather than guessed at.

As in IoT Hub, a comparison with a property a twin does not have, or between values of different
JSON types, is false whichever the operator: `code != 200` does not select twins without a code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

from .errors import argument_invalid

_TOKEN = re.compile(r"""\s*(?:
      (?P<string>'(?:[^']|'')*'|"[^"]*")
    | (?P<number>-?\d+(?:\.\d+)?(?![A-Za-z_$]))
    | (?P<op>!=|=)
    | (?P<bracket>\[\[(?:(?!\]\]).)+\]\])
    | (?P<punct>[.,*])
    | (?P<word>[A-Za-z_$][A-Za-z0-9_$]*)
    )""", re.X)
_KEYWORDS = {"select", "from", "where", "and"}
SOURCES = {("devices",): "devices", ("devices", "modules"): "devices.modules"}
_MISSING = object()


@dataclass(frozen=True)
class Path:
    segments: tuple[str, ...]

    def resolve(self, row: dict) -> object:
        value: object = row
        for segment in self.segments:
            if not isinstance(value, dict) or segment not in value:
                return _MISSING
            value = value[segment]
        return value


@dataclass(frozen=True)
class Literal:
    value: object

    def resolve(self, row: dict) -> object:
        return self.value


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


@dataclass(frozen=True)
class Comparison:
    left: Path | Literal
    op: str
    right: Path | Literal

    def holds(self, row: dict) -> bool:
        a, b = self.left.resolve(row), self.right.resolve(row)
        if a is _MISSING or b is _MISSING or _json_type(a) != _json_type(b):
            return False
        return (a == b) == (self.op == "=")


@dataclass(frozen=True)
class Condition:
    """Comparisons that must all hold; none means every twin."""

    comparisons: tuple[Comparison, ...] = ()

    def matches(self, row: dict) -> bool:
        return all(c.holds(row) for c in self.comparisons)


@dataclass(frozen=True)
class Query:
    projection: tuple[Path, ...] | None  # None: SELECT *
    source: str
    where: Condition

    @property
    def item_type(self) -> str:
        """What the x-ms-item-type header calls the results."""
        return "twin" if self.projection is None else "raw"

    def run(self, devices: list[dict], modules: list[dict]) -> list[dict]:
        """The rows (device or module twins) that match, projected."""
        rows = [r for r in (modules if self.source == "devices.modules" else devices) if self.where.matches(r)]
        if self.projection is None:
            return rows
        return [{p.segments[-1]: v for p in self.projection if (v := p.resolve(row)) is not _MISSING}
                for row in rows]


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                if not text[pos:].strip():
                    break
                self.fail(f"unsupported syntax at '{text[pos:].strip()[:30]}'")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            pos = match.end()
        self.pos = 0

    def fail(self, reason: str) -> NoReturn:
        raise argument_invalid(f"Invalid query '{self.text}': {reason}. The sandbox supports SELECT * or "
                               "paths FROM devices or devices.modules, WHERE comparisons (= or !=) joined by AND")

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            self.fail("it ends too early")
        self.pos += 1
        return token

    def accept_keyword(self, word: str) -> bool:
        token = self.peek()
        if token and token[0] == "word" and token[1].lower() == word:
            self.pos += 1
            return True
        return False

    def keyword(self, word: str) -> None:
        if not self.accept_keyword(word):
            self.fail(f"expected {word.upper()}")

    def accept_punct(self, char: str) -> bool:
        if self.peek() == ("punct", char):
            self.pos += 1
            return True
        return False

    def end(self) -> None:
        token = self.peek()
        if token is not None:
            self.fail(f"unexpected '{token[1]}'")

    def path(self) -> Path:
        kind, text = self.take()
        if kind != "word" or text.lower() in _KEYWORDS:
            self.fail(f"expected a property name, found '{text}'")
        segments = [text]
        while self.accept_punct("."):
            kind, text = self.take()
            if kind == "bracket":
                segments.append(text[2:-2])
            elif kind == "word":
                segments.append(text)
            else:
                self.fail(f"expected a property name after '.', found '{text}'")
        return Path(tuple(segments))

    def operand(self) -> Path | Literal:
        kind, text = self.peek() or ("", "")
        if kind == "string":
            self.pos += 1
            return Literal(text[1:-1].replace("''", "'") if text[0] == "'" else text[1:-1])
        if kind == "number":
            self.pos += 1
            return Literal(float(text) if "." in text else int(text))
        if kind == "word" and text.lower() in ("true", "false"):
            self.pos += 1
            return Literal(text.lower() == "true")
        return self.path()

    def condition(self) -> Condition:
        comparisons = []
        while True:
            left = self.operand()
            kind, op = self.take()
            if kind != "op":
                self.fail(f"expected = or != after a property, found '{op}'")
            comparisons.append(Comparison(left, op, self.operand()))
            if not self.accept_keyword("and"):
                return Condition(tuple(comparisons))


def parse_query(text: str) -> Query:
    parser = _Parser(text)
    parser.keyword("select")
    projection = None
    if not parser.accept_punct("*"):
        paths = [parser.path()]
        while parser.accept_punct(","):
            paths.append(parser.path())
        projection = tuple(paths)
    parser.keyword("from")
    source = SOURCES.get(parser.path().segments)
    if source is None:
        parser.fail("only devices and devices.modules can be queried")
    where = parser.condition() if parser.accept_keyword("where") else Condition()
    parser.end()
    return Query(projection, source, where)


def parse_condition(text: str) -> Condition:
    """A configuration's targetCondition."""
    if text.strip() == "*":
        return Condition()
    parser = _Parser(text)
    condition = parser.condition()
    parser.end()
    return condition
