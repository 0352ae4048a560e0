"""Offline search: diacritics of the five languages, prefixes, phones, safety, ranking."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from client_sdk import search
from client_sdk.database import LocalDatabase, LocalRecord
from client_sdk.errors import (
    InvalidSearchLimitError,
    InvalidSearchTextError,
    UnknownSearchEntityError,
)
from client_sdk.search import build_match_expression, document_for, fold_search_text


def record(entity: str, id_: str, **fields: object) -> LocalRecord:
    return LocalRecord(entity=entity, id=id_, version=1, fields=fields)


def ids(hits: list[search.SearchHit]) -> list[str]:
    return [h.id for h in hits]


@pytest.fixture
def db(local_db: LocalDatabase) -> LocalDatabase:
    local_db.upsert_records(
        [
            record(
                "account", "it", name="Pasticceria Città Alta", address1_city="Città di Castello"
            ),
            record("account", "pl", name="Żółw Sp. z o.o.", address1_city="Łódź"),
            record("contact", "de", fullname="Jürgen Müller", address1_city="München"),
            record("contact", "fr", fullname="François Lefèvre", address1_city="Besançon"),
            record("lead", "es", fullname="Señor Peña", companyname="Niño y Asociados"),
            record("account", "street", name="Autohaus Straße", address1_city="Köln"),
            record("contact", "oe", fullname="Œuvre Ærø Đorđe", jobtitle="Buyer"),
            record(
                "contact",
                "phone",
                fullname="Anna Rossi",
                emailaddress1="anna.rossi@example.it",
                telephone1="+39 02 1234 5678",
                mobilephone="0049 30 9876543",
            ),
            record("opportunity", "opp", name="Fornitura Düsseldorf"),
            record("quote", "quote", name="Offerta", quotenumber="Q-2024-0042"),
            record("appointment", "appt", subject="Visita cliente", location="Kraków"),
        ]
    )
    return local_db


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # Italian
        ("citta", "it"),
        ("Città", "it"),
        ("CITTA DI CAST", "it"),
        # Polish: ł does not decompose in Unicode; ż, ó, ź do.
        ("lodz", "pl"),
        ("Łódź", "pl"),
        ("zolw", "pl"),
        ("ZÓŁW", "pl"),
        ("krakow", "appt"),
        # German: umlauts fold to the base letter, and also match their transliteration.
        ("muller", "de"),
        ("mueller", "de"),
        ("jurgen", "de"),
        ("juergen muell", "de"),
        ("munchen", "de"),
        ("dusseldorf", "opp"),
        # ß is folded to "ss" on both sides.
        ("strasse", "street"),
        ("straße", "street"),
        ("STRASSE", "street"),
        ("koln", "street"),
        # French
        ("francois", "fr"),
        ("lefevre", "fr"),
        ("besancon", "fr"),
        # Spanish
        ("senor", "es"),
        ("pena", "es"),
        ("nino", "es"),
        # Letters without a decomposition, folded by hand.
        ("oeuvre", "oe"),
        ("aero", "oe"),
        ("dorde", "oe"),
    ],
)
def test_diacritics_fold_in_all_five_languages(
    db: LocalDatabase, query: str, expected: str
) -> None:
    assert ids(db.search(query)) == [expected]


def test_strasse_misspelling_is_not_a_match(db: LocalDatabase) -> None:
    assert db.search("strase") == []


@pytest.mark.parametrize("query", ["mül", "mul", "mu", "Müll", "MUELL", "jü müll"])
def test_prefixes(db: LocalDatabase, query: str) -> None:
    assert "de" in ids(db.search(query))


def test_one_letter_words_are_whole_words_not_prefixes(db: LocalDatabase) -> None:
    assert db.search("m") == []
    assert build_match_expression("m üller") == '"m" AND "üller"*'


@pytest.mark.parametrize(
    "query",
    [
        "02 1234",
        "0212345678",
        "+39 02 1234",
        "0039 02 12345",
        "030 987",
        "+49 30 98",
        "anna.rossi@ex",
        "rossi@example",
    ],
)
def test_phones_and_emails(db: LocalDatabase, query: str) -> None:
    assert ids(db.search(query)) == ["phone"]


def test_quote_number_and_job_title(db: LocalDatabase) -> None:
    assert ids(db.search("q-2024-0042")) == ["quote"]
    assert ids(db.search("2024 004")) == ["quote"]
    assert build_match_expression("q-2024-0042") == '"q" AND (("2024"* AND "0042"*) OR "20240042"*)'
    assert ids(db.search("buyer")) == ["oe"]


@pytest.mark.parametrize(
    ("query", "finds_mueller"),
    [
        ('"', False),
        ('""', False),
        ('"müller', True),
        ("müller*", True),
        ("*", False),
        ("name:müller", False),  # "name" is just another word to match
        ("{fullname}: müller", False),
        ("NEAR(müller jürgen)", False),
        ("müller NEAR jürgen", False),
        ("müller AND OR NOT", False),
        ("-müller", True),
        ("^müller", True),
        ("müller +", True),
        ("(müller", True),
        ("müller)", True),
        ("müller\x00", True),
        ("' OR 1=1 --", False),
        ("a" * 10_000, False),
        ("🙂 müller", True),
        ("müller 12-34 +", False),
        ("", False),
        ("   ", False),
    ],
)
def test_fts_syntax_in_user_text_never_raises(
    db: LocalDatabase, query: str, finds_mueller: bool
) -> None:
    assert ("de" in ids(db.search(query))) is finds_mueller


def test_operators_typed_by_users_are_plain_words(db: LocalDatabase) -> None:
    # "AND"/"NOT"/"NEAR" are searched as words, so they narrow instead of acting.
    assert db.search("müller NOT") == []
    assert (
        build_match_expression('NEAR(a "b" cc*:d)') == '"NEAR"* AND "a" AND "b" AND "cc"* AND "d"'
    )


_FTS_NOISE = st.text(alphabet=st.sampled_from(list("\"*:^-+(){}., ANDORNEAT0129aüł'")), max_size=40)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.one_of(st.text(max_size=60), _FTS_NOISE))
def test_any_text_is_valid_fts5(db: LocalDatabase, text: str) -> None:
    expr = build_match_expression(text)
    if expr is not None:
        # Straight to FTS5, without search()'s safety net: a syntax error (or a phrase,
        # which detail=column refuses) raises here.
        for tier in search.tier_expressions(expr):
            db.conn.execute(
                "SELECT count(*) FROM search_index WHERE search_index MATCH ?", (tier,)
            ).fetchone()
    assert len(db.search(text)) <= 50


def test_entity_filter_and_validation(db: LocalDatabase) -> None:
    assert ids(db.search("rossi", entities=["contact"])) == ["phone"]
    assert db.search("rossi", entities=["account"]) == []
    assert ids(db.search("krakow", entities=("appointment", "account"))) == ["appt"]
    with pytest.raises(UnknownSearchEntityError) as info:
        db.search("x", entities=["systemuser"])
    assert info.value.code == "unknown_search_entity"
    for limit in (0, 501, True, 2.5):
        with pytest.raises(InvalidSearchLimitError):
            db.search("x", limit=limit)  # type: ignore[arg-type]
    with pytest.raises(InvalidSearchTextError):
        db.search(None)  # type: ignore[arg-type]


def test_hits_carry_entity_and_title(db: LocalDatabase) -> None:
    (hit,) = db.search("jurgen")
    assert (hit.entity, hit.id, hit.title) == ("contact", "de", "Jürgen Müller")
    assert 0 <= hit.score < 1  # tier 0: a whole name word
    assert 1 <= db.search("jurg")[0].score < 2  # tier 1: a prefix of a name word
    (lead,) = db.search("nino")
    assert lead.title == "Señor Peña Niño y Asociados"


def test_name_matches_rank_above_other_columns(local_db: LocalDatabase) -> None:
    local_db.upsert_records(
        [
            record(
                "contact", "email-only", fullname="Anna Bianchi", emailaddress1="rossi@example.it"
            ),
            record("contact", "city-only", fullname="Luca Verdi", address1_city="Rossiglione"),
            record("contact", "name", fullname="Mario Rossi"),
        ]
    )
    hits = local_db.search("rossi")
    assert ids(hits) == ["name", "email-only", "city-only"]
    assert [int(h.score) for h in hits] == [0, 2, 3]


def test_limit_and_many_hits(local_db: LocalDatabase) -> None:
    local_db.upsert_records(
        [record("contact", f"c{i:03}", fullname=f"Maria Nowak {i}") for i in range(120)]
    )
    assert len(local_db.search("nowak")) == 50
    assert len(local_db.search("nowak", limit=500)) == 120
    assert len(local_db.search("nowak", limit=7)) == 7


def test_ranking_tiers(local_db: LocalDatabase) -> None:
    local_db.upsert_records(
        [
            record(
                "contact",
                "prefix-elsewhere",
                fullname="Anna Bauer",
                emailaddress1="krausewitz@x.de",
            ),
            record("contact", "exact-elsewhere", fullname="Eva Lang", emailaddress1="kraus@x.de"),
            record("account", "prefix-name-long", name="Krause und Söhne Maschinenbau GmbH"),
            record("account", "prefix-name", name="Krause GmbH"),
            record("contact", "exact-name-long", fullname="Dr. Hans-Peter Kraus"),
            record("contact", "exact-name", fullname="Jan Kraus"),
        ]
    )
    assert ids(local_db.search("kraus")) == [
        "exact-name",
        "exact-name-long",
        "prefix-name",
        "prefix-name-long",
        "exact-elsewhere",
        "prefix-elsewhere",
    ]
    assert ids(local_db.search("kraus", limit=3)) == [
        "exact-name",
        "exact-name-long",
        "prefix-name",
    ]
    assert ids(local_db.search("kraus", entities=["account"])) == [
        "prefix-name",
        "prefix-name-long",
    ]


def test_broad_queries_fill_the_limit_from_the_best_tiers(local_db: LocalDatabase) -> None:
    local_db.upsert_records(
        [record("account", f"p{i:03}", name=f"Marcopolo {i}") for i in range(200)]
        + [record("account", f"e{i:03}", name=f"Marco {i}") for i in range(200)]
    )
    hits = local_db.search("marco", limit=50)
    assert len(hits) == 50
    assert all(h.id.startswith("e") for h in hits)  # whole-word matches first


def test_search_follows_updates_deletes_and_purges(local_db: LocalDatabase) -> None:
    local_db.upsert_records(
        [record("account", "a1", name="Alfa Romeo"), record("account", "a2", name="Alfa Beta")]
    )
    local_db.upsert_records(
        [LocalRecord(entity="account", id="a1", version=2, fields={"name": "Lancia"})]
    )
    assert ids(local_db.search("romeo")) == []
    assert ids(local_db.search("lancia")) == ["a1"]
    local_db.upsert_records([LocalRecord(entity="account", id="a1", version=3, deleted=True)])
    assert ids(local_db.search("lancia")) == []
    local_db.upsert_records(
        [LocalRecord(entity="account", id="a1", version=4, fields={"name": "Lancia"})]
    )
    assert ids(local_db.search("lancia")) == ["a1"]
    local_db.purge_records([("account", "a2")])
    assert ids(local_db.search("alfa")) == []
    # Tombstones and untracked entities never reach the index.
    local_db.upsert_records(
        [
            LocalRecord(
                entity="account", id="gone", version=1, fields={"name": "Ghost"}, deleted=True
            ),
            record("task", "t1", subject="Ghost task"),
        ]
    )
    assert local_db.search("ghost") == []


def test_rebuild_search_index(db: LocalDatabase) -> None:
    before = {q: ids(db.search(q)) for q in ("lodz", "muller", "rossi", "q-2024")}
    db.conn.execute(search.DELETE_ALL_DOCUMENTS_SQL)
    db.conn.commit()
    assert db.search("lodz") == []
    assert db.rebuild_search_index() == 11
    assert {q: ids(db.search(q)) for q in before} == before


def test_document_for_fields() -> None:
    doc = document_for(
        "contact",
        {
            "firstname": "Jürgen",
            "lastname": "Weiß",
            "address1_city": "Łódź",
            "mobilephone": "+48 601 234 567",
            "telephone1": 12345,  # not a string: ignored
        },
    )
    # ł and ß are folded here; ó, ź and ü are left to the tokenizer.
    assert doc == ("Jürgen Weiss Juergen", "Lódź", "", "", "601234567")
    assert document_for("systemuser", {"name": "x"}) is None


def reference_document(entity: str, fields: dict[str, object]) -> search.SearchDocument:
    """What a search document is, written the obvious way: the compiled per-entity
    builders behind :func:`document_for` must agree with it on every input."""
    spec = search.SEARCHABLE_ENTITIES[entity]

    def joined(names: tuple[str, ...]) -> str:
        return " ".join(v for n in names if type(v := fields.get(n)) is str and v)

    phones = [v for n in spec.phone if type(v := fields.get(n)) is str and v]
    return (
        search._fold_name(joined(spec.name) or joined(spec.name_fallback)),
        search._fold_name(joined(spec.city)),
        fold_search_text(joined(spec.email)),
        fold_search_text(joined(spec.subject)),
        " ".join(search.national_digits(p) for p in phones),
    )


_MAPPED_FIELDS = sorted(
    {
        f
        for spec in search.SEARCHABLE_ENTITIES.values()
        for names in (spec.name, spec.name_fallback, spec.city, spec.email, spec.subject)
        for f in (*names, *spec.phone)
    }
)
_FIELD_VALUES = st.one_of(
    st.text(alphabet=st.sampled_from(list("aZ ßłüÄöéœŁ0+()-9")), max_size=12),
    st.text(max_size=12),
    st.sampled_from(["", " ", "n/a", "+39 02 1234567", "0049 30 123", "Müller Groß"]),
    st.none(),
    st.integers(),
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(sorted(search.SEARCHABLE_ENTITIES)),
    st.dictionaries(st.sampled_from(_MAPPED_FIELDS), _FIELD_VALUES, max_size=8),
)
@example("contact", {"telephone1": "n/a", "mobilephone": "+39 02 1234567"})  # "" then digits
@example("contact", {"fullname": "", "firstname": "Jörg", "lastname": 7})  # name fallback
@example("lead", {"fullname": "Zoë", "companyname": "Łódź S.A.", "subject": "Straße"})
def test_compiled_document_builders_match_the_definition(
    entity: str, fields: dict[str, object]
) -> None:
    expected = reference_document(entity, fields)
    assert document_for(entity, fields) == expected
    assert document_for(entity, fields) == expected  # again, from the fold memo
    assert search.document_builder(entity) is not None


def test_fold_memo_is_bounded() -> None:
    (memo,) = (
        cell.cell_contents
        for cell in search._fold_name_memo.__closure__ or ()
        if isinstance(cell.cell_contents, dict)
    )
    for i in range(search._FOLD_MEMO_SIZE + 10):
        assert search._fold_name_memo(f"Müller {i}") == f"Müller {i} Mueller"
        assert len(memo) <= search._FOLD_MEMO_SIZE
    assert search._fold_name_memo("plain") == "plain"  # ASCII is never stored
    assert "plain" not in memo


@pytest.mark.parametrize(
    ("phone", "national"),
    [
        ("+39 02 1234567", "021234567"),
        ("+49 (30) 123-45", "03012345"),
        ("0033 1 23 45 67 89", "0123456789"),
        ("+34 912 345 678", "912345678"),
        ("02 1234567", "021234567"),
        ("+1 555 0100", "15550100"),
        ("", ""),
    ],
)
def test_national_digits(phone: str, national: str) -> None:
    assert search.national_digits(phone) == national


def test_fold_search_text() -> None:
    assert fold_search_text("plain ascii") == "plain ascii"
    assert fold_search_text("Łódź Straße Øre ﬁne") == "Lódź Strasse Ore fine"
