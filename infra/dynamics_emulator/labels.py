"""Option-set labels in the six languages the emulator formats values in.

Every label tuple is ordered like :data:`LANGUAGES`: English (the base language), German,
Italian, French, Spanish, Polish. Values are the ones Dynamics 365 ships with where the column
is standard (``industrycode``, ``leadsourcecode``, state and status codes...).
"""

from __future__ import annotations

#: Supported UI languages; the first is the base language used as fallback.
LANGUAGES: tuple[str, ...] = ("en", "de", "it", "fr", "es", "pl")

Labels = tuple[str, str, str, str, str, str]

_ACTIVE: Labels = ("Active", "Aktiv", "Attivo", "Actif", "Activo", "Aktywny")
_INACTIVE: Labels = ("Inactive", "Inaktiv", "Inattivo", "Inactif", "Inactivo", "Nieaktywny")
_OPEN: Labels = ("Open", "Offen", "Aperto", "Ouvert", "Abierto", "Otwarty")
_WON: Labels = ("Won", "Gewonnen", "Vinta", "Gagnée", "Ganada", "Wygrana")
_LOST: Labels = ("Lost", "Verloren", "Persa", "Perdue", "Perdida", "Przegrana")
_CANCELED: Labels = ("Canceled", "Storniert", "Annullato", "Annulé", "Cancelado", "Anulowany")
_IN_PROGRESS: Labels = (
    "In Progress",
    "In Bearbeitung",
    "In corso",
    "En cours",
    "En curso",
    "W toku",
)
_COMPLETED: Labels = (
    "Completed",
    "Abgeschlossen",
    "Completato",
    "Terminé",
    "Completado",
    "Zakończone",
)
_QUALIFIED: Labels = (
    "Qualified",
    "Qualifiziert",
    "Qualificato",
    "Qualifié",
    "Calificado",
    "Zakwalifikowany",
)

YES_NO: dict[bool, Labels] = {
    True: ("Yes", "Ja", "Sì", "Oui", "Sí", "Tak"),
    False: ("No", "Nein", "No", "Non", "No", "Nie"),
}

