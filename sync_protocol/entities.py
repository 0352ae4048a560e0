"""The six synced CRM entities: fields, types and option sets with labels.

One declarative schema is the source of truth for validation, for the typed wire
structs (:data:`FIELD_STRUCTS`), for the gateway's ``/v1/metadata`` and for the
importer's Dynamics mapping. Field names are Dynamics logical names; a lookup is stored
under its navigation name (``parentcustomerid``) holding the target record's UUID.
Every entity also carries ``ownerid``, ``territory`` and ``country``, which the sync
rules turn into channels.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from .errors import InvalidFieldValueError, UnknownEntityError, UnknownFieldError

LANGUAGES: tuple[str, ...] = ("it", "de", "fr", "es", "pl", "en")
"""Languages every label exists in; ``en`` is the fallback."""

FieldKind = Literal[
    "string",
    "text",
    "int",
    "decimal",
    "money",
    "bool",
    "datetime",
    "date",
    "choice",
    "lookup",
    "email",
    "phone",
    "country",
]

Labels = dict[str, str]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of an entity.

    Attributes:
        kind: the value type; decides validation and the wire type.
        max_length: for strings, the longest value accepted.
        options: for ``choice``, the allowed integer values and their labels per language.
        target: for ``lookup``, the entity (or entities) the UUID may point to.
        searchable: included in the client's offline full-text index.
        system: maintained by the server or Dynamics; no device may write it.
        labels: the field's display name per language.
    """

    kind: FieldKind
    max_length: int = 0
    options: dict[int, Labels] = field(default_factory=dict)
    target: tuple[str, ...] = ()
    searchable: bool = False
    system: bool = False
    labels: Labels = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EntitySchema:
    """An entity: its Dynamics table facts and its fields."""

    name: str
    entity_set: str
    key: str
    primary_name: str
    fields: dict[str, FieldSpec]
    labels: Labels

    def spec(self, name: str) -> FieldSpec:
        """The spec of field ``name``.

        Raises:
            UnknownFieldError: the entity has no such field.
        """
        try:
            return self.fields[name]
        except KeyError:
            raise UnknownFieldError(
                f"{self.name} has no field {name[:64]!r}", entity=self.name, field=name[:64]
            ) from None


def _l(it: str, de: str, fr: str, es: str, pl: str, en: str) -> Labels:
    return {"it": it, "de": de, "fr": fr, "es": es, "pl": pl, "en": en}


def _s(n: int = 100, searchable: bool = False) -> FieldSpec:
    return FieldSpec("string", max_length=n, searchable=searchable)


STATE_ACTIVE = {
    0: _l("Attivo", "Aktiv", "Actif", "Activo", "Aktywny", "Active"),
    1: _l("Inattivo", "Inaktiv", "Inactif", "Inactivo", "Nieaktywny", "Inactive"),
}

_COMMON: dict[str, FieldSpec] = {
    "ownerid": FieldSpec(
        "lookup",
        target=("systemuser",),
        labels=_l("Proprietario", "Besitzer", "Propriétaire", "Propietario", "Właściciel", "Owner"),
    ),
    "territory": FieldSpec(
        "string",
        max_length=16,
        labels=_l("Zona", "Gebiet", "Territoire", "Zona", "Obszar", "Territory"),
    ),
    "country": FieldSpec("country", labels=_l("Paese", "Land", "Pays", "País", "Kraj", "Country")),
    "statuscode": FieldSpec("int"),
    "createdon": FieldSpec("datetime", system=True),
    "modifiedon": FieldSpec("datetime", system=True),
}


def _entity(
    name: str, entity_set: str, key: str, primary: str, labels: Labels, fields: dict[str, FieldSpec]
) -> EntitySchema:
    return EntitySchema(name, entity_set, key, primary, {**fields, **_COMMON}, labels)


