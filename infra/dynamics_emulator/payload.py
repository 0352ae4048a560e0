"""Request bodies of creates and updates: JSON -> validated column values.

Mirrors the checks Dataverse makes before it writes: unknown properties, wrong JSON types,
over-long strings, option set values out of range, and ``<navigation>@odata.bind`` references
to records that do not exist. Lookups can only be set through ``@odata.bind`` (or cleared with
``null``), as in Dataverse; the ``_<name>_value`` properties are read-only.

Read-only system columns (``createdon``, ``modifiedon``, ``versionnumber``, ``fullname``,
``_modifiedby_value``) are silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import msgspec

from infra.dynamics_emulator.dataset import Dataset, iso_seconds
from infra.dynamics_emulator.errors import (
    BadRequestError,
    PayloadError,
    RecordNotFoundError,
    ValidationError,
)
from infra.dynamics_emulator.generator import LOGICAL
from infra.dynamics_emulator.identity import normalize_guid
from infra.dynamics_emulator.schema import Column, Kind, Table, option_values

_BIND = "@odata.bind"
_REFERENCE = re.compile(r"(?:^|/)([A-Za-z_]+)\(\{?([0-9A-Fa-f-]{36})\}?\)$")
_INT32 = (-(2**31), 2**31 - 1)
_MONEY = (-922_337_203_685_477.0, 922_337_203_685_477.0)
_decoder = msgspec.json.Decoder()


class Payload(msgspec.Struct, frozen=True):
    """Validated values of a write and the record id the body carried, if any."""

    values: dict[str, Any]
    key: str | None


def decode_body(body: bytes, entity_set: str) -> dict[str, Any]:
    """Decode a JSON object body.

    Raises:
        PayloadError: The body is not a JSON object.
    """
    try:
        data = _decoder.decode(body) if body.strip() else None
    except msgspec.DecodeError as e:
        raise PayloadError(
            f"Error identified in Payload provided by the user for Entity :'{entity_set}'. "
            f"The request body is not valid JSON: {e}"
        ) from e
    if not isinstance(data, dict):
        raise PayloadError(
            f"Error identified in Payload provided by the user for Entity :'{entity_set}'. "
            "The request body must be a JSON object."
        )
    return data


def parse_payload(
    table: Table,
    data: Mapping[str, Any],
    dataset: Dataset,
    *,
    references: Mapping[str, str] | None = None,
) -> Payload:
    """Validate a decoded body against a table.

    Args:
        table: Target table.
        data: Decoded JSON object.
        dataset: Used to check that bound records exist.
        references: ``$<Content-ID>`` -> entity URL of records created earlier in a ``$batch``
            change set.

    Returns:
        Column values ready for :meth:`Dataset.create` / :meth:`Dataset.update`.

    Raises:
        PayloadError: Unknown property or wrong JSON type.
        ValidationError: A value breaks a column rule.
        RecordNotFoundError: A bound record does not exist.
        BadRequestError: A ``$<n>`` reference is not defined.
    """
    values: dict[str, Any] = {}
    key: str | None = None
    for name, value in data.items():
        if name.endswith(_BIND):
            _bind(table, name[: -len(_BIND)], value, dataset, references or {}, values)
            continue
        if name.startswith("@") or "@" in name:
            continue  # other instance annotations (@odata.type ...) carry no data here
        if name == table.key:
            key = _guid_value(table, name, value)
            continue
        column = table.by_name.get(name)
        if column is None:
            raise PayloadError(
                f"The property '{name}' does not exist on type "
                f"'Microsoft.Dynamics.CRM.{table.logical_name}'. Make sure to only use property "
                "names that are defined by the type or mark the type as open type."
            )
        if column.kind is Kind.LOOKUP:
            raise PayloadError(
                f"The property '{name}' is a lookup property and cannot be set directly; "
                f"use '{column.targets[0].navigation}@odata.bind'."
            )
        if not column.writable or column.kind is Kind.BIGINT:
            continue
        values[name] = _convert(table, column, value)
    return Payload(values, key)


def _fail_type(table: Table, column: Column, expected: str, value: Any) -> PayloadError:
    return PayloadError(
        f"Error identified in Payload provided by the user for Entity :'{table.entity_set}'. "
        f"Cannot convert the literal '{value}' to the expected type '{expected}' "
        f"of property '{column.name}'."
    )


def _convert(table: Table, column: Column, value: Any) -> Any:
    if value is None:
        if column.kind in (Kind.STATE, Kind.STATUS):
            raise _fail_type(table, column, "Edm.Int32", value)
        return None
    kind = column.kind
    if kind is Kind.STRING:
        if not isinstance(value, str):
            raise _fail_type(table, column, "Edm.String", value)
        if column.max_length is not None and len(value) > column.max_length:
            raise ValidationError(
                f"A validation error occurred.  The length of the '{column.name}' attribute of "
                f"the '{table.logical_name}' entity exceeded the maximum allowed length of "
                f"'{column.max_length}'."
            )
        return value
    if kind in (Kind.INT, Kind.PICKLIST, Kind.STATE, Kind.STATUS):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail_type(table, column, "Edm.Int32", value)
        if not _INT32[0] <= value <= _INT32[1]:
            raise ValidationError(f"The value {value} of '{column.name}' is outside Int32.")
        if kind is not Kind.INT and value not in option_values(column):
            raise ValidationError(
                f"A validation error occurred. The value {value} of '{column.name}' on record "
                f"of type '{table.logical_name}' is outside the valid range.",
                hex_code="0x8004431a",
            )
        return value
    if kind is Kind.MONEY:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail_type(table, column, "Edm.Decimal", value)
        if not _MONEY[0] <= value <= _MONEY[1]:
            raise ValidationError(f"The value {value} of '{column.name}' is out of range.")
        return float(round(value, 4))
    if kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise _fail_type(table, column, "Edm.Boolean", value)
        return value
    if kind is Kind.DATETIME:
        if not isinstance(value, str):
            raise _fail_type(table, column, "Edm.DateTimeOffset", value)
        parsed = parse_datetime(value)
        if parsed is None:
            raise _fail_type(table, column, "Edm.DateTimeOffset", value)
        return iso_seconds(parsed)
    if kind is Kind.DATEONLY:
        if not isinstance(value, str):
            raise _fail_type(table, column, "Edm.Date", value)
        try:
            return date.fromisoformat(value[:10]).isoformat()
        except ValueError as e:
            raise _fail_type(table, column, "Edm.Date", value) from e
    if kind is Kind.KEY:
        return _guid_value(table, column.name, value)
    raise _fail_type(table, column, kind.value, value)  # pragma: no cover - every kind handled


def parse_datetime(text: str) -> datetime | None:
    """Parse an ISO-8601 date-time (``Z`` or offset; naive means UTC) into aware UTC."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _guid_value(table: Table, name: str, value: Any) -> str:
    guid = normalize_guid(value) if isinstance(value, str) else None
    if guid is None:
        raise PayloadError(
            f"Error identified in Payload provided by the user for Entity :'{table.entity_set}'. "
            f"Cannot convert the literal '{value}' to the expected type 'Edm.Guid' of property "
            f"'{name}'."
        )
    return guid


