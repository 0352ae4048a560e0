"""Deterministic, multilingual demo records for the local stack.

A small dealer network in Italy, Poland, Germany, France and Spain: accounts, contacts,
leads, opportunities, quotes and appointments with local names, cities, phone numbers
and texts. Records are owned by the dev signer's demo users (``backend/auth/dev_signer``)
and by a few colleagues who have no demo token, so each profile shows what it should:

* ``marco.rossi`` (sales rep, IT) and ``anna.kowalska`` (sales rep, PL) see their own
  records only; a colleague's records in the same territory stay invisible to them;
* ``jonas.weber`` (service technician, DE-BY) sees the territory's customers and owns
  appointments;
* ``claire.martin`` (dealer manager, FR-IDF and FR-ARA) sees both territories, including
  records her reps own;
* ``lucia.garcia`` (admin) sees every country.

Everything is derived from fixed seeds (ids are UUIDv5, clocks are fixed upstream clocks),
so loading twice gives the same batches, and the applier's batch idempotency makes a
second load a no-op. The data enters through the applier's upstream path like a Dynamics
import would: :func:`demo_batches` builds the :class:`~sync_protocol.changesets.UpstreamBatch`
messages.
"""

from __future__ import annotations

import random
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any

from backend.auth.dev_signer import DEMO_USERS
from sync_protocol.changesets import Mutation, UpstreamBatch
from sync_protocol.entities import INDUSTRY, LEAD_SOURCE
from sync_protocol.hlc import HLC

INDUSTRY_CODES = tuple(INDUSTRY)
LEAD_SOURCE_CODES = tuple(LEAD_SOURCE)

DEMO_VERSION = 2
"""Bump when the data changes: batch ids include it, so a changed data set loads again."""

DEMO_SOURCE = "demo"
DEMO_WALL_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z: older than any device edit
_NAMESPACE = uuid.UUID("6b1d7c52-0f4e-4c1f-9a3e-5d2b8c7e1a90")


@dataclass(frozen=True, slots=True)
class Locale:
    """One country's vocabulary."""

    country: str
    language: str
    phone_prefix: str
    cities: tuple[tuple[str, str], ...]  # (city, postal code)
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    company_forms: tuple[str, ...]
    company_words: tuple[str, ...]
    streets: tuple[str, ...]
    job_titles: tuple[str, ...]
    lead_subjects: tuple[str, ...]
    opportunity_names: tuple[str, ...]
    appointment_subjects: tuple[str, ...]
    note: str
    domain: str


