"""Async client of the Dynamics 365 (Dataverse) Web API.

What it takes care of, so callers only deal with rows and typed errors:

* **Auth**: OAuth2 client credentials, the token cached and refreshed
  ``token_refresh_margin_s`` before it expires, and once more on a 401.
* **OData**: the version headers, ``Prefer: odata.maxpagesize`` (same on every page, as the
  service demands), ``odata.track-changes``, ``return=representation``; pages decoded with
  msgspec straight into row dicts plus ``@odata.nextLink`` / ``@odata.deltaLink``.
* **Service protection**: a 429 pauses *every* request of this client for ``Retry-After``
  (the limits are per user, so one request's penalty is everyone's); 5xx and connection
  errors back off exponentially with full jitter; at most ``min(max_parallel,
  x-ms-dop-hint)`` requests are in flight.
* **Errors**: Web API error bodies and httpx exceptions become the typed errors of
  :mod:`importer.errors`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol

import httpx
import msgspec

from ..config import ImporterConfig
from ..errors import (
    AuthenticationError,
    BadRequestError,
    BatchFormatError,
    DeltaTokenExpiredError,
    DuplicateRecordError,
    DynamicsError,
    PreconditionFailedError,
    RecordNotFoundError,
    ServerError,
    ThrottledError,
    TransportError,
    UnexpectedResponseError,
)
from .batch import BatchRequest, BatchResponse, decode_batch, encode_batch

logger = logging.getLogger("crmsync.importer.dynamics")

Row = dict[str, Any]
Sleep = Callable[[float], Awaitable[None]]

EXPIRED_VERSION_STAMP = "0x80044352"
DUPLICATE_KEY_CODES = frozenset({"0x80040237", "0x80060892"})
_EXPIRED_TEXT = "version stamp associated with the client has expired"
_DUPLICATE_TEXT = "matching key values already exists"

_ODATA_HEADERS = {
    "OData-MaxVersion": "4.0",
    "OData-Version": "4.0",
    "Accept": "application/json",
}


class Page(msgspec.Struct):
    """One page of an entity-set query.

    Attributes:
        value: The rows (created/updated rows and, in a delta, ``$deletedEntity`` entries).
        next_link: URL of the next page, ``None`` on the last one.
        delta_link: On the last page of a change-tracking query: where the next delta starts.
    """

    value: list[Row] = []
    next_link: str | None = msgspec.field(name="@odata.nextLink", default=None)
    delta_link: str | None = msgspec.field(name="@odata.deltaLink", default=None)
    context: str | None = msgspec.field(name="@odata.context", default=None)


class _ErrorBody(msgspec.Struct):
    code: str = ""
    message: str = ""


class _ErrorEnvelope(msgspec.Struct):
    error: _ErrorBody = msgspec.field(default_factory=_ErrorBody)


class _TokenResponse(msgspec.Struct):
    access_token: str
    expires_in: float = 3600.0
    token_type: str = "Bearer"


_page_decoder = msgspec.json.Decoder(Page)
_row_decoder = msgspec.json.Decoder(dict[str, Any])
_error_decoder = msgspec.json.Decoder(_ErrorEnvelope)
_token_decoder = msgspec.json.Decoder(_TokenResponse)
json_encode = msgspec.json.Encoder().encode


# ====================================================================== tokens


class TokenProvider(Protocol):
    """Supplies bearer tokens."""

    async def token(self, http: httpx.AsyncClient, *, force: bool = False) -> str:
        """A valid access token; ``force`` discards the cached one first."""
        ...


class StaticToken:
    """A fixed token (or none at all, for an emulator without auth)."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self, http: httpx.AsyncClient, *, force: bool = False) -> str:
        """The fixed token."""
        return self._token