def _bind(
    table: Table,
    navigation: str,
    value: Any,
    dataset: Dataset,
    references: Mapping[str, str],
    values: dict[str, Any],
) -> None:
    binding = table.bindings.get(navigation)
    if binding is None:
        raise PayloadError(
            f"An undeclared property '{navigation}' which only has property annotations in the "
            "payload but no property value was found in the payload. In OData, only declared "
            "navigation properties and declared named streams can be represented as properties "
            "without values."
        )
    column, target = binding
    if value is None:
        values[column.name] = None
        values[column.name + LOGICAL] = None
        return
    if not isinstance(value, str):
        raise PayloadError(f"The value of '{navigation}@odata.bind' must be an entity reference.")
    reference = value.strip()
    if reference.startswith("$"):
        resolved = references.get(reference[1:])
        if resolved is None:
            raise BadRequestError(
                f"Content-ID Reference: '{reference}' does not exist in the batch context."
            )
        reference = resolved
    match = _REFERENCE.search(reference)
    if match is None:
        raise PayloadError(
            f"The value '{value}' of '{navigation}@odata.bind' is not a valid entity reference "
            f"like '/{target.entity_set}(<guid>)'."
        )
    entity_set, raw_guid = match.groups()
    guid = normalize_guid(raw_guid)
    if entity_set != target.entity_set or guid is None:
        raise PayloadError(
            f"The navigation property '{navigation}' expects a '{target.entity_set}' reference, "
            f"got '{value}'."
        )
    if dataset.get(entity_set, guid) is None:
        raise RecordNotFoundError(target.logical_name, guid)
    values[column.name] = guid
    values[column.name + LOGICAL] = target.logical_name
