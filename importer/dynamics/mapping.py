"""Mapping between Dynamics rows and our records, both ways.

Our field names are Dynamics logical names (:mod:`sync_protocol.entities`), so most columns
map one to one. The differences this module owns:

* **Lookups** come from Dynamics as ``_<name>_value`` (a GUID) and are stored under the
  navigation name (``parentcustomerid``); written back as ``<nav>@odata.bind:
  "/<entityset>(<guid>)"`` where a polymorphic lookup needs the target's type in the
  navigation name (``parentcustomerid_account``).
* **Option sets** and state/status are integers; **money** and decimals are floats (so a
  record hashes the same whether Dynamics sent ``5`` or ``5.0``); **dates** stay ISO-8601
  (date-only columns cut to ``YYYY-MM-DD``); **owners** are ``_ownerid_value``.
* **territory** and **country** are not Dynamics columns of these tables: a
  :class:`ScopeResolver` derives them (from the owner's user record, or from a column).
* **Clocks**: an upstream row's clock is ``HLC(modifiedon ms, versionnumber & 0xFFFF,
  "upstream:<source>")``, so a later Dynamics version always carries a larger clock.

The hot path (:meth:`EntityMap.to_fields`) runs for every row of a full load: it walks a
precomputed plan of ``(column, field, converter)`` tuples and does nothing else.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Protocol

import msgspec

from sync_protocol.changesets import Mutation
from sync_protocol.entities import SCHEMAS, FieldKind, FieldSpec, schema
from sync_protocol.hlc import HLC

from ..errors import MappingError

ENTITY_SETS: dict[str, str] = {
    "account": "accounts",
    "contact": "contacts",
    "lead": "leads",
    "opportunity": "opportunities",
    "quote": "quotes",
    "appointment": "appointments",
    "systemuser": "systemusers",
    "team": "teams",
    "transactioncurrency": "transactioncurrencies",
    "territory": "territories",
}
"""Entity set (collection) name of every table a lookup of ours can point to."""

DERIVED_FIELDS = frozenset({"territory", "country"})
"""Our fields that no Dynamics column of the six tables holds (see :class:`ScopeResolver`)."""

READ_ONLY_COLUMNS = frozenset({"fullname", "createdon", "modifiedon"})
"""Columns Dynamics computes or maintains itself: read, never written back."""

ETAG = "@odata.etag"
VERSION_COLUMN = "versionnumber"
MODIFIED_COLUMN = "modifiedon"
_COUNTER_MASK = 0xFFFF

# Navigation properties whose name is not simply the lookup's own name, per target table
# (Dataverse names a polymorphic lookup's navigation per target; activities' regarding
# lookups also carry the activity's own name).
POLYMORPHIC_NAV: dict[tuple[str, str], dict[str, str]] = {
    ("contact", "parentcustomerid"): {
        "account": "parentcustomerid_account",
        "contact": "parentcustomerid_contact",
    },
    ("opportunity", "customerid"): {
        "account": "customerid_account",
        "contact": "customerid_contact",
    },
    ("quote", "customerid"): {
        "account": "customerid_account",
        "contact": "customerid_contact",
    },
    ("appointment", "regardingobjectid"): {
        "account": "regardingobjectid_account_appointment",
        "contact": "regardingobjectid_contact_appointment",
        "opportunity": "regardingobjectid_opportunity_appointment",
    },
}


def lookup_column(name: str) -> str:
    """The column a lookup arrives in: ``parentcustomerid`` -> ``_parentcustomerid_value``."""
    return f"_{name}_value"


# ====================================================================== converters


def _money(value: Any) -> Any:
    # bool is an int subclass; Dynamics never sends one for money, so only numbers convert.
    return float(value) if type(value) is int else value


def _integer(value: Any) -> Any:
    # Whole numbers may arrive as 5.0 from some serialisers.
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def _date(value: Any) -> Any:
    # Date-only columns are sometimes rendered as midnight date-times.
    if isinstance(value, str) and len(value) > 10 and value[10] == "T":
        return value[:10]
    return value


def _lookup(value: Any) -> Any:
    if isinstance(value, str) and not value.islower():
        return value.lower()
    return value


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "money": _money,
    "decimal": _money,
    "int": _integer,
    "choice": _integer,
    "date": _date,
    "lookup": _lookup,
}


def parse_datetime_ms(value: str) -> int:
    """Milliseconds since the epoch of an ISO-8601 date-time (``Z`` or an offset).

    Raises:
        MappingError: Not an ISO-8601 date-time with an offset.
    """
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError) as e:
        raise MappingError(f"not an ISO-8601 date-time: {str(value)[:40]!r}") from e
    if moment.tzinfo is None:
        raise MappingError(f"date-time without an offset: {value[:40]!r}")
    return int(moment.timestamp() * 1000)


_DAY_MS: dict[str, int] = {}


def fast_datetime_ms(value: str) -> int:
    """:func:`parse_datetime_ms`, quicker for Dataverse's usual ``YYYY-MM-DDTHH:MM:SSZ``.

    The day's epoch milliseconds are cached, so a row costs three small integer parses.

    Raises:
        MappingError: Not an ISO-8601 date-time with an offset.
    """
    if len(value) == 20 and value[19] == "Z" and value[10] == "T":
        day = _DAY_MS.get(value[:10])
        if day is None:
            day = parse_datetime_ms(value[:10] + "T00:00:00Z")
            if len(_DAY_MS) < 100_000:
                _DAY_MS[value[:10]] = day
        try:
            return day + (
                int(value[11:13]) * 3_600_000
                + int(value[14:16]) * 60_000
                + int(value[17:19]) * 1000
            )
        except ValueError:
            pass
    return parse_datetime_ms(value)


def row_clock(row: Mapping[str, Any], node: str) -> HLC:
    """The clock of an upstream row: ``(modifiedon ms, versionnumber low bits, node)``.

    Raises:
        MappingError: The row has no usable ``modifiedon``.
    """
    modified = row.get(MODIFIED_COLUMN)
    if not isinstance(modified, str):
        raise MappingError("row without modifiedon")
    version = row.get(VERSION_COLUMN)
    counter = version & _COUNTER_MASK if type(version) is int and version > 0 else 0
    return HLC(fast_datetime_ms(modified), counter, node)


# ====================================================================== scope


class ScopeResolver(Protocol):
    """Derives ``territory`` and ``country`` of a record from its Dynamics row."""

    def columns_for(self, entity: str) -> tuple[str, ...]:
        """Extra Dynamics columns of ``entity`` the resolver needs in ``$select``."""
        ...

    def scope(self, entity: str, row: Mapping[str, Any], owner: str | None) -> tuple[Any, Any]:
        """``(territory, country)`` of the row (``None`` when unknown)."""
        ...


class NoScope:
    """Leaves territory and country unset (records are then reachable by owner only)."""

    def columns_for(self, entity: str) -> tuple[str, ...]:
        """No extra columns."""
        return ()

    def scope(self, entity: str, row: Mapping[str, Any], owner: str | None) -> tuple[Any, Any]:
        """``(None, None)``."""
        return None, None


TERRITORY_LOOKUP = "_territoryid_value"
TABLES_WITH_TERRITORY = frozenset({"account"})
"""Tables of ours that carry their own sales territory lookup in Dynamics."""


@dataclass(slots=True)
class DirectoryScope:
    """Territory and country from Dynamics' sales territories and the record owner.

    A record's territory is its own ``territoryid`` where the table has one (accounts),
    else its owner's (``systemuser.territoryid``). Its country is the ISO prefix of the
    territory's name (``"IT Nord-Ovest"``), else the owner's ``address1_country``.

    Attributes:
        territories: territory GUID -> ``(code, ISO country or None)``.
        owners: systemuser GUID -> ``(territory code, ISO country)``.
    """

    territories: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    owners: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)

    def columns_for(self, entity: str) -> tuple[str, ...]:
        """``_territoryid_value`` for tables that have it."""
        return (TERRITORY_LOOKUP,) if entity in TABLES_WITH_TERRITORY else ()

    def scope(self, entity: str, row: Mapping[str, Any], owner: str | None) -> tuple[Any, Any]:
        """``(territory, country)`` of the row."""
        territory: str | None = None
        country: str | None = None
        own = row.get(TERRITORY_LOOKUP)
        if own is not None:
            hit = self.territories.get(own)
            if hit is not None:
                territory, country = hit
        if owner is not None and (territory is None or country is None):
            o_territory, o_country = self.owners.get(owner, (None, None))
            territory = territory or o_territory
            country = country or o_country
        return territory, country

    def add_territory(self, territory_id: str, name: str) -> None:
        """Register a sales territory by its Dynamics name."""
        self.territories[territory_id.lower()] = (territory_code(name), territory_country(name))

    def add_owner(self, user_id: str, territory_id: str | None, country: str | None) -> None:
        """Register a user with their territory GUID and ``address1_country``."""
        code, t_country = self.territories.get((territory_id or "").lower(), (None, None))
        c = (country_code(country) if country else None) or t_country
        self.owners[user_id.lower()] = (code, c)


_COUNTRY_NAMES: dict[str, str] = {}
for _code, _names in {
    "IT": ("italy", "italia", "italien", "italie", "włochy", "wlochy"),
    "DE": ("germany", "deutschland", "germania", "allemagne", "alemania", "niemcy"),
    "FR": ("france", "frankreich", "francia", "francja"),
    "ES": ("spain", "españa", "espana", "spanien", "spagna", "espagne", "hiszpania"),
    "PL": ("poland", "polska", "polen", "polonia", "pologne"),
    "AT": ("austria", "österreich", "osterreich", "autriche"),
    "CH": ("switzerland", "schweiz", "svizzera", "suisse", "suiza", "szwajcaria"),
    "BE": ("belgium", "belgique", "belgien", "belgio", "bélgica", "belgia"),
    "NL": ("netherlands", "nederland", "niederlande", "paesi bassi", "pays-bas", "holandia"),
    "PT": ("portugal", "portogallo", "portugalia"),
    "GB": ("united kingdom", "uk", "great britain", "regno unito", "royaume-uni"),
}.items():
    for _name in _names:
        _COUNTRY_NAMES[_name] = _code


def country_code(value: str) -> str | None:
    """An ISO 3166 alpha-2 code from a code or a country name in one of our languages."""
    text = value.strip()
    if len(text) == 2 and text.isalpha() and text.isascii():
        return text.upper()
    return _COUNTRY_NAMES.get(text.lower())


_FOLD = str.maketrans({"ł": "l", "Ł": "L", "ß": "ss", "æ": "ae", "ø": "o", "đ": "d"})


def territory_code(name: str) -> str:
    """A channel-safe territory code: ``"FR Île-de-France"`` -> ``"FR-Ile-de-France"``.

    Accents are folded, blanks become ``-``, anything else outside ``[A-Za-z0-9_.-]`` is
    dropped, and the result is cut to 16 characters (our ``territory`` field's length).
    """
    folded = unicodedata.normalize("NFKD", name.translate(_FOLD))
    text = "-".join(folded.split())
    return "".join(c for c in text if c.isascii() and (c.isalnum() or c in "-_."))[:16]


def territory_country(name: str) -> str | None:
    """The ISO country a territory name starts with (``"IT Centro"`` -> ``"IT"``)."""
    head = name.strip()[:3]
    if len(head) == 3 and head[2] == " " and head[:2].isalpha() and head[:2].isupper():
        return head[:2]
    return None


# ====================================================================== per entity


@dataclass(frozen=True, slots=True)
class Column:
    """One of our fields and where it lives in Dynamics.

    Attributes:
        field: Our field name.
        column: The column it arrives in (``_x_value`` for lookups).
        kind: Our field kind.
        targets: For lookups, the tables it may point to.
        writable: Whether writeback sends it.
    """

    field: str
    column: str
    kind: FieldKind
    targets: tuple[str, ...] = ()
    writable: bool = True


TargetResolver = Callable[[str, str, tuple[str, ...]], str | None]
"""``(field, guid, candidate tables) -> table`` for a polymorphic lookup (None: unknown)."""

_Step = tuple[str, str, Callable[[Any], Any] | None, Callable[[Any], bool] | None]


def _checker(spec: FieldSpec) -> Callable[[Any], bool] | None:
    """A cheap validity test for the values Dynamics can send that our schema may refuse.

    Only option sets (Dynamics may have values our schema lacks) and string lengths are
    checked: the other kinds come typed from the Web API. The applier validates everything
    again; this keeps one odd value from getting a whole record rejected there.
    """
    if spec.kind == "choice":
        allowed = frozenset(spec.options)
        return lambda v: v in allowed
    if spec.kind in ("string", "text", "phone", "email") and spec.max_length:
        limit = spec.max_length
        return lambda v: isinstance(v, str) and len(v) <= limit
    return None


class EntityMap:
    """How one entity maps to its Dynamics table.

    Args:
        entity: Our entity name.
        node: Clock node id of upstream rows (``upstream:dynamics``).
        scope: Derives territory and country.
        missing: Dynamics columns this organisation does not have: their fields are left
            out both ways (they stay device-only data).
    """

    def __init__(
        self,
        entity: str,
        node: str,
        scope: ScopeResolver | None = None,
        missing: frozenset[str] = frozenset(),
    ) -> None:
        s = schema(entity)
        self.entity = entity
        self.entity_set = s.entity_set
        self.key = s.key
        self.node = node
        self.scope: ScopeResolver = scope if scope is not None else NoScope()
        self.missing = frozenset(missing)
        columns: list[Column] = []
        for name, spec in s.fields.items():
            if name in DERIVED_FIELDS:
                continue
            if spec.kind == "lookup":
                col = Column(name, lookup_column(name), "lookup", spec.target)
            else:
                col = Column(name, name, spec.kind, writable=name not in READ_ONLY_COLUMNS)
            if col.column not in self.missing:
                columns.append(col)
        self.columns: tuple[Column, ...] = tuple(columns)
        self.by_field: dict[str, Column] = {c.field: c for c in columns}
        self.by_column: dict[str, Column] = {c.column: c for c in columns}
        extra = [VERSION_COLUMN, MODIFIED_COLUMN, *self.scope.columns_for(entity)]
        select = [self.key, *(c.column for c in columns), *extra]
        self.select: tuple[str, ...] = tuple(
            c for c in dict.fromkeys(select) if c not in self.missing or c == self.key
        )
        self._plan: tuple[_Step, ...] = tuple(
            (c.column, c.field, _CONVERTERS.get(c.kind), _checker(s.fields[c.field]))
            for c in columns
        )
        self._has_scope = not isinstance(self.scope, NoScope)
        self.issues: dict[str, int] = {}
        """Values our schema refused, per field (they were mapped to ``None``)."""
        self._scope_columns = tuple(
            (column, _extra_name(column)) for column in self.scope.columns_for(entity)
        )
        self._choices = tuple(
            (c.field, frozenset(s.fields[c.field].options)) for c in columns if c.kind == "choice"
        )
        self._dates = tuple(c.field for c in columns if c.kind == "date")
        self._lookups = tuple(c.field for c in columns if c.kind == "lookup")
        self._page_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_page_struct(self, s))

    def without(self, column: str) -> EntityMap:
        """A copy that leaves out a column the organisation turned out not to have."""
        return EntityMap(self.entity, self.node, self.scope, self.missing | {column})

    @property
    def fields(self) -> tuple[str, ...]:
        """Our fields this map fills (derived ones included when a scope is set)."""
        names = tuple(c.field for c in self.columns)
        return (*names, *sorted(DERIVED_FIELDS)) if self._has_scope else names

    # ------------------------------------------------------------------ Dynamics -> ours

    def record_id(self, row: Mapping[str, Any]) -> str:
        """The record GUID of a row (lower case).

        Raises:
            MappingError: The row has no key.
        """
        value = row.get(self.key)
        if not isinstance(value, str) or not value:
            raise MappingError(f"{self.entity} row without {self.key}")
        return value if value.islower() else value.lower()

    def to_fields(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Our field values of a row (every mapped field, ``None`` where the row has none)."""
        get = row.get
        out: dict[str, Any] = {}
        for column, name, convert, check in self._plan:
            value = get(column)
            if value is not None:
                if convert is not None:
                    value = convert(value)
                if check is not None and not check(value):
                    self.issues[name] = self.issues.get(name, 0) + 1
                    value = None
            out[name] = value
        if self._has_scope:
            territory, country = self.scope.scope(self.entity, row, out.get("ownerid"))
            out["territory"] = territory
            out["country"] = country
        return out

    def to_mutation(self, row: Mapping[str, Any]) -> Mutation:
        """An upstream upsert of a row, with its clock and ETag.

        Raises:
            MappingError: No key or no ``modifiedon``.
        """
        etag = row.get(ETAG)
        return Mutation(
            entity=self.entity,
            id=self.record_id(row),
            clock=row_clock(row, self.node),
            fields=self.to_fields(row),
            etag=etag if isinstance(etag, str) else None,
        )

    def decode_page(self, raw: bytes, *, drop_nulls: bool = False) -> TypedPage:
        """Decode a page of this entity's rows straight into upserts (the full-load path).

        Equivalent to :meth:`to_mutation` on every row of a generic decode, but rows are
        decoded by msgspec into a per-entity struct (OData annotations skipped in C) and
        turned into field dicts in C. A page with a value our struct refuses (an
        overlong string, a float where an integer belongs) takes the generic path.

        Args:
            raw: The response body.
            drop_nulls: Leave out fields whose value is null. Only for records the store
                does not hold yet (the first load), where "null" and "not set" are the
                same: it saves the applier a clock and a version per empty column.

        Raises:
            MappingError: The body is not an OData collection.
        """
        try:
            page = self._page_decoder.decode(raw)
        except msgspec.ValidationError:
            return self._decode_page_generic(raw, drop_nulls)
        except msgspec.DecodeError as e:
            raise MappingError(f"page is not an OData collection: {e}") from e
        out: list[Mutation] = []
        skipped = 0
        node = self.node
        entity = self.entity
        scope_row: dict[str, Any] = {}
        for row in page.value:
            d = msgspec.structs.asdict(row)
            key = d.pop(_KEY)
            etag = d.pop(_ETAG)
            version = d.pop(_VERSION)
            for column, extra in self._scope_columns:
                scope_row[column] = d.pop(extra)
            modified = d.get(MODIFIED_COLUMN)
            if key is None or modified is None:
                skipped += 1
                continue
            for name, allowed in self._choices:
                value = d[name]
                if value is not None and value not in allowed:
                    self.issues[name] = self.issues.get(name, 0) + 1
                    d[name] = None
            for name in self._dates:
                value = d[name]
                if value is not None and len(value) > 10 and value[10] == "T":
                    d[name] = value[:10]
            for name in self._lookups:
                value = d[name]
                if value is not None and not value.islower():
                    d[name] = value.lower()
            if self._has_scope:
                d["territory"], d["country"] = self.scope.scope(entity, scope_row, d.get("ownerid"))
            counter = version & _COUNTER_MASK if version is not None and version > 0 else 0
            if drop_nulls:
                d = {k: v for k, v in d.items() if v is not None}
            out.append(
                Mutation(
                    entity=entity,
                    id=key if key.islower() else key.lower(),
                    clock=HLC(fast_datetime_ms(modified), counter, node),
                    fields=d,
                    etag=etag,
                )
            )
        return TypedPage(out, page.next_link, page.delta_link, len(page.value), skipped)

    def _decode_page_generic(self, raw: bytes, drop_nulls: bool = False) -> TypedPage:
        try:
            page = _generic_page_decoder.decode(raw)
        except msgspec.DecodeError as e:
            raise MappingError(f"page is not an OData collection: {e}") from e
        out: list[Mutation] = []
        skipped = 0
        for row in page.value:
            try:
                m = self.to_mutation(row)
            except MappingError:
                skipped += 1
                continue
            if drop_nulls:
                m.fields = {k: v for k, v in m.fields.items() if v is not None}
            out.append(m)
        return TypedPage(out, page.next_link, page.delta_link, len(page.value), skipped)

    def delete_mutation(self, record_id: str, now_ms: int) -> Mutation:
        """An upstream delete (a ``$deletedEntity`` carries no time: we stamp ``now_ms``)."""
        return Mutation(
            entity=self.entity,
            id=record_id.lower(),
            op="delete",
            clock=HLC(now_ms, 0, self.node),
        )

    # ------------------------------------------------------------------ ours -> Dynamics

    def to_body(
        self,
        fields: Mapping[str, Any],
        resolve_target: TargetResolver | None = None,
        *,
        record_id: str | None = None,
    ) -> dict[str, Any]:
        """The JSON body of a create or update carrying ``fields``.

        Fields Dynamics computes (``fullname``...), derived ones (``territory``,
        ``country``) and ones the organisation lacks are left out. Lookups become
        ``@odata.bind`` references; clearing a lookup binds ``null``.

        Args:
            fields: Our field values.
            resolve_target: Picks the table of a polymorphic lookup's GUID (else the
                first candidate table is assumed).
            record_id: For a create: the record's GUID, sent as the primary key.

        Returns:
            The body (possibly empty: nothing of ``fields`` lives in Dynamics).
        """
        body: dict[str, Any] = {}
        if record_id is not None:
            body[self.key] = record_id
        for name, value in fields.items():
            col = self.by_field.get(name)
            if col is None or not col.writable:
                continue
            if col.kind != "lookup":
                body[name] = value
                continue
            if value is None:
                body[f"{self._nav(name, col.targets[0])}@odata.bind"] = None
                continue
            target = col.targets[0]
            if len(col.targets) > 1 and resolve_target is not None:
                target = resolve_target(name, str(value), col.targets) or target
            body[f"{self._nav(name, target)}@odata.bind"] = f"/{ENTITY_SETS[target]}({value})"
        return body

    def writable_fields(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The part of ``fields`` that writeback sends to Dynamics."""
        return {
            k: v
            for k, v in fields.items()
            if (col := self.by_field.get(k)) is not None and col.writable
        }

    def _nav(self, name: str, target: str) -> str:
        return POLYMORPHIC_NAV.get((self.entity, name), {}).get(target, name)


_KEY = "x_key"
_ETAG = "x_etag"
_VERSION = "x_version"

_FAST_TYPES: dict[str, Any] = {
    "int": int,
    "choice": int,
    "decimal": float,
    "money": float,
    "bool": bool,
    "datetime": str,
    "date": str,
    "lookup": str,
    "country": str,
}


def _extra_name(column: str) -> str:
    return "x" + column if column.startswith("_") else "x_" + column


def _page_struct(emap: EntityMap, s: Any) -> type[msgspec.Struct]:
    """msgspec types for a page of ``emap``'s rows: our field names, Dynamics' keys."""
    specs: list[tuple[str, Any, Any]] = []
    for c in emap.columns:
        spec = s.fields[c.field]
        if spec.kind in ("string", "text", "phone", "email"):
            kind: Any = Annotated[str, msgspec.Meta(max_length=spec.max_length)]
        else:
            kind = _FAST_TYPES[spec.kind]
        specs.append((c.field, kind | None, msgspec.field(default=None, name=c.column)))
    specs.append((_KEY, str | None, msgspec.field(default=None, name=emap.key)))
    specs.append((_ETAG, str | None, msgspec.field(default=None, name=ETAG)))
    specs.append((_VERSION, int | None, msgspec.field(default=None, name=VERSION_COLUMN)))
    for column in emap.scope.columns_for(emap.entity):
        specs.append((_extra_name(column), str | None, msgspec.field(default=None, name=column)))
    row = msgspec.defstruct(f"{emap.entity.capitalize()}Row", specs, kw_only=True)
    return msgspec.defstruct(
        f"{emap.entity.capitalize()}Page",
        [
            ("value", list[row], msgspec.field(default_factory=list)),  # type: ignore[valid-type]
            ("next_link", str | None, msgspec.field(default=None, name="@odata.nextLink")),
            ("delta_link", str | None, msgspec.field(default=None, name="@odata.deltaLink")),
        ],
        kw_only=True,
    )


class _GenericPage(msgspec.Struct):
    value: list[dict[str, Any]] = []
    next_link: str | None = msgspec.field(name="@odata.nextLink", default=None)
    delta_link: str | None = msgspec.field(name="@odata.deltaLink", default=None)


_generic_page_decoder = msgspec.json.Decoder(_GenericPage)


@dataclass(slots=True)
class TypedPage:
    """A page decoded into upserts.

    Attributes:
        mutations: One upsert per mappable row.
        next_link: The next page, if any.
        delta_link: The delta link on the last page of a change-tracking query.
        rows: Rows on the page.
        skipped: Rows without a key or ``modifiedon``.
        digest: Identity of the page's content (set by the loader from the raw bytes).
    """

    mutations: list[Mutation]
    next_link: str | None
    delta_link: str | None
    rows: int
    skipped: int
    digest: str = ""


def entity_maps(
    node: str,
    scope: ScopeResolver | None = None,
    missing: Mapping[str, frozenset[str]] | None = None,
) -> dict[str, EntityMap]:
    """One :class:`EntityMap` per synced entity."""
    missing = missing or {}
    return {name: EntityMap(name, node, scope, missing.get(name, frozenset())) for name in SCHEMAS}