class ClientCredentials:
    """OAuth2 client-credentials flow with a cached token refreshed before it expires.

    Args:
        token_url: The token endpoint.
        client_id: Application (client) id.
        client_secret: Client secret.
        scope: ``https://<org>.crm.dynamics.com/.default``.
        refresh_margin_s: Refresh this long before expiry.
        clock: Monotonic seconds (injected for tests).
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str,
        *,
        refresh_margin_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = token_url
        self._form = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
            "scope": scope,
        }
        self._margin = refresh_margin_s
        self._clock = clock
        self._token = ""
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def token(self, http: httpx.AsyncClient, *, force: bool = False) -> str:
        """A cached token, or a new one when it is (nearly) expired or ``force`` is set.

        Raises:
            AuthenticationError: The token endpoint refused or could not be reached.
        """
        stale = self._token
        if not force and self._token and self._clock() < self._expires_at:
            return self._token
        async with self._lock:
            # Another task may have refreshed while we waited for the lock.
            if self._token and self._token != stale and self._clock() < self._expires_at:
                return self._token
            if not force and self._token and self._clock() < self._expires_at:
                return self._token
            await self._fetch(http)
            return self._token

    async def _fetch(self, http: httpx.AsyncClient) -> None:
        try:
            resp = await http.post(
                self._url, data=self._form, headers={"Accept": "application/json"}
            )
        except httpx.HTTPError as e:
            raise AuthenticationError(f"token endpoint unreachable: {type(e).__name__}") from e
        if resp.status_code != 200:
            raise AuthenticationError(
                f"token endpoint answered {resp.status_code}", status=resp.status_code
            )
        try:
            body = _token_decoder.decode(resp.content)
        except msgspec.DecodeError as e:
            raise AuthenticationError("token endpoint answered an unreadable body") from e
        self.fetches += 1
        self._token = body.access_token
        lifetime = max(float(body.expires_in), 1.0)
        # Never plan a refresh in the past for short-lived tokens: keep at least half.
        margin = min(self._margin, lifetime / 2)
        self._expires_at = self._clock() + lifetime - margin


def token_provider(config: ImporterConfig) -> TokenProvider:
    """The token provider ``config`` asks for (client credentials, or a fixed token)."""
    if config.uses_client_credentials:
        return ClientCredentials(
            config.resolved_token_url,
            config.client_id,
            config.client_secret,
            config.resolved_scope,
            refresh_margin_s=config.token_refresh_margin_s,
        )
    return StaticToken(config.access_token)


# ====================================================================== concurrency


class _Limiter:
    """A semaphore whose size can change at run time (``x-ms-dop-hint``)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.in_flight = 0
        self.peak = 0
        self._cond = asyncio.Condition()

    async def acquire(self) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)

    async def release(self) -> None:
        async with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()

    async def resize(self, limit: int) -> None:
        async with self._cond:
            self.limit = max(1, limit)
            self._cond.notify_all()


# ====================================================================== the client


def error_from_response(status: int, body: bytes, headers: Mapping[str, str]) -> DynamicsError:
    """Translate a failed Web API response (or ``$batch`` part) into a typed error.

    Args:
        status: HTTP status.
        body: Response body (a Dataverse error body when there is one).
        headers: Response headers (``Retry-After`` for 429), keys in any case.

    Returns:
        The matching :class:`~importer.errors.DynamicsError` subclass.
    """
    code, message = "", ""
    if body:
        try:
            err = _error_decoder.decode(body).error
            code, message = err.code, err.message
        except msgspec.DecodeError:
            message = body[:200].decode("utf-8", "replace")
    text = f"{status} {message}".strip()[:500]
    lowered = message.lower()
    if code == EXPIRED_VERSION_STAMP or _EXPIRED_TEXT in lowered:
        return DeltaTokenExpiredError(text, status=status, dynamics_code=code)
    retry_after = _retry_after({k.lower(): v for k, v in headers.items()})
    kwargs: dict[str, Any] = {"status": status, "dynamics_code": code}
    if status == 429:
        return ThrottledError(text, retry_after_s=retry_after, **kwargs)
    if status >= 500:
        return ServerError(text, retry_after_s=retry_after, **kwargs)
    if status == 401:
        return AuthenticationError(text, **kwargs)
    if status == 404:
        return RecordNotFoundError(text, **kwargs)
    if status == 412:
        if code in DUPLICATE_KEY_CODES or _DUPLICATE_TEXT in lowered:
            return DuplicateRecordError(text, **kwargs)
        return PreconditionFailedError(text, **kwargs)
    if code in DUPLICATE_KEY_CODES:
        return DuplicateRecordError(text, **kwargs)
    if status in (400, 403, 405, 409, 413, 415, 422):
        return BadRequestError(text, **kwargs)
    return UnexpectedResponseError(text, **kwargs)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None  # an HTTP date: fall back to our own back-off