OPTION_SETS: dict[str, dict[int, Labels]] = {
    "industrycode": {
        1: ("Accounting", "Buchhaltung", "Contabilità", "Comptabilité", "Contabilidad", "Księgowość"),  # noqa: E501
        6: ("Business Services", "Unternehmensdienstleistungen", "Servizi alle imprese", "Services aux entreprises", "Servicios empresariales", "Usługi dla biznesu"),  # noqa: E501
        7: ("Consulting", "Beratung", "Consulenza", "Conseil", "Consultoría", "Doradztwo"),
        10: ("Distributors, Dispatchers and Processors", "Großhändler und Verteiler", "Distributori e spedizionieri", "Distributeurs et transformateurs", "Distribuidores y procesadores", "Dystrybutorzy i przetwórcy"),  # noqa: E501
        12: ("Durable Manufacturing", "Gebrauchsgüterherstellung", "Produzione di beni durevoli", "Fabrication de biens durables", "Fabricación de bienes duraderos", "Produkcja dóbr trwałych"),  # noqa: E501
        16: ("Financial", "Finanzwesen", "Finanza", "Finance", "Finanzas", "Finanse"),
        17: ("Food and Tobacco Processing", "Lebensmittel- und Tabakverarbeitung", "Lavorazione alimenti e tabacco", "Transformation alimentaire et tabac", "Procesamiento de alimentos y tabaco", "Przetwórstwo spożywcze i tytoniowe"),  # noqa: E501
        30: ("Transportation", "Transportwesen", "Trasporti", "Transports", "Transporte", "Transport"),  # noqa: E501
        31: ("Utility Creation and Distribution", "Energieversorgung", "Servizi di pubblica utilità", "Production et distribution d'énergie", "Servicios públicos", "Energetyka i media"),  # noqa: E501
        33: ("Wholesale", "Großhandel", "Commercio all'ingrosso", "Commerce de gros", "Venta al por mayor", "Handel hurtowy"),  # noqa: E501
    },
    "leadsourcecode": {
        1: ("Advertisement", "Anzeige", "Pubblicità", "Publicité", "Anuncio", "Reklama"),
        2: ("Employee Referral", "Empfehlung durch Mitarbeiter", "Segnalazione dipendente", "Recommandation d'un employé", "Referencia de empleado", "Polecenie pracownika"),  # noqa: E501
        3: ("External Referral", "Externe Empfehlung", "Segnalazione esterna", "Recommandation externe", "Referencia externa", "Polecenie zewnętrzne"),  # noqa: E501
        4: ("Partner", "Partner", "Partner", "Partenaire", "Socio", "Partner"),
        5: ("Public Relations", "Öffentlichkeitsarbeit", "Pubbliche relazioni", "Relations publiques", "Relaciones públicas", "Public relations"),  # noqa: E501
        6: ("Seminar", "Seminar", "Seminario", "Séminaire", "Seminario", "Seminarium"),
        7: ("Trade Show", "Messe", "Fiera", "Salon professionnel", "Feria comercial", "Targi"),
        8: ("Web", "Web", "Web", "Web", "Web", "Internet"),
        9: ("Word of Mouth", "Mundpropaganda", "Passaparola", "Bouche à oreille", "Boca a boca", "Poczta pantoflowa"),  # noqa: E501
        10: ("Other", "Sonstiges", "Altro", "Autre", "Otro", "Inne"),
    },
    "salesstage": {
        0: ("Qualify", "Qualifizieren", "Qualifica", "Qualifier", "Calificar", "Kwalifikacja"),
        1: ("Develop", "Entwickeln", "Sviluppo", "Développer", "Desarrollar", "Rozwój"),
        2: ("Propose", "Angebot", "Proposta", "Proposer", "Proponer", "Propozycja"),
        3: ("Close", "Abschluss", "Chiusura", "Conclure", "Cerrar", "Zamknięcie"),
    },
    # State and status codes, one pair of option sets per table.
    "account_statecode": {0: _ACTIVE, 1: _INACTIVE},
    "account_statuscode": {1: _ACTIVE, 2: _INACTIVE},
    "contact_statecode": {0: _ACTIVE, 1: _INACTIVE},
    "contact_statuscode": {1: _ACTIVE, 2: _INACTIVE},
    "lead_statecode": {
        0: _OPEN,
        1: _QUALIFIED,
        2: ("Disqualified", "Disqualifiziert", "Squalificato", "Disqualifié", "Descalificado", "Zdyskwalifikowany"),  # noqa: E501
    },
    "lead_statuscode": {
        1: ("New", "Neu", "Nuovo", "Nouveau", "Nuevo", "Nowy"),
        2: ("Contacted", "Kontaktiert", "Contattato", "Contacté", "Contactado", "Skontaktowano"),
        3: _QUALIFIED,
        4: ("Lost", "Verloren", "Perso", "Perdu", "Perdido", "Utracony"),
        5: ("Cannot Contact", "Kontakt nicht möglich", "Impossibile contattare", "Impossible à contacter", "No se puede contactar", "Brak kontaktu"),  # noqa: E501
        6: ("No Longer Interested", "Kein Interesse mehr", "Non più interessato", "Plus intéressé", "Ya no está interesado", "Brak zainteresowania"),  # noqa: E501
        7: _CANCELED,
    },
    "opportunity_statecode": {0: _OPEN, 1: _WON, 2: _LOST},
    "opportunity_statuscode": {
        1: _IN_PROGRESS,
        2: ("On Hold", "Angehalten", "In sospeso", "En attente", "En espera", "Wstrzymana"),
        3: _WON,
        4: _CANCELED,
        5: ("Out-Sold", "An Konkurrenz verloren", "Persa contro concorrente", "Vendue par un concurrent", "Vendida por la competencia", "Przegrana z konkurencją"),  # noqa: E501
    },
    "quote_statecode": {
        0: ("Draft", "Entwurf", "Bozza", "Brouillon", "Borrador", "Wersja robocza"),
        1: ("Active", "Aktiv", "Attiva", "Active", "Activa", "Aktywna"),
        2: ("Won", "Gewonnen", "Acquisita", "Conclue", "Ganada", "Wygrana"),
        3: ("Closed", "Geschlossen", "Chiusa", "Fermée", "Cerrada", "Zamknięta"),
    },
    "quote_statuscode": {
        1: _IN_PROGRESS,
        2: _IN_PROGRESS,
        3: ("Open", "Offen", "Aperta", "Ouverte", "Abierta", "Otwarta"),
        4: ("Won", "Gewonnen", "Acquisita", "Conclue", "Ganada", "Wygrana"),
        5: ("Lost", "Verloren", "Persa", "Perdue", "Perdida", "Utracona"),
        6: _CANCELED,
        7: ("Revised", "Überarbeitet", "Rivista", "Révisée", "Revisada", "Poprawiona"),
    },
    "appointment_statecode": {
        0: _OPEN,
        1: _COMPLETED,
        2: _CANCELED,
        3: ("Scheduled", "Geplant", "Pianificato", "Planifié", "Programado", "Zaplanowane"),
    },
    "appointment_statuscode": {
        1: ("Free", "Frei", "Libero", "Libre", "Libre", "Wolny"),
        2: ("Tentative", "Mit Vorbehalt", "Provvisorio", "Provisoire", "Provisional", "Wstępny"),
        3: _COMPLETED,
        4: _CANCELED,
        5: ("Busy", "Gebucht", "Occupato", "Occupé", "Ocupado", "Zajęty"),
        6: ("Out of Office", "Abwesend", "Fuori sede", "Absent du bureau", "Fuera de la oficina", "Poza biurem"),  # noqa: E501
    },
}  # fmt: skip

#: statuscode -> the statecode it belongs to, per table.
STATUS_STATE: dict[str, dict[int, int]] = {
    "account": {1: 0, 2: 1},
    "contact": {1: 0, 2: 1},
    "lead": {1: 0, 2: 0, 3: 1, 4: 2, 5: 2, 6: 2, 7: 2},
    "opportunity": {1: 0, 2: 0, 3: 1, 4: 2, 5: 2},
    "quote": {1: 0, 2: 1, 3: 1, 4: 2, 5: 3, 6: 3, 7: 3},
    "appointment": {1: 0, 2: 0, 3: 1, 4: 2, 5: 3, 6: 3},
}

#: statecode -> the statuscode Dataverse sets when only the state is changed.
DEFAULT_STATUS: dict[str, dict[int, int]] = {
    table: {
        state: min(s for s, st in mapping.items() if st == state) for state in set(mapping.values())
    }
    for table, mapping in STATUS_STATE.items()
}


def language_index(language: str) -> int:
    """Return the position of a supported language in label tuples (unknown -> English)."""
    try:
        return LANGUAGES.index(language)
    except ValueError:
        return 0
