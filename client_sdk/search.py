"""Offline multilingual full-text search over the local replica (SQLite FTS5).

One contentless FTS5 table, ``search_index``, holds a document per live (not deleted)
record of the six searchable entities. Its rowid is the record's ``records.doc``
(``entity_code << 40 | n``, see :mod:`client_sdk.database`), and its columns are
*roles* filled per entity from the record's fields (see :data:`SEARCHABLE_ENTITIES`):
``name``, ``city``, ``email``, ``subject``, ``phone``. ``database.upsert_records``
keeps it in step with ``records`` in the same transaction (explicit maintenance:
measured faster than triggers, which would have to re-extract the text from the
JSONB blob through Python functions). Hits are joined back to ``records`` by rowid.

Because the entity code sits in the rowid's high bits, an entity filter is a rowid
range that FTS5 applies while it walks its doclists, and because ``n`` grows, FTS
inserts append (random rowids made indexing about 4x slower).

Folding (the same at index and query time):
- ``unicode61 remove_diacritics 2`` folds case and the diacritics that Unicode
  decomposes: à é ì ò ù ç ñ ä ö ü ą ć ę ń ó ś ź ż, so "citta" finds "Città",
  "senor" finds "Señor", "francois" finds "François", "muller" finds "Müller".
- Letters that do *not* decompose are folded here first: ł->l (so "lodz" finds
  "Łódź", "zolw" finds "Żółw"), ß->ss ("strasse" and "straße" both find "Straße";
  "strase" does not), ø->o, đ/ð->d, æ->ae, œ->oe, þ->th, dotless i->i, ħ->h, ŧ->t.
- Names and cities containing ä/ö/ü are also indexed in their German transliteration
  (Müller -> also "Mueller"), so "mueller" finds "Müller" as German users type it.
- Text is NFKC-normalised (ligatures, full-width letters).
- Phone numbers are indexed as one token: their national digits (after +39, +49,
  +33, +34, +48, +43, +41 or 00-prefixed forms, with the trunk 0 where that country
  dials one). A query's run of digit groups matches either those groups as words
  (quote and account numbers) or its national digits joined, so "02 1234", "021234",
  "+39 02 1234" and "0039021234" all find "+39 02 1234567".

Query safety: user text is never passed to FTS5 as syntax. It is folded and split
into words; each word becomes a double-quoted string (so ``"``, ``*``, ``:``,
``NEAR``, ``AND``, ``-``, ``^`` and parentheses are plain text), words of two or more
characters become prefix terms (``"mul"*``), one-character words match whole words
only (a one-letter prefix would match a large part of the replica). Terms are ANDed.

Ranking, in tiers: (0) every word whole in the name, (1) every word a prefix of name
words, (2) every word whole in any column, (3) prefixes anywhere; within a tier,
shorter titles (closer matches) first. Each tier is one FTS5 query in rowid order with
a LIMIT, so FTS5 streams its doclists and stops early. bm25 is not used: its IDF pass
reads the whole doclist of every query term, measured on 1,000,000 records at 10 ms
for "de" and 270 ms for "gmail" (plus about 8 us per match ranked), against a search
p99 goal of 20 ms. The index is ``detail=column`` (no token positions: smaller, faster
to write and to scan; column filters still work). Phrases are therefore unsupported,
which is why every query word must be a single token (see :func:`build_match_expression`).
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from client_sdk.errors import (
    InvalidSearchLimitError,
    InvalidSearchTextError,
    UnknownSearchEntityError,
)

_log = logging.getLogger(__name__)

DOC_ID_SHIFT: Final = 40
MAX_SEARCH_LIMIT: Final = 500
MAX_QUERY_TERMS: Final = 8
MAX_TERM_CHARS: Final = 64
MAX_QUERY_CHARS: Final = 512
MIN_PREFIX_CHARS: Final = 2

SEARCH_COLUMNS: Final = ("name", "city", "email", "subject", "phone")


@dataclass(frozen=True, slots=True)
class EntitySearchSpec:
    """Which record fields feed which search column for one entity.

    ``code`` is persisted in document ids (``records.doc``): never renumber an entity.
    ``name_fallback`` is used when every ``name`` field is empty (e.g. a contact
    without ``fullname``). ``title`` fields make the hit's display title.
    """

    entity: str
    code: int
    title: tuple[str, ...]
    name: tuple[str, ...] = ()
    name_fallback: tuple[str, ...] = ()
    city: tuple[str, ...] = ()
    email: tuple[str, ...] = ()
    subject: tuple[str, ...] = ()
    phone: tuple[str, ...] = ()


# Field names are Dynamics 365 logical names (see shared DYNAMICS_WEB_API.md).
# Changing a mapping needs a migration that calls LocalDatabase.rebuild_search_index.
SEARCHABLE_ENTITIES: Final[Mapping[str, EntitySearchSpec]] = {
    spec.entity: spec
    for spec in (
        EntitySearchSpec(
            entity="account",
            code=1,
            title=("name",),
            name=("name", "accountnumber"),
            city=("address1_city",),
            email=("emailaddress1",),
            phone=("telephone1",),
        ),
        EntitySearchSpec(
            entity="contact",
            code=2,
            title=("fullname",),
            name=("fullname",),
            name_fallback=("firstname", "lastname"),
            city=("address1_city",),
            email=("emailaddress1",),
            subject=("jobtitle",),
            phone=("telephone1", "mobilephone"),
        ),
        EntitySearchSpec(
            entity="lead",
            code=3,
            title=("fullname", "companyname"),
            name=("fullname", "companyname"),
            name_fallback=("firstname", "lastname"),
            city=("address1_city",),
            email=("emailaddress1",),
            subject=("subject",),
            phone=("telephone1", "mobilephone"),
        ),
        EntitySearchSpec(entity="opportunity", code=4, title=("name",), name=("name",)),
        EntitySearchSpec(
            entity="quote",
            code=5,
            title=("name", "quotenumber"),
            name=("name", "quotenumber"),
        ),
        EntitySearchSpec(
            entity="appointment",
            code=6,
            title=("subject",),
            subject=("subject",),
            city=("location",),
        ),
    )
}
_ENTITY_BY_CODE: Final = {spec.code: spec for spec in SEARCHABLE_ENTITIES.values()}
_TITLE_FIELDS: Final = tuple(
    sorted({f for spec in SEARCHABLE_ENTITIES.values() for f in (*spec.title, *spec.name_fallback)})
)

SEARCH_SCHEMA: Final[tuple[str, ...]] = (
    """CREATE VIRTUAL TABLE search_index USING fts5(
        name, city, email, subject, phone,
        content='', contentless_delete=1,
        tokenize='unicode61 remove_diacritics 2', prefix='2 3', detail=column)""",
    # A bigger pending-terms buffer (default 1 MiB) means fewer, larger level-0
    # segments during a bootstrap, hence less merging. Persisted in search_index_config.
    "INSERT INTO search_index(search_index, rank) VALUES ('hashsize', 8388608)",
)

INSERT_DOCUMENT_SQL: Final = (
    "INSERT INTO search_index(rowid, name, city, email, subject, phone) VALUES (?, ?, ?, ?, ?, ?)"
)
REPLACE_DOCUMENT_SQL: Final = (
    "INSERT OR REPLACE INTO search_index(rowid, name, city, email, subject, phone)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
INSERT_DOCUMENTS_JSON_SQL: Final = (
    "INSERT INTO search_index(rowid, name, city, email, subject, phone)"
    " SELECT ?1 + key, value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4"
    " FROM jsonb_each(?2)"
)
"""Documents of consecutive rowids from ``?1`` on, from a JSON array of
:data:`SearchDocument` arrays (one statement: SQLite works without the GIL throughout)."""
DELETE_DOCUMENT_SQL: Final = "DELETE FROM search_index WHERE rowid = ?"
DELETE_ALL_DOCUMENTS_SQL: Final = "INSERT INTO search_index(search_index) VALUES ('delete-all')"

SearchDocument = tuple[str, str, str, str, str]
"""``(name, city, email, subject, phone)`` as written to ``search_index``."""


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One search result, best first.

    ``score``: lower is better. Its integer part is the match tier (0: every word whole
    in the name, 1: every word a prefix of a name word, 2: every word whole in any
    column, 3: prefixes in any column); its fraction ranks within the tier by title
    length (shorter, so closer, first).
    ``title`` is the record's display name (e.g. account name, contact full name).
    """

    entity: str
    id: str
    score: float
    title: str


