"""Request options: the ``Prefer`` header and the OData system query options.

The raw query string is parsed here once, keeping the encoded ``name=value`` pairs so links
(``@odata.nextLink``, ``@odata.deltaLink``) repeat the client's options byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote_plus

from infra.dynamics_emulator.errors import BadRequestError

#: System query options the emulator understands; any other ``$option`` is rejected.
SUPPORTED_OPTIONS = frozenset(
    {"$select", "$filter", "$orderby", "$top", "$count", "$expand", "$skiptoken", "$deltatoken"}
)
_REJECTED_OPTIONS = {
    "$skip": "The query parameter $skip is not supported. Use the @odata.nextLink of the "
    "response to page results.",
}


def split_header_list(value: str) -> list[str]:
    """Split a comma-separated header value, keeping commas inside double quotes."""
    items: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    items.append("".join(current).strip())
    return [item for item in items if item]


@dataclass(frozen=True, slots=True)
class Preferences:
    """The ``Prefer`` header preferences the Web API honours.

    Attributes:
        max_page_size: ``odata.maxpagesize=N`` (``None`` when not sent).
        track_changes: ``odata.track-changes``.
        annotations: Patterns of ``odata.include-annotations="..."`` (empty: none).
        annotations_raw: The header value as sent, echoed in ``Preference-Applied``.
        return_representation: ``return=representation``.
        continue_on_error: ``odata.continue-on-error`` (``$batch``).
    """

    max_page_size: int | None = None
    track_changes: bool = False
    annotations: tuple[str, ...] = ()
    annotations_raw: str | None = None
    return_representation: bool = False
    continue_on_error: bool = False

    @classmethod
    def parse(cls, header: str | None) -> Preferences:
        """Parse one or more (comma-joined) ``Prefer`` header values; unknown ones are ignored."""
        if not header:
            return cls()
        max_page_size: int | None = None
        track_changes = False
        annotations: tuple[str, ...] = ()
        annotations_raw: str | None = None
        return_representation = False
        continue_on_error = False
        for item in split_header_list(header):
            name, _, value = item.partition("=")
            name = name.strip().lower()
            value = value.strip()
            if name == "odata.maxpagesize":
                try:
                    max_page_size = int(value)
                except ValueError as e:
                    raise BadRequestError(
                        f"The odata.maxpagesize preference '{value}' is not a number."
                    ) from e
                if max_page_size <= 0:
                    raise BadRequestError("The odata.maxpagesize preference must be positive.")
            elif name == "odata.track-changes":
                track_changes = True
            elif name == "odata.include-annotations":
                annotations_raw = value
                annotations = tuple(p.strip() for p in value.strip('"').split(",") if p.strip())
            elif name == "return" and value.lower() == "representation":
                return_representation = True
            elif name in ("odata.continue-on-error", "continue-on-error"):
                continue_on_error = True
        return cls(
            max_page_size,
            track_changes,
            annotations,
            annotations_raw,
            return_representation,
            continue_on_error,
        )


class AnnotationFilter:
    """Which instance annotations a client asked for (``*``, ``ns.*``, exact, ``-exclusion``)."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self._include = tuple(p for p in patterns if not p.startswith("-"))
        self._exclude = tuple(p[1:] for p in patterns if p.startswith("-"))

    @staticmethod
    def _match(pattern: str, term: str) -> bool:
        if pattern == "*":
            return True
        if pattern.endswith(".*"):
            return term.startswith(pattern[:-1])
        return pattern == term

    def wants(self, term: str) -> bool:
        """True when the annotation ``term`` should be written."""
        if any(self._match(p, term) for p in self._exclude):
            return False
        return any(self._match(p, term) for p in self._include)

    @property
    def any(self) -> bool:
        """True when at least one annotation may be written."""
        return bool(self._include)


@dataclass(frozen=True, slots=True)
class QueryOptions:
    """System query options of a request, decoded, plus the raw pairs for building links."""

    select: tuple[str, ...] | None = None
    filter: str | None = None
    orderby: str | None = None
    top: int | None = None
    count: bool = False
    expand: str | None = None
    skiptoken: str | None = None
    deltatoken: str | None = None
    raw_pairs: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, query_string: str) -> QueryOptions:
        """Parse a raw (still URL-encoded) query string.

        Raises:
            BadRequestError: An unsupported or repeated system query option, or a bad value.
        """
        values: dict[str, str] = {}
        raw_pairs: list[tuple[str, str]] = []
        for part in query_string.split("&"):
            if not part:
                continue
            raw_name, _, raw_value = part.partition("=")
            name = unquote_plus(raw_name).strip()
            raw_pairs.append((name, part))
            if not name.startswith("$"):
                continue  # custom query options are ignored, as by OData services
            lowered = name.lower()
            if lowered in _REJECTED_OPTIONS:
                raise BadRequestError(_REJECTED_OPTIONS[lowered])
            if lowered not in SUPPORTED_OPTIONS:
                raise BadRequestError(f"The query parameter {name} is not supported.")
            if lowered in values:
                raise BadRequestError(f"Query option '{name}' was specified more than once.")
            values[lowered] = unquote_plus(raw_value)
        select = None
        if "$select" in values:
            select = tuple(c.strip() for c in values["$select"].split(",") if c.strip())
            if not select:
                raise BadRequestError("The $select query option must name at least one column.")
        top = None
        if "$top" in values:
            try:
                top = int(values["$top"])
            except ValueError as e:
                raise BadRequestError(f"Invalid value '{values['$top']}' for $top.") from e
            if top < 0:
                raise BadRequestError("The $top query option must not be negative.")
        count = False
        if "$count" in values:
            lowered_count = values["$count"].strip().lower()
            if lowered_count not in ("true", "false"):
                raise BadRequestError("The $count query option must be true or false.")
            count = lowered_count == "true"
        return cls(
            select=select,
            filter=values.get("$filter"),
            orderby=values.get("$orderby"),
            top=top,
            count=count,
            expand=values.get("$expand"),
            skiptoken=values.get("$skiptoken"),
            deltatoken=values.get("$deltatoken"),
            raw_pairs=tuple(raw_pairs),
        )

    def has(self, option: str) -> bool:
        """True when the system query option (e.g. ``$filter``) was sent."""
        return any(name.lower() == option for name, _ in self.raw_pairs)

    def link_query(self, drop: tuple[str, ...] = ("$skiptoken", "$deltatoken")) -> str:
        """Return the raw query string without the named options (for building links)."""
        return "&".join(raw for name, raw in self.raw_pairs if name.lower() not in drop)
