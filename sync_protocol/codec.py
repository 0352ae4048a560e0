"""Encoding and decoding of wire messages, JSON or msgpack, with size limits.

Decoders are built once per (type, format). Every failure becomes a typed
:class:`~sync_protocol.errors.PayloadError`; nothing else escapes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import msgspec

from .changesets import PushRequest
from .errors import (
    MalformedPayloadError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from .version import check_version

Format = Literal["json", "msgpack"]
T = TypeVar("T")

JSON_TYPES = frozenset({"application/json", "application/problem+json"})
MSGPACK_TYPES = frozenset(
    {"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"}
)
MSGPACK_MEDIA_TYPE = "application/msgpack"
JSON_MEDIA_TYPE = "application/json"

_CHANGESET_ID_RE = re.compile(r"^([A-Za-z0-9_\-]{1,64}):([0-9]{1,19})$")


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits for incoming payloads."""

    max_body_bytes: int = 4 * 1024 * 1024
    max_mutations: int = 500
    max_fields_per_mutation: int = 200


DEFAULT_LIMITS = Limits()


def format_of(content_type: str | None) -> Format:
    """The wire format named by a ``Content-Type`` header (JSON when absent).

    Raises:
        UnsupportedMediaTypeError: neither JSON nor msgpack.
    """
    if not content_type:
        return "json"
    media = content_type.split(";", 1)[0].strip().lower()
    if media in JSON_TYPES or media.endswith("+json"):
        return "json"
    if media in MSGPACK_TYPES:
        return "msgpack"
    raise UnsupportedMediaTypeError(f"unsupported content type {media[:60]!r}")


def accepts_msgpack(accept: str | None) -> bool:
    """True if an ``Accept`` header prefers msgpack over JSON."""
    if not accept:
        return False
    best: tuple[float, Format] | None = None
    for part in accept.split(","):
        bits = part.strip().split(";")
        media = bits[0].strip().lower()
        q = 1.0
        for b in bits[1:]:
            k, _, v = b.strip().partition("=")
            if k == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        fmt: Format | None = (
            "msgpack" if media in MSGPACK_TYPES else "json" if media in JSON_TYPES else None
        )
        if fmt and (best is None or q > best[0]):
            best = (q, fmt)
    return best is not None and best[1] == "msgpack"


_decoders: dict[tuple[Any, Format], msgspec.json.Decoder[Any] | msgspec.msgpack.Decoder[Any]] = {}


def _decoder(cls: Any, fmt: Format) -> msgspec.json.Decoder[Any] | msgspec.msgpack.Decoder[Any]:
    dec = _decoders.get((cls, fmt))
    if dec is None:
        dec = msgspec.json.Decoder(cls) if fmt == "json" else msgspec.msgpack.Decoder(cls)
        _decoders[(cls, fmt)] = dec
    return dec


_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()


def encode(obj: Any, fmt: Format = "json") -> bytes:
    """Encode a wire message."""
    return _json_encoder.encode(obj) if fmt == "json" else _msgpack_encoder.encode(obj)


def decode(
    body: bytes, cls: type[T], fmt: Format = "json", max_bytes: int = DEFAULT_LIMITS.max_body_bytes
) -> T:
    """Decode a wire message of type ``cls``.

    Raises:
        PayloadTooLargeError: ``body`` is over ``max_bytes``.
        MalformedPayloadError: not valid for the format, or not of the schema; the
            message names the offending path (``$.mutations[3].clock``).
    """
    # No gc.disable() around large bodies: the bulk wire types decode to objects the
    # collector never visits (gc=False, tuples of atoms), so under 3% of a large decode is
    # spent collecting, and a pause only moves that work to the caller's next allocation
    # while switching the collector off for every thread (docs/protocol.md, Speed).
    if len(body) > max_bytes:
        raise PayloadTooLargeError(
            f"body of {len(body)} bytes exceeds {max_bytes}", limit=max_bytes
        )
    try:
        result: T = _decoder(cls, fmt).decode(body)
    except msgspec.ValidationError as e:
        raise MalformedPayloadError(str(e)[:300]) from e
    except (msgspec.DecodeError, UnicodeDecodeError, ValueError, OverflowError) as e:
        raise MalformedPayloadError(f"not valid {fmt}: {str(e)[:200]}") from e
    return result


def decode_push(
    body: bytes, content_type: str | None = None, limits: Limits = DEFAULT_LIMITS
) -> PushRequest:
    """Decode and structurally check a push request.

    Checks the protocol version, the changeset id (``<device_id>:<counter>``, matching the
    device id) and the mutation and field counts. Field values are checked later, per
    mutation, so one bad mutation does not sink the changeset.

    Raises:
        PayloadError: and its subclasses, or UnsupportedProtocolVersionError.
    """
    req = decode(body, PushRequest, format_of(content_type), limits.max_body_bytes)
    check_version(req.protocol)
    m = _CHANGESET_ID_RE.match(req.changeset_id)
    if m is None or m.group(1) != req.device_id:
        raise MalformedPayloadError("changeset_id must be '<device_id>:<counter>'")
    if not req.mutations:
        raise MalformedPayloadError("a changeset needs at least one mutation")
    if len(req.mutations) > limits.max_mutations:
        raise PayloadTooLargeError(
            f"{len(req.mutations)} mutations exceed {limits.max_mutations}",
            limit=limits.max_mutations,
        )
    for i, mut in enumerate(req.mutations):
        if len(mut.fields) > limits.max_fields_per_mutation:
            raise PayloadTooLargeError(
                f"mutation {i} sets too many fields", limit=limits.max_fields_per_mutation
            )
    return req


def changeset_counter(changeset_id: str) -> int:
    """The counter part of a well-formed changeset id."""
    return int(changeset_id.rsplit(":", 1)[1])
