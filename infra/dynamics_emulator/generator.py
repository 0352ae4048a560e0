"""Deterministic on-the-fly records: record i of a table is a pure function of (seed, table, i).

Nothing is stored: :meth:`DatasetGenerator.row` builds the record when it is read, so a dataset
of 14 million records costs no disk and no memory. The random bits come from the record's GUID
(see :mod:`infra.dynamics_emulator.identity`), so one hash gives both the key and 64 random
bits; a second hash adds 64 more.

Relationships are arithmetic, so they always point at records that exist:

* contact j belongs to account ``j mod n_accounts`` (90 %), and account i's primary contact is
  contact i, which belongs to it;
* opportunity k is for account ``k mod n_accounts``; quote q for opportunity
  ``q mod n_opportunities``; appointment a regards account or opportunity ``a // 2`` (even/odd);
* every record is owned by one of the generated system users; records of an account are owned
  by the account's owner, and names, addresses and phones follow the owner's country and
  sales region (territory).

Rows are plain dicts in the order Dataverse writes properties: ``@odata.etag``, the columns
(each non-null lookup preceded by its two ``Microsoft.Dynamics.CRM`` annotations), the key last.
The hot functions are written out long-hand on purpose: this is the emulator's inner loop.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from infra.dynamics_emulator.identity import M64, TableIdentity, format_guid, mix64
from infra.dynamics_emulator.schema import TABLES, VERSION_STRIDE, Table
from infra.dynamics_emulator.vocabulary import (
    COUNTRIES,
    COUNTRY_WEIGHTS,
    Country,
    email_slug,
    format_landline,
    format_mobile,
    format_postal_code,
    format_street,
    territory_name,
)

Row = dict[str, Any]

NAV = "@Microsoft.Dynamics.CRM.associatednavigationproperty"
LOGICAL = "@Microsoft.Dynamics.CRM.lookuplogicalname"

_PRIMARYCONTACTID_NAV = "_primarycontactid_value" + NAV
_PRIMARYCONTACTID_LOGICAL = "_primarycontactid_value" + LOGICAL
_TRANSACTIONCURRENCYID_NAV = "_transactioncurrencyid_value" + NAV
_TRANSACTIONCURRENCYID_LOGICAL = "_transactioncurrencyid_value" + LOGICAL
_TERRITORYID_NAV = "_territoryid_value" + NAV
_TERRITORYID_LOGICAL = "_territoryid_value" + LOGICAL
_OWNERID_NAV = "_ownerid_value" + NAV
_OWNERID_LOGICAL = "_ownerid_value" + LOGICAL
_MODIFIEDBY_NAV = "_modifiedby_value" + NAV
_MODIFIEDBY_LOGICAL = "_modifiedby_value" + LOGICAL
_PARENTCUSTOMERID_NAV = "_parentcustomerid_value" + NAV
_PARENTCUSTOMERID_LOGICAL = "_parentcustomerid_value" + LOGICAL
_CUSTOMERID_NAV = "_customerid_value" + NAV
_CUSTOMERID_LOGICAL = "_customerid_value" + LOGICAL
_PARENTACCOUNTID_NAV = "_parentaccountid_value" + NAV
_PARENTACCOUNTID_LOGICAL = "_parentaccountid_value" + LOGICAL
_OPPORTUNITYID_NAV = "_opportunityid_value" + NAV
_OPPORTUNITYID_LOGICAL = "_opportunityid_value" + LOGICAL
_REGARDINGOBJECTID_NAV = "_regardingobjectid_value" + NAV
_REGARDINGOBJECTID_LOGICAL = "_regardingobjectid_value" + LOGICAL

#: First version number of generated records; overlay versions start above all of them.
VERSION_BASE = 100_000

_DAY = 86_400
_HISTORY_DAYS = 6 * 365
_FUTURE_DAYS = 2 * 365
_INDUSTRIES = (1, 6, 7, 10, 12, 16, 17, 30, 31, 33)
_STEPNAMES = ("1-Qualify", "2-Develop", "3-Propose", "4-Close")
_STAGE_PROBABILITY = (10, 30, 60, 80)
_HOURS = tuple(f"{h:02d}" for h in range(24))
_MINSEC = tuple(f"{m:02d}:{s:02d}" for m in range(60) for s in range(60))
_CURRENCIES = (("Euro", "EUR", "€"), ("Złoty polski", "PLN", "zł"))

_FIXED_COUNTS = {"territories": len(COUNTRIES) * 5, "transactioncurrencies": len(_CURRENCIES)}


class _Pools:
    """Per-country lookups prepared once: slugs, so rows never fold diacritics at read time."""

    __slots__ = (
        "country",
        "female_last",
        "female_slugs",
        "first_female",
        "first_female_slugs",
        "first_male",
        "first_male_slugs",
        "male_last",
        "male_slugs",
        "sector_slugs",
    )

    def __init__(self, country: Country) -> None:
        lang = country.language
        self.country = country
        self.first_male = country.male_first
        self.first_female = country.female_first
        self.male_last = country.male_last
        self.female_last = country.female_last or country.male_last
        self.first_male_slugs = tuple(email_slug(n, lang) for n in self.first_male)
        self.first_female_slugs = tuple(email_slug(n, lang) for n in self.first_female)
        self.male_slugs = tuple(email_slug(n, lang) for n in self.male_last)
        self.female_slugs = tuple(email_slug(n, lang) for n in self.female_last)
        self.sector_slugs = tuple(email_slug(s, lang) for s in country.sectors)


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
            a, b = users.halves(u)
            self._user_guid.append(format_guid((a << 64) | b))
            self._user_country.append(COUNTRY_WEIGHTS[b % len(COUNTRY_WEIGHTS)])
            self._user_region.append((b >> 5) % 5)
        territories = self.ids["territories"]
        self._territory_guid = [territories.guid(t) for t in range(self.counts["territories"])]
        currencies = self.ids["transactioncurrencies"]
        self._currency_guid = [currencies.guid(c) for c in range(len(_CURRENCIES))]
        self._builders: dict[str, Callable[[int], Row]] = {
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
        """Return base record ``index`` of a table (see the module docstring for its shape)."""
        return self._builders[entity_set](index)

    def builder(self, entity_set: str) -> Callable[[int], Row]:
        """Return the row function of a table, for tight loops."""
        return self._builders[entity_set]

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
            return f"{self._days[d]}T{_HOURS[s // 3600]}:{_MINSEC[s % 3600]}Z"
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _day(self, ts: int) -> str:
        d = (ts - self._day0) // _DAY
        if 0 <= d < len(self._days):
            return self._days[d]
        return datetime.fromtimestamp(ts, UTC).date().isoformat()

    def _dates(self, r: int) -> tuple[str, str]:
        created = self.epoch_s - (r % (5 * 365 * _DAY)) - 3_600
        modified = created + (r >> 32) % (self.epoch_s - created + 1)
        return self.iso(created), self.iso(modified)

    # -- shared pieces --------------------------------------------------------------------------

    def _account_b(self, index: int) -> tuple[str, int]:
        """Return (guid, random bits) of account ``index``."""
        a, b = self.ids["accounts"].halves(index)
        return format_guid((a << 64) | b), b

    def _account_domain(self, pools: _Pools, b: int) -> str:
        last = pools.male_slugs[(b >> 16) % len(pools.male_slugs)]
        sector = pools.sector_slugs[(b >> 22) % len(pools.sector_slugs)]
        return f"{last}-{sector}.{pools.country.tld}"

    # -- tables -------------------------------------------------------------------------------

    def account(self, i: int) -> Row:
        """Return account ``i``."""
        ids = self.ids["accounts"]
        a = mix64((i + ids.k1) & M64)
        b = mix64(a ^ ids.k2)
        r2 = a  # a is itself a uniform 64-bit value
        u = b % self._n_users
        ci = self._user_country[u]
        pools = _POOLS[ci]
        country = pools.country
        ri = self._user_region[u]
        cities = country.regions[ri].cities
        city = cities[(b >> 12) % len(cities)]
        last = country.male_last[(b >> 16) % len(country.male_last)]
        sector = country.sectors[(b >> 22) % len(country.sectors)]
        legal = country.legal_forms[(b >> 26) % len(country.legal_forms)]
        name = f"{last} {sector} {legal}" if ci < 2 else f"{sector} {last} {legal}"
        domain = (
            f"{pools.male_slugs[(b >> 16) % len(pools.male_slugs)]}-"
            f"{pools.sector_slugs[(b >> 22) % len(pools.sector_slugs)]}.{country.tld}"
        )
        streets = country.streets
        employees = 5 + (r2 >> 20) % 50 * (1 + (r2 >> 26) % 40)
        active = (b >> 46) % 10 != 0
        n_contacts = self.counts["contacts"]
        contact = self.ids["contacts"].guid(i) if i < n_contacts else None
        created, modified = self._dates(r2)
        owner = self._user_guid[u]
        modifier = self._user_guid[(r2 >> 50) % self._n_users] if (r2 >> 48) & 3 == 0 else owner
        row: Row = {
            "@odata.etag": f'W/"{VERSION_BASE + i * VERSION_STRIDE + 1}"',
            "name": name,
            "accountnumber": f"ACC-{i + 1:07d}",
            "telephone1": format_landline(country, city, r2),
            "emailaddress1": f"{country.mailbox}@{domain}",
            "address1_line1": format_street(
                country, streets[(b >> 30) % len(streets)], 1 + (b >> 34) % 180
            ),
            "address1_city": city.name,
            "address1_postalcode": format_postal_code(country, city, r2 >> 30),
            "address1_country": country.name,
            "industrycode": _INDUSTRIES[(b >> 40) % 10],
            "revenue": float(((r2 >> 33) % 50_000 + 10) * 1_000),
            "numberofemployees": employees,
            "description": (
                country.customer_since.format(
                    year=2000 + (r2 >> 56) % 25, region=country.regions[ri].name
                )
                if (b >> 50) & 1
                else None
            ),
        }
        if contact is not None:
            row[_PRIMARYCONTACTID_NAV] = "primarycontactid"
            row[_PRIMARYCONTACTID_LOGICAL] = "contact"
        row["_primarycontactid_value"] = contact
        row[_TRANSACTIONCURRENCYID_NAV] = "transactioncurrencyid"
        row[_TRANSACTIONCURRENCYID_LOGICAL] = "transactioncurrency"
        row["_transactioncurrencyid_value"] = self._currency_guid[1 if ci == 4 else 0]
        row[_TERRITORYID_NAV] = "territoryid"
        row[_TERRITORYID_LOGICAL] = "territory"
        row["_territoryid_value"] = self._territory_guid[ci * 5 + ri]
        row[_OWNERID_NAV] = "ownerid"
        row[_OWNERID_LOGICAL] = "systemuser"
        row["_ownerid_value"] = owner
        row[_MODIFIEDBY_NAV] = "modifiedby"
        row[_MODIFIEDBY_LOGICAL] = "systemuser"
        row["_modifiedby_value"] = modifier
        row["statecode"] = 0 if active else 1
        row["statuscode"] = 1 if active else 2
        row["createdon"] = created
        row["modifiedon"] = modified
        row["versionnumber"] = VERSION_BASE + i * VERSION_STRIDE + 1
        row["accountid"] = format_guid((a << 64) | b)
        return row

    def contact(self, j: int) -> Row:
        """Return contact ``j``."""
        ids = self.ids["contacts"]
        a = mix64((j + ids.k1) & M64)
        b = mix64(a ^ ids.k2)
        r2 = a  # a is itself a uniform 64-bit value
        n_accounts = self.counts["accounts"]
        parent: str | None = None
        if n_accounts and b % 10 != 0:
            parent, ab = self._account_b(j % n_accounts)
            u = ab % self._n_users
        else:
            ab = 0
            u = (b >> 3) % self._n_users
        ci = self._user_country[u]
        pools = _POOLS[ci]
        country = pools.country
        female = (b >> 8) & 1
        if female:
            fi = (b >> 9) % len(pools.first_female)
            first, first_slug = pools.first_female[fi], pools.first_female_slugs[fi]
            li = (b >> 16) % len(pools.female_last)
            last, last_slug = pools.female_last[li], pools.female_slugs[li]
        else:
            fi = (b >> 9) % len(pools.first_male)
            first, first_slug = pools.first_male[fi], pools.first_male_slugs[fi]
            li = (b >> 16) % len(pools.male_last)
            last, last_slug = pools.male_last[li], pools.male_slugs[li]
        if parent is not None:
            email = f"{first_slug}.{last_slug}@{self._account_domain(pools, ab)}"
        else:
            providers = country.email_providers
            email = f"{first_slug}.{last_slug}{r2 % 100}@{providers[(r2 >> 8) % len(providers)]}"
        cities = country.regions[self._user_region[u]].cities
        city = cities[(b >> 28) % len(cities)]
        active = (b >> 40) % 20 != 0
        created, modified = self._dates(r2)
        owner = self._user_guid[u]
        row: Row = {
            "@odata.etag": f'W/"{VERSION_BASE + j * VERSION_STRIDE + 2}"',
            "firstname": first,
            "lastname": last,
            "fullname": f"{first} {last}",
            "jobtitle": country.job_titles[(b >> 24) % len(country.job_titles)],
            "emailaddress1": email,
            "mobilephone": format_mobile(country, r2 >> 12),
            "telephone1": format_landline(country, city, r2 >> 20) if (b >> 44) & 3 else None,
            "address1_city": city.name,
            "address1_country": country.name,
        }
        if parent is not None:
            row[_PARENTCUSTOMERID_NAV] = "parentcustomerid_account"
            row[_PARENTCUSTOMERID_LOGICAL] = "account"
        row["_parentcustomerid_value"] = parent
        row[_OWNERID_NAV] = "ownerid"
        row[_OWNERID_LOGICAL] = "systemuser"
        row["_ownerid_value"] = owner
        row[_MODIFIEDBY_NAV] = "modifiedby"
        row[_MODIFIEDBY_LOGICAL] = "systemuser"
        row["_modifiedby_value"] = owner
        row["statecode"] = 0 if active else 1
        row["statuscode"] = 1 if active else 2
        row["createdon"] = created
        row["modifiedon"] = modified
        row["versionnumber"] = VERSION_BASE + j * VERSION_STRIDE + 2
        row["contactid"] = format_guid((a << 64) | b)
        return row

    def lead(self, i: int) -> Row:
        """Return lead ``i``."""
        ids = self.ids["leads"]
        a = mix64((i + ids.k1) & M64)
        b = mix64(a ^ ids.k2)
        r2 = a  # a is itself a uniform 64-bit value
        u = b % self._n_users
        ci = self._user_country[u]
        pools = _POOLS[ci]
        country = pools.country
        female = (b >> 8) & 1
        if female:
            fi = (b >> 9) % len(pools.first_female)
            first, first_slug = pools.first_female[fi], pools.first_female_slugs[fi]
        else:
            fi = (b >> 9) % len(pools.first_male)
            first, first_slug = pools.first_male[fi], pools.first_male_slugs[fi]
        lasts = pools.female_last if female else pools.male_last
        slugs = pools.female_slugs if female else pools.male_slugs
        li = (b >> 16) % len(lasts)
        company_last = country.male_last[(r2 >> 40) % len(country.male_last)]
        sector = country.sectors[(r2 >> 46) % len(country.sectors)]
        legal = country.legal_forms[(r2 >> 52) % len(country.legal_forms)]
        company = (
            f"{company_last} {sector} {legal}" if ci < 2 else f"{sector} {company_last} {legal}"
        )
        providers = country.email_providers
        cities = country.regions[self._user_region[u]].cities
        city = cities[(b >> 28) % len(cities)]
        roll = (b >> 36) % 20
        if roll < 12:
            state, status = 0, 1 + (roll & 1)
        elif roll < 17:
            state, status = 1, 3
        else:
            state, status = 2, 4 + roll % 4
        created, modified = self._dates(r2)
        owner = self._user_guid[u]
        version = VERSION_BASE + i * VERSION_STRIDE + 3
        return {
            "@odata.etag": f'W/"{version}"',
            "subject": f"{country.lead_prefix} {country.products[(b >> 22) % len(country.products)]}",  # noqa: E501
            "firstname": first,
            "lastname": lasts[li],
            "fullname": f"{first} {lasts[li]}",
            "companyname": company,
            "emailaddress1": f"{first_slug}.{slugs[li]}@{providers[(r2 >> 8) % len(providers)]}",
            "telephone1": format_landline(country, city, r2),
            "address1_city": city.name,
            "address1_country": country.name,
            "leadsourcecode": 1 + (b >> 42) % 10,
            _OWNERID_NAV: "ownerid",
            _OWNERID_LOGICAL: "systemuser",
            "_ownerid_value": owner,
            _MODIFIEDBY_NAV: "modifiedby",
            _MODIFIEDBY_LOGICAL: "systemuser",
            "_modifiedby_value": owner,
            "statecode": state,
            "statuscode": status,
            "createdon": created,
            "modifiedon": modified,
            "versionnumber": version,
            "leadid": format_guid((a << 64) | b),
        }

    def opportunity(self, k: int) -> Row:
        """Return opportunity ``k``."""
        ids = self.ids["opportunities"]
        a = mix64((k + ids.k1) & M64)
        b = mix64(a ^ ids.k2)
        r2 = a  # a is itself a uniform 64-bit value
        n_accounts = self.counts["accounts"]
        account: str | None = None
        if n_accounts:
            account, ab = self._account_b(k % n_accounts)
            u = ab % self._n_users
        else:
            u = b % self._n_users
        ci = self._user_country[u]
        country = COUNTRIES[ci]
        stage = (b >> 20) % 4
        roll = (b >> 24) % 10
        if roll < 6:
            state, status = 0, 1 + (roll == 5)
        elif roll < 8:
            state, status = 1, 3
        else:
            state, status = 2, 4 + (roll & 1)
        close = self.epoch_s - 180 * _DAY + (r2 % (540 * _DAY))
        created, modified = self._dates(r2 >> 5)
        owner = self._user_guid[u]
        version = VERSION_BASE + k * VERSION_STRIDE + 4
        product = country.products[(b >> 28) % len(country.products)]
        row: Row = {
            "@odata.etag": f'W/"{version}"',
            "name": f"{product} {2020 + (b >> 32) % 6}/{k % 10_000:04d}",
        }
        if account is not None:
            row[_CUSTOMERID_NAV] = "customerid_account"
            row[_CUSTOMERID_LOGICAL] = "account"
        row["_customerid_value"] = account
        if account is not None:
            row[_PARENTACCOUNTID_NAV] = "parentaccountid"
            row[_PARENTACCOUNTID_LOGICAL] = "account"
        row["_parentaccountid_value"] = account
        row["estimatedvalue"] = float(((r2 >> 10) % 5_000 + 1) * 100)
        row["closeprobability"] = (
            100 if state == 1 else (0 if state == 2 else _STAGE_PROBABILITY[stage])
        )
        row["salesstage"] = stage
        row["stepname"] = _STEPNAMES[stage]
        row["estimatedclosedate"] = self._day(close)
        row["description"] = None
        row[_TRANSACTIONCURRENCYID_NAV] = "transactioncurrencyid"
        row[_TRANSACTIONCURRENCYID_LOGICAL] = "transactioncurrency"
        row["_transactioncurrencyid_value"] = self._currency_guid[1 if ci == 4 else 0]
        row[_OWNERID_NAV] = "ownerid"
        row[_OWNERID_LOGICAL] = "systemuser"
        row["_ownerid_value"] = owner
        row[_MODIFIEDBY_NAV] = "modifiedby"
        row[_MODIFIEDBY_LOGICAL] = "systemuser"
        row["_modifiedby_value"] = owner
        row["statecode"] = state
        row["statuscode"] = status
        row["createdon"] = created
        row["modifiedon"] = modified
        row["versionnumber"] = version
        row["opportunityid"] = format_guid((a << 64) | b)
        return row

    def quote(self, q: int) -> Row:
        """Return quote ``q``."""
        ids = self.ids["quotes"]
        a = mix64((q + ids.k1) & M64)
        b = mix64(a ^ ids.k2)
        r2 = a  # a is itself a uniform 64-bit value
        n_opps = self.counts["opportunities"]
        n_accounts = self.counts["accounts"]
        opportunity = self.ids["opportunities"].guid(q % n_opps) if n_opps else None
        account: str | None = None
        if n_accounts:
            account, ab = self._account_b((q % n_opps if n_opps else q) % n_accounts)
            u = ab % self._n_users
        else:
            u = b % self._n_users
        ci = self._user_country[u]
        country = COUNTRIES[ci]
        roll = (b >> 24) % 10
        if roll < 3:
            state, status = 0, 1
        elif roll < 6:
            state, status = 1, 2 + (roll & 1)
        elif roll < 8:
            state, status = 2, 4
        else:
            state, status = 3, 5 + roll % 3
        created, modified = self._dates(r2)
        owner = self._user_guid[u]
        version = VERSION_BASE + q * VERSION_STRIDE + 5
        product = country.products[(b >> 28) % len(country.products)]
        row: Row = {
            "@odata.etag": f'W/"{version}"',
            "name": f"{country.quote_word} {product}",
            "quotenumber": f"QUO-{q + 1:05d}-{(r2 >> 8) % 0x1000000:06X}",
            "totalamount": float(((r2 >> 34) % 200_000 + 50) * 10),
            "description": None,
        }
        if opportunity is not None:
            row[_OPPORTUNITYID_NAV] = "opportunityid"
            row[_OPPORTUNITYID_LOGICAL] = "opportunity"
        row["_opportunityid_value"] = opportunity
        if account is not None:
            row[_CUSTOMERID_NAV] = "customerid_account"
            row[_CUSTOMERID_LOGICAL] = "account"
        row["_customerid_value"] = account
        row[_TRANSACTIONCURRENCYID_NAV] = "transactioncurrencyid"
        row[_TRANSACTIONCURRENCYID_LOGICAL] = "transactioncurrency"
        row["_transactioncurrencyid_value"] = self._currency_guid[1 if ci == 4 else 0]
        row[_OWNERID_NAV] = "ownerid"
        row[_OWNERID_LOGICAL] = "systemuser"
        row["_ownerid_value"] = owner
        row[_MODIFIEDBY_NAV] = "modifiedby"
        row[_MODIFIEDBY_LOGICAL] = "systemuser"
        row["_modifiedby_value"] = owner
        row["statecode"] = state
        row["statuscode"] = status
        row["createdon"] = created
        row["modifiedon"] = modified
        row["versionnumber"] = version
        row["quoteid"] = format_guid((a << 64) | b)
        return row

    def appointment(self, n: int) -> Row:
        """Return appointment ``n``."""
        ids = self.ids["appointments"]
        a = mix64((n + ids.k1) & M64)
        b = mix64(a ^ ids.k2)
        r2 = a  # a is itself a uniform 64-bit value
        n_accounts = self.counts["accounts"]
        n_opps = self.counts["opportunities"]
        regarding: str | None = None
        target = ""
        u = b % self._n_users
        if n_opps and (n & 1 or not n_accounts):
            k = (n // 2) % n_opps
            regarding = self.ids["opportunities"].guid(k)
            target = "opportunity"
            if n_accounts:
                u = self._account_b(k % n_accounts)[1] % self._n_users
        elif n_accounts:
            regarding, ab = self._account_b((n // 2) % n_accounts)
            target = "account"
            u = ab % self._n_users
        ci = self._user_country[u]
        country = COUNTRIES[ci]
        cities = country.regions[self._user_region[u]].cities
        all_day = (b >> 20) % 20 == 0
        start = self.epoch_s - 365 * _DAY + (r2 % (540 * _DAY)) // 1800 * 1800
        if all_day:
            start -= start % _DAY
            end = start + _DAY
        else:
            start = start - start % _DAY + 7 * 3600 + (r2 >> 40) % 22 * 1800
            end = start + 1800 * (1 + (b >> 24) % 6)
        roll = (b >> 30) % 10
        if start < self.epoch_s:
            state, status = (1, 3) if roll < 7 else ((2, 4) if roll < 8 else (0, 1 + (roll & 1)))
        else:
            state, status = (3, 5 + (roll == 9)) if roll < 8 else (0, 1 + (roll & 1))
        created, modified = self._dates(r2 >> 3)
        owner = self._user_guid[u]
        version = VERSION_BASE + n * VERSION_STRIDE + 6
        row: Row = {
            "@odata.etag": f'W/"{version}"',
            "subject": f"{country.visit_word}: {country.products[(b >> 34) % len(country.products)]}",  # noqa: E501
            "scheduledstart": self.iso(start),
            "scheduledend": self.iso(end),
            "location": cities[(b >> 40) % len(cities)].name,
            "isalldayevent": all_day,
            "description": None,
        }
        if regarding is not None:
            row[_REGARDINGOBJECTID_NAV] = f"regardingobjectid_{target}_appointment"
            row[_REGARDINGOBJECTID_LOGICAL] = target
        row["_regardingobjectid_value"] = regarding
        row[_OWNERID_NAV] = "ownerid"
        row[_OWNERID_LOGICAL] = "systemuser"
        row["_ownerid_value"] = owner
        row[_MODIFIEDBY_NAV] = "modifiedby"
        row[_MODIFIEDBY_LOGICAL] = "systemuser"
        row["_modifiedby_value"] = owner
        row["statecode"] = state
        row["statuscode"] = status
        row["createdon"] = created
        row["modifiedon"] = modified
        row["versionnumber"] = version
        row["activityid"] = format_guid((a << 64) | b)
        return row

    def systemuser(self, u: int) -> Row:
        """Return system user ``u`` (a field user with a country and a territory)."""
        ids = self.ids["systemusers"]
        a, b = ids.halves(u)
        r2 = ids.extra_random(b)
        ci = self._user_country[u]
        pools = _POOLS[ci]
        country = pools.country
        female = (b >> 8) & 1
        firsts = pools.first_female if female else pools.first_male
        first_slugs = pools.first_female_slugs if female else pools.first_male_slugs
        lasts = pools.female_last if female else pools.male_last
        last_slugs = pools.female_slugs if female else pools.male_slugs
        fi = (b >> 9) % len(firsts)
        li = (b >> 16) % len(lasts)
        login = f"{first_slugs[fi]}.{last_slugs[li]}{u}@contoso-{country.tld}.example"
        created, modified = self._dates(r2)
        version = VERSION_BASE + u * VERSION_STRIDE + 7
        return {
            "@odata.etag": f'W/"{version}"',
            "firstname": firsts[fi],
            "lastname": lasts[li],
            "fullname": f"{firsts[fi]} {lasts[li]}",
            "internalemailaddress": login,
            "domainname": login,
            "jobtitle": country.job_titles[(b >> 24) % len(country.job_titles)],
            "address1_country": country.name,
            _TERRITORYID_NAV: "territoryid",
            _TERRITORYID_LOGICAL: "territory",
            "_territoryid_value": self._territory_guid[ci * 5 + self._user_region[u]],
            "isdisabled": (b >> 40) % 100 == 0,
            _MODIFIEDBY_NAV: "modifiedby",
            _MODIFIEDBY_LOGICAL: "systemuser",
            "_modifiedby_value": self._user_guid[0],
            "createdon": created,
            "modifiedon": modified,
            "versionnumber": version,
            "systemuserid": format_guid((a << 64) | b),
        }

    def territory(self, t: int) -> Row:
        """Return territory ``t`` (country ``t // 5``, sales region ``t % 5``)."""
        ids = self.ids["territories"]
        a, b = ids.halves(t)
        country = COUNTRIES[t // 5]
        region = country.regions[t % 5]
        created, modified = self._dates(b)
        version = VERSION_BASE + t * VERSION_STRIDE + 8
        return {
            "@odata.etag": f'W/"{version}"',
            "name": territory_name(country, region),
            "description": f"{country.name}: {region.name}",
            _MODIFIEDBY_NAV: "modifiedby",
            _MODIFIEDBY_LOGICAL: "systemuser",
            "_modifiedby_value": self._user_guid[0],
            "createdon": created,
            "modifiedon": modified,
            "versionnumber": version,
            "territoryid": format_guid((a << 64) | b),
        }

    def transactioncurrency(self, c: int) -> Row:
        """Return currency ``c`` (0: EUR, 1: PLN)."""
        ids = self.ids["transactioncurrencies"]
        a, b = ids.halves(c)
        name, iso, symbol = _CURRENCIES[c]
        created, modified = self._dates(b)
        version = VERSION_BASE + c * VERSION_STRIDE + 9
        return {
            "@odata.etag": f'W/"{version}"',
            "currencyname": name,
            "isocurrencycode": iso,
            "currencysymbol": symbol,
            _MODIFIEDBY_NAV: "modifiedby",
            _MODIFIEDBY_LOGICAL: "systemuser",
            "_modifiedby_value": self._user_guid[0],
            "createdon": created,
            "modifiedon": modified,
            "versionnumber": version,
            "transactioncurrencyid": format_guid((a << 64) | b),
        }