# Dynamics 365 standard option values (account.industrycode, lead.leadsourcecode), so that
# rows of a real organisation validate; labels from the same sets.
INDUSTRY = {
    1: _l("Contabilità", "Buchhaltung", "Comptabilité", "Contabilidad", "Księgowość", "Accounting"),
    6: _l(
        "Servizi alle imprese",
        "Unternehmensdienstleistungen",
        "Services aux entreprises",
        "Servicios empresariales",
        "Usługi dla biznesu",
        "Business Services",
    ),
    7: _l("Consulenza", "Beratung", "Conseil", "Consultoría", "Doradztwo", "Consulting"),
    10: _l(
        "Distributori e spedizionieri",
        "Großhändler und Verteiler",
        "Distributeurs et transformateurs",
        "Distribuidores y procesadores",
        "Dystrybutorzy i przetwórcy",
        "Distributors, Dispatchers and Processors",
    ),
    12: _l(
        "Produzione di beni durevoli",
        "Gebrauchsgüterherstellung",
        "Fabrication de biens durables",
        "Fabricación de bienes duraderos",
        "Produkcja dóbr trwałych",
        "Durable Manufacturing",
    ),
    16: _l("Finanza", "Finanzwesen", "Finance", "Finanzas", "Finanse", "Financial"),
    17: _l(
        "Lavorazione alimenti e tabacco",
        "Lebensmittel- und Tabakverarbeitung",
        "Transformation alimentaire et tabac",
        "Procesamiento de alimentos y tabaco",
        "Przetwórstwo spożywcze i tytoniowe",
        "Food and Tobacco Processing",
    ),
    30: _l(
        "Trasporti", "Transportwesen", "Transports", "Transporte", "Transport", "Transportation"
    ),
    31: _l(
        "Servizi di pubblica utilità",
        "Energieversorgung",
        "Production et distribution d'énergie",
        "Servicios públicos",
        "Energetyka i media",
        "Utility Creation and Distribution",
    ),
    33: _l(
        "Commercio all'ingrosso",
        "Großhandel",
        "Commerce de gros",
        "Venta al por mayor",
        "Handel hurtowy",
        "Wholesale",
    ),
}
LEAD_SOURCE = {
    1: _l("Pubblicità", "Anzeige", "Publicité", "Anuncio", "Reklama", "Advertisement"),
    2: _l(
        "Segnalazione dipendente",
        "Empfehlung durch Mitarbeiter",
        "Recommandation d'un employé",
        "Referencia de empleado",
        "Polecenie pracownika",
        "Employee Referral",
    ),
    3: _l(
        "Segnalazione esterna",
        "Externe Empfehlung",
        "Recommandation externe",
        "Referencia externa",
        "Polecenie zewnętrzne",
        "External Referral",
    ),
    4: _l("Partner", "Partner", "Partenaire", "Socio", "Partner", "Partner"),
    5: _l(
        "Pubbliche relazioni",
        "Öffentlichkeitsarbeit",
        "Relations publiques",
        "Relaciones públicas",
        "Public relations",
        "Public Relations",
    ),
    6: _l("Seminario", "Seminar", "Séminaire", "Seminario", "Seminarium", "Seminar"),
    7: _l("Fiera", "Messe", "Salon professionnel", "Feria comercial", "Targi", "Trade Show"),
    8: _l("Web", "Web", "Web", "Web", "Internet", "Web"),
    9: _l(
        "Passaparola",
        "Mundpropaganda",
        "Bouche à oreille",
        "Boca a boca",
        "Poczta pantoflowa",
        "Word of Mouth",
    ),
    10: _l("Altro", "Sonstiges", "Autre", "Otro", "Inne", "Other"),
}
SALES_STAGE = {
    0: _l(
        "Qualifica", "Qualifizierung", "Qualification", "Calificación", "Kwalifikacja", "Qualify"
    ),
    1: _l("Sviluppo", "Entwicklung", "Développement", "Desarrollo", "Rozwój", "Develop"),
    2: _l("Proposta", "Angebot", "Proposition", "Propuesta", "Propozycja", "Propose"),
    3: _l("Chiusura", "Abschluss", "Clôture", "Cierre", "Zamknięcie", "Close"),
}

