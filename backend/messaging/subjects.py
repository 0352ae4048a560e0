"""Every NATS subject, stream and header name the project uses, in one place.

Streams (JetStream, file storage, duplicate window = push idempotency window):

========================  ========================  ==============================================
stream                    subjects                  carries
========================  ========================  ==============================================
``SYNC_CHANGESETS``       ``sync.changesets.>``     device pushes, gateway -> applier
``SYNC_UPSTREAM``         ``sync.upstream.>``       Dynamics / file-import changes -> applier
``SYNC_OUTBOUND``         ``sync.outbound.>``       device-made changes, applier -> writeback
``SYNC_DEADLETTER``       ``sync.deadletter.>``     messages a consumer gave up on (poison)
========================  ========================  ==============================================

Core NATS (not stored):

* ``crm.events.<channel-token>``: "changes" pokes the applier publishes after a commit, one
  subject per sync channel, so a gateway subscribes only to the channels its sockets need.
* ``sync.results.<changeset-token>``: the applier's per-changeset result, for the gateway
  that is waiting on that push. The gateway may instead name its own reply subject in the
  :data:`RESULT_SUBJECT_HEADER` header of the published changeset; the applier answers there.

Names that become a subject token (channels, changeset ids, partitions, entity names) go
through :func:`encode_token`: NATS forbids ``.``, ``*``, ``>`` and whitespace inside a token,
and channel names are free text (``owner:7f3c...``, ``territory:IT-NW``, ``country:IT``,
``public``). The encoding is percent-style over UTF-8 bytes and reversible
(:func:`decode_token`); common names (letters, digits, ``:``, ``-``, ``_``) pass unchanged, so
subjects stay readable in monitoring tools.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.messaging.errors import InvalidNameError, SubjectTokenError

# ------------------------------------------------------------------ streams


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """What a stream is called and which subjects it stores.

    Attributes:
        name: Stream name.
        subjects: Subject filters the stream captures.
        description: One line for operators (shown by ``nats stream info``).
        dead_letter: Whether this is the dead-letter stream (kept longer).
    """

    name: str
    subjects: tuple[str, ...]
    description: str
    dead_letter: bool = False


CHANGESETS_STREAM = "SYNC_CHANGESETS"
UPSTREAM_STREAM = "SYNC_UPSTREAM"
OUTBOUND_STREAM = "SYNC_OUTBOUND"
DEADLETTER_STREAM = "SYNC_DEADLETTER"

CHANGESETS_PREFIX = "sync.changesets"
UPSTREAM_PREFIX = "sync.upstream"
OUTBOUND_PREFIX = "sync.outbound"
DEADLETTER_PREFIX = "sync.deadletter"
RESULTS_PREFIX = "sync.results"
EVENTS_PREFIX = "crm.events"

STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec(CHANGESETS_STREAM, (f"{CHANGESETS_PREFIX}.>",), "device changesets to apply"),
    StreamSpec(UPSTREAM_STREAM, (f"{UPSTREAM_PREFIX}.>",), "Dynamics and file-import changes"),
    StreamSpec(OUTBOUND_STREAM, (f"{OUTBOUND_PREFIX}.>",), "device changes to write back"),
    StreamSpec(
        DEADLETTER_STREAM,
        (f"{DEADLETTER_PREFIX}.>",),
        "messages a consumer gave up on after max deliveries",
        dead_letter=True,
    ),
)
"""All streams :meth:`NatsBroker.ensure_streams` creates, in creation order."""

EVENTS_WILDCARD = f"{EVENTS_PREFIX}.>"
RESULTS_WILDCARD = f"{RESULTS_PREFIX}.>"

# ------------------------------------------------------------------ headers

MSG_ID_HEADER = "Nats-Msg-Id"
"""JetStream de-duplication header; we set it to the changeset id."""

RESULT_SUBJECT_HEADER = "Crmsync-Result-Subject"
"""Optional header on a changeset: where the applier should publish that changeset's result."""

DLQ_STREAM_HEADER = "Crmsync-Dlq-Stream"
DLQ_SEQ_HEADER = "Crmsync-Dlq-Seq"
DLQ_SUBJECT_HEADER = "Crmsync-Dlq-Subject"
DLQ_CONSUMER_HEADER = "Crmsync-Dlq-Consumer"
DLQ_DELIVERIES_HEADER = "Crmsync-Dlq-Deliveries"
DLQ_ERROR_HEADER = "Crmsync-Dlq-Error"
DLQ_MSG_ID_HEADER = "Crmsync-Dlq-Msg-Id"

# ------------------------------------------------------------------ token encoding

_ESCAPE = "%"
# Printable ASCII except the escape itself and the characters NATS gives meaning to.
_SAFE = frozenset(chr(c) for c in range(0x21, 0x7F)) - {".", "*", ">", _ESCAPE}
_HEX_UPPER = frozenset("0123456789ABCDEF")


def encode_token(name: str) -> str:
    """Encode any non-empty string as one NATS subject token, reversibly.

    Printable ASCII other than ``.``, ``*``, ``>`` and ``%`` is kept; every other UTF-8 byte
    (space, control characters, non-ASCII, and ``%`` itself) becomes ``%XX`` with upper-case
    hex. The result is canonical: one token per name.

    Args:
        name: Channel name, changeset id, entity name, ...

    Returns:
        A token that is safe between two dots of a subject.

    Raises:
        SubjectTokenError: ``name`` is empty or not encodable as UTF-8.
    """
    if not name:
        raise SubjectTokenError("an empty name cannot be a subject token")
    if name.isascii() and all(ch in _SAFE for ch in name):
        return name
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError as e:
        raise SubjectTokenError(f"name is not valid UTF-8 text: {e}") from e
    out: list[str] = []
    for byte in raw:
        ch = chr(byte)
        out.append(ch if ch in _SAFE else f"{_ESCAPE}{byte:02X}")
    return "".join(out)