# --- folding -------------------------------------------------------------------------

_FOLD_MAP: Final = {
    "ł": "l",
    "Ł": "L",
    "ß": "ss",
    "ẞ": "SS",
    "ø": "o",
    "Ø": "O",
    "đ": "d",
    "Đ": "D",
    "ð": "d",
    "Ð": "D",
    "æ": "ae",
    "Æ": "AE",
    "œ": "oe",
    "Œ": "OE",
    "þ": "th",
    "Þ": "TH",
    "\u0131": "i",  # dotless i
    "ħ": "h",
    "Ħ": "H",
    "ŧ": "t",
    "Ŧ": "T",
    "ŀ": "l",
    "Ŀ": "L",
}
_FOLD_TABLE: Final = str.maketrans(_FOLD_MAP)
_NEEDS_FOLD: Final = re.compile("[" + "".join(_FOLD_MAP) + "]")
_UMLAUT: Final = re.compile("[äöüÄÖÜ]")
_UMLAUT_TABLE: Final = str.maketrans(
    {"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"}
)
# Mirrors unicode61's token characters (letters and numbers); "_" is a separator there.
_WORD: Final = re.compile(r"[^\W_]+")
_NON_DIGIT: Final = re.compile(r"[^0-9]+")
# A run of digit groups as people write phone numbers ("+39 02 1234", "030/12-34"),
# or a word. Runs come first so their groups are seen together.
_QUERY_TOKEN: Final = re.compile(
    r"(?P<run>(?<!\w)\+?[0-9]+(?:[ \-./()]+[0-9]+)*(?!\w))|(?P<word>[^\W_]+)"
)
_DIGITS: Final = re.compile(r"[0-9]+")
# Country code -> trunk prefix used when the number is dialled nationally.
_NATIONAL_TRUNK: Final = {"39": "", "49": "0", "33": "0", "34": "", "48": "", "43": "0", "41": "0"}