SCHEMAS: dict[str, EntitySchema] = {
    s.name: s
    for s in (
        _entity(
            "account",
            "accounts",
            "accountid",
            "name",
            _l("Cliente", "Firma", "Compte", "Cuenta", "Konto", "Account"),
            {
                "name": _s(160, True),
                "accountnumber": _s(20, True),
                "telephone1": FieldSpec("phone", 50, searchable=True),
                "emailaddress1": FieldSpec("email", 100, searchable=True),
                "address1_line1": _s(250, True),
                "address1_city": _s(80, True),
                "address1_postalcode": _s(20, True),
                "address1_country": _s(80),
                "industrycode": FieldSpec("choice", options=INDUSTRY),
                "revenue": FieldSpec("money"),
                "numberofemployees": FieldSpec("int"),
                "primarycontactid": FieldSpec("lookup", target=("contact",)),
                "transactioncurrencyid": FieldSpec("lookup", target=("transactioncurrency",)),
                "description": FieldSpec("text", 2000),
                "statecode": FieldSpec("choice", options=STATE_ACTIVE),
            },
        ),
        _entity(
            "contact",
            "contacts",
            "contactid",
            "fullname",
            _l("Contatto", "Kontakt", "Contact", "Contacto", "Kontakt", "Contact"),
            {
                "firstname": _s(50, True),
                "lastname": _s(50, True),
                "fullname": _s(160, True),
                "jobtitle": _s(100, True),
                "emailaddress1": FieldSpec("email", 100, searchable=True),
                "mobilephone": FieldSpec("phone", 50, searchable=True),
                "telephone1": FieldSpec("phone", 50, searchable=True),
                "address1_city": _s(80, True),
                "parentcustomerid": FieldSpec("lookup", target=("account", "contact")),
                "statecode": FieldSpec("choice", options=STATE_ACTIVE),
            },
        ),
        _entity(
            "lead",
            "leads",
            "leadid",
            "fullname",
            _l("Lead", "Lead", "Prospect", "Cliente potencial", "Potencjalny klient", "Lead"),
            {
                "subject": _s(300, True),
                "firstname": _s(50, True),
                "lastname": _s(50, True),
                "fullname": _s(160, True),
                "companyname": _s(100, True),
                "emailaddress1": FieldSpec("email", 100, searchable=True),
                "telephone1": FieldSpec("phone", 50, searchable=True),
                "address1_city": _s(80, True),
                "leadsourcecode": FieldSpec("choice", options=LEAD_SOURCE),
                "statecode": FieldSpec(
                    "choice",
                    options={
                        0: _l("Aperto", "Offen", "Ouvert", "Abierto", "Otwarty", "Open"),
                        1: _l(
                            "Qualificato",
                            "Qualifiziert",
                            "Qualifié",
                            "Calificado",
                            "Zakwalifikowany",
                            "Qualified",
                        ),
                        2: _l(
                            "Squalificato",
                            "Disqualifiziert",
                            "Disqualifié",
                            "Descalificado",
                            "Zdyskwalifikowany",
                            "Disqualified",
                        ),
                    },
                ),
            },
        ),
        _entity(
            "opportunity",
            "opportunities",
            "opportunityid",
            "name",
            _l(
                "Opportunità",
                "Verkaufschance",
                "Opportunité",
                "Oportunidad",
                "Szansa",
                "Opportunity",
            ),
            {
                "name": _s(300, True),
                "customerid": FieldSpec("lookup", target=("account", "contact")),
                "parentaccountid": FieldSpec("lookup", target=("account",)),
                "estimatedvalue": FieldSpec("money"),
                "closeprobability": FieldSpec("int"),
                "salesstage": FieldSpec("choice", options=SALES_STAGE),
                "stepname": _s(200),
                "estimatedclosedate": FieldSpec("date"),
                "description": FieldSpec("text", 2000),
                "statecode": FieldSpec(
                    "choice",
                    options={
                        0: _l("Aperta", "Offen", "Ouverte", "Abierta", "Otwarta", "Open"),
                        1: _l("Vinta", "Gewonnen", "Gagnée", "Ganada", "Wygrana", "Won"),
                        2: _l("Persa", "Verloren", "Perdue", "Perdida", "Przegrana", "Lost"),
                    },
                ),
            },
        ),
        _entity(
            "quote",
            "quotes",
            "quoteid",
            "name",
            _l("Offerta", "Angebot", "Devis", "Oferta", "Oferta", "Quote"),
            {
                "name": _s(300, True),
                "quotenumber": _s(100, True),
                "totalamount": FieldSpec("money"),
                "opportunityid": FieldSpec("lookup", target=("opportunity",)),
                "customerid": FieldSpec("lookup", target=("account", "contact")),
                "description": FieldSpec("text", 2000),
                "statecode": FieldSpec(
                    "choice",
                    options={
                        0: _l("Bozza", "Entwurf", "Brouillon", "Borrador", "Szkic", "Draft"),
                        1: _l("Attiva", "Aktiv", "Active", "Activa", "Aktywna", "Active"),
                        2: _l("Vinta", "Gewonnen", "Gagnée", "Ganada", "Wygrana", "Won"),
                        3: _l("Chiusa", "Geschlossen", "Fermée", "Cerrada", "Zamknięta", "Closed"),
                    },
                ),
            },
        ),
        _entity(
            "appointment",
            "appointments",
            "activityid",
            "subject",
            _l("Appuntamento", "Termin", "Rendez-vous", "Cita", "Spotkanie", "Appointment"),
            {
                "subject": _s(200, True),
                "scheduledstart": FieldSpec("datetime"),
                "scheduledend": FieldSpec("datetime"),
                "location": _s(200, True),
                "isalldayevent": FieldSpec("bool"),
                "regardingobjectid": FieldSpec(
                    "lookup", target=("account", "contact", "opportunity")
                ),
                "description": FieldSpec("text", 2000),
                "statecode": FieldSpec(
                    "choice",
                    options={
                        0: _l("Aperto", "Offen", "Ouvert", "Abierta", "Otwarte", "Open"),
                        1: _l(
                            "Completato",
                            "Abgeschlossen",
                            "Terminé",
                            "Completada",
                            "Zakończone",
                            "Completed",
                        ),
                        2: _l(
                            "Annullato", "Abgesagt", "Annulé", "Cancelada", "Anulowane", "Canceled"
                        ),
                        3: _l(
                            "Pianificato",
                            "Geplant",
                            "Planifié",
                            "Programada",
                            "Zaplanowane",
                            "Scheduled",
                        ),
                    },
                ),
            },
        ),
    )
}

