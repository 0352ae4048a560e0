"""Client replica at scale: bulk upsert, offline search and indexed lookups.

Run: ``.venv/bin/python tests/benchmarks/client_search.py [--records 1000000]``.

Builds an encrypted replica of N realistic multilingual accounts and contacts (IT, DE,
FR, ES, PL names, cities, streets, e-mails, phones; one account per four contacts;
random UUID ids as Dynamics issues them), then reports:

- bulk upsert records/s of ``LocalDatabase.upsert_records`` (records + JSONB + search
  documents + field indexes), streamed in key order inside ``bulk_load()`` as the sync
  engine's bootstrap does (the final index rebuild counted), for a 100,000-record
  bootstrap into a fresh database (median of 3) and for the whole build; each against
  the baseline measured in the same run: raw sqlcipher ``executemany`` of the same rows
  (JSON-encoded, one transaction per 10,000) into the same ``records`` table without
  JSONB, field indexes or search. Also one random-id-order load without ``bulk_load``
  (an incremental feed) and raw inserts into a ``WITHOUT ROWID`` layout for reference;
- search latency p50/p95/p99 over 1,000 queries typed as users type them (prefixes,
  whole names, ASCII-folded diacritics, name + city, e-mail and phone fragments, some
  two-letter prefixes), median of 3 passes;
- indexed lookups p99 (``find_records``): the contacts of an account, 50 accounts of a
  city; and a page of an account's contacts through the local API (``LocalStore.query``).
  Records carry the field names of ``sync_protocol.entities`` (``parentcustomerid``,
  ``ownerid``, as synced records do) and the run stops unless every contact has a key in
  the parent-account index and both lookups are planned on their partial index;
- peak RSS and database size;
- the one-time repair at open of a replica from before schema version 5 (the same
  replica with its field indexes turned back into the Web API-named ones): migration 5
  rebuilding them (``--no-migration`` skips it).

Goals on 1,000,000 records: search p99 < 20 ms, indexed query p99 < 5 ms, bootstrap
>= 30,000 records/s.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import msgspec
import sqlcipher3

from client_sdk.database import (
    DEFAULT_CACHE_KIB,
    DEFAULT_FIELD_INDEXES,
    LEGACY_FIELD_INDEXES,
    LocalDatabase,
    LocalRecord,
    field_expression,
    field_index_name,
    field_index_statement,
)
from client_sdk.keys import KeystoreKey
from client_sdk.local import DeviceClock, LocalStore
from client_sdk.sync import REPLICA_MIGRATIONS
from sync_protocol.entities import SCHEMAS, validate_fields
from tests.benchmarks._report import report

CHUNK = 10_000
INDUSTRY_CODES = sorted(SCHEMAS["account"].fields["industrycode"].options)
KEK = KeystoreKey(b"\x42" * 32)


def _words(text: str) -> list[str]:
    """Space-separated words; "_" stands for a space inside one (e.g. "De_Luca")."""
    return [w.replace("_", " ") for w in text.split()]


COUNTRIES: dict[str, dict[str, Any]] = {
    "IT": {
        "first": _words(
            "Marco Giuseppe Luca Francesco Alessandro Andrea Matteo Lorenzo Davide Simone Giulia "
            "Francesca Chiara Sara Martina Valentina Elena Alessia Federica Ilaria Niccolò Nicolò "
            "Mattia Gabriele Riccardo Tommaso Stefano Paolo Roberta Lucia"
        ),
        "last": _words(
            "Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco Bruno Gallo "
            "Conti De_Luca Mancini Costa Giordano Rizzo Lombardi Moretti Barbieri Fontana Santoro "
            "Mariani Rinaldi Caruso Ferrara Galli Martini Leone Longo Gentile Martinelli Vitale "
            "Lombardo Serra Coppola De_Santis D'Angelo Marchetti Parisi Villa Conte Ferraro "
            "Fabbri Bianco Marini Grasso Valentini Messina Sala De_Angelis Gatti Pellegrini "
            "Palumbo Sanna Farina Rizzi Monti Cattaneo Morelli Amato Silvestri Mazza Testa Grassi "
            "Pellegrino Carbone Giuliani Benedetti Barone Rossetti Caputo Montanari Guerra "
            "Palmieri Bernardi Martino Fiore De_Rosa Ferri Lucchetti Cocco Orlando Basile Cortese "
            "Negri D'Amico Sorrentino Ferretti Fumagalli Gentili Niccolì"
        ),
        "cities": _words(
            "Milano Roma Torino Napoli Bologna Firenze Genova Venezia Verona Padova Brescia "
            "Bergamo Città_di_Castello Forlì Cantù Sant'Angelo_Lodigiano Cefalù Paternò Bari "
            "Palermo Catania Trieste Parma Modena Reggio_Emilia Perugia Ancona Pescara Cagliari "
            "Sassari Udine Lecce Taranto Salerno Como Monza Agrigento"
        ),
        "streets": ["Via Roma", "Corso Italia", "Via Garibaldi", "Piazza Duomo", "Via Cavour"],
        "company": ["S.p.A.", "S.r.l.", "S.n.c.", "& Figli", "Group"],
        "domains": ["gmail.com", "libero.it", "tiscali.it", "outlook.it"],
        "cc": "39",
        "phone": lambda r: f"+39 0{r.randrange(2, 9)} {r.randrange(10**7):07d}",
        "mobile": lambda r: f"+39 3{r.randrange(20, 99)} {r.randrange(10**7):07d}",
    },
    "DE": {
        "first": _words(
            "Jürgen Günter Hans Klaus Stefan Michael Thomas Andreas Uwe Jörg Björn Sören Anna "
            "Jürgen Katrin Sabine Ute Jutta Käthe Bärbel Sören Lukas Jonas Maximilian Lena Lea "
            "Hannah Mia Sophie Frieda"
        ),
        "last": _words(
            "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Schäfer "
            "Koch Bauer Richter Klein Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger "
            "Hofmann Hartmann Lange Schmitt Werner Schmitz Krause Meier Lehmann Schmid Schulze "
            "Maier Köhler Herrmann König Walter Mayer Huber Kaiser Fuchs Peters Lang Scholz "
            "Möller Weiß Jung Hahn Schubert Vogel Friedrich Keller Günther Frank Berger Winkler "
            "Roth Beck Lorenz Baumann Franke Albrecht Schuster Simon Ludwig Böhm Winter Kraus "
            "Martin Schumacher Krämer Vogt Stein Jäger Otto Sommer Groß Seidel Heinrich Brandt "
            "Haas Schreiber Graf Schulte Dietrich Ziegler Kuhn Kühn Pohl Engel Horn Busch "
            "Bergmann Thomas Voigt Sauer Arnold Wolff Pfeiffer Strauß Großmann"
        ),
        "cities": _words(
            "Berlin Hamburg München Köln Frankfurt Stuttgart Düsseldorf Dortmund Essen Leipzig "
            "Bremen Dresden Hannover Nürnberg Duisburg Bochum Wuppertal Bielefeld Bonn Münster "
            "Mönchengladbach Göttingen Würzburg Lübeck Osnabrück Saarbrücken Tübingen Fürth "
            "Gießen Regensburg"
        ),
        "streets": ["Hauptstraße", "Schulstraße", "Gartenstraße", "Bahnhofstraße", "Dorfstraße"],
        "company": ["GmbH", "AG", "GmbH & Co. KG", "KG", "e.K."],
        "domains": ["web.de", "gmx.de", "t-online.de", "gmail.com"],
        "cc": "49",
        "phone": lambda r: f"+49 {r.randrange(30, 899)} {r.randrange(10**7):07d}",
        "mobile": lambda r: f"+49 15{r.randrange(10, 99)} {r.randrange(10**7):07d}",
    },
    "FR": {
        "first": _words(
            "François Jérôme Hélène Chloé Zoé Émilie Céline Agnès Loïc Gaël Noël Benoît Thérèse "
            "Léa Inès Maëlle Mathéo Raphaël Jean Pierre Marie Nicolas Julien Camille Louis Hugo "
            "Théo Clément Sébastien Stéphane"
        ),
        "last": _words(
            "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent "
            "Lefèbvre Michel Garcia David Bertrand Roux Vincent Fournier Morel Girard André "
            "Lefèvre Mercier Dupont Lambert Bonnet François Martinez Legrand Garnier Faure "
            "Rousseau Blanc Guérin Muller Henry Roussel Nicolas Perrin Morin Mathieu Clément "
            "Gauthier Dumont Lopez Fontaine Chevalier Robin Masson Sanchez Gérard Nguyen Boyer "
            "Denis Lemaire Duval Joly Gautier Roger Roche Roy Noël Meyer Lucas Meunier Jean Pérez "
            "Marchand Dufour Blanchard Marie Barbier Brun Dumas Brunet Schmitt Leroux Colin "
            "Fernandez Pierre Renard Arnaud Rolland Caron Aubert Giraud Leclerc Vidal Bourgeois "
            "Renaud Lemoine Picard Gaillard Philippe Leclercq Lacroix Fabre Dupuis Olivier "
            "Rodriguez Da Silva Hubert Louis Charles Guillot Rivière Le Gall Guillaume Adam Rey "
            "Moulin Gonzalez Berger Lecomte Ménard Fleury Deschamps Carpentier Julien Bénard"
        ),
        "cities": _words(
            "Paris Marseille Lyon Toulouse Nice Nantes Strasbourg Montpellier Bordeaux Lille "
            "Rennes Reims Le Havre Saint-Étienne Toulon Grenoble Dijon Angers Nîmes Villeurbanne "
            "Besançon Orléans Mulhouse Rouen Caen Nancy Argenteuil Montréal Béziers Créteil "
            "Valence Sète Évry Châlons Périgueux"
        ),
        "streets": ["Rue de la Paix", "Avenue Foch", "Rue Victor Hugo", "Boulevard Voltaire"],
        "company": ["SARL", "SA", "SAS", "et Fils", "Frères"],
        "domains": ["orange.fr", "free.fr", "laposte.net", "gmail.com"],
        "cc": "33",
        "phone": lambda r: f"+33 {r.randrange(1, 6)} {r.randrange(10**8):08d}",
        "mobile": lambda r: f"+33 {r.choice((6, 7))} {r.randrange(10**8):08d}",
    },
    "ES": {
        "first": _words(
            "José Jesús María Ángel Andrés Álvaro Adrián Sofía Lucía Martín Inés Raúl Víctor "
            "Óscar Iñaki Begoña Nuria Núria Íñigo Pilar Dolores Carmen Ramón Joaquín Sebastián "
            "Rubén Mónica Verónica Patricia Germán"
        ),
        "last": _words(
            "García Rodríguez González Fernández López Martínez Sánchez Pérez Gómez Martín "
            "Jiménez Ruiz Hernández Díaz Moreno Muñoz Álvarez Romero Alonso Gutiérrez Navarro "
            "Torres Domínguez Vázquez Ramos Gil Ramírez Serrano Blanco Molina Morales Suárez "
            "Ortega Delgado Castro Ortiz Rubio Marín Sanz Núñez Iglesias Medina Garrido Cortés "
            "Castillo Santos Lozano Guerrero Cano Prieto Méndez Cruz Calvo Gallego Vidal León "
            "Márquez Herrera Peña Flores Cabrera Campos Vega Fuentes Carrasco Diez Caballero "
            "Reyes Nieto Aguilar Pascual Santana Herrero Montero Lorenzo Hidalgo Giménez Ibáñez "
            "Ferrer Durán Santiago Benítez Vargas Mora Vicente Arias Carmona Crespo Román Pastor "
            "Soto Sáez Velasco Moya Soler Parra Esteban Bravo Gallardo Rojas Pardo Merino Franco "
            "Espinosa Izquierdo Lara Rivas Silva Rivera Casado Arroyo Redondo Camacho Rey Vera "
            "Otero Luque Galán Montes Ríos Sierra Segura Carrillo Marcos Marín Soriano Mendoza "
            "Robles Bernal Vila Valero Beltrán Peñalver Ibarra Zúñiga Muñiz Báez"
        ),
        "cities": _words(
            "Madrid Barcelona Valencia Sevilla Zaragoza Málaga Murcia Palma Bilbao Alicante "
            "Córdoba Valladolid Vigo Gijón Hospitalet Vitoria Coruña Granada Elche Oviedo "
            "Badalona Cartagena Terrassa Jerez Sabadell Móstoles Alcalá Pamplona Almería Cádiz "
            "León Logroño Salamanca Cáceres Jaén Ávila Castellón"
        ),
        "streets": ["Calle Mayor", "Avenida de España", "Calle Real", "Plaza de España"],
        "company": ["S.L.", "S.A.", "S.L.U.", "y Asociados", "Hermanos"],
        "domains": ["telefonica.net", "hotmail.es", "gmail.com", "yahoo.es"],
        "cc": "34",
        "phone": lambda r: f"+34 9{r.randrange(10, 99)} {r.randrange(10**6):06d}",
        "mobile": lambda r: f"+34 6{r.randrange(10, 99)} {r.randrange(10**6):06d}",
    },
    "PL": {
        "first": _words(
            "Łukasz Paweł Michał Wojciech Grzegorz Krzysztof Piotr Tomasz Jakub Mateusz "
            "Małgorzata Agnieszka Katarzyna Józef Zdzisław Bożena Grażyna Jadwiga Barbara Anna "
            "Ewa Zofia Elżbieta Żaneta Łucja Ryszard Sławomir Jarosław Mirosław Stanisław"
        ),
        "last": _words(
            "Nowak Kowalski Wiśniewski Wójcik Kowalczyk Kamiński Lewandowski Zieliński Szymański "
            "Woźniak Dąbrowski Kozłowski Jankowski Mazur Kwiatkowski Krawczyk Piotrowski "
            "Grabowski Nowakowski Pawłowski Michalski Nowicki Adamczyk Dudek Zając Wieczorek "
            "Jabłoński Król Majewski Olszewski Jaworski Wróbel Malinowski Pawlak Witkowski "
            "Walczak Stępień Górski Rutkowski Michalak Sikora Ostrowski Baran Duda Szewczyk "
            "Tomaszewski Pietrzak Marciniak Wróblewski Zalewski Jakubowski Jasiński Zawadzki "
            "Sadowski Bąk Chmielewski Włodarczyk Borkowski Czarnecki Sawicki Sokołowski Urbański "
            "Kubiak Maciejewski Szczepański Kucharski Wilk Kalinowski Lis Mazurek Wysocki Adamski "
            "Kaźmierczak Wasilewski Sobczak Czerwiński Andrzejewski Cieślak Głowacki Zakrzewski "
            "Kołodziej Sikorski Krajewski Gajewski Szymczak Szulc Baranowski Laskowski Brzeziński "
            "Makowski Ziółkowski Przybylski Żółw Brzęczyszczykiewicz Łuczak Żak Ślusarczyk "
            "Gałązka"
        ),
        "cities": _words(
            "Warszawa Kraków Łódź Wrocław Poznań Gdańsk Szczecin Bydgoszcz Lublin Białystok "
            "Katowice Gdynia Częstochowa Radom Toruń Sosnowiec Rzeszów Kielce Gliwice Olsztyn "
            "Zabrze Bielsko-Biała Bytom Zielona Góra Rybnik Ruda Śląska Opole Tychy Gorzów Elbląg "
            "Płock Wałbrzych Włocławek Tarnów Chorzów Koszalin Kalisz Legnica Grudziądz Słupsk "
            "Jaworzno Jastrzębie-Zdrój Nowy Sącz Jelenia Góra Siedlce Mysłowice Konin Piła "
            "Piotrków Inowrocław Lubin Ostrów Suwałki Stargard Gniezno Pruszków Ostrowiec Głogów "
            "Żory Zamość Pabianice Leszno Łomża Żyrardów"
        ),
        "streets": ["ul. Długa", "ul. Świętokrzyska", "ul. Piłsudskiego", "ul. Żeromskiego"],
        "company": ["Sp. z o.o.", "S.A.", "Sp.j.", "i Wspólnicy", "Spółka"],
        "domains": ["wp.pl", "onet.pl", "interia.pl", "o2.pl"],
        "cc": "48",
        "phone": lambda r: f"+48 {r.randrange(12, 95)} {r.randrange(10**7):07d}",
        "mobile": lambda r: (
            f"+48 {r.choice((5, 6, 7, 8))}{r.randrange(10, 99)} {r.randrange(10**6):06d}"
        ),
    },
}

COUNTRY_CODES = list(COUNTRIES)


def ascii_fold(text: str) -> str:
    """What a user types on a keyboard without the local layout."""
    text = text.replace("ł", "l").replace("Ł", "L").replace("ß", "ss")
    return "".join(
        ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch)
    )


def _slug(text: str) -> str:
    return "".join(ch for ch in ascii_fold(text).lower() if ch.isalnum())


_SPAN = 1 << 128


def _key_ordered_uuid(k: int, count: int, salt: int) -> str:
    """The k-th of ``count`` random-looking UUIDs that sort in k order (no list kept)."""
    step = _SPAN // count
    offset = ((k + 1) * 0x9E3779B97F4A7C15 ^ salt) % step
    # Version bits sit below bit 80 and steps are >= 2**108 apart: order is kept.
    return str(uuid.UUID(int=k * step + offset, version=4))


# Users who own records (``ownerid`` is a lookup: a systemuser UUID).
_OWNER_RND = random.Random(3)
OWNERS = [str(uuid.UUID(int=_OWNER_RND.getrandbits(128), version=4)) for _ in range(50)]


def _account(rnd: random.Random, rid: str, seq: int) -> LocalRecord:
    cc = rnd.choice(COUNTRY_CODES)
    c = COUNTRIES[cc]
    owner = OWNERS[rnd.randrange(50)]
    last = rnd.choice(c["last"])
    city = rnd.choice(c["cities"])
    name = f"{last} {rnd.choice(c['company'])}"
    if rnd.random() < 0.3:
        name = f"{last} {city} {rnd.choice(c['company'])}"
    fields = {
        "name": name,
        "accountnumber": f"{cc}-{seq:08d}",
        "telephone1": c["phone"](rnd),
        "emailaddress1": f"info@{_slug(last)}{rnd.randrange(1000)}.{cc.lower()}",
        "address1_line1": f"{rnd.choice(c['streets'])} {rnd.randrange(1, 200)}",
        "address1_city": city,
        "address1_postalcode": f"{rnd.randrange(10**5):05d}",
        "address1_country": cc,
        "industrycode": rnd.choice(INDUSTRY_CODES),
        "revenue": round(rnd.random() * 1e7, 2),
        "numberofemployees": rnd.randrange(1, 5000),
        "statecode": 0,
        "ownerid": owner,
        "country": cc,
    }
    return LocalRecord(
        entity="account",
        id=rid,
        version=1,
        seq=seq,
        fields=fields,
        channels=(f"owner:{owner}", f"country:{cc}"),
    )


def _contact(rnd: random.Random, rid: str, seq: int, parent: str) -> LocalRecord:
    cc = rnd.choice(COUNTRY_CODES)
    c = COUNTRIES[cc]
    owner = OWNERS[rnd.randrange(50)]
    first, last = rnd.choice(c["first"]), rnd.choice(c["last"])
    fields = {
        "fullname": f"{first} {last}",
        "firstname": first,
        "lastname": last,
        "jobtitle": rnd.choice(["Sales", "CEO", "Buyer", "CTO", "Technician", "Owner"]),
        "emailaddress1": f"{_slug(first)}.{_slug(last)}{rnd.randrange(100)}@"
        f"{rnd.choice(c['domains'])}",
        "telephone1": c["phone"](rnd),
        "mobilephone": c["mobile"](rnd),
        "address1_city": rnd.choice(c["cities"]),
        "parentcustomerid": parent,
        "statecode": 0,
        "ownerid": owner,
        "country": cc,
    }
    return LocalRecord(
        entity="contact",
        id=rid,
        version=1,
        seq=seq,
        fields=fields,
        channels=(f"owner:{owner}", f"country:{cc}"),
    )


def make_records(n: int, seed: int = 7, order: str = "key") -> Iterator[list[LocalRecord]]:
    """Chunks of accounts and contacts (1 account : 4 contacts), deterministic by seed.

    ``order="key"`` streams them sorted by (entity, id), as the server's bootstrap
    snapshot does; ``order="random"`` interleaves them in random id order, as an
    incremental feed would.
    """
    rnd = random.Random(seed)
    n_accounts = max(1, n // 5)
    n_contacts = n - n_accounts
    chunk: list[LocalRecord] = []

    def account_id(k: int) -> str:
        return _key_ordered_uuid(k, n_accounts, seed)

    if order == "key":
        stream: Iterator[LocalRecord] = itertools.chain(
            (_account(rnd, account_id(k), k + 1) for k in range(n_accounts)),
            (
                _contact(
                    rnd,
                    _key_ordered_uuid(j, max(1, n_contacts), seed + 1),
                    n_accounts + j + 1,
                    account_id(rnd.randrange(n_accounts)),
                )
                for j in range(n_contacts)
            ),
        )
    else:

        def interleaved() -> Iterator[LocalRecord]:
            recent: collections.deque[str] = collections.deque(maxlen=50)
            for i in range(n):
                rid = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
                if i % 5 == 0 or not recent:
                    recent.append(rid)
                    yield _account(rnd, rid, i + 1)
                else:
                    yield _contact(rnd, rid, i + 1, rnd.choice(recent))

        stream = interleaved()
    for record in stream:
        chunk.append(record)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def make_queries(db: LocalDatabase, count: int, seed: int = 11) -> list[str]:
    """Queries as users type them, drawn from what the replica contains."""
    rnd = random.Random(seed)
    queries: list[str] = []
    while len(queries) < count:
        c = COUNTRIES[rnd.choice(COUNTRY_CODES)]
        kind = rnd.random()
        first, last, city = rnd.choice(c["first"]), rnd.choice(c["last"]), rnd.choice(c["cities"])
        if kind < 0.30:
            q = last[: rnd.randrange(3, max(4, len(last) + 1))]
        elif kind < 0.45:
            q = f"{first} {last}"
        elif kind < 0.55:
            q = city if rnd.random() < 0.5 else city[: rnd.randrange(3, max(4, len(city) + 1))]
        elif kind < 0.65:
            q = f"{last} {city[:4]}"
        elif kind < 0.72:
            q = f"{first[:3]} {last[:3]}"
        elif kind < 0.80:
            q = f"{_slug(first)}.{_slug(last)[:4]}"
        elif kind < 0.87:
            q = rnd.choice(c["domains"]).split(".")[0]
        elif kind < 0.92:
            phone = c["mobile"](rnd)
            q = phone.split(" ")[1][:3] + " " + phone.split(" ")[2][:2]
        else:
            q = last[:2]
        queries.append(ascii_fold(q) if rnd.random() < 0.5 else q)
    return queries


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def time_calls(fn: Callable[[Any], Any], args: list[Any]) -> tuple[list[float], list[float]]:
    """Milliseconds per call: (wall clock, CPU time of this process)."""
    wall, cpu = [], []
    for a in args:
        t0, c0 = time.perf_counter(), time.process_time()
        fn(a)
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return wall, cpu


def build_ours(
    path: Path, n: int, order: str, cache_kib: int, bulk: bool = True
) -> tuple[float, float, LocalDatabase]:
    """Returns (records/s by wall clock, records/s by CPU time, the open database).

    ``bulk``: inside ``LocalDatabase.bulk_load()``, as the sync engine's bootstrap;
    the final index rebuild is part of the measured time.
    """
    db = LocalDatabase.create(path, KEK, migrations=REPLICA_MIGRATIONS, cache_kib=cache_kib)
    elapsed = cpu = 0.0
    load = db.bulk_load() if bulk else contextlib.nullcontext()
    t0, c0 = time.perf_counter(), time.process_time()
    load.__enter__()
    elapsed += time.perf_counter() - t0
    cpu += time.process_time() - c0
    for chunk in make_records(n, order=order):
        t0, c0 = time.perf_counter(), time.process_time()
        db.upsert_records(chunk)
        elapsed += time.perf_counter() - t0
        cpu += time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    load.__exit__(None, None, None)  # rebuilds the field indexes: part of the cost
    elapsed += time.perf_counter() - t0
    cpu += time.process_time() - c0
    return n / elapsed, n / cpu, db


RAW_LAYOUTS = {
    # The same table as LocalDatabase's, without JSONB, field indexes and search.
    "same table": "CREATE TABLE records(doc INTEGER PRIMARY KEY, entity TEXT NOT NULL,"
    " id TEXT NOT NULL, version INTEGER NOT NULL, seq INTEGER NOT NULL, fields BLOB NOT NULL,"
    " deleted INTEGER NOT NULL, channels TEXT NOT NULL, UNIQUE (entity, id))",
    # The clustered layout first considered (see client_sdk/database.py).
    "without rowid": "CREATE TABLE records(doc INTEGER, entity TEXT NOT NULL, id TEXT NOT NULL,"
    " version INTEGER NOT NULL, seq INTEGER NOT NULL, fields BLOB NOT NULL,"
    " deleted INTEGER NOT NULL, channels TEXT NOT NULL, PRIMARY KEY (entity, id)) WITHOUT ROWID",
}


def build_raw(path: Path, n: int, order: str, cache_kib: int, layout: str) -> tuple[float, float]:
    """Baseline: raw sqlcipher executemany of the same rows, one transaction per chunk."""
    conn = sqlcipher3.connect(str(path))
    conn.execute(f"PRAGMA key = \"x'{'42' * 32}'\"")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA cache_size = -{cache_kib}")
    conn.execute(RAW_LAYOUTS[layout])
    conn.commit()
    encode = msgspec.json.encode
    elapsed = cpu = 0.0
    done = 0
    for chunk in make_records(n, order=order):
        t0, c0 = time.perf_counter(), time.process_time()
        conn.executemany(
            "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    done + i,
                    r.entity,
                    r.id,
                    r.version,
                    r.seq,
                    encode(r.fields),
                    0,
                    encode(r.channels),
                )
                for i, r in enumerate(chunk)
            ],
        )
        conn.commit()
        done += len(chunk)
        elapsed += time.perf_counter() - t0
        cpu += time.process_time() - c0
    conn.close()
    for file in path.parent.glob(path.name + "*"):
        file.unlink()
    return n / elapsed, n / cpu


def check_records(n: int) -> None:
    """Fail unless the generated records are valid for the entity schema (so their field
    names are the ones synced records carry); checks the first ``min(n, 20,000)``."""
    for chunk in make_records(min(n, 2 * CHUNK)):
        for r in chunk:
            validate_fields(r.entity, r.fields, allow_system=True)


def check_indexes(db: LocalDatabase) -> None:
    """Fail unless the lookups are timed on populated index entries, through the index:
    every contact must have a key in the parent-account index, every account in the
    city one, and both lookups must be planned on their partial index."""
    for entity, field in (("contact", "parentcustomerid"), ("account", "address1_city")):
        assert (entity, field) in DEFAULT_FIELD_INDEXES
        index = field_index_name(entity, field)
        expr = field_expression(field)
        keyed = db.conn.execute(
            f'SELECT count(*) FROM records INDEXED BY "{index}"'
            f" WHERE entity = '{entity}' AND {expr} IS NOT NULL"
        ).fetchone()[0]
        total = db.count_records(entity)
        if keyed != total:
            raise SystemExit(f"{index}: {keyed:,} of {total:,} entries have a key")
        plan = db.conn.execute(
            f"EXPLAIN QUERY PLAN SELECT id FROM records WHERE entity = '{entity}'"
            f" AND {expr} = ? AND deleted = 0",
            ("x",),
        ).fetchall()
        if index not in str(plan):
            raise SystemExit(f"lookup on {entity}.{field} not planned on {index}: {plan}")


def time_migration(db: LocalDatabase, path: Path, cache_kib: int) -> float:
    """Seconds to open the replica after turning it back into a pre-version-5 one (the
    Web API-named field indexes, no migration 5): the one-time repair at open.

    Closes ``db`` (closing it again is a no-op); the replica is left migrated."""
    conn = db.conn
    with db.transaction():
        for entity, field in DEFAULT_FIELD_INDEXES:
            if (entity, field) not in LEGACY_FIELD_INDEXES:
                conn.execute(f'DROP INDEX "{field_index_name(entity, field)}"')
        for entity, field in LEGACY_FIELD_INDEXES:
            conn.execute(field_index_statement(entity, field))
        conn.execute("DELETE FROM schema_migrations WHERE version = 5")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    t0 = time.perf_counter()
    reopened = LocalDatabase.open(path, KEK, migrations=REPLICA_MIGRATIONS, cache_kib=cache_kib)
    seconds = time.perf_counter() - t0
    try:
        if reopened.migrations_applied_at_open != [5]:
            raise SystemExit(f"unexpected migrations {reopened.migrations_applied_at_open}")
        check_indexes(reopened)
    finally:
        reopened.close()
    return seconds


def file_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def _row(
    metric: str, value: Any, baseline: Any = "", ratio: Any = "", goal: str = ""
) -> dict[str, Any]:
    return {"metric": metric, "value": value, "baseline": baseline, "ratio": ratio, "goal": goal}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--bootstrap", type=int, default=100_000, help="fresh-DB upsert size")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cache-kib", type=int, default=DEFAULT_CACHE_KIB)
    parser.add_argument("--dir", type=Path, default=None, help="work dir (default: temp)")
    parser.add_argument(
        "--no-migration",
        dest="migration",
        action="store_false",
        help="skip timing the repair of a pre-version-5 replica at open",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="crmsync-bench-", dir=args.dir))
    cache = args.cache_kib
    rows: list[dict[str, Any]] = []
    check_records(args.records)
    try:
        # 1. Bootstrap of a fresh replica (server snapshot order), ours vs raw, median of runs.
        rates: dict[str, list[tuple[float, float]]] = {"ours": [], "same table": []}
        for run in range(args.runs):
            wall, cpu, db = build_ours(work / f"boot{run}.db", args.bootstrap, "key", cache)
            db.wipe()
            rates["ours"].append((wall, cpu))
            rates["same table"].append(
                build_raw(work / f"raw{run}.db", args.bootstrap, "key", cache, "same table")
            )
        for index, clock in enumerate(("wall", "cpu")):
            ours = statistics.median(r[index] for r in rates["ours"])
            raw = statistics.median(r[index] for r in rates["same table"])
            rows.append(
                _row(
                    f"bootstrap {args.bootstrap:,} rec/s ({clock})",
                    ours,
                    raw,
                    ours / raw,
                    ">= 30,000",
                )
            )
        wall, cpu, db = build_ours(work / "random.db", args.bootstrap, "random", cache, bulk=False)
        db.wipe()
        _, raw_cpu = build_raw(
            work / "raw_random.db", args.bootstrap, "random", cache, "same table"
        )
        rows.append(
            _row("  random id order, no bulk_load rec/s (cpu)", cpu, raw_cpu, cpu / raw_cpu)
        )
        _, wr_cpu = build_raw(work / "raw_wr.db", args.bootstrap, "random", cache, "without rowid")
        rows.append(_row("  raw WITHOUT ROWID, random order rec/s (cpu)", wr_cpu))

        # 2. The big replica (one run: it is the search corpus).
        path = work / "replica.db"
        build_wall, build_cpu, db = build_ours(path, args.records, "key", cache)
        raw_big = build_raw(work / "raw_big.db", args.records, "key", cache, "same table")
        for index, (clock, ours) in enumerate((("wall", build_wall), ("cpu", build_cpu))):
            rows.append(
                _row(
                    f"build {args.records:,} rec/s ({clock})",
                    ours,
                    raw_big[index],
                    ours / raw_big[index],
                )
            )
        db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        # 3. Search.
        queries = make_queries(db, args.queries)
        time_calls(db.search, queries[:100])  # warm the page cache
        passes = [time_calls(db.search, queries) for _ in range(args.runs)]
        for p in (50, 95, 99):
            wall_p = statistics.median(percentile(w, p) for w, _ in passes)
            cpu_p = statistics.median(percentile(c, p) for _, c in passes)
            rows.append(_row(f"search p{p} ms (wall)", wall_p, goal="< 20" if p == 99 else ""))
            rows.append(_row(f"search p{p} ms (cpu)", cpu_p, goal="< 20" if p == 99 else ""))
        empty = sum(1 for q in queries if not db.search(q))

        # 4. Indexed lookups.
        rnd = random.Random(5)
        account_ids = [
            r[0]
            for r in db.conn.execute(
                "SELECT id FROM records WHERE entity = 'account' ORDER BY random() LIMIT 1000"
            )
        ]
        cities = [rnd.choice(COUNTRIES[cc]["cities"]) for cc in rnd.choices(COUNTRY_CODES, k=1000)]

        check_indexes(db)
        store = LocalStore(db, DeviceClock(db, "bench"))

        def contacts_of(account_id: str) -> Any:
            return db.find_records("contact", "parentcustomerid", account_id)

        def accounts_in(city: str) -> Any:
            return db.find_records("account", "address1_city", city, limit=50)

        def contacts_page(account_id: str) -> Any:
            return store.query("contact", {"parentcustomerid": account_id}, limit=50)

        for label, fn, fn_args in (
            ("contacts of an account", contacts_of, account_ids),
            ("50 accounts of a city", accounts_in, cities),
            ("  LocalStore.query page of an account's contacts", contacts_page, account_ids),
        ):
            time_calls(fn, fn_args[:100])
            timed = [time_calls(fn, fn_args) for _ in range(args.runs)]
            for index, clock in enumerate(("wall", "cpu")):
                p99 = statistics.median(percentile(t[index], 99) for t in timed)
                p50 = statistics.median(percentile(t[index], 50) for t in timed)
                rows.append(_row(f"{label} p99 ms ({clock}; p50 {p50:.2f})", p99, goal="< 5"))
        size = file_size(path)
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if args.migration:
            seconds = time_migration(db, path, cache)
            rows.append(_row("open + migration 5 (field index repair) s", seconds))
        db.close()
        rows.append(_row("peak RSS MiB (whole benchmark process)", peak_kib / 1024))
        rows.append(_row("replica size MiB (db + wal + key)", size / 2**20))
        rows.append(_row(f"queries with no hit (of {len(queries)})", empty))
        report(f"client_search ({args.records:,} records, {os.cpu_count()} cpu)", rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