LOCALES: dict[str, Locale] = {
    "IT": Locale(
        "IT",
        "it",
        "+39",
        (("Milano", "20121"), ("Torino", "10121"), ("Genova", "16121"), ("Bergamo", "24121")),
        ("Giulia", "Luca", "Francesca", "Matteo", "Chiara", "Alessandro", "Sofia", "Lorenzo"),
        ("Bianchi", "Ferrari", "Esposito", "Romano", "Colombo", "Ricci", "Marino", "Greco"),
        ("S.p.A.", "S.r.l.", "& Figli"),
        ("Meccanica", "Agricola", "Trasporti", "Edilizia", "Alimentari", "Tessile"),
        ("Via Roma", "Corso Garibaldi", "Via Dante", "Piazza Duomo"),
        ("Direttore acquisti", "Responsabile tecnico", "Titolare", "Amministratore delegato"),
        ("Rinnovo flotta trattori", "Richiesta preventivo ricambi", "Visita in fiera EIMA"),
        ("Fornitura macchine movimento terra", "Contratto di assistenza annuale"),
        ("Visita cliente", "Manutenzione programmata", "Presentazione nuova gamma"),
        "Cliente storico, preferisce essere contattato al mattino.",
        "esempio.it",
    ),
    "PL": Locale(
        "PL",
        "pl",
        "+48",
        (("Warszawa", "00-001"), ("Radom", "26-600"), ("Płock", "09-400"), ("Siedlce", "08-110")),
        ("Małgorzata", "Łukasz", "Agnieszka", "Paweł", "Katarzyna", "Michał", "Zofia", "Jakub"),
        ("Nowak", "Wiśniewski", "Wójcik", "Kamińska", "Lewandowski", "Zieliński", "Szymańska"),
        ("Sp. z o.o.", "S.A.", "Sp.j."),
        ("Maszyny", "Rolnictwo", "Budownictwo", "Transport", "Handel", "Usługi"),
        ("ul. Marszałkowska", "ul. Długa", "al. Jerozolimskie", "ul. Żelazna"),
        ("Dyrektor zakupów", "Kierownik serwisu", "Właściciel", "Prezes zarządu"),
        ("Wymiana floty ciągników", "Zapytanie o części zamienne", "Spotkanie na targach"),
        ("Dostawa maszyn budowlanych", "Roczna umowa serwisowa"),
        ("Wizyta u klienta", "Przegląd okresowy", "Prezentacja nowej oferty"),
        "Stały klient, woli kontakt telefoniczny przed południem.",
        "przyklad.pl",
    ),
    "DE": Locale(
        "DE",
        "de",
        "+49",
        (("München", "80331"), ("Augsburg", "86150"), ("Nürnberg", "90402"), ("Passau", "94032")),
        ("Lukas", "Anna", "Jürgen", "Sabine", "Maximilian", "Katharina", "Stefan", "Lena"),
        ("Müller", "Schmidt", "Schneider", "Fischer", "Bauer", "Hoffmann", "Schäfer", "Koch"),
        ("GmbH", "AG", "GmbH & Co. KG"),
        ("Landtechnik", "Maschinenbau", "Bau", "Logistik", "Agrarhandel", "Metallwerk"),
        ("Hauptstraße", "Bahnhofstraße", "Maximilianstraße", "Gartenweg"),
        ("Einkaufsleiter", "Technischer Leiter", "Inhaber", "Geschäftsführer"),
        ("Erneuerung Traktorflotte", "Anfrage Ersatzteile", "Messekontakt Agritechnica"),
        ("Lieferung Baumaschinen", "Jährlicher Wartungsvertrag"),
        ("Kundenbesuch", "Wartungstermin", "Vorführung neue Baureihe"),
        "Langjähriger Kunde, bevorzugt Anrufe am Vormittag.",
        "beispiel.de",
    ),
    "FR": Locale(
        "FR",
        "fr",
        "+33",
        (("Paris", "75001"), ("Versailles", "78000"), ("Lyon", "69001"), ("Grenoble", "38000")),
        ("Camille", "Hélène", "François", "Léa", "Amélie", "Thibault", "Élodie", "Jérôme"),
        ("Dubois", "Lefèvre", "Moreau", "Girard", "Rousseau", "Faure", "Mercier", "Lemoine"),
        ("SA", "SARL", "SAS"),
        ("Agricole", "Mécanique", "Bâtiment", "Transports", "Équipements", "Négoce"),
        ("rue de Rivoli", "avenue Foch", "boulevard Haussmann", "place Bellecour"),
        ("Directeur des achats", "Responsable technique", "Gérant", "Président"),
        ("Renouvellement de la flotte", "Demande de pièces détachées", "Contact au SIMA"),
        ("Livraison d'engins de chantier", "Contrat de maintenance annuel"),
        ("Visite client", "Entretien programmé", "Présentation de la gamme"),
        "Client fidèle, préfère être appelé le matin.",
        "exemple.fr",
    ),
    "ES": Locale(
        "ES",
        "es",
        "+34",
        (("Madrid", "28001"), ("Alcalá de Henares", "28801"), ("Getafe", "28901")),
        ("Lucía", "Martín", "Sofía", "Hugo", "Carmen", "Alejandro", "Paula", "Íñigo"),
        ("García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez", "Pérez"),
        ("S.A.", "S.L.", "S.L.U."),
        ("Agrícola", "Maquinaria", "Construcciones", "Transportes", "Comercial", "Talleres"),
        ("Calle Mayor", "Gran Vía", "Paseo de la Castellana", "Calle de Alcalá"),
        ("Director de compras", "Jefe de taller", "Propietario", "Director general"),
        ("Renovación de la flota", "Consulta de recambios", "Contacto en FIMA"),
        ("Suministro de maquinaria de obra", "Contrato de mantenimiento anual"),
        ("Visita al cliente", "Mantenimiento programado", "Presentación de la gama"),
        "Cliente de confianza, prefiere llamadas por la mañana.",
        "ejemplo.es",
    ),
}