def fold_search_text(text: str) -> str:
    """Fold what unicode61 cannot: NFKC, then ł->l, ß->ss, ø->o, æ->ae, œ->oe...

    Case and decomposable diacritics are left to the FTS5 tokenizer.
    """
    if text.isascii():
        return text
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    if _NEEDS_FOLD.search(text) is not None:
        text = text.translate(_FOLD_TABLE)
    return text


def _fold_name(text: str) -> str:
    """:func:`fold_search_text` plus the German transliteration of umlaut words."""
    if text.isascii():
        return text
    folded = fold_search_text(text)
    if _UMLAUT.search(folded) is None:
        return folded
    variants = [w.translate(_UMLAUT_TABLE) for w in folded.split() if _UMLAUT.search(w)]
    return f"{folded} {' '.join(variants)}"


_ASCII_NON_DIGITS: Final = bytes(c for c in range(128) if not 0x30 <= c <= 0x39)


def national_digits(phone: str) -> str:
    """A phone number as the national digits a user would dial (index and query form).

    "+39 02 1234567" -> "021234567", "0049 30 123" -> "030123", "02 1234" -> "021234";
    unknown country codes keep every digit.
    """
    if phone.isascii():
        digits = phone.encode("ascii").translate(None, _ASCII_NON_DIGITS).decode("ascii")
    else:
        digits = _NON_DIGIT.sub("", phone)
    if phone.lstrip().startswith("+"):
        international = digits
    elif digits.startswith("00") and len(digits) > 2:
        international = digits[2:]
    else:
        return digits
    # Every country code we know is two digits long.
    trunk = _NATIONAL_TRUNK.get(international[:2])
    if trunk is None or len(international) <= 2:
        return international
    return trunk + international[2:]


