"""Multilingual word pools for generated CRM data: Italy, Germany, France, Spain and Poland.

Names, cities (grouped into five sales regions per country, which become the territories),
streets, company forms, job titles and products, with their real diacritics (Città di Castello,
Müller, Łódź, Núñez, François...). Everything is precomputed at import time into tuples, with
ASCII slugs for e-mail addresses, so the generator only indexes into them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

_GERMAN_FOLD = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})
_SPECIAL_FOLD = str.maketrans({"ł": "l", "ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d"})


def email_slug(text: str, language: str) -> str:
    """Fold a name into the ASCII local part or domain label people use in e-mail addresses.

    Args:
        text: A name with any diacritics (``"Müller"``, ``"Łódź"``, ``"D'Angelo"``).
        language: ``"de"`` spells umlauts out (``mueller``); other languages drop accents.

    Returns:
        Lowercase ASCII letters, digits and hyphens.
    """
    lowered = text.lower()
    if language == "de":
        lowered = lowered.translate(_GERMAN_FOLD)
    lowered = lowered.translate(_SPECIAL_FOLD)
    decomposed = unicodedata.normalize("NFKD", lowered)
    ascii_only = "".join(c for c in decomposed if not unicodedata.combining(c))
    out = []
    for c in ascii_only:
        if c.isascii() and c.isalnum():
            out.append(c)
        elif c in " -" and out and out[-1] != "-":
            out.append("-")
    return "".join(out).strip("-")


@dataclass(frozen=True, slots=True)
class City:
    """A city with what addresses and phone numbers there look like."""

    name: str
    postal_base: int
    postal_spread: int
    area_code: str


@dataclass(frozen=True, slots=True)
class Region:
    """A sales region of a country; each region is one territory."""

    name: str
    cities: tuple[City, ...]


@dataclass(frozen=True, slots=True)
class Country:
    """All word pools of one country, in its language."""

    code: str
    language: str
    name: str
    currency: str
    tld: str
    male_first: tuple[str, ...]
    female_first: tuple[str, ...]
    male_last: tuple[str, ...]
    female_last: tuple[str, ...]
    regions: tuple[Region, ...]
    streets: tuple[str, ...]
    sectors: tuple[str, ...]
    legal_forms: tuple[str, ...]
    job_titles: tuple[str, ...]
    products: tuple[str, ...]
    email_providers: tuple[str, ...]
    mobile_prefixes: tuple[str, ...]
    mailbox: str
    lead_prefix: str
    quote_word: str
    visit_word: str
    customer_since: str


def _cities(*rows: tuple[str, int, int, str]) -> tuple[City, ...]:
    return tuple(City(name, base, spread, area) for name, base, spread, area in rows)


def _polish_female(surname: str) -> str:
    for male, female in (("ski", "ska"), ("cki", "cka"), ("dzki", "dzka")):
        if surname.endswith(male):
            return surname[: -len(male)] + female
    return surname


_PL_LAST = (
    "Nowak", "Kowalski", "Wiśniewski", "Wójcik", "Kowalczyk", "Kamiński", "Lewandowski",
    "Zieliński", "Szymański", "Woźniak", "Dąbrowski", "Kozłowski", "Jankowski", "Mazur",
    "Kwiatkowski", "Krawczyk", "Piotrowski", "Grabowski", "Nowakowski", "Pawłowski",
    "Michalski", "Król", "Wieczorek", "Jabłoński", "Wróbel", "Zając", "Stępień", "Górski",
    "Żak", "Sikora", "Łukaszewicz", "Ślusarczyk",
)  # fmt: skip

ITALY = Country(
    code="IT",
    language="it",
    name="Italia",
    currency="EUR",
    tld="it",
    male_first=(
        "Giuseppe", "Giovanni", "Antonio", "Mario", "Luigi", "Francesco", "Alessandro",
        "Andrea", "Marco", "Matteo", "Lorenzo", "Niccolò", "Davide", "Stefano", "Paolo",
        "Riccardo", "Federico", "Simone", "Gianluca", "Salvatore", "Nicolò", "Raffaele",
    ),
    female_first=(
        "Maria", "Anna", "Giulia", "Francesca", "Chiara", "Sara", "Martina", "Federica",
        "Elena", "Alessandra", "Lucia", "Valentina", "Silvia", "Paola", "Beatrice", "Aurora",
        "Gaia", "Ilaria", "Noemi", "Roberta", "Ludovica", "Cinzia",
    ),
    male_last=(
        "Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci",
        "Marino", "Greco", "Bruno", "Gallo", "Conti", "De Luca", "Mancini", "Costa",
        "Giordano", "Rizzo", "Lombardi", "Moretti", "Barbieri", "Fontana", "Santoro",
        "Mariani", "Rinaldi", "Caruso", "Ferrara", "Galli", "Martini", "Leone", "D'Angelo",
        "Dell'Orto", "Cantù", "Donà", "Pellegrini", "Sanfilippo",
    ),
    female_last=(),
    regions=(
        Region("Nord-Ovest", _cities(
            ("Milano", 20121, 40, "02"), ("Torino", 10121, 40, "011"),
            ("Genova", 16121, 40, "010"), ("Bergamo", 24121, 20, "035"),
            ("Cantù", 22063, 1, "031"), ("Aosta", 11100, 1, "0165"),
        )),
        Region("Nord-Est", _cities(
            ("Venezia", 30121, 40, "041"), ("Verona", 37121, 20, "045"),
            ("Bologna", 40121, 20, "051"), ("Trieste", 34121, 20, "040"),
            ("Padova", 35121, 20, "049"), ("Forlì", 47121, 2, "0543"),
        )),
        Region("Centro", _cities(
            ("Roma", 118, 80, "06"), ("Firenze", 50121, 20, "055"),
            ("Perugia", 6121, 20, "075"), ("Città di Castello", 6012, 1, "075"),
            ("Ancona", 60121, 20, "071"), ("Pescara", 65121, 20, "085"),
        )),
        Region("Sud", _cities(
            ("Napoli", 80121, 40, "081"), ("Bari", 70121, 20, "080"),
            ("Salerno", 84121, 20, "089"), ("Lecce", 73100, 1, "0832"),
            ("Reggio Calabria", 89121, 20, "0965"), ("Potenza", 85100, 1, "0971"),
        )),
        Region("Isole", _cities(
            ("Palermo", 90121, 40, "091"), ("Catania", 95121, 20, "095"),
            ("Cagliari", 9121, 20, "070"), ("Sassari", 7100, 1, "079"),
            ("Ragusa", 97100, 1, "0932"), ("Olbia", 7026, 1, "0789"),
        )),
    ),
    streets=(
        "Via Roma", "Via Garibaldi", "Via Mazzini", "Corso Vittorio Emanuele II", "Via Cavour",
        "Piazza della Libertà", "Via XX Settembre", "Viale dei Mille", "Via San Martino",
        "Via dell'Università", "Corso Italia", "Via Niccolò Machiavelli", "Via Nazionale",
        "Viale Europa", "Via Sant'Agostino",
    ),
    sectors=(
        "Meccanica", "Impianti", "Costruzioni", "Alimentari", "Logistica", "Tessile",
        "Arredamenti", "Informatica", "Servizi", "Elettronica", "Oleodinamica", "Ceramiche",
    ),
    legal_forms=("S.p.A.", "S.r.l.", "S.r.l.", "S.n.c.", "& Figli S.r.l.", "S.a.s."),
    job_titles=(
        "Direttore commerciale", "Responsabile acquisti", "Amministratore delegato",
        "Responsabile tecnico", "Ufficio acquisti", "Direttore generale",
        "Responsabile logistica", "Direttore finanziario", "Project manager",
        "Responsabile qualità", "Titolare", "Capo reparto",
    ),
    products=(
        "Pompe industriali", "Compressori", "Valvole di sicurezza", "Sistemi di automazione",
        "Contratto di manutenzione", "Licenze software", "Impianto fotovoltaico",
        "Carrelli elevatori", "Quadri elettrici", "Nastri trasportatori",
    ),
    email_providers=("libero.it", "gmail.com", "virgilio.it", "tiscali.it"),
    mobile_prefixes=("320", "328", "333", "339", "340", "347", "348", "349", "366", "388"),
    mailbox="info",
    lead_prefix="Interesse per",
    quote_word="Offerta",
    visit_word="Visita cliente",
    customer_since="Cliente dal {year}, area {region}.",
)  # fmt: skip

GERMANY = Country(
    code="DE",
    language="de",
    name="Deutschland",
    currency="EUR",
    tld="de",
    male_first=(
        "Lukas", "Jonas", "Leon", "Maximilian", "Felix", "Paul", "Jürgen", "Jörg", "Günter",
        "Uwe", "Klaus", "Stefan", "Andreas", "Thomas", "Michael", "Sören", "Björn",
        "Matthias", "Tobias", "Florian", "Rüdiger", "Jens",
    ),
    female_first=(
        "Anna", "Lena", "Leonie", "Sophie", "Marie", "Hannah", "Sabine", "Ute", "Birgit",
        "Gisela", "Katharina", "Julia", "Lea", "Laura", "Annika", "Jana", "Franziska",
        "Käthe", "Dörte", "Bärbel", "Jördis", "Sünje",
    ),
    male_last=(
        "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
        "Schulz", "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf",
        "Schröder", "Neumann", "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann",
        "Hartmann", "Lange", "Schmitt", "Werner", "Schmitz", "Krause", "Meier", "Lehmann",
        "Köhler", "Groß", "Weiß", "Jäger", "Böhm", "Fuchs", "Vogel", "Günther", "Möller",
    ),
    female_last=(),
    regions=(
        Region("Nord", _cities(
            ("Hamburg", 20095, 400, "40"), ("Bremen", 28195, 100, "421"),
            ("Kiel", 24103, 50, "431"), ("Lübeck", 23552, 20, "451"),
            ("Hannover", 30159, 100, "511"), ("Oldenburg", 26121, 20, "441"),
        )),
        Region("Ost", _cities(
            ("Berlin", 10115, 3000, "30"), ("Dresden", 1067, 200, "351"),
            ("Leipzig", 4103, 200, "341"), ("Rostock", 18055, 50, "381"),
            ("Görlitz", 2826, 2, "3581"), ("Potsdam", 14467, 20, "331"),
        )),
        Region("Süd", _cities(
            ("München", 80331, 1400, "89"), ("Stuttgart", 70173, 400, "711"),
            ("Nürnberg", 90402, 100, "911"), ("Augsburg", 86150, 50, "821"),
            ("Würzburg", 97070, 30, "931"), ("Regensburg", 93047, 20, "941"),
        )),
        Region("West", _cities(
            ("Köln", 50667, 500, "221"), ("Düsseldorf", 40213, 400, "211"),
            ("Essen", 45127, 200, "201"), ("Dortmund", 44135, 200, "231"),
            ("Münster", 48143, 100, "251"), ("Mönchengladbach", 41061, 100, "2161"),
        )),
        Region("Mitte", _cities(
            ("Frankfurt am Main", 60311, 300, "69"), ("Kassel", 34117, 50, "561"),
            ("Erfurt", 99084, 20, "361"), ("Gießen", 35390, 10, "641"),
            ("Mainz", 55116, 10, "6131"), ("Fulda", 36037, 10, "661"),
        )),
    ),
    streets=(
        "Hauptstraße", "Bahnhofstraße", "Schulstraße", "Gartenstraße", "Dorfstraße",
        "Königsallee", "Friedrichstraße", "Lindenstraße", "Goethestraße", "Müllerstraße",
        "Am Marktplatz", "Schloßallee", "Kirchweg", "Mühlenweg", "Industriestraße",
    ),
    sectors=(
        "Maschinenbau", "Anlagenbau", "Logistik", "Elektrotechnik", "Bau", "Feinkost",
        "Möbelwerk", "Software", "Handel", "Präzisionstechnik", "Stahlbau", "Kühltechnik",
    ),
    legal_forms=("GmbH", "GmbH", "AG", "GmbH & Co. KG", "KG", "e.K."),
    job_titles=(
        "Geschäftsführung", "Leitung Einkauf", "Vertriebsleitung", "Technische Leitung",
        "Qualitätsmanagement", "Projektleitung", "Finanzbuchhaltung", "Disposition",
        "Prokurist", "Werksleitung", "Einkäufer", "Außendienst",
    ),
    products=(
        "Industriepumpen", "Kompressoren", "Sicherheitsventile", "Automatisierungssysteme",
        "Wartungsvertrag", "Softwarelizenzen", "Photovoltaikanlage", "Gabelstapler",
        "Schaltschränke", "Förderbänder",
    ),
    email_providers=("web.de", "gmx.de", "t-online.de", "gmail.com"),
    mobile_prefixes=("151", "152", "157", "160", "162", "170", "171", "172", "176", "179"),
    mailbox="kontakt",
    lead_prefix="Interesse an",
    quote_word="Angebot",
    visit_word="Kundentermin",
    customer_since="Kunde seit {year}, Region {region}.",
)  # fmt: skip

FRANCE = Country(
    code="FR",
    language="fr",
    name="France",
    currency="EUR",
    tld="fr",
    male_first=(
        "Jean", "Pierre", "Michel", "François", "Jérôme", "Nicolas", "Julien", "Sébastien",
        "Frédéric", "Stéphane", "Thomas", "Hugo", "Léo", "Lucas", "Théo", "Mathéo", "Benoît",
        "Gaël", "Loïc", "Noël", "Hervé", "Rémi",
    ),
    female_first=(
        "Marie", "Nathalie", "Isabelle", "Sylvie", "Hélène", "Chloé", "Léa", "Manon",
        "Camille", "Inès", "Zoé", "Céline", "Élodie", "Amélie", "Océane", "Gaëlle", "Anaïs",
        "Mélanie", "Sophie", "Émilie", "Françoise", "Agnès",
    ),
    male_last=(
        "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand",
        "Leroy", "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "David",
        "Bertrand", "Roux", "Vincent", "Fournier", "Morel", "Girard", "André", "Lefebvre",
        "Mercier", "Dupont", "Lambert", "Bonnet", "François", "Lemaître", "Gauthier",
        "Perrin", "Chevalier", "Rousseau", "Faure", "Brunet", "Guérin", "Boucher", "Hébert",
        "Bénard",
    ),
    female_last=(),
    regions=(
        Region("Île-de-France", _cities(
            ("Paris", 75001, 20, "1"), ("Versailles", 78000, 1, "1"),
            ("Créteil", 94000, 1, "1"), ("Saint-Denis", 93200, 1, "1"),
            ("Nanterre", 92000, 1, "1"), ("Évry-Courcouronnes", 91000, 1, "1"),
        )),
        Region("Nord-Est", _cities(
            ("Lille", 59000, 1, "3"), ("Strasbourg", 67000, 100, "3"),
            ("Reims", 51100, 1, "3"), ("Metz", 57000, 1, "3"),
            ("Besançon", 25000, 1, "3"), ("Nancy", 54000, 1, "3"),
        )),
        Region("Ouest", _cities(
            ("Nantes", 44000, 1, "2"), ("Rennes", 35000, 1, "2"),
            ("Brest", 29200, 1, "2"), ("Le Mans", 72000, 1, "2"),
            ("Angers", 49000, 1, "2"), ("Caen", 14000, 1, "2"),
        )),
        Region("Sud-Est", _cities(
            ("Lyon", 69001, 9, "4"), ("Marseille", 13001, 16, "4"),
            ("Nice", 6000, 300, "4"), ("Grenoble", 38000, 100, "4"),
            ("Saint-Étienne", 42000, 100, "4"), ("Aix-en-Provence", 13090, 1, "4"),
        )),
        Region("Sud-Ouest", _cities(
            ("Bordeaux", 33000, 300, "5"), ("Toulouse", 31000, 500, "5"),
            ("Pau", 64000, 1, "5"), ("Nîmes", 30000, 900, "4"),
            ("Périgueux", 24000, 1, "5"), ("Béziers", 34500, 1, "4"),
        )),
    ),
    streets=(
        "rue de la Paix", "rue Victor Hugo", "boulevard Saint-Michel",
        "avenue des Champs-Élysées", "rue de la République", "place de l'Église",
        "rue Jean Jaurès", "avenue Foch", "rue du Faubourg Saint-Honoré",
        "quai de la Tournelle", "rue Émile Zola", "chemin des Écoliers", "rue Pasteur",
        "allée des Châtaigniers", "boulevard Gambetta",
    ),
    sectors=(
        "Industries", "Mécanique", "Logistique", "Bâtiment", "Électronique", "Alimentaire",
        "Informatique", "Ameublement", "Énergie", "Conseil", "Métallurgie", "Façades",
    ),
    legal_forms=("SA", "SARL", "SAS", "SAS", "& Fils", "SNC"),
    job_titles=(
        "Directeur commercial", "Responsable des achats", "Président-directeur général",
        "Directeur technique", "Responsable qualité", "Chef de projet", "Directeur financier",
        "Responsable logistique", "Acheteur", "Gérant", "Ingénieur d'affaires",
        "Responsable d'exploitation",
    ),
    products=(
        "Pompes industrielles", "Compresseurs", "Vannes de sécurité",
        "Systèmes d'automatisation", "Contrat de maintenance", "Licences logicielles",
        "Installation photovoltaïque", "Chariots élévateurs", "Armoires électriques",
        "Convoyeurs à bande",
    ),
    email_providers=("orange.fr", "free.fr", "laposte.net", "sfr.fr"),
    mobile_prefixes=("6", "7"),
    mailbox="contact",
    lead_prefix="Intérêt pour",
    quote_word="Devis",
    visit_word="Rendez-vous client",
    customer_since="Client depuis {year}, région {region}.",
)  # fmt: skip

SPAIN = Country(
    code="ES",
    language="es",
    name="España",
    currency="EUR",
    tld="es",
    male_first=(
        "José", "Antonio", "Manuel", "Francisco", "Juan", "David", "Javier", "Jesús",
        "Daniel", "Carlos", "Miguel", "Alejandro", "Rafael", "Pablo", "Sergio", "Íñigo",
        "Álvaro", "Adrián", "Raúl", "Rubén", "Joaquín", "Ramón",
    ),
    female_first=(
        "María", "Carmen", "Ana", "Isabel", "Laura", "Cristina", "Marta", "Lucía", "Elena",
        "Sofía", "Paula", "Begoña", "Nuria", "Pilar", "Rocío", "Inés", "Sara", "Ángela",
        "Noelia", "Mónica", "Maite", "Concepción",
    ),
    male_last=(
        "García", "Rodríguez", "González", "Fernández", "López", "Martínez", "Sánchez",
        "Pérez", "Gómez", "Martín", "Jiménez", "Ruiz", "Hernández", "Díaz", "Moreno", "Muñoz",
        "Álvarez", "Romero", "Alonso", "Gutiérrez", "Navarro", "Torres", "Domínguez",
        "Vázquez", "Ramos", "Gil", "Ramírez", "Serrano", "Blanco", "Molina", "Morales",
        "Suárez", "Ortega", "Delgado", "Castro", "Ortiz", "Rubio", "Marín", "Núñez", "Ibáñez",
        "Peña", "Castaño",
    ),
    female_last=(),
    regions=(
        Region("Norte", _cities(
            ("Bilbao", 48001, 15, "94"), ("Santander", 39001, 12, "942"),
            ("Oviedo", 33001, 13, "985"), ("A Coruña", 15001, 11, "981"),
            ("San Sebastián", 20001, 18, "943"), ("Logroño", 26001, 9, "941"),
        )),
        Region("Centro", _cities(
            ("Madrid", 28001, 55, "91"), ("Toledo", 45001, 8, "925"),
            ("Valladolid", 47001, 15, "983"), ("Salamanca", 37001, 9, "923"),
            ("Segovia", 40001, 6, "921"), ("Alcalá de Henares", 28801, 7, "91"),
        )),
        Region("Este", _cities(
            ("Barcelona", 8001, 42, "93"), ("Valencia", 46001, 25, "96"),
            ("Zaragoza", 50001, 20, "976"), ("Alicante", 3001, 16, "965"),
            ("Castellón de la Plana", 12001, 6, "964"), ("Lleida", 25001, 8, "973"),
        )),
        Region("Sur", _cities(
            ("Sevilla", 41001, 20, "954"), ("Málaga", 29001, 18, "952"),
            ("Córdoba", 14001, 14, "957"), ("Cádiz", 11001, 12, "956"),
            ("Almería", 4001, 9, "950"), ("Jaén", 23001, 9, "953"),
        )),
        Region("Canarias", _cities(
            ("Las Palmas de Gran Canaria", 35001, 19, "928"),
            ("Santa Cruz de Tenerife", 38001, 11, "922"), ("Arrecife", 35500, 1, "928"),
            ("San Cristóbal de La Laguna", 38201, 6, "922"), ("Telde", 35200, 1, "928"),
        )),
    ),
    streets=(
        "Calle Mayor", "Calle de Alcalá", "Gran Vía", "Avenida de la Constitución",
        "Plaza de España", "Calle Real", "Paseo de la Castellana", "Calle del Doctor Fleming",
        "Avenida de Andalucía", "Calle de Núñez de Balboa", "Rambla de Cataluña",
        "Calle Ibáñez de Ibero", "Calle de la Peña", "Avenida de Logroño", "Calle San Vicente",
    ),
    sectors=(
        "Construcciones", "Ingeniería", "Logística", "Alimentación", "Distribuciones",
        "Maquinaria", "Informática", "Energía", "Muebles", "Transportes", "Cerámicas",
        "Metalúrgica",
    ),
    legal_forms=("S.A.", "S.L.", "S.L.", "S.L.U.", "e Hijos S.L.", "S.Coop."),
    job_titles=(
        "Director comercial", "Responsable de compras", "Director general", "Director técnico",
        "Responsable de calidad", "Jefe de proyecto", "Director financiero",
        "Responsable de logística", "Comprador", "Gerente", "Jefe de producción",
        "Técnico comercial",
    ),
    products=(
        "Bombas industriales", "Compresores", "Válvulas de seguridad",
        "Sistemas de automatización", "Contrato de mantenimiento", "Licencias de software",
        "Instalación fotovoltaica", "Carretillas elevadoras", "Cuadros eléctricos",
        "Cintas transportadoras",
    ),
    email_providers=("telefonica.net", "gmail.com", "hotmail.es", "yahoo.es"),
    mobile_prefixes=("600", "605", "610", "615", "620", "630", "650", "660", "680", "690"),
    mailbox="info",
    lead_prefix="Interés en",
    quote_word="Presupuesto",
    visit_word="Visita comercial",
    customer_since="Cliente desde {year}, zona {region}.",
)  # fmt: skip

POLAND = Country(
    code="PL",
    language="pl",
    name="Polska",
    currency="PLN",
    tld="pl",
    male_first=(
        "Jan", "Piotr", "Krzysztof", "Andrzej", "Tomasz", "Paweł", "Michał", "Marcin",
        "Łukasz", "Grzegorz", "Wojciech", "Mateusz", "Rafał", "Adam", "Zbigniew", "Jakub",
        "Kacper", "Bartłomiej", "Sławomir", "Maciej", "Przemysław", "Jędrzej",
    ),
    female_first=(
        "Anna", "Maria", "Katarzyna", "Małgorzata", "Agnieszka", "Barbara", "Ewa", "Krystyna",
        "Magdalena", "Elżbieta", "Joanna", "Aleksandra", "Zofia", "Monika", "Dorota", "Beata",
        "Jadwiga", "Justyna", "Łucja", "Wiktoria", "Bożena", "Grażyna",
    ),
    male_last=_PL_LAST,
    female_last=tuple(_polish_female(s) for s in _PL_LAST),
    regions=(
        Region("Mazowsze", _cities(
            ("Warszawa", 1, 999, "22"), ("Radom", 26600, 30, "48"),
            ("Płock", 9400, 20, "24"), ("Siedlce", 8110, 10, "25"),
            ("Ostrołęka", 7400, 10, "29"), ("Pruszków", 5800, 10, "22"),
        )),
        Region("Śląsk", _cities(
            ("Katowice", 40001, 900, "32"), ("Gliwice", 44100, 60, "32"),
            ("Bielsko-Biała", 43300, 80, "33"), ("Częstochowa", 42200, 80, "34"),
            ("Opole", 45001, 900, "77"), ("Rybnik", 44200, 60, "32"),
        )),
        Region("Pomorze", _cities(
            ("Gdańsk", 80001, 900, "58"), ("Gdynia", 81001, 600, "58"),
            ("Szczecin", 70001, 900, "91"), ("Bydgoszcz", 85001, 900, "52"),
            ("Toruń", 87100, 60, "56"), ("Słupsk", 76200, 50, "59"),
        )),
        Region("Małopolska", _cities(
            ("Kraków", 30001, 999, "12"), ("Tarnów", 33100, 50, "14"),
            ("Nowy Sącz", 33300, 50, "18"), ("Rzeszów", 35001, 300, "17"),
            ("Zakopane", 34500, 10, "18"), ("Przemyśl", 37700, 20, "16"),
        )),
        Region("Wielkopolska", _cities(
            ("Poznań", 60001, 900, "61"), ("Łódź", 90001, 999, "42"),
            ("Kalisz", 62800, 50, "62"), ("Wrocław", 50001, 999, "71"),
            ("Białystok", 15001, 900, "85"), ("Gniezno", 62200, 10, "61"),
        )),
    ),
    streets=(
        "ul. Piotrkowska", "ul. Marszałkowska", "ul. Świętokrzyska", "ul. Długa",
        "ul. Floriańska", "ul. Mickiewicza", "ul. Kościuszki", "ul. Żeromskiego",
        "ul. Słowackiego", "ul. Wrocławska", "al. Jerozolimskie", "ul. Grunwaldzka",
        "ul. Łąkowa", "ul. Źródlana", "pl. Wolności",
    ),
    sectors=(
        "Budownictwo", "Maszyny", "Logistyka", "Elektronika", "Meble", "Żywność",
        "Informatyka", "Energetyka", "Transport", "Handel", "Stolarstwo", "Ślusarstwo",
    ),
    legal_forms=("Sp. z o.o.", "Sp. z o.o.", "S.A.", "Sp.j.", "Sp.k.", "s.c."),
    job_titles=(
        "Dyrektor handlowy", "Kierownik zakupów", "Prezes zarządu", "Dyrektor techniczny",
        "Kierownik jakości", "Kierownik projektu", "Dyrektor finansowy",
        "Kierownik logistyki", "Specjalista ds. zakupów", "Właściciel", "Główny księgowy",
        "Kierownik produkcji",
    ),
    products=(
        "Pompy przemysłowe", "Sprężarki", "Zawory bezpieczeństwa", "Systemy automatyki",
        "Umowa serwisowa", "Licencje oprogramowania", "Instalacja fotowoltaiczna",
        "Wózki widłowe", "Rozdzielnice elektryczne", "Przenośniki taśmowe",
    ),
    email_providers=("wp.pl", "onet.pl", "o2.pl", "interia.pl"),
    mobile_prefixes=("501", "502", "505", "510", "512", "600", "601", "660", "691", "798"),
    mailbox="biuro",
    lead_prefix="Zainteresowanie:",
    quote_word="Oferta",
    visit_word="Spotkanie z klientem",
    customer_since="Klient od {year}, region {region}.",
)  # fmt: skip

#: The five countries, in a fixed order (their position is the country index).
COUNTRIES: tuple[Country, ...] = (ITALY, GERMANY, FRANCE, SPAIN, POLAND)

#: Country indices weighted like the field force (IT 25%, DE 25%, FR 20%, ES 15%, PL 15%).
COUNTRY_WEIGHTS: tuple[int, ...] = (0,) * 5 + (1,) * 5 + (2,) * 4 + (3,) * 3 + (4,) * 3


def format_postal_code(country: Country, city: City, r: int) -> str:
    """Return a postal code of ``city`` chosen by the random integer ``r``."""
    code = city.postal_base + r % city.postal_spread
    if country.code == "PL":
        return f"{code // 1000:02d}-{code % 1000:03d}"
    return f"{code:05d}"


_D2 = tuple(f"{n:02d}" for n in range(100))


def landline_prefix(country: Country, city: City) -> str:
    """Return the international prefix and area code of a city, e.g. ``"+39 02 "``."""
    calling = {"IT": "+39", "DE": "+49", "FR": "+33", "ES": "+34", "PL": "+48"}[country.code]
    return f"{calling} {city.area_code} "


def landline_formatter(country: Country) -> Callable[[str, int, int], str]:
    """Return ``f(prefix, x, y)`` writing a landline number in the country's notation.

    ``prefix`` comes from :func:`landline_prefix`; ``x`` and ``y`` are random 16-bit values.
    """
    d2 = _D2
    cc = country.code
    if cc in ("IT", "DE"):
        return lambda prefix, x, y: f"{prefix}{((x << 7) ^ y) % 10_000_000:07d}"
    if cc == "FR":
        return lambda prefix, x, y: (
            f"{prefix}{d2[x % 100]} {d2[(x >> 7) % 100]} {d2[y % 100]} {d2[(y >> 7) % 100]}"
        )
    if cc == "ES":

        def spanish(prefix: str, x: int, y: int) -> str:
            if len(prefix) == 7:  # "+34 91 ": two-digit area, seven-digit number
                return f"{prefix}{x % 1000:03d} {d2[y % 100]} {d2[(y >> 7) % 100]}"
            return f"{prefix}{d2[x % 100]} {d2[(x >> 7) % 100]} {d2[y % 100]}"

        return spanish
    return lambda prefix, x, y: f"{prefix}{x % 1000:03d} {d2[y % 100]} {d2[(y >> 7) % 100]}"


def mobile_formatter(country: Country) -> Callable[[int, int], str]:
    """Return ``f(x, y)`` writing a mobile number in the country's notation (random 16-bit
    ``x`` and ``y``)."""
    d2 = _D2
    prefixes = country.mobile_prefixes
    n = len(prefixes)
    cc = country.code
    if cc == "IT":
        return lambda x, y: f"+39 {prefixes[y % n]} {((x << 7) ^ y) % 10_000_000:07d}"
    if cc == "DE":
        return lambda x, y: f"+49 {prefixes[y % n]} {((x << 11) ^ y) % 100_000_000:08d}"
    if cc == "FR":
        return lambda x, y: (
            f"+33 {prefixes[y & 1]} {d2[x % 100]} {d2[(x >> 7) % 100]} {d2[(y >> 1) % 100]} "
            f"{d2[(y >> 8) % 100]}"
        )
    if cc == "ES":
        return lambda x, y: (
            f"+34 {prefixes[y % n]} {d2[x % 100]} {d2[(x >> 7) % 100]} {d2[(y >> 4) % 100]}"
        )
    return lambda x, y: f"+48 {prefixes[y % n]} {x % 1000:03d} {(y >> 4) % 1000:03d}"


def format_street(country: Country, street: str, number: int) -> str:
    """Return an address line with the house number where the country puts it."""
    if country.code == "FR":
        return f"{number} {street}"
    if country.code == "ES":
        return f"{street}, {number}"
    return f"{street} {number}"


def company_name(country: Country, surname: str, sector: str, legal_form: str) -> str:
    """Return a company name in the country's usual word order."""
    if country.code in ("IT", "DE"):
        return f"{surname} {sector} {legal_form}"
    return f"{sector} {surname} {legal_form}"


def territory_name(country: Country, region: Region) -> str:
    """Return the territory name of a region, prefixed with the ISO country code."""
    return f"{country.code} {region.name}"
