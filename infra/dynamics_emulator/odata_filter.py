"""The ``$filter`` subset an importer uses, parsed and compiled to a row predicate.

Grammar (OData v4 URL conventions, restricted)::

    expr       := and_expr ("or" and_expr)*
    and_expr   := unary ("and" unary)*
    unary      := "not" unary | "(" expr ")" | comparison | function
    comparison := property ("eq"|"ne"|"gt"|"ge"|"lt"|"le") literal
    function   := ("contains"|"startswith"|"endswith") "(" property "," string ")"
    literal    := 'string' | number | true | false | null | GUID | date-time | date

String comparisons ignore case, like Dataverse's default collation. Date-times are compared
at second precision in UTC. Comparisons of the primary key with ``gt``/``lt``/... follow the
emulator's key order (see :mod:`infra.dynamics_emulator.dataset`), so keyset paging with
``$orderby=<key>`` works.

:func:`compile_filter` also extracts hints the dataset uses to avoid scanning millions of
generated rows: an ``eq`` on the key, and a lower bound on ``modifiedon``/``createdon``/
``versionnumber`` (a conjunct of the top-level ``and``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from infra.dynamics_emulator.errors import BadRequestError
from infra.dynamics_emulator.identity import normalize_guid
from infra.dynamics_emulator.schema import Kind, Table

Predicate = Callable[[dict[str, Any]], bool]
KeyOrder = Callable[[str], tuple[int, int | str]]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>'(?:[^']|'')*')
    | (?P<guid>[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![\w-]))
    | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)
    | (?P<date>\d{4}-\d{2}-\d{2}(?![\w:]))
    | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDfFlL]?(?![\w-]))
    | (?P<punct>[(),])
    | (?P<word>[A-Za-z_][A-Za-z0-9_./]*)
    )""",
    re.VERBOSE,
)
_COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
_FUNCTIONS = ("contains", "startswith", "endswith")
_EDM = {
    Kind.KEY: "Edm.Guid",
    Kind.LOOKUP: "Edm.Guid",
    Kind.STRING: "Edm.String",
    Kind.INT: "Edm.Int32",
    Kind.BIGINT: "Edm.Int64",
    Kind.MONEY: "Edm.Decimal",
    Kind.DATETIME: "Edm.DateTimeOffset",
    Kind.DATEONLY: "Edm.Date",
    Kind.BOOL: "Edm.Boolean",
    Kind.PICKLIST: "Edm.Int32",
    Kind.STATE: "Edm.Int32",
    Kind.STATUS: "Edm.Int32",
}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class Literal:
    """A parsed literal: its kind (``string``, ``guid``...) and value."""

    kind: str
    value: Any


@dataclass(frozen=True, slots=True)
class Comparison:
    """``property op literal``."""

    prop: str
    op: str
    literal: Literal


@dataclass(frozen=True, slots=True)
class Function:
    """``contains|startswith|endswith(property, 'text')``."""

    name: str
    prop: str
    text: str


@dataclass(frozen=True, slots=True)
class Logical:
    """``and``/``or`` of two or more operands."""

    op: str
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """``not operand``."""

    operand: Node


Node = Comparison | Function | Logical | Not