def _join(fields: Mapping[str, Any], names: tuple[str, ...]) -> str:
    if len(names) == 1:
        value = fields.get(names[0])
        return value if isinstance(value, str) else ""
    return " ".join(v for n in names if isinstance(v := fields.get(n), str) and v)


_FOLD_MEMO_SIZE: Final = 2048


def _memo(fold: Callable[[str], str]) -> Callable[[str], str]:
    """``fold`` remembering its last few thousand non-ASCII inputs: names and cities
    repeat, and a bootstrap would otherwise fold the same "München" thousands of times.
    Bounded (cleared when full), and safe to share between threads."""
    memo: dict[str, str] = {}

    def folded(text: str) -> str:
        if text.isascii():
            return text
        result = memo.get(text)
        if result is None:
            if len(memo) >= _FOLD_MEMO_SIZE:
                memo.clear()
            result = memo[text] = fold(text)
        return result

    return folded


_fold_name_memo: Final = _memo(_fold_name)
_fold_text_memo: Final = _memo(fold_search_text)


def _extractor(spec: EntitySearchSpec) -> Callable[[Mapping[str, Any]], SearchDocument]:
    """The document builder of one entity, compiled from its spec.

    It runs for every record of a bootstrap, so it is generated as straight-line code
    (one ``get`` per mapped field, no per-role helper calls), the way ``dataclasses``
    builds ``__init__``. Field names enter the source only as ``repr`` literals. Same
    result as: each role's string fields space-joined (non-strings and empty strings
    skipped; ``name_fallback`` when the name is empty), names and cities through
    :func:`_fold_name`, email and subject through :func:`fold_search_text`, phones as
    :func:`national_digits`, space-joined.
    """

    def joined(names: tuple[str, ...], indent: str = "    ") -> list[str]:
        """Lines that set ``text`` to the role's fields, space-joined."""
        if not names:
            return [f"{indent}text = ''"]
        if len(names) == 1:
            return [
                f"{indent}text = get({names[0]!r})",
                f"{indent}if type(text) is not str:",
                f"{indent}    text = ''",
            ]
        values = ", ".join(f"get({n!r})" for n in names)
        return [f"{indent}text = ' '.join([v for v in ({values},) if type(v) is str and v])"]

    lines = ["def extract(fields):", "    get = fields.get"]
    for role, names, fold in (
        ("name", spec.name, "fold_name"),
        ("city", spec.city, "fold_name"),
        ("email", spec.email, "fold_text"),
        ("subject", spec.subject, "fold_text"),
    ):
        lines += joined(names)
        if role == "name" and spec.name_fallback:
            lines.append("    if not text:")
            lines += joined(spec.name_fallback, "        ")
        lines.append(f"    {role} = {fold}(text) if text else ''")
    lines.append("    phone = None")
    for n in spec.phone:
        lines.append(f"    number = get({n!r})")
        lines.append("    if type(number) is str and number:")
        lines.append("        digits = national_digits(number)")
        lines.append("        phone = digits if phone is None else f'{phone} {digits}'")
    lines.append("    return (name, city, email, subject, phone or '')")
    namespace: dict[str, Any] = {
        "fold_name": _fold_name_memo,
        "fold_text": _fold_text_memo,
        "national_digits": national_digits,
    }
    exec("\n".join(lines), namespace)  # the source is built above from the spec only
    extract: Callable[[Mapping[str, Any]], SearchDocument] = namespace["extract"]
    return extract


_EXTRACTORS: Final = {entity: _extractor(spec) for entity, spec in SEARCHABLE_ENTITIES.items()}


def document_builder(entity: str) -> Callable[[Mapping[str, Any]], SearchDocument] | None:
    """The function :func:`document_for` uses for ``entity`` (None: not searchable), for
    callers that build the documents of many records of one entity."""
    return _EXTRACTORS.get(entity)


