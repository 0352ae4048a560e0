"""Rows -> response objects: ``$select`` projection, annotations and formatted values.

A :class:`RowRenderer` is built once per request (per query shape) and applied to every row of
the page. The common case (no formatted values) is a C-level ``itemgetter`` + ``zip``; the
formatted-values case walks the columns in Python.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Any

import msgspec

from infra.dynamics_emulator.dataset import Dataset
from infra.dynamics_emulator.errors import BadRequestError
from infra.dynamics_emulator.formatting import FORMATTED, ValueFormatter
from infra.dynamics_emulator.generator import LOGICAL, NAV, Row, Values
from infra.dynamics_emulator.query import AnnotationFilter
from infra.dynamics_emulator.schema import TABLES_BY_LOGICAL_NAME, Column, Kind, Table

FORMATTED_TERM = "OData.Community.Display.V1.FormattedValue"
NAV_TERM = "Microsoft.Dynamics.CRM.associatednavigationproperty"
LOGICAL_TERM = "Microsoft.Dynamics.CRM.lookuplogicalname"


_SHAPES: dict[tuple[str, ...], type[msgspec.Struct]] = {}


def _shape(keys: tuple[str, ...]) -> type[msgspec.Struct]:
    """Return (creating once) a Struct type that encodes as an object with these keys."""
    shape = _SHAPES.get(keys)
    if shape is None:
        fields = [f"f{n}" for n in range(len(keys))]
        shape = msgspec.defstruct(
            "Record",
            [(name, Any) for name in fields],
            rename=dict(zip(fields, keys, strict=True)),
            gc=False,
        )
        _SHAPES[keys] = shape
    return shape


def output_columns(table: Table, select: tuple[str, ...] | None) -> tuple[Column, ...]:
    """Return the columns a response carries for a ``$select`` (all when ``None``).

    The key is always returned (last), and money columns bring ``_transactioncurrencyid_value``
    along, as in Dataverse.

    Raises:
        BadRequestError: ``$select`` names a column the table does not have.
    """
    if select is None:
        return table.columns
    names: list[str] = []
    for name in select:
        if name not in table.by_name:
            raise BadRequestError(
                f"Could not find a property named '{name}' on type "
                f"'Microsoft.Dynamics.CRM.{table.logical_name}'."
            )
        if name not in names and name != table.key:
            names.append(name)
    if (
        table.has_currency
        and "_transactioncurrencyid_value" not in names
        and any(table.by_name[n].kind is Kind.MONEY for n in names)
    ):
        names.append("_transactioncurrencyid_value")
    names.append(table.key)
    return tuple(table.by_name[n] for n in names)


class RowRenderer:
    """Turns stored rows into the objects a response carries.

    Args:
        table: The queried table.
        select: ``$select`` columns, or ``None`` for all.
        annotations: Requested instance annotations.
        formatter: Formats values when formatted values were requested.
        dataset: Looks up primary names of lookups and currencies of money columns.
    """

    def __init__(
        self,
        table: Table,
        select: tuple[str, ...] | None,
        annotations: AnnotationFilter,
        formatter: ValueFormatter,
        dataset: Dataset,
    ) -> None:
        self.table = table
        self.columns = output_columns(table, select)
        self.dataset = dataset
        self.formatter = formatter
        self.want_formatted = annotations.wants(FORMATTED_TERM)
        self.want_nav = annotations.wants(NAV_TERM)
        self.want_logical = annotations.wants(LOGICAL_TERM)
        self.keys = ("@odata.etag", *(c.name for c in self.columns))
        layout = dataset.generator.layout(table.entity_set)
        self._shape = _shape(self.keys)
        self._from_values = itemgetter(*(layout.index(k) for k in self.keys))
        self._from_row = itemgetter(*self.keys)
        self._currency_cache: dict[str, str] = {}
        self.render: Callable[[Row | Values], Any]
        if self.want_formatted or self.want_nav or self.want_logical:
            self.render = self._render_annotated
        else:
            self.render = self._render_dense

    @property
    def select_names(self) -> tuple[str, ...]:
        """Names of the output columns (for ``@odata.context``)."""
        return tuple(c.name for c in self.columns)

    def entity(self, context: str, item: Row | Values) -> dict[str, Any]:
        """Render one record as a dict that starts with ``@odata.context``."""
        if self.render == self._render_dense:
            getter = self._from_values if isinstance(item, tuple) else self._from_row
            return {"@odata.context": context} | dict(zip(self.keys, getter(item), strict=True))
        return {"@odata.context": context, **self._render_annotated(item)}

    def _render_dense(self, item: Row | Values) -> Any:
        # The hot path: a C-level projection of generated tuples into a msgspec Struct
        # (several times cheaper than building a dict, and faster to encode).
        if type(item) is tuple:
            return self._shape(*self._from_values(item))
        return self._shape(*self._from_row(item))

    def _render_annotated(self, item: Row | Values) -> dict[str, Any]:
        row: Row = (
            self.dataset.generator.to_row(self.table.entity_set, item)
            if isinstance(item, tuple)
            else item
        )
        # Annotations come before the value they describe, as Dataverse writes them.
        out: dict[str, Any] = {"@odata.etag": row["@odata.etag"]}
        for column in self.columns:
            name = column.name
            value = row.get(name)
            if value is not None:
                if self.want_formatted:
                    formatted = self._format(column, value, row)
                    if formatted is not None:
                        out[name + FORMATTED] = formatted
                if column.kind is Kind.LOOKUP:
                    logical = row.get(name + LOGICAL) or column.targets[0].logical_name
                    if self.want_nav:
                        out[name + NAV] = column.navigation(logical)
                    if self.want_logical:
                        out[name + LOGICAL] = logical
            out[name] = value
        return out

    def _format(self, column: Column, value: Any, row: Row) -> str | None:
        kind = column.kind
        fmt = self.formatter
        if kind in (Kind.PICKLIST, Kind.STATE, Kind.STATUS):
            assert column.option_set is not None
            return fmt.option(column.option_set, value)
        if kind is Kind.BOOL:
            return fmt.boolean(value)
        if kind is Kind.INT:
            return fmt.number(value)
        if kind is Kind.MONEY:
            return fmt.money(value, self._currency(row))
        if kind is Kind.DATETIME:
            return fmt.datetime(value)
        if kind is Kind.DATEONLY:
            return fmt.date(value)
        if kind is Kind.LOOKUP:
            logical = row.get(column.name + LOGICAL) or column.targets[0].logical_name
            target = TABLES_BY_LOGICAL_NAME.get(logical)
            return None if target is None else self.dataset.primary_name(target.entity_set, value)
        return None

    def _currency(self, row: Row) -> str:
        guid = row.get("_transactioncurrencyid_value")
        if guid is None:
            return "EUR"
        cached = self._currency_cache.get(guid)
        if cached is None:
            currency = self.dataset.get("transactioncurrencies", guid)
            cached = "EUR" if currency is None else str(currency.get("isocurrencycode") or "EUR")
            self._currency_cache[guid] = cached
        return cached
