"""Column resolution and row validation for file imports.

A file may name its columns as we do (``parentcustomerid``, ``id``) or as Dynamics does
(``_parentcustomerid_value``, ``contactid``), in any letter case. OData annotation columns
(anything with ``@``, as in a Web API export) are ignored. Every cell is converted from
text (CSV) or checked as typed (JSONL) and then validated against the entity schema; a row
with any bad cell is rejected whole, with one :class:`Reject` per bad cell, so the report
tells an integrator everything that is wrong with the row at once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sync_protocol.entities import FieldSpec, check_value, schema
from sync_protocol.errors import InvalidFieldValueError

from ..dynamics.mapping import country_code, lookup_column
from ..errors import FileHeaderError

ID_COLUMN = "id"

_UUID_RE = re.compile(
    r"^\{?([0-9a-fA-F]{8})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{4})-?"
    r"([0-9a-fA-F]{12})\}?$"
)
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})


@dataclass(frozen=True, slots=True)
class Reject:
    """One reason a row was rejected.

    Attributes:
        row: Data row number (1 = first row after the header).
        column: The column as named in the file (empty for whole-row problems).
        code: Stable reason code (``invalid_field_value``, ``missing_id``...).
        reason: Human-readable reason (never the cell's value: it may be personal data).
    """

    row: int
    column: str
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """How the file's columns map to the entity's fields.

    Attributes:
        id_column: The file column holding the record id.
        fields: File column -> our field name.
        ignored: File columns left out (annotations, ``@odata.etag``...).
    """

    id_column: str
    fields: dict[str, str]
    ignored: tuple[str, ...]


def plan_columns(entity: str, header: Sequence[str], *, ignore_unknown: bool = False) -> ColumnPlan:
    """Resolve a file header against ``entity``.

    Args:
        entity: Target entity.
        header: Column names as in the file.
        ignore_unknown: Skip unknown columns instead of failing.

    Returns:
        The plan.

    Raises:
        FileHeaderError: No id column, unknown columns, or two columns for one field.
    """
    s = schema(entity)
    names: dict[str, str] = {}
    for field_name, spec in s.fields.items():
        names[field_name.lower()] = field_name
        if spec.kind == "lookup":
            names[lookup_column(field_name).lower()] = field_name
    id_aliases = {ID_COLUMN, s.key.lower()}
    id_column = ""
    fields: dict[str, str] = {}
    ignored: list[str] = []
    unknown: list[str] = []
    for column in header:
        low = column.strip().lower()
        if low in id_aliases:
            if id_column:
                raise FileHeaderError(f"two id columns: {id_column!r} and {column!r}")
            id_column = column
        elif "@" in low:
            ignored.append(column)
        elif low in names:
            fields[column] = names[low]
        elif ignore_unknown:
            ignored.append(column)
        else:
            unknown.append(column)
    if unknown:
        raise FileHeaderError(f"{entity} has no columns {sorted(unknown)[:20]}")
    seen: dict[str, str] = {}
    for column, field_name in fields.items():
        if field_name in seen:
            raise FileHeaderError(
                f"columns {seen[field_name]!r} and {column!r} both set {field_name}"
            )
        seen[field_name] = column
    if not id_column:
        raise FileHeaderError(f"no id column (expected {ID_COLUMN!r} or {s.key!r})")
    return ColumnPlan(id_column, fields, tuple(ignored))


class CellError(Exception):
    """A cell's value does not fit its field."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def normalize_uuid(value: Any) -> str:
    """A canonical lower-case UUID from any common spelling (braces, upper case, no dashes).

    Raises:
        CellError: Not a UUID.
    """
    if isinstance(value, str):
        m = _UUID_RE.match(value.strip())
        if m:
            return "-".join(m.groups()).lower()
    raise CellError("invalid_record_id", "expected a record id (UUID)")


def _from_text(spec: FieldSpec, text: str) -> Any:
    """Convert a CSV cell to the field's type (empty cell = ``None``, which clears it)."""
    raw = text.strip()
    if raw == "":
        return None
    kind = spec.kind
    if kind in ("string", "text", "phone", "email"):
        return text
    if kind in ("int", "choice"):
        try:
            return int(raw)
        except ValueError:
            if kind == "choice":
                return _option_by_label(spec, raw)
            raise CellError("invalid_field_value", "expected a whole number") from None
    if kind in ("decimal", "money"):
        try:
            number = float(raw)
        except ValueError:
            raise CellError("invalid_field_value", "expected a number like 1234.50") from None
        if not math.isfinite(number):
            raise CellError("invalid_field_value", "expected a finite number")
        return number
    if kind == "bool":
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise CellError("invalid_field_value", "expected true or false")
    if kind == "lookup":
        return normalize_uuid(raw)
    if kind == "country":
        code = country_code(raw)
        if code is None:
            raise CellError("invalid_field_value", "expected an ISO 3166 alpha-2 country code")
        return code
    return raw  # datetime, date: validated as text below


def _option_by_label(spec: FieldSpec, label: str) -> int:
    low = label.lower()
    for value, labels in spec.options.items():
        if any(low == text.lower() for text in labels.values()):
            return value
    raise CellError("invalid_field_value", "not one of the option values or labels")


def _from_json(spec: FieldSpec, value: Any) -> Any:
    """Normalise a typed JSONL value (UUID spelling, whole floats for ints, money ints)."""
    if value is None:
        return None
    kind = spec.kind
    if kind == "lookup":
        return normalize_uuid(value)
    if kind in ("int", "choice") and type(value) is float and value.is_integer():
        return int(value)
    if kind in ("decimal", "money") and type(value) is int:
        return float(value)
    if kind == "choice" and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return _option_by_label(spec, value)
    if kind == "country" and isinstance(value, str):
        return country_code(value) or value
    return value


class RowValidator:
    """Validates rows of one file against one entity.

    Args:
        entity: Target entity.
        plan: The file's column plan.
        typed: True for JSONL (cells are JSON values), False for CSV (cells are text).
    """

    def __init__(self, entity: str, plan: ColumnPlan, *, typed: bool) -> None:
        self.entity = entity
        self.plan = plan
        self.typed = typed
        s = schema(entity)
        self._specs = {column: (name, s.fields[name]) for column, name in plan.fields.items()}

    def validate(
        self, row_no: int, cells: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]] | list[Reject]:
        """Validate one row.

        Returns:
            ``(record_id, fields)`` for a valid row, else every :class:`Reject` of the row.
        """
        rejects: list[Reject] = []
        record_id = ""
        id_cell = cells.get(self.plan.id_column)
        if id_cell is None or (isinstance(id_cell, str) and not id_cell.strip()):
            rejects.append(Reject(row_no, self.plan.id_column, "missing_id", "no record id"))
        else:
            try:
                record_id = normalize_uuid(id_cell)
            except CellError as e:
                rejects.append(Reject(row_no, self.plan.id_column, e.code, e.reason))
        fields: dict[str, Any] = {}
        for column, (name, spec) in self._specs.items():
            if column not in cells:
                continue  # JSONL rows may omit fields: they are left as they are
            raw = cells[column]
            try:
                if self.typed:
                    value = _from_json(spec, raw)
                elif isinstance(raw, str):
                    value = _from_text(spec, raw)
                else:
                    value = raw
                check_value(self.entity, name, spec, value)
            except CellError as e:
                rejects.append(Reject(row_no, column, e.code, e.reason))
                continue
            except InvalidFieldValueError as e:
                reason = e.detail.split(": ", 1)[-1]
                rejects.append(Reject(row_no, column, e.code, reason))
                continue
            fields[name] = value
        if rejects:
            return rejects
        if not fields:
            return [Reject(row_no, "", "no_fields", "the row sets no field")]
        return record_id, fields