@dataclass(frozen=True, slots=True)
class Owner:
    """Who owns a slice of the demo data, and in which territory."""

    user: str
    territory: str
    country: str
    demo_login: str = ""


def _colleague(name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"colleague:{name}"))


def _owners() -> list[Owner]:
    u = DEMO_USERS
    return [
        Owner(u["marco.rossi"].sub, "IT-NW", "IT", "marco.rossi"),
        Owner(_colleague("it-nw-2"), "IT-NW", "IT"),  # invisible to marco (isolation)
        Owner(u["anna.kowalska"].sub, "PL-MZ", "PL", "anna.kowalska"),
        Owner(_colleague("de-by-1"), "DE-BY", "DE"),  # jonas sees it by territory
        Owner(u["jonas.weber"].sub, "DE-BY", "DE", "jonas.weber"),
        Owner(_colleague("fr-idf-1"), "FR-IDF", "FR"),  # claire sees both FR territories
        Owner(_colleague("fr-ara-1"), "FR-ARA", "FR"),
        Owner(u["claire.martin"].sub, "FR-IDF", "FR", "claire.martin"),
        Owner(_colleague("es-md-1"), "ES-MD", "ES"),  # only the admin sees Spain
    ]


def _ascii(text: str) -> str:
    table = str.maketrans({"ł": "l", "Ł": "L", "ß": "ss", "ø": "o", "đ": "d"})
    folded = unicodedata.normalize("NFKD", text.translate(table))
    return "".join(c for c in folded if c.isascii() and (c.isalnum() or c in ".-")).lower()


def _id(entity: str, owner: Owner, n: int) -> str:
    return str(
        uuid.uuid5(_NAMESPACE, f"v{DEMO_VERSION}:{entity}:{owner.user}:{owner.territory}:{n}")
    )


