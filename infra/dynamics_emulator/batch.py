"""``POST $batch``: multipart/mixed requests with optional atomic change sets.

Follows Dataverse's documented behaviour:

* at most ``batch_max_requests`` (1,000) requests, counting those inside change sets;
* parts are ``application/http`` requests; a ``multipart/mixed`` part is a change set whose
  requests succeed or fail together (all undone on the first failure), may not contain
  ``GET``, and may refer to records created earlier in the same change set as ``$<Content-ID>``
  in the URL or in ``@odata.bind`` values;
* responses come back as ``--batchresponse_<guid>`` parts in request order (change sets as a
  nested ``changesetresponse`` multipart, or as the single error that rolled them back);
* by default processing stops at the first failed request and the batch answers 400 with the
  responses so far; with ``Prefer: odata.continue-on-error`` every request runs and the batch
  answers 200.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import urlsplit

from infra.dynamics_emulator.config import EmulatorConfig
from infra.dynamics_emulator.errors import BadRequestError, ODataError
from infra.dynamics_emulator.overlay import OverlayStore
from infra.dynamics_emulator.query import Preferences
from infra.dynamics_emulator.service import (
    API_ROOT,
    ApiRequest,
    ApiResponse,
    WebApiService,
    error_response,
)

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_REQUEST_LINE = re.compile(r"^(?P<method>[A-Z]+)\s+(?P<url>\S+)(?:\s+HTTP/\d\.\d)?$")
# Outer headers that describe the batch itself and must not leak into its parts.
_BATCH_ONLY_HEADERS = frozenset(
    {"content-type", "content-length", "prefer", "if-match", "if-none-match", "content-id"}
)


class _ChangeSetFailed(Exception):
    def __init__(self, content_id: str | None, response: ApiResponse) -> None:
        super().__init__("change set failed")
        self.content_id = content_id
        self.response = response


@dataclass(slots=True)
class _Part:
    """One request of a batch."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    content_id: str | None


@dataclass(slots=True)
class _ChangeSet:
    parts: list[_Part] = field(default_factory=list)


def _boundary(content_type: str | None) -> str | None:
    if not content_type or not content_type.lower().startswith("multipart/mixed"):
        return None
    match = _BOUNDARY.search(content_type)
    return match.group(1).strip() if match else None


def _split_multipart(body: bytes, boundary: str) -> list[bytes]:
    delimiter = b"--" + boundary.encode()
    pieces = body.split(delimiter)
    parts: list[bytes] = []
    closed = False
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            closed = True
            break
        if piece.startswith(b"\r\n"):
            piece = piece[2:]
        elif piece.startswith(b"\n"):
            piece = piece[1:]
        if piece.endswith(b"\r\n"):
            piece = piece[:-2]
        elif piece.endswith(b"\n"):
            piece = piece[:-1]
        parts.append(piece)
    if not closed:
        raise BadRequestError(f"The multipart body is not terminated by '--{boundary}--'.")
    return parts


