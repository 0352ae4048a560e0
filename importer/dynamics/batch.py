"""OData ``$batch`` multipart encoding and decoding (pure: bytes in, bytes out).

A batch is ``multipart/mixed``; each part is ``application/http`` holding one whole HTTP
request (request line, headers, blank line, body). The response mirrors it with one HTTP
response per part, in request order. Change sets (atomic groups) are nested multiparts;
:func:`encode_batch` can build one and :func:`decode_batch` flattens them in order.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..errors import BatchFormatError

_CRLF = b"\r\n"
_json_decode = msgspec.json.Decoder().decode


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One request inside a ``$batch``.

    Attributes:
        method: ``GET``, ``POST``, ``PATCH`` or ``DELETE``.
        url: Path relative to the Web API root (``accounts(<id>)``) or an absolute path.
        headers: Request headers (``If-Match``, ``Prefer``...).
        body: JSON body, already encoded, or ``None``.
        content_id: ``Content-ID`` of the part (lets later parts of a change set say ``$1``).
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    content_id: str | None = None


@dataclass(frozen=True, slots=True)
class BatchResponse:
    """One response inside a ``$batch`` answer.

    Attributes:
        status: HTTP status of the inner response.
        headers: Its headers, keys in lower case.
        body: Its raw body (may be empty).
    """

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON (``None`` when empty).

        Raises:
            BatchFormatError: The body is not JSON.
        """
        if not self.body.strip():
            return None
        try:
            return _json_decode(self.body)
        except msgspec.DecodeError as e:
            raise BatchFormatError(f"batch part body is not JSON: {e}") from e

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status < 300


def new_boundary(kind: str = "batch") -> str:
    """A fresh boundary like Microsoft's examples: ``batch_<uuid>``."""
    return f"{kind}_{uuid.uuid4()}"


def _request_bytes(req: BatchRequest, base_path: str) -> bytes:
    url = req.url if req.url.startswith(("/", "$", "http://", "https://")) else base_path + req.url
    lines = [f"{req.method.upper()} {url} HTTP/1.1".encode()]
    headers = {k.lower(): v for k, v in req.headers.items()}
    if req.body is not None and "content-type" not in headers:
        lines.append(b"Content-Type: application/json; charset=utf-8")
    for name, value in req.headers.items():
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise BatchFormatError("batch request headers must not contain line breaks")
        lines.append(f"{name}: {value}".encode())
    head = _CRLF.join(lines) + _CRLF + _CRLF
    return head + (req.body or b"")


def _part(req: BatchRequest, base_path: str) -> bytes:
    mime = [b"Content-Type: application/http", b"Content-Transfer-Encoding: binary"]
    if req.content_id is not None:
        mime.append(f"Content-ID: {req.content_id}".encode())
    return _CRLF.join(mime) + _CRLF + _CRLF + _request_bytes(req, base_path) + _CRLF


def encode_batch(
    items: Sequence[BatchRequest | Sequence[BatchRequest]],
    *,
    base_path: str = "/api/data/v9.2/",
    boundary: str | None = None,
) -> tuple[str, bytes]:
    """Encode a ``$batch`` body.

    Args:
        items: Requests in order; a nested sequence becomes one atomic change set (which
            must not contain ``GET``).
        base_path: Path prefix of relative request URLs.
        boundary: Batch boundary (a fresh one if omitted).

    Returns:
        ``(content_type, body)`` for the ``POST $batch`` request.

    Raises:
        BatchFormatError: Empty batch, a ``GET`` inside a change set, or bad headers.
    """
    if not items:
        raise BatchFormatError("a batch needs at least one request")
    bnd = boundary or new_boundary()
    out = bytearray()
    for item in items:
        out += b"--" + bnd.encode() + _CRLF
        if isinstance(item, BatchRequest):
            out += _part(item, base_path)
            continue
        if not item:
            raise BatchFormatError("a change set needs at least one request")
        cs = new_boundary("changeset")
        out += f"Content-Type: multipart/mixed; boundary={cs}".encode() + _CRLF + _CRLF
        for n, req in enumerate(item, start=1):
            if req.method.upper() == "GET":
                raise BatchFormatError("a change set cannot contain GET requests")
            if req.content_id is None:
                req = BatchRequest(req.method, req.url, req.headers, req.body, str(n))
            out += b"--" + cs.encode() + _CRLF + _part(req, base_path)
        out += b"--" + cs.encode() + b"--" + _CRLF
    out += b"--" + bnd.encode() + b"--" + _CRLF
    return f"multipart/mixed; boundary={bnd}", bytes(out)


def boundary_of(content_type: str) -> str:
    """The ``boundary`` parameter of a multipart content type.

    Raises:
        BatchFormatError: Not multipart, or no boundary.
    """
    media, _, params = content_type.partition(";")
    if not media.strip().lower().startswith("multipart/"):
        raise BatchFormatError(f"expected a multipart response, got {media.strip()[:60]!r}")
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary" and value.strip():
            return value.strip().strip('"')
    raise BatchFormatError("multipart content type without a boundary")


def _split_head(blob: bytes) -> tuple[list[bytes], bytes]:
    """Split ``headers CRLF CRLF body`` (tolerating bare LF) into header lines and body."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        idx = blob.find(sep)
        if idx >= 0:
            return blob[:idx].splitlines(), blob[idx + len(sep) :]
    return blob.splitlines(), b""


def _headers(lines: Sequence[bytes]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.decode("latin-1").partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out


def _parts(body: bytes, boundary: str) -> list[bytes]:
    delim = b"--" + boundary.encode()
    chunks = body.split(delim)
    if len(chunks) < 2:
        raise BatchFormatError("multipart body does not contain its boundary")
    parts: list[bytes] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # closing delimiter
        # Each part starts after the delimiter line and ends before the CRLF that precedes
        # the next delimiter.
        if chunk.startswith(b"\r\n"):
            chunk = chunk[2:]
        elif chunk.startswith(b"\n"):
            chunk = chunk[1:]
        if chunk.endswith(b"\r\n"):
            chunk = chunk[:-2]
        elif chunk.endswith(b"\n"):
            chunk = chunk[:-1]
        parts.append(chunk)
    return parts


def _http_response(blob: bytes) -> BatchResponse:
    lines, body = _split_head(blob)
    if not lines:
        raise BatchFormatError("empty HTTP response in a batch part")
    status_line = lines[0].decode("latin-1").split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/"):
        raise BatchFormatError(f"bad status line in a batch part: {lines[0][:60]!r}")
    try:
        status = int(status_line[1])
    except ValueError as e:
        raise BatchFormatError(f"bad status in a batch part: {status_line[1][:10]!r}") from e
    return BatchResponse(status, _headers(lines[1:]), body)


def decode_batch(content_type: str, body: bytes) -> list[BatchResponse]:
    """Decode a ``$batch`` response into its inner responses, change sets flattened in order.

    Args:
        content_type: The response's ``Content-Type`` (carries the boundary).
        body: The response body.

    Returns:
        One :class:`BatchResponse` per answered request.

    Raises:
        BatchFormatError: The body is not a well-formed batch response.
    """
    out: list[BatchResponse] = []
    for part in _parts(body, boundary_of(content_type)):
        mime_lines, inner = _split_head(part)
        mime = _headers(mime_lines)
        ctype = mime.get("content-type", "")
        if ctype.lower().startswith("multipart/"):
            out.extend(decode_batch(ctype, inner))
        else:
            out.append(_http_response(inner))
    return out