ENTITY_NAMES: tuple[str, ...] = tuple(SCHEMAS)


def schema(entity: str) -> EntitySchema:
    """The schema of ``entity``.

    Raises:
        UnknownEntityError: not one of the synced entities.
    """
    try:
        return SCHEMAS[entity]
    except KeyError:
        raise UnknownEntityError(f"unknown entity {entity[:64]!r}", entity=entity[:64]) from None


# -- value validation -------------------------------------------------------------------

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_DATETIME_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:\d{2})$"
)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}$")
_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
_MAX_MONEY = 922_337_203_685_477.0  # Dynamics money range


def is_uuid(value: object) -> bool:
    """True if ``value`` is a canonical lower-case UUID string."""
    return isinstance(value, str) and _UUID_RE.match(value) is not None


def _bad(entity: str, name: str, why: str) -> InvalidFieldValueError:
    return InvalidFieldValueError(f"{entity}.{name}: {why}", entity=entity, field=name)


def _check_string(spec: FieldSpec, value: Any) -> str | None:
    if not isinstance(value, str):
        return "expected a string"
    if len(value) > spec.max_length:
        return f"longer than {spec.max_length} characters"
    if spec.kind == "email" and value and not _EMAIL_RE.match(value):
        return "not an e-mail address"
    return None


def _check_int(spec: FieldSpec, value: Any) -> str | None:
    if type(value) is not int or not -(2**31) <= value < 2**31:
        return "expected a 32-bit integer"
    if spec.kind == "choice" and value not in spec.options:
        return f"{value} is not an option"
    return None


