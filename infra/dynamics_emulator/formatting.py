"""Formatted values (``<col>@OData.Community.Display.V1.FormattedValue``) per UI language.

Dataverse formats values for the calling user's language and time zone. The emulator picks the
language from ``Accept-Language`` among :data:`~infra.dynamics_emulator.labels.LANGUAGES`
(falling back to English) and always uses UTC as the user's time zone.
"""

from __future__ import annotations

from datetime import UTC, datetime

from infra.dynamics_emulator.labels import LANGUAGES, OPTION_SETS, YES_NO, language_index

FORMATTED = "@OData.Community.Display.V1.FormattedValue"

_NBSP = "\u00a0"
#: (thousands separator, decimal separator) per language.
_SEPARATORS = {
    "en": (",", "."),
    "de": (".", ","),
    "it": (".", ","),
    "fr": (_NBSP, ","),
    "es": (".", ","),
    "pl": (_NBSP, ","),
}
_DATE_ORDER = {"de": ".", "pl": ".", "it": "/", "fr": "/", "es": "/"}
_SYMBOLS = {"EUR": "€", "PLN": "zł"}


def choose_language(accept_language: str | None) -> str:
    """Pick the supported language a client prefers most.

    Args:
        accept_language: An ``Accept-Language`` header such as ``"de-DE,de;q=0.9,en;q=0.5"``.

    Returns:
        One of ``en de it fr es pl``; ``en`` when nothing matches.
    """
    if not accept_language:
        return "en"
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept_language.split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else "en"


def _group(integer_part: str, separator: str) -> str:
    groups = []
    while len(integer_part) > 3:
        groups.append(integer_part[-3:])
        integer_part = integer_part[:-3]
    groups.append(integer_part)
    return separator.join(reversed(groups))


class ValueFormatter:
    """Formats raw column values as labels in one language."""

    def __init__(self, language: str) -> None:
        self.language = language if language in LANGUAGES else "en"
        self._index = language_index(self.language)
        self._thousands, self._decimal = _SEPARATORS[self.language]

    def number(self, value: float, decimals: int = 0) -> str:
        """Format a number with the language's separators (``1.234,56`` in German)."""
        negative = value < 0
        text = f"{abs(value):.{decimals}f}"
        integer_part, _, fraction = text.partition(".")
        grouped = _group(integer_part, self._thousands)
        out = f"{grouped}{self._decimal}{fraction}" if fraction else grouped
        return f"-{out}" if negative else out

    def money(self, value: float, currency: str = "EUR") -> str:
        """Format an amount with its currency symbol where the language puts it."""
        symbol = _SYMBOLS.get(currency, currency)
        amount = self.number(value, 2)
        if self.language == "en":
            return f"-{symbol}{amount[1:]}" if amount.startswith("-") else f"{symbol}{amount}"
        return f"{amount}{_NBSP}{symbol}"

    def datetime(self, iso: str) -> str:
        """Format an ISO-8601 UTC instant the way the language writes dates and times."""
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC)
        if self.language == "en":
            hour = moment.hour % 12 or 12
            suffix = "AM" if moment.hour < 12 else "PM"
            return f"{moment.month}/{moment.day}/{moment.year} {hour}:{moment.minute:02d} {suffix}"
        return f"{self.date(iso[:10])} {moment.hour:02d}:{moment.minute:02d}"

    def date(self, iso_date: str) -> str:
        """Format an ISO-8601 date (``YYYY-MM-DD``) in the language's order."""
        year, month, day = iso_date[:10].split("-")
        if self.language == "en":
            return f"{int(month)}/{int(day)}/{year}"
        return f"{day}{_DATE_ORDER[self.language]}{month}{_DATE_ORDER[self.language]}{year}"

    def option(self, option_set: str, value: int) -> str | None:
        """Return the label of an option set value, or ``None`` if the value is unknown."""
        labels = OPTION_SETS.get(option_set, {}).get(value)
        return None if labels is None else labels[self._index]

    def boolean(self, value: bool) -> str:
        """Return the Yes/No label of a two-options value."""
        return YES_NO[bool(value)][self._index]