def etag_of(row: Mapping[str, Any]) -> str | None:
    """The ``@odata.etag`` of a row, if present."""
    value = row.get("@odata.etag")
    return value if isinstance(value, str) else None


class ClientStats(msgspec.Struct):
    """Counters of one client (read them for metrics and tests)."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    server_errors: int = 0
    transport_errors: int = 0
    token_refreshes_on_401: int = 0
    bytes_received: int = 0


class DynamicsClient:
    """The Web API client (see the module docstring).

    Args:
        config: Where and how to connect.
        transport: httpx transport override (``httpx.ASGITransport`` for in-process tests).
        tokens: Token provider override (default: from ``config``).
        sleep: Awaitable sleep (injected so tests of back-off need not wait).
        rng: Random number source for jitter.
        monotonic: Monotonic clock in seconds (injected along with ``sleep``).
    """

    def __init__(
        self,
        config: ImporterConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        tokens: TokenProvider | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.base_url = config.base_url
        self.base_path = httpx.URL(config.base_url).path
        limits = httpx.Limits(
            max_connections=config.max_parallel * 2, max_keepalive_connections=config.max_parallel
        )
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(config.request_timeout_s),
            limits=limits,
            headers=_ODATA_HEADERS,
        )
        self._tokens = tokens if tokens is not None else token_provider(config)
        self._sleep = sleep
        self._rng = rng
        self._monotonic = monotonic
        self._limiter = _Limiter(config.max_parallel)
        self._paused_until = 0.0
        self.stats = ClientStats()

    async def __aenter__(self) -> DynamicsClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    @property
    def parallelism(self) -> int:
        """The current bound on requests in flight."""
        return self._limiter.limit

    @property
    def peak_parallelism(self) -> int:
        """The most requests that were in flight at once."""
        return self._limiter.peak

    # ------------------------------------------------------------------ URLs

    def url(self, path: str) -> str:
        """An absolute URL for a path relative to the Web API root (absolute URLs pass)."""
        if path.startswith(("http://", "https://")):
            return path
        return self.base_url + path.lstrip("/")

    def entity_url(self, entity_set: str, key: str | None = None) -> str:
        """URL of an entity set, or of one record by its GUID."""
        return self.url(f"{entity_set}({key})" if key else entity_set)

    # ------------------------------------------------------------------ core request

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        retry: bool = True,
    ) -> httpx.Response:
        """Send a request with auth, retries and back-off; return a successful response.

        Args:
            method: HTTP method.
            url: Absolute URL, or a path relative to the Web API root.
            headers: Extra headers.
            content: Body bytes.
            params: Query parameters.
            retry: Retry 429/5xx/transport errors (``False``: fail on the first one).

        Returns:
            The response, status < 400 (304 included).

        Raises:
            DynamicsError: The typed error of the last failure.
        """
        target = self.url(url)
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            await self._wait_pause()
            token = await self._tokens.token(self._http)
            hdrs = dict(headers or {})
            if token:
                hdrs["Authorization"] = f"Bearer {token}"
            await self._limiter.acquire()
            try:
                self.stats.requests += 1
                resp = await self._http.request(
                    method, target, headers=hdrs, content=content, params=params
                )
                await resp.aread()
            except httpx.HTTPError as e:
                error: DynamicsError = TransportError(f"{type(e).__name__}: {e}"[:300])
                self.stats.transport_errors += 1
                error.__cause__ = e
            else:
                self.stats.bytes_received += len(resp.content)
                await self._observe_dop_hint(resp)
                if resp.status_code < 400:
                    return resp
                error = error_from_response(resp.status_code, resp.content, resp.headers)
            finally:
                await self._limiter.release()

            if isinstance(error, AuthenticationError) and not refreshed:
                # The token may have been revoked or expired early: one fresh try.
                refreshed = True
                self.stats.token_refreshes_on_401 += 1
                await self._tokens.token(self._http, force=True)
                continue
            if not (retry and error.retryable) or attempt >= self.config.max_attempts:
                raise error
            await self._back_off(error, attempt)

    async def _wait_pause(self) -> None:
        while True:
            remaining = self._paused_until - self._monotonic()
            if remaining <= 0:
                return
            await self._sleep(remaining)

    async def _observe_dop_hint(self, resp: httpx.Response) -> None:
        raw = resp.headers.get("x-ms-dop-hint")
        if raw is None:
            return
        try:
            hint = int(raw)
        except ValueError:
            return
        wanted = max(1, min(self.config.max_parallel, hint))
        if wanted != self._limiter.limit:
            await self._limiter.resize(wanted)

    async def _back_off(self, error: DynamicsError, attempt: int) -> None:
        self.stats.retries += 1
        cap = self.config.backoff_max_s
        if isinstance(error, ThrottledError):
            self.stats.throttled += 1
            if error.retry_after_s is not None:
                delay = min(error.retry_after_s, cap)
            else:
                delay = min(cap, self.config.backoff_base_s * 2**attempt)
            # The limits are per user: make every concurrent request wait too.
            self._paused_until = max(self._paused_until, self._monotonic() + delay)
            logger.info("throttled by Dynamics, pausing %.2fs", delay)
            await self._wait_pause()
            return
        if isinstance(error, ServerError):
            self.stats.server_errors += 1
        # Full jitter: spreads retries of many tasks so they do not arrive together.
        ceiling = min(cap, self.config.backoff_base_s * 2 ** (attempt - 1))
        delay = ceiling * self._rng()
        if error.retry_after_s is not None:
            delay = max(delay, min(error.retry_after_s, cap))
        logger.debug("retrying after %s in %.3fs (attempt %d)", error.code, delay, attempt)
        await self._sleep(delay)

    # ------------------------------------------------------------------ reads

    def _prefer(self, *, track_changes: bool = False) -> dict[str, str]:
        prefs = [f"odata.maxpagesize={self.config.page_size}"]
        if track_changes:
            prefs.append("odata.track-changes")
        return {"Prefer": ", ".join(prefs)}

    async def get_page_bytes(self, url: str, *, track_changes: bool = False) -> bytes:
        """Fetch one page and return its body undecoded (for a typed decoder).

        Raises:
            DeltaTokenExpiredError: A delta link whose token is past retention.
            DynamicsError: Any other failure.
        """
        resp = await self.request("GET", url, headers=self._prefer(track_changes=track_changes))
        return resp.content

    async def get_page(self, url: str, *, track_changes: bool = False) -> Page:
        """Fetch and decode one page (first page, ``nextLink`` or ``deltaLink``).

        Raises:
            DeltaTokenExpiredError: A delta link whose token is past retention.
            DynamicsError: Any other failure.
        """
        raw = await self.get_page_bytes(url, track_changes=track_changes)
        try:
            return _page_decoder.decode(raw)
        except msgspec.DecodeError as e:
            raise UnexpectedResponseError(f"page is not an OData collection: {e}") from e

    def query_url(self, entity_set: str, select: Sequence[str]) -> str:
        """The first-page URL of ``entity_set`` with ``$select``."""
        return self.url(f"{entity_set}?$select={','.join(select)}")

    async def get_row(self, entity_set: str, key: str, select: Sequence[str]) -> Row | None:
        """One row by GUID, or ``None`` if it does not exist.

        Raises:
            DynamicsError: Any failure other than 404.
        """
        url = self.url(f"{entity_set}({key})?$select={','.join(select)}")
        try:
            resp = await self.request("GET", url)
        except RecordNotFoundError:
            return None
        return self._row(resp)

    def _row(self, resp: httpx.Response) -> Row:
        try:
            row = _row_decoder.decode(resp.content)
        except msgspec.DecodeError as e:
            raise UnexpectedResponseError(f"row is not a JSON object: {e}") from e
        etag = resp.headers.get("etag")
        if etag and "@odata.etag" not in row:
            row["@odata.etag"] = etag
        return row

    # ------------------------------------------------------------------ writes

    async def create(
        self, entity_set: str, body: Mapping[str, Any], select: Sequence[str] = ()
    ) -> Row:
        """``POST`` a new row (the body may carry its GUID); returns its representation.

        Raises:
            DuplicateRecordError: A row with that key exists.
            DynamicsError: Any other failure.
        """
        resp = await self.request(
            "POST",
            self._with_select(entity_set, select),
            headers={"Prefer": "return=representation", "Content-Type": "application/json"},
            content=json_encode(body),
        )
        return self._row_or_empty(resp)

    async def update(
        self,
        entity_set: str,
        key: str,
        body: Mapping[str, Any],
        *,
        if_match: str | None,
        select: Sequence[str] = (),
    ) -> Row:
        """``PATCH`` a row; ``if_match`` an ETag (or ``*``: update only, never create).

        Raises:
            PreconditionFailedError: The ETag is stale.
            RecordNotFoundError: ``If-Match: *`` and the row does not exist.
            DynamicsError: Any other failure.
        """
        headers = {"Prefer": "return=representation", "Content-Type": "application/json"}
        if if_match:
            headers["If-Match"] = if_match
        resp = await self.request(
            "PATCH",
            self._with_select(f"{entity_set}({key})", select),
            headers=headers,
            content=json_encode(body),
        )
        return self._row_or_empty(resp)

    async def delete(self, entity_set: str, key: str, *, if_match: str | None = None) -> None:
        """``DELETE`` a row (with ``If-Match`` when an ETag is given).

        Raises:
            PreconditionFailedError: The ETag is stale.
            RecordNotFoundError: The row does not exist.
            DynamicsError: Any other failure.
        """
        headers = {"If-Match": if_match} if if_match else {}
        await self.request("DELETE", self.url(f"{entity_set}({key})"), headers=headers)

    def _with_select(self, path: str, select: Sequence[str]) -> str:
        return self.url(f"{path}?$select={','.join(select)}" if select else path)

    def _row_or_empty(self, resp: httpx.Response) -> Row:
        if resp.status_code == 204 or not resp.content:
            etag = resp.headers.get("etag")
            return {"@odata.etag": etag} if etag else {}
        return self._row(resp)

    # ------------------------------------------------------------------ $batch

    async def batch(
        self, requests: Sequence[BatchRequest], *, continue_on_error: bool = True
    ) -> list[BatchResponse]:
        """Send up to 1,000 independent requests in one ``$batch``.

        The batch as a whole is retried on 429/5xx/transport errors; per-part failures come
        back as parts (use :func:`error_from_response` on them).

        Raises:
            BatchFormatError: The answer cannot be parsed or has the wrong number of parts.
            DynamicsError: The batch request itself failed.
        """
        content_type, body = encode_batch(requests, base_path=self.base_path)
        headers = {"Content-Type": content_type}
        if continue_on_error:
            headers["Prefer"] = "odata.continue-on-error"
        resp = await self.request("POST", "$batch", headers=headers, content=body)
        parts = decode_batch(resp.headers.get("content-type", ""), resp.content)
        if continue_on_error and len(parts) != len(requests):
            raise BatchFormatError(f"batch of {len(requests)} answered with {len(parts)} parts")
        return parts