def _check_number(spec: FieldSpec, value: Any) -> str | None:
    if type(value) not in (int, float) or value != value or abs(value) > _MAX_MONEY:
        return "expected a finite number"
    return None


def _check_bool(spec: FieldSpec, value: Any) -> str | None:
    return None if type(value) is bool else "expected true or false"


def _check_datetime(spec: FieldSpec, value: Any) -> str | None:
    if isinstance(value, str) and _DATETIME_RE.match(value):
        return None
    return "expected an ISO-8601 date-time with offset"


def _check_date(spec: FieldSpec, value: Any) -> str | None:
    return None if isinstance(value, str) and _DATE_RE.match(value) else "expected an ISO-8601 date"


def _check_lookup(spec: FieldSpec, value: Any) -> str | None:
    return None if is_uuid(value) else "expected a record id (UUID)"


def _check_country(spec: FieldSpec, value: Any) -> str | None:
    if isinstance(value, str) and _COUNTRY_RE.match(value):
        return None
    return "expected an ISO 3166 alpha-2 country code"


# One checker per kind, looked up once per value: validation runs for every field of
# every mutation and every upstream row, so it avoids a chain of kind comparisons.
_CHECKS: dict[str, Callable[[FieldSpec, Any], str | None]] = {
    "string": _check_string,
    "text": _check_string,
    "phone": _check_string,
    "email": _check_string,
    "int": _check_int,
    "choice": _check_int,
    "decimal": _check_number,
    "money": _check_number,
    "bool": _check_bool,
    "datetime": _check_datetime,
    "date": _check_date,
    "lookup": _check_lookup,
    "country": _check_country,
}


def check_value(entity: str, name: str, spec: FieldSpec, value: Any) -> None:
    """Validate one field value against its spec; ``None`` clears a field and is always valid.

    Raises:
        InvalidFieldValueError: wrong type, too long, or not an allowed option.
    """
    if value is not None:
        why = _CHECKS[spec.kind](spec, value)
        if why is not None:
            raise _bad(entity, name, why)


def validate_fields(entity: str, fields: dict[str, Any], *, allow_system: bool = False) -> None:
    """Validate a set of field values for ``entity``.

    Args:
        entity: the entity name.
        fields: field name to value.
        allow_system: accept system fields (only for upstream writes from Dynamics).

    Raises:
        UnknownEntityError, UnknownFieldError, InvalidFieldValueError.
    """
    s = schema(entity)
    specs = s.fields
    checks = _CHECKS
    for name, value in fields.items():
        spec = specs.get(name) or s.spec(name)
        if spec.system and not allow_system:
            raise _bad(entity, name, "is maintained by the server")
        if value is not None:
            why = checks[spec.kind](spec, value)
            if why is not None:
                raise _bad(entity, name, why)


_WIRE_TYPES: dict[str, Any] = {
    "string": str,
    "text": str,
    "phone": str,
    "email": str,
    "country": str,
    "int": int,
    "choice": int,
    "decimal": float,
    "money": float,
    "bool": bool,
    "datetime": str,
    "date": str,
    "lookup": str,
}


def _field_struct(s: EntitySchema) -> type[msgspec.Struct]:
    cls_name = "".join(part.capitalize() for part in s.name.split("_")) + "Fields"
    return msgspec.defstruct(
        cls_name,
        [
            (n, _WIRE_TYPES[f.kind] | None | msgspec.UnsetType, msgspec.UNSET)
            for n, f in s.fields.items()
        ],
        kw_only=True,
        omit_defaults=True,
        forbid_unknown_fields=True,
    )


FIELD_STRUCTS: dict[str, type[msgspec.Struct]] = {n: _field_struct(s) for n, s in SCHEMAS.items()}
"""Typed structs per entity (every field optional), for typed decoding of field maps."""


def option_label(entity: str, name: str, value: int, language: str) -> str | None:
    """The label of an option-set value in ``language`` (falling back to English)."""
    spec = schema(entity).fields.get(name)
    if spec is None or value not in spec.options:
        return None
    labels = spec.options[value]
    return labels.get(language) or labels["en"]