def document_for(entity: str, fields: Mapping[str, Any]) -> SearchDocument | None:
    """The search document of a live record, or None if its entity is not searchable.

    Args:
        entity: Entity logical name.
        fields: The record's field values; non-string values are ignored.

    Returns:
        ``(name, city, email, subject, phone)``, folded.
    """
    extract = _EXTRACTORS.get(entity)
    return None if extract is None else extract(fields)


def title_for(entity: str, fields: Mapping[str, Any]) -> str:
    """The display title of a record of a searchable entity ("" if none)."""
    spec = SEARCHABLE_ENTITIES.get(entity)
    if spec is None:
        return ""
    return _join(fields, spec.title) or _join(fields, spec.name_fallback)


def entity_code(entity: str) -> int:
    """The persisted numeric code of an entity: 1-6 if searchable, else 0."""
    spec = SEARCHABLE_ENTITIES.get(entity)
    return spec.code if spec else 0


def doc_range(code: int) -> tuple[int, int]:
    """Inclusive ``records.doc`` (= search rowid) range of an entity code."""
    return code << DOC_ID_SHIFT, ((code + 1) << DOC_ID_SHIFT) - 1


# --- querying ------------------------------------------------------------------------


def _term(word: str) -> str:
    word = word[:MAX_TERM_CHARS]
    return f'"{word}"*' if len(word) >= MIN_PREFIX_CHARS else f'"{word}"'


def _digit_run_term(run: str) -> str:
    groups = _DIGITS.findall(run)
    national = national_digits(run)
    if len(groups) == 1 and national == groups[0]:
        return _term(groups[0])
    # Either the groups as separate words (quote and account numbers are indexed as
    # written) or the joined national digits (phone numbers are indexed that way).
    return f"(({' AND '.join(_term(g) for g in groups)}) OR {_term(national)})"


_UCD_3_2: Final = unicodedata.ucd_3_2_0


def _single_tokens(word: str) -> list[str]:
    """Split a query word where unicode61 might: ``detail=column`` forbids phrases.

    unicode61 keeps letters and numbers of Unicode 6.1; a letter or number already in
    Unicode 3.2 (Python's oldest bundled database) is one for it too. Anything newer
    splits the word, so each piece is surely a single FTS5 token.
    """
    if word.isascii():
        return [word]
    pieces: list[str] = []
    start = 0
    for i, ch in enumerate(word):
        if _UCD_3_2.category(ch)[0] not in "LN":
            if i > start:
                pieces.append(word[start:i])
            start = i + 1
    if start < len(word):
        pieces.append(word[start:])
    return pieces


