"""The emulated tables: entity sets, keys, primary names, columns and their types.

Only what an importer touches is modelled: the six CRM tables of ``DYNAMICS_WEB_API.md`` plus
the reference tables their lookups point at (``systemusers``, ``territories``,
``transactioncurrencies``). A :class:`Column` knows how it is written (type, maximum length,
option set, lookup targets) so the write path can validate payloads the way Dataverse does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from infra.dynamics_emulator.labels import OPTION_SETS, STATUS_STATE


class Kind(Enum):
    """Column type, as far as reads, writes and formatted values care."""

    KEY = "key"
    STRING = "string"
    INT = "int"
    BIGINT = "bigint"
    MONEY = "money"
    DATETIME = "datetime"
    DATEONLY = "dateonly"
    BOOL = "bool"
    PICKLIST = "picklist"
    STATE = "state"
    STATUS = "status"
    LOOKUP = "lookup"


@dataclass(frozen=True, slots=True)
class LookupTarget:
    """One table a lookup column may point at."""

    logical_name: str
    entity_set: str
    navigation: str


@dataclass(frozen=True, slots=True)
class Column:
    """A column (OData property) of a table."""

    name: str
    kind: Kind
    max_length: int | None = None
    option_set: str | None = None
    targets: tuple[LookupTarget, ...] = ()
    writable: bool = True

    @property
    def is_lookup(self) -> bool:
        """True for ``_<name>_value`` lookup properties."""
        return self.kind is Kind.LOOKUP

    def navigation(self, logical_name: str) -> str:
        """Return the navigation property of this lookup for a target table."""
        for target in self.targets:
            if target.logical_name == logical_name:
                return target.navigation
        return self.targets[0].navigation


@dataclass(frozen=True)
class Table:
    """An entity set and its columns (in the order Dataverse returns them, key last)."""

    logical_name: str
    entity_set: str
    key: str
    primary_name: str
    code: int
    columns: tuple[Column, ...]
    by_name: dict[str, Column] = field(init=False, repr=False)
    bindings: dict[str, tuple[Column, LookupTarget]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {c.name: c for c in self.columns})
        bindings: dict[str, tuple[Column, LookupTarget]] = {}
        for column in self.columns:
            for target in column.targets:
                bindings[target.navigation] = (column, target)
        object.__setattr__(self, "bindings", bindings)

    @property
    def has_state(self) -> bool:
        """True when the table has ``statecode``/``statuscode``."""
        return "statecode" in self.by_name

    @property
    def has_currency(self) -> bool:
        """True when money columns come with ``_transactioncurrencyid_value``."""
        return "_transactioncurrencyid_value" in self.by_name

    def column_names(self) -> tuple[str, ...]:
        """Return every column name in output order."""
        return tuple(c.name for c in self.columns)

    def status_state(self) -> dict[int, int]:
        """Return statuscode -> statecode for this table."""
        return STATUS_STATE[self.logical_name]


def _s(name: str, max_length: int) -> Column:
    return Column(name, Kind.STRING, max_length=max_length)


def _lookup(name: str, *targets: tuple[str, str, str], writable: bool = True) -> Column:
    return Column(
        name,
        Kind.LOOKUP,
        targets=tuple(LookupTarget(*t) for t in targets),
        writable=writable,
    )


def _system(logical_name: str, key: str, *, owned: bool = True) -> tuple[Column, ...]:
    columns: list[Column] = []
    if owned:
        columns.append(_lookup("_ownerid_value", ("systemuser", "systemusers", "ownerid")))
    columns.append(
        _lookup("_modifiedby_value", ("systemuser", "systemusers", "modifiedby"), writable=False)
    )
    if logical_name in STATUS_STATE:
        columns.append(Column("statecode", Kind.STATE, option_set=f"{logical_name}_statecode"))
        columns.append(Column("statuscode", Kind.STATUS, option_set=f"{logical_name}_statuscode"))
    columns += [
        Column("createdon", Kind.DATETIME, writable=False),
        Column("modifiedon", Kind.DATETIME, writable=False),
        Column("versionnumber", Kind.BIGINT, writable=False),
        Column(key, Kind.KEY),
    ]
    return tuple(columns)


_CURRENCY = _lookup(
    "_transactioncurrencyid_value",
    ("transactioncurrency", "transactioncurrencies", "transactioncurrencyid"),
)

ACCOUNT = Table(
    "account",
    "accounts",
    "accountid",
    "name",
    1,
    (
        _s("name", 160),
        _s("accountnumber", 20),
        _s("telephone1", 50),
        _s("emailaddress1", 100),
        _s("address1_line1", 250),
        _s("address1_city", 80),
        _s("address1_postalcode", 20),
        _s("address1_country", 80),
        Column("industrycode", Kind.PICKLIST, option_set="industrycode"),
        Column("revenue", Kind.MONEY),
        Column("numberofemployees", Kind.INT),
        _s("description", 2000),
        _lookup("_primarycontactid_value", ("contact", "contacts", "primarycontactid")),
        _CURRENCY,
        _lookup("_territoryid_value", ("territory", "territories", "territoryid")),
        *_system("account", "accountid"),
    ),
)

CONTACT = Table(
    "contact",
    "contacts",
    "contactid",
    "fullname",
    2,
    (
        _s("firstname", 50),
        _s("lastname", 50),
        Column("fullname", Kind.STRING, max_length=160, writable=False),
        _s("jobtitle", 100),
        _s("emailaddress1", 100),
        _s("mobilephone", 50),
        _s("telephone1", 50),
        _s("address1_city", 80),
        _s("address1_country", 80),
        _lookup(
            "_parentcustomerid_value",
            ("account", "accounts", "parentcustomerid_account"),
            ("contact", "contacts", "parentcustomerid_contact"),
        ),
        *_system("contact", "contactid"),
    ),
)

LEAD = Table(
    "lead",
    "leads",
    "leadid",
    "fullname",
    3,
    (
        _s("subject", 300),
        _s("firstname", 50),
        _s("lastname", 50),
        Column("fullname", Kind.STRING, max_length=160, writable=False),
        _s("companyname", 100),
        _s("emailaddress1", 100),
        _s("telephone1", 50),
        _s("address1_city", 80),
        _s("address1_country", 80),
        Column("leadsourcecode", Kind.PICKLIST, option_set="leadsourcecode"),
        *_system("lead", "leadid"),
    ),
)

OPPORTUNITY = Table(
    "opportunity",
    "opportunities",
    "opportunityid",
    "name",
    4,
    (
        _s("name", 300),
        _lookup(
            "_customerid_value",
            ("account", "accounts", "customerid_account"),
            ("contact", "contacts", "customerid_contact"),
        ),
        _lookup("_parentaccountid_value", ("account", "accounts", "parentaccountid")),
        Column("estimatedvalue", Kind.MONEY),
        Column("closeprobability", Kind.INT),
        Column("salesstage", Kind.PICKLIST, option_set="salesstage"),
        _s("stepname", 200),
        Column("estimatedclosedate", Kind.DATEONLY),
        _s("description", 2000),
        _CURRENCY,
        *_system("opportunity", "opportunityid"),
    ),
)

QUOTE = Table(
    "quote",
    "quotes",
    "quoteid",
    "name",
    5,
    (
        _s("name", 300),
        _s("quotenumber", 100),
        Column("totalamount", Kind.MONEY),
        _s("description", 2000),
        _lookup("_opportunityid_value", ("opportunity", "opportunities", "opportunityid")),
        _lookup(
            "_customerid_value",
            ("account", "accounts", "customerid_account"),
            ("contact", "contacts", "customerid_contact"),
        ),
        _CURRENCY,
        *_system("quote", "quoteid"),
    ),
)

APPOINTMENT = Table(
    "appointment",
    "appointments",
    "activityid",
    "subject",
    6,
    (
        _s("subject", 200),
        Column("scheduledstart", Kind.DATETIME),
        Column("scheduledend", Kind.DATETIME),
        _s("location", 200),
        Column("isalldayevent", Kind.BOOL),
        _s("description", 2000),
        _lookup(
            "_regardingobjectid_value",
            ("account", "accounts", "regardingobjectid_account_appointment"),
            ("contact", "contacts", "regardingobjectid_contact_appointment"),
            ("opportunity", "opportunities", "regardingobjectid_opportunity_appointment"),
        ),
        *_system("appointment", "activityid"),
    ),
)

SYSTEMUSER = Table(
    "systemuser",
    "systemusers",
    "systemuserid",
    "fullname",
    7,
    (
        _s("firstname", 64),
        _s("lastname", 64),
        Column("fullname", Kind.STRING, max_length=200, writable=False),
        _s("internalemailaddress", 100),
        _s("domainname", 1024),
        _s("jobtitle", 100),
        _s("address1_country", 80),
        _lookup("_territoryid_value", ("territory", "territories", "territoryid")),
        Column("isdisabled", Kind.BOOL),
        *_system("systemuser", "systemuserid", owned=False),
    ),
)

TERRITORY = Table(
    "territory",
    "territories",
    "territoryid",
    "name",
    8,
    (
        _s("name", 200),
        _s("description", 2000),
        *_system("territory", "territoryid", owned=False),
    ),
)

TRANSACTIONCURRENCY = Table(
    "transactioncurrency",
    "transactioncurrencies",
    "transactioncurrencyid",
    "currencyname",
    9,
    (
        _s("currencyname", 100),
        _s("isocurrencycode", 5),
        _s("currencysymbol", 10),
        *_system("transactioncurrency", "transactioncurrencyid", owned=False),
    ),
)

#: Every emulated table, by entity set name.
TABLES: dict[str, Table] = {
    t.entity_set: t
    for t in (
        ACCOUNT,
        CONTACT,
        LEAD,
        OPPORTUNITY,
        QUOTE,
        APPOINTMENT,
        SYSTEMUSER,
        TERRITORY,
        TRANSACTIONCURRENCY,
    )
}

#: Tables by logical name.
TABLES_BY_LOGICAL_NAME: dict[str, Table] = {t.logical_name: t for t in TABLES.values()}

#: Stride between the version numbers of consecutive generated records (> number of tables).
VERSION_STRIDE = 16


def option_values(column: Column) -> frozenset[int]:
    """Return the allowed values of a picklist, state or status column."""
    assert column.option_set is not None
    return frozenset(OPTION_SETS[column.option_set])