@dataclass(frozen=True, slots=True)
class FilterPlan:
    """A compiled filter and the hints that narrow the scan.

    Attributes:
        predicate: True for rows that match.
        key_eq: The only key value that can match (``<key> eq <guid>`` conjunct).
        min_modified: Rows match only if ``modifiedon`` is later than this ISO string.
        min_created: Rows match only if ``createdon`` is later than this ISO string.
        min_version: Rows match only if ``versionnumber`` is greater than this.
    """

    predicate: Predicate
    key_eq: str | None = None
    min_modified: str | None = None
    min_created: str | None = None
    min_version: int | None = None


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise BadRequestError(f"Syntax error at position {position} in '{text}'.")
        kind = match.lastgroup
        assert kind is not None
        tokens.append(_Token(kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.position = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise BadRequestError(f"Syntax error: unexpected end of '{self.text}'.")
        self.position += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text:
            raise BadRequestError(f"Syntax error: expected '{text}' but found '{token.text}'.")

    def parse(self) -> Node:
        node = self.expr()
        if self.peek() is not None:
            raise BadRequestError(
                f"Syntax error: unexpected '{self.take().text}' in '{self.text}'."
            )
        return node

    def _is_word(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "word" and token.text == word

    def expr(self) -> Node:
        operands = [self.and_expr()]
        while self._is_word("or"):
            self.take()
            operands.append(self.and_expr())
        return operands[0] if len(operands) == 1 else Logical("or", tuple(operands))

    def and_expr(self) -> Node:
        operands = [self.unary()]
        while self._is_word("and"):
            self.take()
            operands.append(self.unary())
        return operands[0] if len(operands) == 1 else Logical("and", tuple(operands))

    def unary(self) -> Node:
        token = self.take()
        if token.kind == "word" and token.text == "not":
            return Not(self.unary())
        if token.text == "(":
            node = self.expr()
            self.expect(")")
            return node
        if token.kind != "word":
            raise BadRequestError(f"Syntax error: expected a property, found '{token.text}'.")
        if token.text in _FUNCTIONS:
            self.expect("(")
            prop = self.take()
            self.expect(",")
            text = self.take()
            self.expect(")")
            if prop.kind != "word" or text.kind != "string":
                raise BadRequestError(f"{token.text}() takes a property and a string literal.")
            return Function(token.text, prop.text, _unquote(text.text))
        op = self.take()
        if op.kind != "word" or op.text not in _COMPARISONS:
            raise BadRequestError(
                f"Syntax error: expected a comparison operator after '{token.text}', "
                f"found '{op.text}'."
            )
        return Comparison(token.text, op.text, self.literal())

    def literal(self) -> Literal:
        token = self.take()
        if token.kind == "string":
            return Literal("string", _unquote(token.text))
        if token.kind == "guid":
            return Literal("guid", token.text.lower())
        if token.kind == "datetime":
            return Literal("datetime", _parse_instant(token.text))
        if token.kind == "date":
            return Literal("date", token.text)
        if token.kind == "number":
            raw = token.text.rstrip("mMdDfFlL")
            is_float = any(c in raw for c in ".eE")
            return Literal("number", float(raw) if is_float else int(raw))
        if token.kind == "word" and token.text in ("true", "false"):
            return Literal("bool", token.text == "true")
        if token.kind == "word" and token.text == "null":
            return Literal("null", None)
        raise BadRequestError(f"Syntax error: expected a literal, found '{token.text}'.")


def _unquote(text: str) -> str:
    return text[1:-1].replace("''", "'")


def _parse_instant(text: str) -> float:
    normalized = text.replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(normalized)
    except ValueError as e:
        raise BadRequestError(f"The date-time literal '{text}' is not valid.") from e
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_filter(text: str) -> Node:
    """Parse a ``$filter`` expression.

    Raises:
        BadRequestError: The expression is not in the supported subset.
    """
    return _Parser(text).parse()


def compile_filter(text: str, table: Table, key_order: KeyOrder) -> FilterPlan:
    """Parse and type-check a ``$filter`` against a table.

    Args:
        text: The ``$filter`` value.
        table: The queried table.
        key_order: Maps a key GUID to its position in key order (for ``gt``/``lt`` on the key).

    Returns:
        The predicate and scan hints.

    Raises:
        BadRequestError: Syntax error, unknown property or incompatible types.
    """
    node = parse_filter(text)
    predicate = _compile(node, table, key_order)
    plan = FilterPlan(predicate)
    conjuncts = node.operands if isinstance(node, Logical) and node.op == "and" else (node,)
    hints: dict[str, Any] = {}
    for conjunct in conjuncts:
        if not isinstance(conjunct, Comparison):
            continue
        literal = conjunct.literal
        if conjunct.prop == table.key and conjunct.op == "eq" and literal.kind == "guid":
            hints["key_eq"] = literal.value
        elif conjunct.prop in ("modifiedon", "createdon") and literal.kind == "datetime":
            if conjunct.op in ("gt", "ge"):
                name = "min_modified" if conjunct.prop == "modifiedon" else "min_created"
                hints[name] = _iso(_exclusive_lower_bound(conjunct.op, literal.value))
        elif (
            conjunct.prop == "versionnumber"
            and literal.kind == "number"
            and conjunct.op in ("gt", "ge")
        ):
            hints["min_version"] = _exclusive_lower_bound(conjunct.op, literal.value)
    return FilterPlan(predicate, **hints) if hints else plan


def _exclusive_lower_bound(op: str, value: float) -> int:
    """Return the largest whole number b with ``v op value  <=>  v > b`` for whole numbers v."""
    whole = math.floor(value)
    return whole - 1 if op == "ge" and whole == value else whole


def _type_error(table: Table, prop: str, kind: Kind, literal: Literal, op: str) -> BadRequestError:
    literal_type = {
        "string": "Edm.String",
        "guid": "Edm.Guid",
        "datetime": "Edm.DateTimeOffset",
        "date": "Edm.Date",
        "number": "Edm.Int32",
        "bool": "Edm.Boolean",
        "null": "null",
    }[literal.kind]
    return BadRequestError(
        "A binary operator with incompatible types was detected. Found operand types "
        f"'{_EDM[kind]}' and '{literal_type}' for operator kind '{op}'."
    )


def _compile(node: Node, table: Table, key_order: KeyOrder) -> Predicate:
    if isinstance(node, Logical):
        parts = tuple(_compile(o, table, key_order) for o in node.operands)
        if node.op == "and":
            return lambda row: all(p(row) for p in parts)
        return lambda row: any(p(row) for p in parts)
    if isinstance(node, Not):
        inner = _compile(node.operand, table, key_order)
        return lambda row: not inner(row)
    if isinstance(node, Function):
        return _compile_function(node, table)
    return _compile_comparison(node, table, key_order)


def _column_kind(table: Table, prop: str) -> Kind:
    column = table.by_name.get(prop)
    if column is None:
        raise BadRequestError(
            f"Could not find a property named '{prop}' on type "
            f"'Microsoft.Dynamics.CRM.{table.logical_name}'."
        )
    return column.kind


def _compile_function(node: Function, table: Table) -> Predicate:
    kind = _column_kind(table, node.prop)
    if kind is not Kind.STRING:
        raise BadRequestError(f"{node.name}() needs a string property, '{node.prop}' is not one.")
    prop, needle = node.prop, node.text.casefold()
    if node.name == "contains":
        return lambda row: (v := row.get(prop)) is not None and needle in v.casefold()
    if node.name == "startswith":
        return lambda row: (v := row.get(prop)) is not None and v.casefold().startswith(needle)
    return lambda row: (v := row.get(prop)) is not None and v.casefold().endswith(needle)


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}
_OP_NAMES = {
    "eq": "Equal",
    "ne": "NotEqual",
    "gt": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    "lt": "LessThan",
    "le": "LessThanOrEqual",
}


def _compile_comparison(node: Comparison, table: Table, key_order: KeyOrder) -> Predicate:
    prop, op, literal = node.prop, node.op, node.literal
    kind = _column_kind(table, prop)
    compare = _OPS[op]
    if literal.kind == "null":
        if op not in ("eq", "ne"):
            raise _type_error(table, prop, kind, literal, _OP_NAMES[op])
        if op == "eq":
            return lambda row: row.get(prop) is None
        return lambda row: row.get(prop) is not None
    value: Any
    if kind in (Kind.KEY, Kind.LOOKUP):
        if literal.kind != "guid":
            raise _type_error(table, prop, kind, literal, _OP_NAMES[op])
        guid = normalize_guid(literal.value)
        if kind is Kind.KEY and op not in ("eq", "ne"):
            bound = key_order(guid or literal.value)
            return lambda row: compare(key_order(row[prop]), bound)
        return lambda row: (v := row.get(prop)) is not None and compare(v, guid)
    if kind is Kind.STRING:
        if literal.kind != "string":
            raise _type_error(table, prop, kind, literal, _OP_NAMES[op])
        value = literal.value.casefold()
        return lambda row: (v := row.get(prop)) is not None and compare(v.casefold(), value)
    if kind in (Kind.INT, Kind.BIGINT, Kind.MONEY, Kind.PICKLIST, Kind.STATE, Kind.STATUS):
        if literal.kind != "number":
            raise _type_error(table, prop, kind, literal, _OP_NAMES[op])
        value = literal.value
        return lambda row: (v := row.get(prop)) is not None and compare(v, value)
    if kind is Kind.BOOL:
        if literal.kind != "bool":
            raise _type_error(table, prop, kind, literal, _OP_NAMES[op])
        value = literal.value
        return lambda row: (v := row.get(prop)) is not None and compare(v, value)
    if kind is Kind.DATEONLY:
        if literal.kind not in ("date", "datetime"):
            raise _type_error(table, prop, kind, literal, _OP_NAMES[op])
        value = (
            literal.value
            if literal.kind == "date"
            else datetime.fromtimestamp(literal.value, UTC).date().isoformat()
        )
        return lambda row: (v := row.get(prop)) is not None and compare(v, value)
    # DATETIME: rows hold 'YYYY-MM-DDTHH:MM:SSZ' (whole seconds), which sort as strings.
    if literal.kind not in ("datetime", "date"):
        raise _type_error(table, prop, kind, literal, _OP_NAMES[op])
    instant = (
        literal.value
        if literal.kind == "datetime"
        else datetime.fromisoformat(literal.value).replace(tzinfo=UTC).timestamp()
    )
    whole = math.floor(instant)
    if whole != instant:
        # A fractional literal never equals a whole-second value; shift the bound instead.
        if op == "eq":
            return lambda row: False
        if op == "ne":
            return lambda row: row.get(prop) is not None
        op = {"gt": "gt", "ge": "gt", "lt": "le", "le": "le"}[op]
        compare = _OPS[op]
    value = _iso(whole)
    return lambda row: (v := row.get(prop)) is not None and compare(v, value)