def _split_head(blob: bytes) -> tuple[list[str], bytes]:
    """Split header lines from the content after the first blank line."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        position = blob.find(separator)
        if position >= 0:
            head = blob[:position].decode("utf-8", errors="replace")
            return head.splitlines(), blob[position + len(separator) :]
    return blob.decode("utf-8", errors="replace").splitlines(), b""


def _headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def _parse_http_part(blob: bytes, content_id: str | None) -> _Part:
    lines, body = _split_head(blob.lstrip(b"\r\n"))
    if not lines:
        raise BadRequestError("A batch part does not contain an HTTP request line.")
    match = _REQUEST_LINE.match(lines[0].strip())
    if match is None:
        raise BadRequestError(f"Invalid request line in batch part: '{lines[0].strip()}'.")
    return _Part(
        method=match.group("method"),
        url=match.group("url"),
        headers=_headers(lines[1:]),
        body=body.rstrip(b"\r\n"),
        content_id=content_id,
    )


def parse_batch(body: bytes, content_type: str | None) -> list[_Part | _ChangeSet]:
    """Parse a ``$batch`` body into requests and change sets.

    Raises:
        BadRequestError: The body is not a well-formed batch.
    """
    boundary = _boundary(content_type)
    if boundary is None:
        raise BadRequestError(
            "A $batch request needs Content-Type: multipart/mixed with a boundary."
        )
    items: list[_Part | _ChangeSet] = []
    for raw in _split_multipart(body, boundary):
        lines, content = _split_head(raw)
        headers = _headers(lines)
        inner_boundary = _boundary(headers.get("content-type"))
        if inner_boundary is not None:
            changeset = _ChangeSet()
            for inner in _split_multipart(content, inner_boundary):
                inner_lines, inner_content = _split_head(inner)
                inner_headers = _headers(inner_lines)
                if _boundary(inner_headers.get("content-type")) is not None:
                    raise BadRequestError("Change sets cannot be nested.")
                changeset.parts.append(
                    _parse_http_part(inner_content, inner_headers.get("content-id"))
                )
            items.append(changeset)
        else:
            content_type_value = headers.get("content-type", "application/http").lower()
            if not content_type_value.startswith("application/http"):
                raise BadRequestError(
                    f"Batch parts must be application/http, got '{content_type_value}'."
                )
            items.append(_parse_http_part(content, headers.get("content-id")))
    return items


class BatchProcessor:
    """Executes ``$batch`` requests through a :class:`WebApiService`.

    Args:
        service: Answers each part.
        overlay: Provides the transactions that make change sets atomic.
        config: ``batch_max_requests``.
    """

    def __init__(self, service: WebApiService, overlay: OverlayStore, config: EmulatorConfig):
        self.service = service
        self.overlay = overlay
        self.config = config

    def __call__(self, request: ApiRequest) -> ApiResponse:
        """Answer a ``POST $batch``."""
        try:
            items = parse_batch(request.body, request.headers.get("content-type"))
        except ODataError as error:
            return error_response(error)
        total = sum(len(i.parts) if isinstance(i, _ChangeSet) else 1 for i in items)
        if total > self.config.batch_max_requests:
            return error_response(
                BadRequestError(
                    f"The number of requests in the batch ({total}) exceeds the maximum of "
                    f"{self.config.batch_max_requests}."
                )
            )
        for item in items:
            if isinstance(item, _ChangeSet) and any(p.method == "GET" for p in item.parts):
                return error_response(
                    BadRequestError("GET requests are not allowed in a change set.")
                )
        continue_on_error = Preferences.parse(request.headers.get("prefer")).continue_on_error
        boundary = f"batchresponse_{uuid.uuid4()}"
        chunks: list[bytes] = []
        failed = False
        for item in items:
            if isinstance(item, _ChangeSet):
                chunk, ok = self._run_changeset(item, request)
            else:
                try:
                    response = self.service.handle(self._inner_request(item, request, {}))
                except ODataError as error:
                    response = error_response(error)
                chunk, ok = _http_part(response, item.content_id), response.status < 400
            chunks.append(f"--{boundary}\r\n".encode() + chunk)
            if not ok:
                failed = True
                if not continue_on_error:
                    break
        body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
        headers = [
            ("Content-Type", f"multipart/mixed; boundary={boundary}"),
            ("OData-Version", "4.0"),
        ]
        if continue_on_error:
            headers.append(("Preference-Applied", "odata.continue-on-error"))
        status = 400 if failed and not continue_on_error else 200
        return ApiResponse(status, headers, body)

    def _run_changeset(self, changeset: _ChangeSet, outer: ApiRequest) -> tuple[bytes, bool]:
        references: dict[str, str] = {}
        results: list[tuple[str | None, ApiResponse]] = []
        try:
            with self.overlay.transaction():
                for part in changeset.parts:
                    try:
                        inner = self._inner_request(part, outer, references)
                    except ODataError as error:
                        raise _ChangeSetFailed(part.content_id, error_response(error)) from error
                    response = self.service.handle(inner, references=references)
                    if response.status >= 400:
                        raise _ChangeSetFailed(part.content_id, response)
                    entity = response.header("OData-EntityId")
                    if part.content_id is not None and entity is not None:
                        references[part.content_id] = entity
                    results.append((part.content_id, response))
        except _ChangeSetFailed as failure:
            return _http_part(failure.response, failure.content_id), False
        boundary = f"changesetresponse_{uuid.uuid4()}"
        parts = b"".join(
            f"--{boundary}\r\n".encode() + _http_part(response, content_id)
            for content_id, response in results
        )
        head = f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n".encode()
        return head + parts + f"--{boundary}--\r\n".encode(), True

    def _inner_request(
        self, part: _Part, outer: ApiRequest, references: dict[str, str]
    ) -> ApiRequest:
        url = part.url
        if url.startswith("$"):
            reference, _, rest = url[1:].partition("/")
            target = references.get(reference)
            if target is None:
                raise BadRequestError(
                    f"Content-ID Reference: '${reference}' does not exist in the batch context."
                )
            url = f"{target}/{rest}" if rest else target
        split = urlsplit(url)
        path = split.path
        if path.startswith(API_ROOT):
            path = path[len(API_ROOT) :]
        elif not path.startswith("/"):
            path = "/" + path
        headers = {k: v for k, v in outer.headers.items() if k not in _BATCH_ONLY_HEADERS}
        headers.update(part.headers)
        return ApiRequest(
            method=part.method,
            path=path,
            query=split.query,
            headers=headers,
            body=part.body,
            base_url=outer.base_url,
            user=outer.user,
        )


def _http_part(response: ApiResponse, content_id: str | None) -> bytes:
    head = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    if content_id is not None:
        head += f"Content-ID: {content_id}\r\n"
    reason = HTTPStatus(response.status).phrase
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    lines += [f"{name}: {value}" for name, value in response.headers]
    http = "\r\n".join(lines) + "\r\n\r\n"
    return (head + "\r\n" + http).encode() + response.body + b"\r\n"