def decode_token(token: str) -> str:
    """Invert :func:`encode_token`.

    Args:
        token: A token produced by :func:`encode_token`.

    Returns:
        The original name.

    Raises:
        SubjectTokenError: The token is empty, holds a character that is never produced by
            the encoding, a malformed or non-canonical escape, or bytes that are not UTF-8.
    """
    if not token:
        raise SubjectTokenError("an empty subject token decodes to nothing")
    if _ESCAPE not in token:
        _check_safe(token)
        return token
    raw = bytearray()
    i = 0
    while i < len(token):
        ch = token[i]
        if ch == _ESCAPE:
            pair = token[i + 1 : i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX_UPPER:
                raise SubjectTokenError(f"malformed escape at position {i} in token {token!r}")
            byte = int(pair, 16)
            if chr(byte) in _SAFE:
                raise SubjectTokenError(f"needless escape %{pair} in token {token!r}")
            raw.append(byte)
            i += 3
        else:
            _check_safe(ch)
            raw.append(ord(ch))
            i += 1
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SubjectTokenError(f"token {token!r} does not decode to UTF-8 text") from e


def _check_safe(text: str) -> None:
    for ch in text:
        if ch not in _SAFE:
            raise SubjectTokenError(f"character {ch!r} cannot appear in an encoded token")


# ------------------------------------------------------------------ subject builders


def event_subject(channel: str) -> str:
    """Core-NATS subject of the change events of one sync channel.

    Args:
        channel: Channel name, e.g. ``territory:IT-NW``.

    Returns:
        e.g. ``crm.events.territory:IT-NW``.
    """
    return f"{EVENTS_PREFIX}.{encode_token(channel)}"


def channel_from_event_subject(subject: str) -> str:
    """Read the channel name back from an event subject.

    Args:
        subject: A subject built by :func:`event_subject`.

    Returns:
        The channel name.

    Raises:
        SubjectTokenError: ``subject`` is not an event subject.
    """
    prefix = EVENTS_PREFIX + "."
    token = subject[len(prefix) :] if subject.startswith(prefix) else ""
    if not token or "." in token:
        raise SubjectTokenError(f"{subject!r} is not a {EVENTS_PREFIX}.<channel> subject")
    return decode_token(token)


def results_subject(changeset_id: str) -> str:
    """Core-NATS subject on which the applier publishes one changeset's result.

    Args:
        changeset_id: The changeset's idempotency key.

    Returns:
        e.g. ``sync.results.dev42-17``.
    """
    return f"{RESULTS_PREFIX}.{encode_token(changeset_id)}"


def changeset_subject(partition: str) -> str:
    """JetStream subject for a device changeset (stream ``SYNC_CHANGESETS``).

    Args:
        partition: Partition key, e.g. the device id (keeps one device's changesets on one
            subject, so a consumer filtered per partition sees them in order).

    Returns:
        e.g. ``sync.changesets.dev42``.
    """
    return f"{CHANGESETS_PREFIX}.{encode_token(partition)}"


def upstream_subject(entity: str) -> str:
    """JetStream subject for a change coming from Dynamics or a file import.

    Args:
        entity: CRM entity logical name, e.g. ``account``.

    Returns:
        e.g. ``sync.upstream.account``.
    """
    return f"{UPSTREAM_PREFIX}.{encode_token(entity)}"


def outbound_subject(entity: str) -> str:
    """JetStream subject for a device-made change to write back to Dynamics.

    Args:
        entity: CRM entity logical name, e.g. ``contact``.

    Returns:
        e.g. ``sync.outbound.contact``.
    """
    return f"{OUTBOUND_PREFIX}.{encode_token(entity)}"


OUTBOUND_BATCH_SUBJECT = f"{OUTBOUND_PREFIX}.changes"
"""JetStream subject of the applier's outbound batches (several entities in one message)."""


def dead_letter_subject(stream: str, consumer: str) -> str:
    """JetStream subject where a consumer parks messages it gave up on.

    Args:
        stream: Stream the message came from.
        consumer: Durable consumer name that gave up.

    Returns:
        e.g. ``sync.deadletter.SYNC_CHANGESETS.applier``.
    """
    return f"{DEADLETTER_PREFIX}.{encode_token(stream)}.{encode_token(consumer)}"


def max_deliveries_advisory_subject(stream: str, consumer: str) -> str:
    """Subject of the server's advisory when a consumer's message hits ``max_deliver``.

    Args:
        stream: Stream name.
        consumer: Consumer name.

    Returns:
        ``$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>``.
    """
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}"


# ------------------------------------------------------------------ names


def validate_name(name: str, *, kind: str = "name") -> str:
    """Check a stream or durable consumer name against what NATS accepts.

    Args:
        name: The name.
        kind: What it names, for the error message.

    Returns:
        ``name`` unchanged.

    Raises:
        InvalidNameError: Empty, too long, or has whitespace, ``.``, ``*``, ``>``, ``/``, ``\\``.
    """
    if not name or len(name) > 255:
        raise InvalidNameError(f"{kind} must be 1 to 255 characters, got {len(name)}")
    bad = sorted({ch for ch in name if ch in ".*>/\\" or ch.isspace() or not ch.isprintable()})
    if bad:
        raise InvalidNameError(f"{kind} {name!r} contains forbidden characters {bad}")
    return name
