"""Deterministic on-the-fly records: record i of a table is a pure function of (seed, table, i).

Nothing is stored: :meth:`DatasetGenerator.row` builds the record when it is read, so a dataset
of 14 million records costs no disk and no memory. The random bits come from the record's GUID
(see :mod:`infra.dynamics_emulator.identity`): its eight 16-bit chunks are both the key and the
record's dice. ``createdon``/``modifiedon`` pairs are drawn from 65,536 per dataset (cached as
formatted strings), so many records share timestamps.

Relationships are arithmetic, so they always point at records that exist:

* contact j belongs to account ``(j // 3) mod n_accounts`` (90 %; always for j divisible by 3),
  and account i's primary contact is contact 3i, which belongs to it;
* opportunity k is for account ``(k // 2) mod n_accounts``; quote q for opportunity
  ``q mod n_opportunities`` (and that opportunity's account); appointment a regards account or
  opportunity ``a // 2`` (even/odd);
* adding records to a table never changes the records already there (a child depends on the
  size of its parent table, not of its own);
* every record is owned by one of the generated system users; records of an account are owned
  by the account's owner, and names, addresses and phones follow the owner's country and
  sales region (territory).

Rows are plain dicts in the order Dataverse writes properties: ``@odata.etag``, the columns,
the key last. A non-null lookup that may point at several tables (``_parentcustomerid_value``,
``_customerid_value``, ``_regardingobjectid_value``) is preceded by its
``@Microsoft.Dynamics.CRM.lookuplogicalname``; the renderer derives every other lookup
annotation from the schema. The hot functions are written out long-hand on purpose, with small
integers only: this is the emulator's inner loop.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from infra.dynamics_emulator.identity import TableIdentity, derive_key, mix64
from infra.dynamics_emulator.schema import TABLES, VERSION_STRIDE, Kind, Table
from infra.dynamics_emulator.vocabulary import (
    COUNTRIES,
    COUNTRY_WEIGHTS,
    Country,
    email_slug,
    format_postal_code,
    format_street,
    landline_formatter,
    landline_prefix,
    mobile_formatter,
    territory_name,
)

Row = dict[str, Any]
#: A generated record as a tuple, laid out as :meth:`DatasetGenerator.layout` says.
Values = tuple[Any, ...]

NAV = "@Microsoft.Dynamics.CRM.associatednavigationproperty"
LOGICAL = "@Microsoft.Dynamics.CRM.lookuplogicalname"


#: First version number of generated records; overlay versions start above all of them.
VERSION_BASE = 100_000

_DAY = 86_400
_HISTORY_DAYS = 6 * 365
_FUTURE_DAYS = 2 * 365
_INDUSTRIES = (1, 6, 7, 10, 12, 16, 17, 30, 31, 33)
_STEPNAMES = ("1-Qualify", "2-Develop", "3-Propose", "4-Close")
_STAGE_PROBABILITY = (10, 30, 60, 80)
# "THH:MM:SSZ" for every second of a day (5 MB): formatting a timestamp is then two lookups.
_TIMES = tuple(
    f"T{h:02d}:{m:02d}:{s:02d}Z" for h in range(24) for m in range(60) for s in range(60)
)
#: Contacts per account and opportunities per account: consecutive children share a parent.
CONTACTS_PER_ACCOUNT = 3
OPPORTUNITIES_PER_ACCOUNT = 2
_CURRENCIES = (("Euro", "EUR", "€"), ("Złoty polski", "PLN", "zł"))
_CREATED_SPAN = 5 * 365 * _DAY

_FIXED_COUNTS = {"territories": len(COUNTRIES) * 5, "transactioncurrencies": len(_CURRENCIES)}


class _City:
    """A city as rows need it: name, every postal code, phone prefix."""

    __slots__ = ("name", "phone_prefix", "postal_codes")

    def __init__(self, name: str, postal_codes: tuple[str, ...], phone_prefix: str) -> None:
        self.name = name
        self.postal_codes = postal_codes
        self.phone_prefix = phone_prefix


class _Pools:
    """Per-country combinations prepared once, so a row picks a value with one index.

    ``companies`` holds every (surname, sector, legal form) as (name, e-mail domain);
    ``men``/``women`` every (first name, surname) as (first, last, full name, e-mail local
    part). Slugs fold diacritics at start-up, never while rows are generated.
    """

    __slots__ = (
        "cities",
        "companies",
        "country",
        "descriptions",
        "landline",
        "men",
        "mobile",
        "n_companies",
        "n_men",
        "n_street_lines",
        "n_women",
        "street_lines",
        "women",
    )

    def __init__(self, country: Country) -> None:
        lang = country.language
        self.country = country
        # Per sales region: its cities with every postal code and the phone prefix.
        self.cities = tuple(
            tuple(
                _City(
                    city.name,
                    tuple(format_postal_code(country, city, r) for r in range(city.postal_spread)),
                    landline_prefix(country, city),
                )
                for city in region.cities
            )
            for region in country.regions
        )
        self.street_lines = tuple(
            format_street(country, street, number)
            for street in country.streets
            for number in range(1, 181)
        )
        self.n_street_lines = len(self.street_lines)
        self.descriptions = tuple(
            tuple(
                country.customer_since.format(year=2000 + y, region=region.name) for y in range(25)
            )
            for region in country.regions
        )
        self.landline = landline_formatter(country)
        self.mobile = mobile_formatter(country)
        self.companies = tuple(
            (
                f"{last} {sector} {legal}"
                if country.code in ("IT", "DE")
                else f"{sector} {last} {legal}",
                f"{email_slug(last, lang)}-{email_slug(sector, lang)}.{country.tld}",
            )
            for last in country.male_last
            for sector in country.sectors
            for legal in country.legal_forms
        )
        self.n_companies = len(self.companies)
        self.men = self._people(country.male_first, country.male_last, lang)
        self.women = self._people(
            country.female_first, country.female_last or country.male_last, lang
        )
        self.n_men = len(self.men)
        self.n_women = len(self.women)

    @staticmethod
    def _people(
        firsts: tuple[str, ...], lasts: tuple[str, ...], lang: str
    ) -> tuple[tuple[str, str, str, str], ...]:
        return tuple(
            (first, last, f"{first} {last}", f"{email_slug(first, lang)}.{email_slug(last, lang)}")
            for last in lasts
            for first in firsts
        )


_POOLS = tuple(_Pools(c) for c in COUNTRIES)


class DatasetGenerator:
    """Builds the base records of every table from a seed and record counts.

    Args:
        seed: Dataset seed.
        counts: Records per sized entity set (accounts, contacts, ...).
        epoch: No generated ``createdon``/``modifiedon`` is later than this instant.
    """

    def __init__(self, seed: int, counts: dict[str, int], epoch: datetime) -> None:
        self.seed = seed
        self.counts = {name: counts.get(name, 0) for name in TABLES}
        self.counts.update(_FIXED_COUNTS)
        self.ids = {
            name: TableIdentity(seed, table.code, self.counts[name])
            for name, table in TABLES.items()
        }
        self.epoch_s = int(epoch.astimezone(UTC).timestamp())
        first_day = datetime.fromtimestamp(self.epoch_s, UTC).date() - timedelta(days=_HISTORY_DAYS)
        self._day0 = int(
            datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC).timestamp()
        )
        self._days = tuple(
            (first_day + timedelta(days=d)).isoformat()
            for d in range(_HISTORY_DAYS + _FUTURE_DAYS + 2)
        )
        self.max_count = max(self.counts.values())
        #: Versions of overlay writes start here.
        self.version_ceiling = VERSION_BASE + (self.max_count + 1) * VERSION_STRIDE

        users = self.ids["systemusers"]
        self._n_users = self.counts["systemusers"]
        self._user_guid: list[str] = []
        self._user_country: list[int] = []
        self._user_region: list[int] = []
        for u in range(self._n_users):
            guid, _, _, c2, c3, _, _, _, _ = users.bits(u)
            self._user_guid.append(guid)
            self._user_country.append(COUNTRY_WEIGHTS[c2 % len(COUNTRY_WEIGHTS)])
            self._user_region.append(c3 % 5)
        territories = self.ids["territories"]
        self._territory_guid = [territories.guid(t) for t in range(self.counts["territories"])]
        currencies = self.ids["transactioncurrencies"]
        self._currency_guid = [currencies.guid(c) for c in range(len(_CURRENCIES))]
        self._layouts: dict[str, tuple[str, ...]] = {}
        self._widths: dict[str, int] = {}
        self._polymorphic: dict[str, tuple[tuple[int, str], ...]] = {}
        for name, table in TABLES.items():
            columns = ("@odata.etag", *table.column_names())
            extra = tuple(
                c.name + LOGICAL
                for c in table.columns
                if c.kind is Kind.LOOKUP and len(c.targets) > 1
            )
            self._layouts[name] = columns + extra
            self._widths[name] = len(columns)
            self._polymorphic[name] = tuple((len(columns) + n, key) for n, key in enumerate(extra))
        self._account_ids = self.ids["accounts"]
        self._contact_ids = self.ids["contacts"]
        self._last_account: tuple[int, tuple[str, int, int]] = (-1, ("", 0, 0))
        self._date_key = derive_key(seed, 0xDA7E)
        self._date_cache: list[tuple[str, str] | None] = [None] * 65_536
        self._values: dict[str, Callable[[int], Values]] = {
            "accounts": self.account,
            "contacts": self.contact,
            "leads": self.lead,
            "opportunities": self.opportunity,
            "quotes": self.quote,
            "appointments": self.appointment,
            "systemusers": self.systemuser,
            "territories": self.territory,
            "transactioncurrencies": self.transactioncurrency,
        }

    # -- identities -------------------------------------------------------------------------

    def count(self, entity_set: str) -> int:
        """Return how many base records a table has."""
        return self.counts[entity_set]

    def guid(self, entity_set: str, index: int) -> str:
        """Return the GUID of base record ``index`` of a table."""
        return self.ids[entity_set].guid(index)

    def index_of(self, entity_set: str, guid: str) -> int | None:
        """Return the base index a GUID decodes to in a table, or ``None``."""
        return self.ids[entity_set].index_of(guid)

    def version(self, table: Table, index: int) -> int:
        """Return the ``versionnumber`` of an untouched base record."""
        return VERSION_BASE + index * VERSION_STRIDE + table.code

    def row(self, entity_set: str, index: int) -> Row:
        """Return base record ``index`` of a table as a dict (see the module docstring)."""
        return self.to_row(entity_set, self._values[entity_set](index))

    def builder(self, entity_set: str) -> Callable[[int], Row]:
        """Return a function building dict rows of a table."""
        values = self._values[entity_set]
        to_row = self.to_row
        return lambda index: to_row(entity_set, values(index))

    def values(self, entity_set: str) -> Callable[[int], Values]:
        """Return the tuple builder of a table (the fast path; see :meth:`layout`)."""
        return self._values[entity_set]

    def layout(self, entity_set: str) -> tuple[str, ...]:
        """Return the keys of a table's value tuples: ``@odata.etag``, the columns in schema
        order, then the lookup-logical-name annotation of each polymorphic lookup."""
        return self._layouts[entity_set]

    def to_row(self, entity_set: str, values: Values) -> Row:
        """Turn a value tuple into a dict row (annotations only for non-null lookups)."""
        width = self._widths[entity_set]
        row = dict(zip(self._layouts[entity_set][:width], values[:width], strict=True))
        for position, key in self._polymorphic[entity_set]:
            if values[position] is not None:
                row[key] = values[position]
        return row

    def user_guid(self, user: int) -> str:
        """Return the GUID of system user ``user``."""
        return self._user_guid[user]

    def currency_guid(self, iso_code: str) -> str:
        """Return the GUID of the currency with this ISO code (EUR or PLN)."""
        return self._currency_guid[0 if iso_code == "EUR" else 1]

    # -- time ---------------------------------------------------------------------------------

    def iso(self, ts: int) -> str:
        """Format Unix seconds as ISO-8601 with ``Z``, from precomputed day strings."""
        d, s = divmod(ts - self._day0, _DAY)
        if 0 <= d < len(self._days):
            return self._days[d] + _TIMES[s]
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _day(self, ts: int) -> str:
        d = (ts - self._day0) // _DAY
        if 0 <= d < len(self._days):
            return self._days[d]
        return datetime.fromtimestamp(ts, UTC).date().isoformat()

    def _dates(self, r16: int) -> tuple[str, str]:
        """Return a (createdon, modifiedon) pair, one of 65,536 per dataset."""
        pair = self._date_cache[r16]
        if pair is None:
            r = mix64(r16 ^ self._date_key)
            created = self.epoch_s - r % _CREATED_SPAN - 3_600
            modified = created + (r >> 32) % (self.epoch_s - created + 1)
            pair = self._date_cache[r16] = (self.iso(created), self.iso(modified))
        return pair

    def _account_ref(self, index: int) -> tuple[str, int, int]:
        """Return (guid, owner user, company draw) of account ``index``, remembering the last
        one asked for (consecutive contacts and opportunities share their account)."""
        last_index, last_ref = self._last_account  # one attribute: safe across threads
        if index == last_index:
            return last_ref
        guid, _, _, c2, c3, _, c5, c6, _ = self._account_ids.bits(index)
        ref = (guid, ((c2 << 16) | c3) % self._n_users, (c5 << 16) | c6)
        self._last_account = (index, ref)
        return ref

    # -- tables -------------------------------------------------------------------------------

    def account(self, i: int) -> Values:
        """Return account ``i``."""
        guid, c0, c1, c2, c3, c4, c5, c6, c7 = self._account_ids.bits(i)
        u = ((c2 << 16) | c3) % self._n_users
        ci = self._user_country[u]
        ri = self._user_region[u]
        pools = _POOLS[ci]
        country = pools.country
        cities = pools.cities[ri]
        city = cities[c4 % len(cities)]
        name, domain = pools.companies[((c5 << 16) | c6) % pools.n_companies]
        primary = i * CONTACTS_PER_ACCOUNT
        contact = self._contact_ids.bits(primary)[0] if primary < self.counts["contacts"] else None
        created, modified = self._dates(c3 ^ c7)
        owner = self._user_guid[u]
        modifier = self._user_guid[((c1 << 16) | c4) % self._n_users] if c0 & 3 == 0 else owner
        active = (c6 >> 4) % 10 != 0
        version = VERSION_BASE + i * VERSION_STRIDE + 1
        return (
            f'W/"{version}"',
            name,
            f"ACC-{i + 1:07d}",
            pools.landline(city.phone_prefix, c0, c1),
            f"{country.mailbox}@{domain}",
            pools.street_lines[((c7 << 8) ^ c4) % pools.n_street_lines],
            city.name,
            city.postal_codes[(c6 ^ c1) % len(city.postal_codes)],
            country.name,
            _INDUSTRIES[(c7 >> 8) % 10],
            float((((c0 << 8) ^ c1) % 50_000 + 10) * 1_000),
            5 + (c1 & 63) * (1 + (c0 >> 11)),
            pools.descriptions[ri][c1 % 25] if c7 >> 15 else None,
            contact,
            self._currency_guid[1 if ci == 4 else 0],
            self._territory_guid[ci * 5 + ri],
            owner,
            modifier,
            0 if active else 1,
            1 if active else 2,
            created,
            modified,
            version,
            guid,
        )

    def contact(self, j: int) -> Values:
        """Return contact ``j``."""
        guid, c0, c1, c2, c3, c4, c5, c6, c7 = self._contact_ids.bits(j)
        n_accounts = self.counts["accounts"]
        parent: str | None = None
        # The first contact of each account always belongs to it (it is the primary contact).
        if n_accounts and (j % CONTACTS_PER_ACCOUNT == 0 or c2 % 10 != 0):
            parent, u, company = self._account_ref(j // CONTACTS_PER_ACCOUNT % n_accounts)
        else:
            u = ((c2 << 16) | c3) % self._n_users
            company = 0
        ci = self._user_country[u]
        pools = _POOLS[ci]
        country = pools.country
        if c4 & 1:
            first, last, fullname, local = pools.women[((c5 << 16) | c6) % pools.n_women]
        else:
            first, last, fullname, local = pools.men[((c5 << 16) | c6) % pools.n_men]
        if parent is not None:
            email = f"{local}@{pools.companies[company % pools.n_companies][1]}"
        else:
            providers = country.email_providers
            email = f"{local}{c7 % 100}@{providers[(c7 >> 8) % len(providers)]}"
        cities = pools.cities[self._user_region[u]]
        city = cities[(c4 >> 5) % len(cities)]
        active = (c6 >> 3) % 20 != 0
        created, modified = self._dates(c7 ^ c0)
        owner = self._user_guid[u]
        version = VERSION_BASE + j * VERSION_STRIDE + 2
        return (
            f'W/"{version}"',
            first,
            last,
            fullname,
            country.job_titles[(c4 >> 1) % len(country.job_titles)],
            email,
            pools.mobile(c0, c1),
            pools.landline(city.phone_prefix, c7, c1) if c3 & 3 else None,
            city.name,
            country.name,
            parent,
            owner,
            owner,
            0 if active else 1,
            1 if active else 2,
            created,
            modified,
            version,
            guid,
            "account" if parent is not None else None,
        )

    def lead(self, i: int) -> Values:
        """Return lead ``i``."""
        guid, c0, c1, c2, c3, c4, c5, c6, c7 = self.ids["leads"].bits(i)
        u = ((c2 << 16) | c3) % self._n_users
        ci = self._user_country[u]
        pools = _POOLS[ci]
        country = pools.country
        if c4 & 1:
            first, last, fullname, local = pools.women[((c5 << 16) | c6) % pools.n_women]
        else:
            first, last, fullname, local = pools.men[((c5 << 16) | c6) % pools.n_men]
        company = pools.companies[((c0 << 16) | c7) % pools.n_companies][0]
        providers = country.email_providers
        cities = pools.cities[self._user_region[u]]
        city = cities[(c4 >> 5) % len(cities)]
        roll = (c6 >> 2) % 20
        if roll < 12:
            state, status = 0, 1 + (roll & 1)
        elif roll < 17:
            state, status = 1, 3
        else:
            state, status = 2, 4 + roll % 4
        created, modified = self._dates(c3 ^ c7)
        owner = self._user_guid[u]
        version = VERSION_BASE + i * VERSION_STRIDE + 3
        return (
            f'W/"{version}"',
            f"{country.lead_prefix} {country.products[(c4 >> 1) % len(country.products)]}",
            first,
            last,
            fullname,
            company,
            f"{local}@{providers[(c7 >> 3) % len(providers)]}",
            pools.landline(city.phone_prefix, c0, c1),
            city.name,
            country.name,
            1 + c1 % 10,
            owner,
            owner,
            state,
            status,
            created,
            modified,
            version,
            guid,
        )

    def opportunity(self, k: int) -> Values:
        """Return opportunity ``k``."""
        guid, c0, c1, c2, c3, c4, c5, c6, c7 = self.ids["opportunities"].bits(k)
        n_accounts = self.counts["accounts"]
        account: str | None = None
        if n_accounts:
            account, u, _ = self._account_ref(k // OPPORTUNITIES_PER_ACCOUNT % n_accounts)
        else:
            u = ((c2 << 16) | c3) % self._n_users
        ci = self._user_country[u]
        country = COUNTRIES[ci]
        stage = c4 % 4
        roll = (c4 >> 2) % 10
        if roll < 6:
            state, status = 0, 1 + (roll == 5)
        elif roll < 8:
            state, status = 1, 3
        else:
            state, status = 2, 4 + (roll & 1)
        close = self.epoch_s - 180 * _DAY + ((c5 << 16) | c6) % (540 * _DAY)
        created, modified = self._dates(c7 ^ c2)
        owner = self._user_guid[u]
        version = VERSION_BASE + k * VERSION_STRIDE + 4
        product = country.products[c0 % len(country.products)]
        return (
            f'W/"{version}"',
            f"{product} {2020 + c1 % 6}/{k % 10_000:04d}",
            account,
            account,
            float(((c6 ^ c1) % 5_000 + 1) * 100),
            (100 if state == 1 else (0 if state == 2 else _STAGE_PROBABILITY[stage])),
            stage,
            _STEPNAMES[stage],
            self._day(close),
            None,
            self._currency_guid[1 if ci == 4 else 0],
            owner,
            owner,
            state,
            status,
            created,
            modified,
            version,
            guid,
            "account" if account is not None else None,
        )

    def quote(self, q: int) -> Values:
        """Return quote ``q``."""
        guid, c0, _, c2, c3, c4, c5, c6, c7 = self.ids["quotes"].bits(q)
        n_opps = self.counts["opportunities"]
        n_accounts = self.counts["accounts"]
        opportunity = self.ids["opportunities"].bits(q % n_opps)[0] if n_opps else None
        account: str | None = None
        if n_accounts:
            parent = q % n_opps // OPPORTUNITIES_PER_ACCOUNT if n_opps else q
            account, u, _ = self._account_ref(parent % n_accounts)
        else:
            u = ((c2 << 16) | c3) % self._n_users
        ci = self._user_country[u]
        country = COUNTRIES[ci]
        roll = (c4 >> 10) % 10
        if roll < 3:
            state, status = 0, 1
        elif roll < 6:
            state, status = 1, 2 + (roll & 1)
        elif roll < 8:
            state, status = 2, 4
        else:
            state, status = 3, 5 + roll % 3
        created, modified = self._dates(c3 ^ c7)
        owner = self._user_guid[u]
        version = VERSION_BASE + q * VERSION_STRIDE + 5
        product = country.products[c0 % len(country.products)]
        return (
            f'W/"{version}"',
            f"{country.quote_word} {product}",
            f"QUO-{q + 1:05d}-{c5:04X}{c6 & 255:02X}",
            float((((c4 << 8) ^ c7) % 200_000 + 50) * 10),
            None,
            opportunity,
            account,
            self._currency_guid[1 if ci == 4 else 0],
            owner,
            owner,
            state,
            status,
            created,
            modified,
            version,
            guid,
            "account" if account is not None else None,
        )

    def appointment(self, n: int) -> Values:
        """Return appointment ``n``."""
        guid, c0, c1, c2, c3, c4, c5, c6, c7 = self.ids["appointments"].bits(n)
        n_accounts = self.counts["accounts"]
        n_opps = self.counts["opportunities"]
        regarding: str | None = None
        target = ""
        u = ((c2 << 16) | c3) % self._n_users
        if n_opps and (n & 1 or not n_accounts):
            k = (n // 2) % n_opps
            regarding = self.ids["opportunities"].bits(k)[0]
            target = "opportunity"
            if n_accounts:
                u = self._account_ref(k // OPPORTUNITIES_PER_ACCOUNT % n_accounts)[1]
        elif n_accounts:
            regarding, u, _ = self._account_ref((n // 2) % n_accounts)
            target = "account"
        ci = self._user_country[u]
        country = COUNTRIES[ci]
        cities = country.regions[self._user_region[u]].cities
        all_day = c4 % 20 == 0
        start = self.epoch_s - 365 * _DAY + ((c5 << 16) | c6) % (540 * _DAY)
        start -= start % _DAY
        if all_day:
            end = start + _DAY
        else:
            start += 7 * 3600 + (c7 >> 3) % 22 * 1800
            end = start + 1800 * (1 + c7 % 6)
        roll = (c4 >> 5) % 10
        if start < self.epoch_s:
            state, status = (1, 3) if roll < 7 else ((2, 4) if roll < 8 else (0, 1 + (roll & 1)))
        else:
            state, status = (3, 5 + (roll == 9)) if roll < 8 else (0, 1 + (roll & 1))
        created, modified = self._dates(c3 ^ c1)
        owner = self._user_guid[u]
        version = VERSION_BASE + n * VERSION_STRIDE + 6
        return (
            f'W/"{version}"',
            f"{country.visit_word}: {country.products[c1 % len(country.products)]}",
            self.iso(start),
            self.iso(end),
            cities[c0 % len(cities)].name,
            all_day,
            None,
            regarding,
            owner,
            owner,
            state,
            status,
            created,
            modified,
            version,
            guid,
            target if regarding is not None else None,
        )

    def systemuser(self, u: int) -> Values:
        """Return system user ``u`` (a field user with a country and a territory)."""
        guid, c0, c1, _, _, c4, c5, c6, c7 = self.ids["systemusers"].bits(u)
        ci = self._user_country[u]
        pools = _POOLS[ci]
        country = pools.country
        if c4 & 1:
            first, last, fullname, local = pools.women[((c5 << 16) | c6) % pools.n_women]
        else:
            first, last, fullname, local = pools.men[((c5 << 16) | c6) % pools.n_men]
        login = f"{local}{u}@contoso-{country.tld}.example"
        created, modified = self._dates(c7 ^ c0)
        version = VERSION_BASE + u * VERSION_STRIDE + 7
        return (
            f'W/"{version}"',
            first,
            last,
            fullname,
            login,
            login,
            country.job_titles[(c4 >> 1) % len(country.job_titles)],
            country.name,
            self._territory_guid[ci * 5 + self._user_region[u]],
            c1 % 100 == 0,
            self._user_guid[0],
            created,
            modified,
            version,
            guid,
        )

    def territory(self, t: int) -> Values:
        """Return territory ``t`` (country ``t // 5``, sales region ``t % 5``)."""
        guid, _, _, _, _, _, _, c6, c7 = self.ids["territories"].bits(t)
        country = COUNTRIES[t // 5]
        region = country.regions[t % 5]
        created, modified = self._dates(c6 ^ c7)
        version = VERSION_BASE + t * VERSION_STRIDE + 8
        return (
            f'W/"{version}"',
            territory_name(country, region),
            f"{country.name}: {region.name}",
            self._user_guid[0],
            created,
            modified,
            version,
            guid,
        )

    def transactioncurrency(self, c: int) -> Values:
        """Return currency ``c`` (0: EUR, 1: PLN)."""
        guid, _, _, _, _, _, _, c6, c7 = self.ids["transactioncurrencies"].bits(c)
        name, iso, symbol = _CURRENCIES[c]
        created, modified = self._dates(c6 ^ c7)
        version = VERSION_BASE + c * VERSION_STRIDE + 9
        return (
            f'W/"{version}"',
            name,
            iso,
            symbol,
            self._user_guid[0],
            created,
            modified,
            version,
            guid,
        )