class _Builder:
    """Builds one owner's records with a private, seeded random generator."""

    def __init__(self, owner: Owner, counter_start: int) -> None:
        self.owner = owner
        self.loc = LOCALES[owner.country]
        self.rng = random.Random(f"{owner.user}:{owner.territory}")
        self.counter = counter_start
        self.mutations: list[Mutation] = []

    def add(self, entity: str, id: str, fields: dict[str, Any]) -> None:
        self.counter += 1
        base = {
            "ownerid": self.owner.user,
            "territory": self.owner.territory,
            "country": self.owner.country,
        }
        self.mutations.append(
            Mutation(
                entity=entity,
                id=id,
                clock=HLC(DEMO_WALL_MS, self.counter, f"upstream:{DEMO_SOURCE}"),
                fields={**fields, **base},
                etag=f'W/"{1000 + self.counter}"',
            )
        )

    def pick(self, values: tuple[str, ...]) -> str:
        return self.rng.choice(values)

    def phone(self) -> str:
        digits = "".join(str(self.rng.randrange(10)) for _ in range(9))
        return f"{self.loc.phone_prefix} {digits[:3]} {digits[3:6]} {digits[6:]}"

    def person(self) -> tuple[str, str]:
        return self.pick(self.loc.first_names), self.pick(self.loc.last_names)

    def email(self, first: str, last: str) -> str:
        return f"{_ascii(first)}.{_ascii(last)}@{self.loc.domain}"

    def build(self, accounts: int) -> list[Mutation]:
        o, loc = self.owner, self.loc
        for a in range(accounts):
            account_id = _id("account", o, a)
            city, postal = loc.cities[a % len(loc.cities)]
            company = (
                f"{self.pick(loc.company_words)} {self.pick(loc.last_names)} "
                f"{self.pick(loc.company_forms)}"
            )
            contact_ids = [_id("contact", o, a * 10 + c) for c in range(2)]
            self.add(
                "account",
                account_id,
                {
                    "name": company,
                    "accountnumber": f"{o.country}-{o.territory[3:]}-{a + 1:04d}",
                    "telephone1": self.phone(),
                    "emailaddress1": f"info@{_ascii(company.split()[0])}{a + 1}.{loc.domain}",
                    "address1_line1": f"{self.pick(loc.streets)} {self.rng.randrange(1, 120)}",
                    "address1_city": city,
                    "address1_postalcode": postal,
                    "address1_country": o.country,
                    "industrycode": self.rng.choice(INDUSTRY_CODES),
                    "revenue": float(self.rng.randrange(200, 50_000) * 1000),
                    "numberofemployees": self.rng.randrange(5, 900),
                    "primarycontactid": contact_ids[0],
                    "description": loc.note,
                    "statecode": 0,
                },
            )
            for c, contact_id in enumerate(contact_ids):
                first, last = self.person()
                self.add(
                    "contact",
                    contact_id,
                    {
                        "firstname": first,
                        "lastname": last,
                        "fullname": f"{first} {last}",
                        "jobtitle": loc.job_titles[(a + c) % len(loc.job_titles)],
                        "emailaddress1": self.email(first, last),
                        "mobilephone": self.phone(),
                        "address1_city": city,
                        "parentcustomerid": account_id,
                        "statecode": 0,
                    },
                )
            opportunity_id = _id("opportunity", o, a)
            self.add(
                "opportunity",
                opportunity_id,
                {
                    "name": f"{loc.opportunity_names[a % len(loc.opportunity_names)]} - {city}",
                    "customerid": account_id,
                    "parentaccountid": account_id,
                    "estimatedvalue": float(self.rng.randrange(5, 400) * 1000),
                    "closeprobability": self.rng.choice((10, 25, 50, 75, 90)),
                    "salesstage": a % 4,
                    "estimatedclosedate": f"2025-{(a % 12) + 1:02d}-{(a % 27) + 1:02d}",
                    "statecode": 0,
                },
            )
            if a % 2 == 0:
                title = loc.opportunity_names[a % len(loc.opportunity_names)]
                self.add(
                    "quote",
                    _id("quote", o, a),
                    {
                        "name": f"{title} ({a + 1})",
                        "quotenumber": f"Q-{o.country}-{self.counter:05d}",
                        "totalamount": float(self.rng.randrange(5, 400) * 1000),
                        "opportunityid": opportunity_id,
                        "customerid": account_id,
                        "statecode": 1,
                    },
                )
            day = (a % 27) + 1
            self.add(
                "appointment",
                _id("appointment", o, a),
                {
                    "subject": f"{loc.appointment_subjects[a % len(loc.appointment_subjects)]}",
                    "scheduledstart": f"2025-03-{day:02d}T09:00:00Z",
                    "scheduledend": f"2025-03-{day:02d}T10:30:00Z",
                    "location": f"{self.pick(loc.streets)}, {city}",
                    "isalldayevent": False,
                    "regardingobjectid": account_id,
                    "statecode": 3,
                },
            )
        for n in range(max(2, accounts // 2)):
            first, last = self.person()
            city, _ = loc.cities[n % len(loc.cities)]
            self.add(
                "lead",
                _id("lead", o, n),
                {
                    "subject": loc.lead_subjects[n % len(loc.lead_subjects)],
                    "firstname": first,
                    "lastname": last,
                    "fullname": f"{first} {last}",
                    "companyname": f"{self.pick(loc.company_words)} {last}",
                    "emailaddress1": self.email(first, last),
                    "telephone1": self.phone(),
                    "address1_city": city,
                    "leadsourcecode": LEAD_SOURCE_CODES[n % len(LEAD_SOURCE_CODES)],
                    "statecode": 0,
                },
            )
        return self.mutations


def demo_batches(accounts_per_owner: int = 6) -> list[UpstreamBatch]:
    """The demo data as upstream batches, one per owner (deterministic).

    Args:
        accounts_per_owner: accounts per owner; each brings two contacts, an opportunity,
            an appointment, every other one a quote, and half as many leads.

    Returns:
        The batches, with ids ``demo-v<version>-<n>``.
    """
    batches = []
    counter = 0
    for n, owner in enumerate(_owners()):
        builder = _Builder(owner, counter)
        mutations = builder.build(accounts_per_owner)
        counter = builder.counter
        batches.append(
            UpstreamBatch(
                batch_id=f"demo-v{DEMO_VERSION}-{n}-{accounts_per_owner}",
                source=DEMO_SOURCE,
                mutations=mutations,
            )
        )
    return batches


def demo_record_count(accounts_per_owner: int = 6) -> int:
    """How many records :func:`demo_batches` holds."""
    return sum(len(b.mutations) for b in demo_batches(accounts_per_owner))