def build_match_expression(text: str) -> str | None:
    """Turn user text into a safe FTS5 MATCH expression (None if it has no words).

    Every word is a double-quoted single token, so no character of the input is FTS5
    syntax; words of two or more characters become prefix terms; terms are ANDed.
    A run of digit groups ("+39 02 1234") matches either its groups as words or its
    national phone digits.

    Raises:
        InvalidSearchTextError: ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise InvalidSearchTextError(f"search text must be a string, not {type(text).__name__}")
    terms: list[str] = []
    for match in _QUERY_TOKEN.finditer(fold_search_text(text[:MAX_QUERY_CHARS])):
        run, word = match.group("run", "word")
        if run:
            terms.append(_digit_run_term(run))
        else:
            terms.extend(_term(piece) for piece in _single_tokens(word))
    # Explicit AND: FTS5's implicit AND does not apply next to a parenthesised group.
    return " AND ".join(terms[:MAX_QUERY_TERMS]) or None


def _resolve_entities(entities: Iterable[str] | None) -> list[tuple[int, int] | None]:
    if entities is None:
        return [None]
    if isinstance(entities, str):
        entities = (entities,)
    ranges: list[tuple[int, int] | None] = []
    for entity in dict.fromkeys(entities):
        spec = SEARCHABLE_ENTITIES.get(entity) if isinstance(entity, str) else None
        if spec is None:
            raise UnknownSearchEntityError(f"entity {entity!r} is not searchable")
        ranges.append(doc_range(spec.code))
    return ranges


_TITLE_COLUMNS: Final = ", ".join(f"fields ->> '$.\"{f}\"'" for f in _TITLE_FIELDS)
_ROWIDS_SQL: Final = (
    "SELECT rowid FROM search_index WHERE search_index MATCH ? AND rowid BETWEEN ? AND ? LIMIT ?"
)


def tier_expressions(expr: str) -> tuple[str, str, str, str]:
    """The four match tiers of a query, best first.

    0: every word whole, in the name; 1: every word a prefix, in the name;
    2: every word whole, any column; 3: every word a prefix, any column (``expr``).
    """
    # Every "*" in an expression we built is a prefix marker (words hold no "*").
    exact = expr.replace("*", "")
    return f"{{name}} : ({exact})", f"{{name}} : ({expr})", exact, expr


def _search_range(
    conn: sqlite3.Connection, expr: str, bounds: tuple[int, int] | None, limit: int
) -> list[SearchHit]:
    low, high = bounds if bounds else (1 << DOC_ID_SHIFT, 2**63 - 1)
    tier_of: dict[int, int] = {}
    previous = None
    for tier, match in enumerate(tier_expressions(expr)):
        if len(tier_of) >= limit:
            break
        if match == previous:  # no prefix terms: tiers 1 and 3 repeat 0 and 2
            continue
        previous = match
        # Rowid order lets FTS5 stream its doclists and stop at the LIMIT; asking for
        # limit + seen rows guarantees `limit` new ones if the tier has them.
        for (rowid,) in conn.execute(_ROWIDS_SQL, (match, low, high, limit + len(tier_of))):
            tier_of.setdefault(rowid, tier)
    if not tier_of:
        return []
    hits = []
    for doc, id_, *titles in conn.execute(
        f"SELECT doc, id, {_TITLE_COLUMNS} FROM records"
        " WHERE doc IN (SELECT value FROM json_each(?))",
        (json.dumps(list(tier_of)),),
    ):
        spec = _ENTITY_BY_CODE[doc >> DOC_ID_SHIFT]
        title_fields = dict(zip(_TITLE_FIELDS, titles, strict=True))
        title = _join(title_fields, spec.title) or _join(title_fields, spec.name_fallback)
        # Within a tier, shorter titles first: "Kraus" is a closer match than "Krause".
        score = tier_of[doc] + len(title) / (len(title) + 1.0)
        hits.append(SearchHit(entity=spec.entity, id=id_, score=score, title=title))
    hits.sort(key=lambda h: (h.score, h.title, h.id))
    return hits[:limit]


def search(
    conn: sqlite3.Connection,
    text: str,
    entities: Sequence[str] | None = None,
    limit: int = 50,
) -> list[SearchHit]:
    """Full-text search of live records, best match first.

    Args:
        conn: An open connection to the local database.
        text: What the user typed; any string is safe.
        entities: Restrict to these searchable entities (None: all six).
        limit: Maximum number of hits, 1..500.

    Returns:
        Up to ``limit`` hits, best first (see :class:`SearchHit` for the score).

    Raises:
        InvalidSearchTextError: ``text`` is not a string.
        UnknownSearchEntityError: An entity in ``entities`` is not searchable.
        InvalidSearchLimitError: ``limit`` is not an int in 1..500.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SEARCH_LIMIT:
        raise InvalidSearchLimitError(f"limit must be an int in 1..{MAX_SEARCH_LIMIT}")
    ranges = _resolve_entities(entities)
    expr = build_match_expression(text)
    if expr is None:
        return []
    hits: list[SearchHit] = []
    for bounds in ranges:
        try:
            hits.extend(_search_range(conn, expr, bounds, limit))
        except Exception as e:
            # The expression builder makes syntax errors impossible; if FTS5 still
            # rejects one, answer "no hits" rather than fail the user's keystroke.
            if "fts5" not in str(e):
                raise
            _log.warning("search expression rejected by fts5: %s", type(e).__name__)
    # Tiers and bm25 (table-wide statistics) compare across per-entity queries.
    hits.sort(key=lambda h: (h.score, h.title, h.entity, h.id))
    return hits[:limit]
