"""Paging cookies (``$skiptoken``) and change-tracking tokens (``$deltatoken``).

Both are opaque to clients but follow Dataverse's documented shapes.

``$skiptoken`` (URL-encoded in ``@odata.nextLink``)::

    <cookie pagenumber="2" pagingcookie="%3ccookie%20page%3d%221%22%3e%3caccountid%20last%3d
    %22%7b...%7d%22%20first%3d%22%7b...%7d%22%20%2f%3e%3c%2fcookie%3e" istracking="False" />

The inner ``pagingcookie`` is itself URL-encoded (lowercase hex, as .NET writes it) and names
the first and last key of the page, in braces and upper case. The emulator adds attributes to
the inner cookie when it needs more state (a change-tracking high-water mark, a delta cursor).

``$deltatoken``: ``<version>!<MM/dd/yyyy HH:mm:ss>`` in UTC, e.g. ``919042!08/22/2017 08:10:44``,
URL-encoded with lowercase hex (``919042%2108%2f22%2f2017%2008%3a10%3a44``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from infra.dynamics_emulator.errors import BadRequestError
from infra.dynamics_emulator.identity import normalize_guid

_OUTER = re.compile(
    r'^\s*<cookie\s+pagenumber="(?P<page>\d+)"\s+pagingcookie="(?P<inner>[^"]*)"'
    r'\s+istracking="(?P<tracking>True|False)"\s*/>\s*$'
)
_ELEMENT = re.compile(r"<(?P<name>[A-Za-z_][\w]*)(?P<attrs>(?:\s+[\w]+=\"[^\"]*\")*)\s*/?>")
_ATTR = re.compile(r'(\w+)="([^"]*)"')
_DELTA = re.compile(r"^(?P<version>\d+)!(?P<stamp>\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2})$")
_HEX = re.compile(r"%[0-9A-F]{2}")


def dotnet_url_encode(text: str) -> str:
    """URL-encode like .NET ``HttpUtility.UrlEncode`` but with ``%20`` for spaces.

    Everything except ASCII letters, digits and ``-_.`` is escaped, with lowercase hex.
    """
    encoded = quote(text, safe="-_.")
    return _HEX.sub(lambda m: m.group(0).lower(), encoded)


@dataclass(frozen=True, slots=True)
class PagingCookie:
    """The decoded content of a ``$skiptoken``.

    Attributes:
        page: Number of the page this cookie asks for (``pagenumber``).
        key: Name of the key element in the inner cookie (e.g. ``accountid``).
        first: First key of the previous page.
        last: Last key of the previous page (paging continues after it).
        tracking: ``istracking`` (change tracking is on for this query).
        extra: Additional attributes of the inner ``<cookie>`` element.
    """

    page: int
    key: str
    first: str | None
    last: str | None
    tracking: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def encode(self) -> str:
        """Return the ``$skiptoken`` value, URL-encoded for use in a query string."""
        attrs = "".join(f' {k}="{v}"' for k, v in self.extra.items())
        first = f"{{{self.first.upper()}}}" if self.first else ""
        last = f"{{{self.last.upper()}}}" if self.last else ""
        inner = (
            f'<cookie page="{self.page - 1}"{attrs}><{self.key} last="{last}" first="{first}" />'
            "</cookie>"
        )
        outer = (
            f'<cookie pagenumber="{self.page}" pagingcookie="{dotnet_url_encode(inner)}" '
            f'istracking="{"True" if self.tracking else "False"}" />'
        )
        return quote(outer, safe="=/")

    @classmethod
    def decode(cls, value: str) -> PagingCookie:
        """Parse a ``$skiptoken`` value that was URL-decoded once by query parsing.

        Raises:
            BadRequestError: The value is not a paging cookie this service issued.
        """
        outer = _OUTER.match(value)
        if outer is None:
            raise BadRequestError("The $skiptoken value is not a valid paging cookie.")
        inner = unquote(outer.group("inner"))
        elements = list(_ELEMENT.finditer(inner))
        if len(elements) < 2 or elements[0].group("name") != "cookie":
            raise BadRequestError("The paging cookie in $skiptoken is malformed.")
        extra = dict(_ATTR.findall(elements[0].group("attrs")))
        extra.pop("page", None)
        key_element = elements[1]
        attrs = dict(_ATTR.findall(key_element.group("attrs")))
        first = normalize_guid(attrs["first"]) if attrs.get("first") else None
        last = normalize_guid(attrs["last"]) if attrs.get("last") else None
        if (attrs.get("first") and first is None) or (attrs.get("last") and last is None):
            raise BadRequestError("The paging cookie in $skiptoken holds an invalid key.")
        return cls(
            page=int(outer.group("page")),
            key=key_element.group("name"),
            first=first,
            last=last,
            tracking=outer.group("tracking") == "True",
            extra=extra,
        )


@dataclass(frozen=True, slots=True)
class DeltaToken:
    """A change-tracking position: changes after ``version``, issued at ``issued``."""

    version: int
    issued: datetime

    def text(self) -> str:
        """Return the raw token ``<version>!<MM/dd/yyyy HH:mm:ss>``."""
        return f"{self.version}!{self.issued.astimezone(UTC).strftime('%m/%d/%Y %H:%M:%S')}"

    def encode(self) -> str:
        """Return the token URL-encoded for a ``@odata.deltaLink``."""
        return dotnet_url_encode(self.text())

    @classmethod
    def decode(cls, value: str) -> DeltaToken:
        """Parse a ``$deltatoken`` value that was URL-decoded once by query parsing.

        Raises:
            BadRequestError: The value is not a delta token.
        """
        match = _DELTA.match(value.strip())
        if match is None:
            raise BadRequestError("The $deltatoken value is not a valid change tracking token.")
        try:
            issued = datetime.strptime(match.group("stamp"), "%m/%d/%Y %H:%M:%S")
        except ValueError as e:
            raise BadRequestError("The $deltatoken value holds an invalid timestamp.") from e
        return cls(int(match.group("version")), issued.replace(tzinfo=UTC))
