"""The Web API itself: one request in, one response out, no HTTP framework involved.

:class:`WebApiService` implements the resources under ``/api/data/v9.2``: collections with
query options and paging, change tracking, single records with conditional operations,
creates, upserts, deletes, ``$count``, ``WhoAmI``, the service document and a small
``$metadata``. ``$batch`` (see :mod:`infra.dynamics_emulator.batch`) calls back into
:meth:`WebApiService.handle` for each part, so every part behaves exactly like a direct request.

Errors are :class:`~infra.dynamics_emulator.errors.ODataError` subclasses until
:meth:`WebApiService.handle` turns them into the Dataverse error body in one place.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import msgspec

from infra.dynamics_emulator.config import EmulatorConfig
from infra.dynamics_emulator.dataset import Dataset
from infra.dynamics_emulator.errors import (
    BadRequestError,
    ChangeTrackingQueryError,
    DuplicateRecordError,
    ExpiredVersionStampError,
    MethodNotAllowedError,
    ODataError,
    RecordNotFoundError,
    ResourceNotFoundError,
    VersionMismatchError,
)
from infra.dynamics_emulator.formatting import ValueFormatter, choose_language
from infra.dynamics_emulator.generator import Row, Values
from infra.dynamics_emulator.identity import normalize_guid
from infra.dynamics_emulator.odata_filter import FilterPlan, compile_filter
from infra.dynamics_emulator.payload import decode_body, parse_payload
from infra.dynamics_emulator.query import AnnotationFilter, Preferences, QueryOptions
from infra.dynamics_emulator.render import RowRenderer
from infra.dynamics_emulator.schema import TABLES, Kind, Table
from infra.dynamics_emulator.tokens import DeltaToken, PagingCookie

logger = logging.getLogger(__name__)

API_ROOT = "/api/data/v9.2"
JSON = "application/json; odata.metadata=minimal"
_COUNT_CAP = 5_000
_PATH = re.compile(
    r"^(?P<set>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:\((?P<key>[^()]*)\))?"
    r"(?:/(?P<prop>\$?[A-Za-z_][A-Za-z0-9_]*))?/?$"
)
_ALTERNATE_KEY = re.compile(r"^\s*(?P<name>[A-Za-z_]\w*)\s*=\s*'(?P<value>(?:[^']|'')*)'\s*$")
_ORDERBY = re.compile(r"^\s*(?P<prop>[A-Za-z_]\w*)(?:\s+(?P<dir>asc|desc))?\s*$", re.IGNORECASE)
_ALTERNATE_KEYS = {"accounts": "accountnumber"}
_encoder = msgspec.json.Encoder()
_ORGANIZATION_ID = "3f1c4b2a-9d8e-4c7b-a6f5-0e1d2c3b4a59"
_BUSINESS_UNIT_ID = "8a7b6c5d-4e3f-4a1b-9c8d-7e6f5a4b3c2d"


@dataclass(slots=True)
class ApiRequest:
    """A Web API request, already taken apart by the HTTP layer.

    Attributes:
        method: HTTP method (upper case).
        path: Path below ``/api/data/v9.2`` (decoded), e.g. ``/accounts(<guid>)``.
        query: Raw query string (still URL-encoded).
        headers: Request headers with lower-case names (repeated headers joined by ``, ``).
        body: Request body.
        base_url: ``scheme://host[:port]`` used in links.
        user: Token subject of the caller.
    """

    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    base_url: str = "http://localhost"
    user: str = "anonymous"


@dataclass(slots=True)
class ApiResponse:
    """A Web API response: status, headers (in order) and body."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """Return the first header with this (case-insensitive) name."""
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)


def error_response(error: ODataError) -> ApiResponse:
    """Return the Dataverse error body for an error."""
    body = _encoder.encode({"error": {"code": error.hex_code, "message": error.message}})
    headers = [("Content-Type", JSON), ("OData-Version", "4.0"), *error.headers.items()]
    return ApiResponse(error.status, headers, body)


def json_response(
    status: int, payload: Any, headers: list[tuple[str, str]] | None = None
) -> ApiResponse:
    """Return a JSON response with the OData headers."""
    return ApiResponse(
        status,
        [("Content-Type", JSON), ("OData-Version", "4.0"), *(headers or [])],
        _encoder.encode(payload),
    )


@dataclass(slots=True)
class _Context:
    """Per-request state shared by the handlers."""

    request: ApiRequest
    options: QueryOptions
    prefs: Preferences
    references: Mapping[str, str]

    @property
    def api_url(self) -> str:
        return f"{self.request.base_url}{API_ROOT}"


class WebApiService:
    """Answers Web API requests against a :class:`Dataset`.

    Args:
        dataset: The data.
        config: Emulator configuration (page size, retention, expired-token status...).
        batch_handler: Handles ``POST $batch`` (set by the app; ``None`` disables it).
    """

    def __init__(
        self,
        dataset: Dataset,
        config: EmulatorConfig,
        batch_handler: Callable[[ApiRequest], ApiResponse] | None = None,
    ) -> None:
        self.dataset = dataset
        self.config = config
        self.batch_handler = batch_handler
        self.clock = dataset.clock

    # -- entry point ------------------------------------------------------------------------------

    def handle(
        self, request: ApiRequest, *, references: Mapping[str, str] | None = None
    ) -> ApiResponse:
        """Answer a request; never raises for client errors.

        Args:
            request: The request.
            references: ``$<Content-ID>`` -> entity URL within a ``$batch`` change set.
        """
        try:
            return self._dispatch(request, references or {})
        except ODataError as error:
            return error_response(error)
        except Exception:  # a bug must not take the emulator down; report it as Dataverse does
            logger.exception("unexpected error answering %s %s", request.method, request.path)
            return error_response(ODataError("An unexpected error occurred.", status=500))

    def _dispatch(self, request: ApiRequest, references: Mapping[str, str]) -> ApiResponse:
        path = request.path.lstrip("/")
        method = request.method
        if path == "$batch":
            if method != "POST":
                raise MethodNotAllowedError("The $batch resource only accepts POST.")
            if self.batch_handler is None:
                raise ResourceNotFoundError("$batch")
            return self.batch_handler(request)
        ctx = _Context(
            request,
            QueryOptions.parse(request.query),
            Preferences.parse(request.headers.get("prefer")),
            references,
        )
        if path == "":
            self._only(method, "GET")
            return self._service_document(ctx)
        if path == "$metadata":
            self._only(method, "GET")
            return self._metadata()
        if path in ("WhoAmI", "WhoAmI()"):
            self._only(method, "GET")
            return self._who_am_i(ctx)
        match = _PATH.match(path)
        if match is None:
            raise ResourceNotFoundError(path.split("/")[0].split("(")[0] or path)
        table = TABLES.get(match.group("set"))
        if table is None:
            raise ResourceNotFoundError(match.group("set"))
        key, prop = match.group("key"), match.group("prop")
        if key is None:
            if prop == "$count":
                self._only(method, "GET")
                return self._count(table, ctx)
            if prop is not None:
                raise ResourceNotFoundError(prop)
            if method == "GET":
                return self._get_collection(table, ctx)
            if method == "POST":
                return self._create(table, ctx)
            raise MethodNotAllowedError(f"The {method} method is not supported on a collection.")
        guid = self._resolve_key(table, key)
        if prop is not None:
            return self._property(table, guid, prop, ctx)
        if method == "GET":
            return self._get_single(table, guid, ctx)
        if method == "PATCH":
            return self._upsert(table, guid, ctx)
        if method == "DELETE":
            return self._delete(table, guid, ctx)
        raise MethodNotAllowedError(f"The {method} method is not supported on a record.")

    @staticmethod
    def _only(method: str, allowed: str) -> None:
        if method != allowed:
            raise MethodNotAllowedError(f"Only {allowed} is supported on this resource.")

    def _resolve_key(self, table: Table, key: str) -> str:
        guid = normalize_guid(key)
        if guid is not None:
            return guid
        alternate = _ALTERNATE_KEY.match(key)
        if alternate is None or _ALTERNATE_KEYS.get(table.entity_set) != alternate.group("name"):
            raise BadRequestError(
                f"The key value '{key}' is not a GUID nor an alternate key of "
                f"'{table.logical_name}'."
            )
        value = alternate.group("value").replace("''", "'")
        found = self._find_by_alternate_key(table, alternate.group("name"), value)
        if found is None:
            raise RecordNotFoundError(table.logical_name, f"{alternate.group('name')}:{value}")
        return found

    def _find_by_alternate_key(self, table: Table, column: str, value: str) -> str | None:
        overlay = self.dataset.overlay.table(table.entity_set)
        for entry in overlay.by_guid.values():
            if entry.row is not None and entry.row.get(column) == value:
                return entry.guid
        # Generated account numbers are ACC-<index+1>, so the base record is found directly.
        if value.startswith("ACC-") and value[4:].isdigit():
            index = int(value[4:]) - 1
            if 0 <= index < self.dataset.generator.count(table.entity_set):
                guid = self.dataset.generator.guid(table.entity_set, index)
                row = self.dataset.get(table.entity_set, guid)
                if row is not None and row.get(column) == value:
                    return guid
        return None

    # -- reads ------------------------------------------------------------------------------------

    def _renderer(self, table: Table, ctx: _Context) -> RowRenderer:
        language = choose_language(ctx.request.headers.get("accept-language"))
        return RowRenderer(
            table,
            ctx.options.select,
            AnnotationFilter(ctx.prefs.annotations),
            ValueFormatter(language),
            self.dataset,
        )

    def _context_url(
        self, ctx: _Context, table: Table, renderer: RowRenderer, suffix: str = ""
    ) -> str:
        select = ""
        if ctx.options.select is not None:
            select = f"({','.join(renderer.select_names)})"
        return f"{ctx.api_url}/$metadata#{table.entity_set}{select}{suffix}"

    def _applied(self, ctx: _Context, *, page_size: int | None, tracking: bool) -> list[str]:
        applied = []
        if page_size is not None and ctx.prefs.max_page_size is not None:
            applied.append(f"odata.maxpagesize={page_size}")
        if tracking and ctx.prefs.track_changes:
            applied.append("odata.track-changes")
        if ctx.prefs.annotations_raw is not None:
            applied.append(f"odata.include-annotations={ctx.prefs.annotations_raw}")
        return applied

    def _check_tracking_options(self, ctx: _Context) -> None:
        for option in ("$filter", "$orderby", "$expand", "$top"):
            if ctx.options.has(option):
                raise ChangeTrackingQueryError(option)

    def _page_size(self, ctx: _Context) -> int:
        wanted = ctx.prefs.max_page_size
        cap = self.config.max_page_size
        return cap if wanted is None else min(wanted, cap)

    def _link(
        self,
        ctx: _Context,
        table: Table,
        token_name: str,
        token: str,
        drop: tuple[str, ...] = ("$skiptoken", "$deltatoken"),
    ) -> str:
        query = ctx.options.link_query(drop)
        separator = "&" if query else ""
        return f"{ctx.api_url}/{table.entity_set}?{query}{separator}{token_name}={token}"

    def _order(self, table: Table, ctx: _Context) -> bool:
        """Validate ``$orderby`` and return True for descending key order."""
        if ctx.options.orderby is None:
            return False
        match = _ORDERBY.match(ctx.options.orderby)
        if match is None or match.group("prop") != table.key:
            raise BadRequestError(
                "The emulator supports $orderby only on the primary key "
                f"('{table.key}' or '{table.key} desc')."
            )
        return (match.group("dir") or "asc").lower() == "desc"

    def _plan(self, table: Table, ctx: _Context) -> FilterPlan | None:
        if ctx.options.filter is None:
            return None
        return compile_filter(
            ctx.options.filter,
            table,
            lambda guid: self.dataset.position(table.entity_set, guid),
        )

    def _scan(
        self,
        table: Table,
        plan: FilterPlan | None,
        *,
        after: str | None,
        descending: bool,
        limit: int,
    ) -> tuple[list[Row | Values], bool]:
        dataset = self.dataset
        if plan is None:
            return dataset.scan(
                table.entity_set, after=after, descending=descending, predicate=None, limit=limit
            )
        if plan.key_eq is not None:
            row = dataset.get(table.entity_set, plan.key_eq)
            if row is None or not plan.predicate(row):
                return [], False
            if after is not None and dataset.position(table.entity_set, after) >= dataset.position(
                table.entity_set, plan.key_eq
            ):
                return [], False
            return ([row], False) if limit > 0 else ([], True)
        if self._overlay_only(plan):
            return self._scan_overlay(table, plan, after=after, descending=descending, limit=limit)
        return dataset.scan(
            table.entity_set,
            after=after,
            descending=descending,
            predicate=plan.predicate,
            limit=limit,
        )

    def _overlay_only(self, plan: FilterPlan) -> bool:
        """True when no generated (untouched) row can match: only changed rows are scanned."""
        generator = self.dataset.generator
        epoch = generator.iso(generator.epoch_s)
        if plan.min_modified is not None and plan.min_modified >= epoch:
            return True
        if plan.min_created is not None and plan.min_created >= epoch:
            return True
        return plan.min_version is not None and plan.min_version >= generator.version_ceiling

    def _scan_overlay(
        self,
        table: Table,
        plan: FilterPlan,
        *,
        after: str | None,
        descending: bool,
        limit: int,
    ) -> tuple[list[Row | Values], bool]:
        overlay = self.dataset.overlay.table(table.entity_set)
        ordered = sorted(
            (
                (self.dataset.position(table.entity_set, entry.guid), entry.row)
                for entry in overlay.by_guid.values()
                if entry.row is not None
            ),
            key=lambda item: item[0],
            reverse=descending,
        )
        start = 0
        if after is not None:
            bound = self.dataset.position(table.entity_set, after)
            keys = [position for position, _ in ordered]
            if descending:
                start = next((i for i, k in enumerate(keys) if k < bound), len(keys))
            else:
                start = bisect.bisect_right(keys, bound)
        rows: list[Row | Values] = []
        for _, row in ordered[start:]:
            assert row is not None
            if plan.predicate(row):
                if len(rows) == limit:
                    return rows, True
                rows.append(row)
        return rows, False

    def _total(self, table: Table, plan: FilterPlan | None) -> int:
        """Count matching records, stopping just past the cap."""
        if plan is None:
            return self.dataset.count(table.entity_set)
        rows, more = self._scan(table, plan, after=None, descending=False, limit=_COUNT_CAP)
        return len(rows) + (1 if more else 0)

    def _get_collection(self, table: Table, ctx: _Context) -> ApiResponse:
        options, prefs = ctx.options, ctx.prefs
        if options.deltatoken is not None:
            return self._get_delta(table, ctx)
        cookie = self._cookie(table, options.skiptoken)
        tracking = prefs.track_changes or (cookie is not None and cookie.tracking)
        if tracking:
            self._check_tracking_options(ctx)
        if options.expand is not None:
            raise BadRequestError("The emulator does not support $expand.")
        renderer = self._renderer(table, ctx)
        descending = self._order(table, ctx)
        plan = self._plan(table, ctx)
        paging = prefs.max_page_size is not None or options.top is None
        limit = self._page_size(ctx) if paging else min(options.top or 0, self.config.max_page_size)
        high_water = self.dataset.version
        if cookie is not None and "version" in cookie.extra:
            high_water = int(cookie.extra["version"])
        rows, more = self._scan(
            table,
            plan,
            after=cookie.last if cookie else None,
            descending=descending,
            limit=limit,
        )
        if not paging:
            more = False
        payload: dict[str, Any] = {"@odata.context": self._context_url(ctx, table, renderer)}
        total = self._total(table, plan) if options.count else -1
        if options.count:
            payload["@odata.count"] = min(total, _COUNT_CAP)
        annotations = AnnotationFilter(prefs.annotations)
        if annotations.wants("Microsoft.Dynamics.CRM.totalrecordcount"):
            payload["@Microsoft.Dynamics.CRM.totalrecordcount"] = min(total, _COUNT_CAP)
        if annotations.wants("Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"):
            payload["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] = total > _COUNT_CAP
        payload["value"] = [renderer.render(row) for row in rows]
        if more:
            next_cookie = PagingCookie(
                page=(cookie.page if cookie else 1) + 1,
                key=table.key,
                first=self.dataset.key_of(table.entity_set, rows[0]) if rows else None,
                last=self.dataset.key_of(table.entity_set, rows[-1]) if rows else None,
                tracking=tracking,
                extra={"version": str(high_water)} if tracking else {},
            )
            payload["@odata.nextLink"] = self._link(ctx, table, "$skiptoken", next_cookie.encode())
        elif tracking:
            token = DeltaToken(high_water, self.clock.now())
            payload["@odata.deltaLink"] = self._link(ctx, table, "$deltatoken", token.encode())
        headers = []
        applied = self._applied(ctx, page_size=limit if paging else None, tracking=tracking)
        if applied:
            headers.append(("Preference-Applied", ",".join(applied)))
        return json_response(200, payload, headers)

    def _get_delta(self, table: Table, ctx: _Context) -> ApiResponse:
        options = ctx.options
        assert options.deltatoken is not None
        token = DeltaToken.decode(options.deltatoken)
        self._check_tracking_options(ctx)
        if options.expand is not None:
            raise ChangeTrackingQueryError("$expand")
        retention = timedelta(days=self.config.retention_days)
        # A token newer than every change means the change history is gone (an in-memory
        # emulator restarted): the client must resync, exactly as after expiry.
        if self.clock.now() - token.issued > retention or token.version > self.dataset.version:
            raise ExpiredVersionStampError(self.config.expired_token_status)
        cookie = self._cookie(table, options.skiptoken)
        upto = (
            int(cookie.extra.get("upto", self.dataset.version)) if cookie else self.dataset.version
        )
        entries = self.dataset.changes(table.entity_set, token.version, upto)
        start = 0
        if cookie is not None:
            cursor = (int(cookie.extra.get("phase", "0")), int(cookie.extra.get("after", "0")))
            keys = [(0 if e.row is not None else 1, e.version) for e in entries]
            start = bisect.bisect_right(keys, cursor)
        limit = self._page_size(ctx)
        page = entries[start : start + limit]
        more = start + limit < len(entries)
        renderer = self._renderer(table, ctx)
        deleted_context = f"{ctx.api_url}/$metadata#{table.entity_set}/$deletedEntity"
        value: list[dict[str, Any]] = []
        for entry in page:
            if entry.row is None:
                value.append(
                    {"@odata.context": deleted_context, "id": entry.guid, "reason": "deleted"}
                )
            else:
                value.append(renderer.render(entry.row))
        payload: dict[str, Any] = {
            "@odata.context": self._context_url(ctx, table, renderer, "/$delta"),
            "value": value,
        }
        if more:
            last = page[-1]
            next_cookie = PagingCookie(
                page=(cookie.page if cookie else 1) + 1,
                key=table.key,
                first=page[0].guid,
                last=last.guid,
                tracking=True,
                extra={
                    "upto": str(upto),
                    "phase": "0" if last.row is not None else "1",
                    "after": str(last.version),
                },
            )
            payload["@odata.nextLink"] = self._link(
                ctx, table, "$skiptoken", next_cookie.encode(), drop=("$skiptoken",)
            )
        else:
            new_token = DeltaToken(upto, self.clock.now())
            payload["@odata.deltaLink"] = self._link(ctx, table, "$deltatoken", new_token.encode())
        headers = []
        applied = self._applied(ctx, page_size=limit, tracking=True)
        if applied:
            headers.append(("Preference-Applied", ",".join(applied)))
        return json_response(200, payload, headers)

    @staticmethod
    def _cookie(table: Table, skiptoken: str | None) -> PagingCookie | None:
        if skiptoken is None:
            return None
        cookie = PagingCookie.decode(skiptoken)
        if cookie.key != table.key:
            raise BadRequestError(
                f"The $skiptoken belongs to another entity set (key '{cookie.key}')."
            )
        return cookie

    def _count(self, table: Table, ctx: _Context) -> ApiResponse:
        if ctx.options.deltatoken is not None:
            token = DeltaToken.decode(ctx.options.deltatoken)
            total = len(self.dataset.changes(table.entity_set, token.version, self.dataset.version))
        else:
            total = self._total(table, self._plan(table, ctx))
        return ApiResponse(
            200,
            [("Content-Type", "text/plain"), ("OData-Version", "4.0")],
            str(min(total, _COUNT_CAP)).encode(),
        )

    def _get_single(self, table: Table, guid: str, ctx: _Context) -> ApiResponse:
        row = self.dataset.require(table.entity_set, guid)
        etag = row["@odata.etag"]
        if_none_match = ctx.request.headers.get("if-none-match")
        if (
            if_none_match is not None
            and if_none_match != "null"
            and not ctx.prefs.annotations
            and ctx.options.expand is None
            and etag_matches(if_none_match, etag)
        ):
            return ApiResponse(304, [("OData-Version", "4.0"), ("ETag", etag)])
        if ctx.options.expand is not None:
            raise BadRequestError("The emulator does not support $expand.")
        renderer = self._renderer(table, ctx)
        payload = renderer.entity(self._context_url(ctx, table, renderer, "/$entity"), row)
        headers = [("ETag", etag)]
        applied = self._applied(ctx, page_size=None, tracking=False)
        if applied:
            headers.append(("Preference-Applied", ",".join(applied)))
        return json_response(200, payload, headers)

    def _property(self, table: Table, guid: str, prop: str, ctx: _Context) -> ApiResponse:
        column = table.by_name.get(prop)
        if column is None:
            raise ResourceNotFoundError(prop)
        method = ctx.request.method
        if method == "GET":
            row = self.dataset.require(table.entity_set, guid)
            value = row.get(prop)
            if value is None:
                return ApiResponse(204, [("OData-Version", "4.0")])
            return json_response(
                200,
                {
                    "@odata.context": f"{ctx.api_url}/$metadata#{table.entity_set}({guid})/{prop}",
                    "value": value,
                },
            )
        if method in ("PUT", "DELETE"):
            if column.kind is Kind.LOOKUP:
                raise BadRequestError(f"Set lookup '{prop}' with @odata.bind on the record.")
            self.dataset.require(table.entity_set, guid)
            value = None
            if method == "PUT":
                value = decode_body(ctx.request.body, table.entity_set).get("value")
            payload = parse_payload(table, {prop: value}, self.dataset)
            self.dataset.update(table.entity_set, guid, payload.values)
            return ApiResponse(204, [("OData-Version", "4.0")])
        raise MethodNotAllowedError(f"The {method} method is not supported on a property.")

    def _service_document(self, ctx: _Context) -> ApiResponse:
        return json_response(
            200,
            {
                "@odata.context": f"{ctx.api_url}/$metadata",
                "value": [
                    {"name": name, "kind": "EntitySet", "url": name} for name in sorted(TABLES)
                ],
            },
        )

    def _who_am_i(self, ctx: _Context) -> ApiResponse:
        return json_response(
            200,
            {
                "@odata.context": f"{ctx.api_url}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                "BusinessUnitId": _BUSINESS_UNIT_ID,
                "UserId": self.dataset.default_actor,
                "OrganizationId": _ORGANIZATION_ID,
            },
        )

    def _metadata(self) -> ApiResponse:
        return ApiResponse(
            200,
            [("Content-Type", "application/xml"), ("OData-Version", "4.0")],
            metadata_document().encode(),
        )

    # -- writes -----------------------------------------------------------------------------------

    def _entity_url(self, ctx: _Context, table: Table, guid: str) -> str:
        return f"{ctx.api_url}/{table.entity_set}({guid})"

    def _write_response(
        self, table: Table, guid: str, row: Row, ctx: _Context, *, created: bool
    ) -> ApiResponse:
        url = self._entity_url(ctx, table, guid)
        if ctx.prefs.return_representation:
            renderer = self._renderer(table, ctx)
            payload = renderer.entity(self._context_url(ctx, table, renderer, "/$entity"), row)
            headers = [
                ("ETag", row["@odata.etag"]),
                ("OData-EntityId", url),
                ("Preference-Applied", "return=representation"),
            ]
            if created:
                headers.append(("Location", url))
            return json_response(201 if created else 200, payload, headers)
        return ApiResponse(
            204, [("OData-Version", "4.0"), ("Location", url), ("OData-EntityId", url)]
        )

    def _create(self, table: Table, ctx: _Context) -> ApiResponse:
        data = decode_body(ctx.request.body, table.entity_set)
        payload = parse_payload(table, data, self.dataset, references=ctx.references)
        guid = payload.key
        if guid is not None and self.dataset.get(table.entity_set, guid) is not None:
            raise DuplicateRecordError()
        row = self.dataset.create(table.entity_set, payload.values, guid=guid)
        return self._write_response(table, row[table.key], row, ctx, created=True)

    def _upsert(self, table: Table, guid: str, ctx: _Context) -> ApiResponse:
        headers = ctx.request.headers
        current = self.dataset.get(table.entity_set, guid)
        if_match = headers.get("if-match")
        if if_match is not None and if_match != "null":
            if current is None:
                raise RecordNotFoundError(table.logical_name, guid)
            if not etag_matches(if_match, current["@odata.etag"]):
                raise VersionMismatchError()
        if_none_match = headers.get("if-none-match")
        if if_none_match is not None and if_none_match.strip() == "*" and current is not None:
            raise DuplicateRecordError()
        data = decode_body(ctx.request.body, table.entity_set)
        payload = parse_payload(table, data, self.dataset, references=ctx.references)
        if payload.key is not None and payload.key != guid:
            raise BadRequestError(
                f"The key '{table.key}' in the body does not match the id in the URL."
            )
        if current is None:
            row = self.dataset.create(table.entity_set, payload.values, guid=guid)
            return self._write_response(table, guid, row, ctx, created=True)
        row = self.dataset.update(table.entity_set, guid, payload.values)
        return self._write_response(table, guid, row, ctx, created=False)

    def _delete(self, table: Table, guid: str, ctx: _Context) -> ApiResponse:
        current = self.dataset.require(table.entity_set, guid)
        if_match = ctx.request.headers.get("if-match")
        if (
            if_match is not None
            and if_match != "null"
            and not etag_matches(if_match, current["@odata.etag"])
        ):
            raise VersionMismatchError()
        self.dataset.delete(table.entity_set, guid)
        return ApiResponse(204, [("OData-Version", "4.0")])


def etag_matches(header: str, etag: str) -> bool:
    """True when an ``If-Match``/``If-None-Match`` value matches an ETag (or is ``*``)."""
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate == etag:
            return True
        # Weak comparison: W/"1" matches "1" and W/"1".
        if candidate.removeprefix("W/") == etag.removeprefix("W/"):
            return True
    return False


_EDM_TYPES = {
    Kind.KEY: "Edm.Guid",
    Kind.LOOKUP: "Edm.Guid",
    Kind.STRING: "Edm.String",
    Kind.INT: "Edm.Int32",
    Kind.BIGINT: "Edm.Int64",
    Kind.MONEY: "Edm.Decimal",
    Kind.DATETIME: "Edm.DateTimeOffset",
    Kind.DATEONLY: "Edm.Date",
    Kind.BOOL: "Edm.Boolean",
    Kind.PICKLIST: "Edm.Int32",
    Kind.STATE: "Edm.Int32",
    Kind.STATUS: "Edm.Int32",
}


def metadata_document() -> str:
    """Return a small CSDL document describing the emulated entity sets."""
    types = []
    for table in TABLES.values():
        props = "".join(
            f'<Property Name="{c.name}" Type="{_EDM_TYPES[c.kind]}" />' for c in table.columns
        )
        types.append(
            f'<EntityType Name="{table.logical_name}"><Key><PropertyRef Name="{table.key}" />'
            f"</Key>{props}</EntityType>"
        )
    sets = "".join(
        f'<EntitySet Name="{t.entity_set}" EntityType="Microsoft.Dynamics.CRM.{t.logical_name}" />'
        for t in TABLES.values()
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">'
        '<edmx:DataServices><Schema Namespace="Microsoft.Dynamics.CRM" '
        'Alias="mscrm" xmlns="http://docs.oasis-open.org/odata/ns/edm">'
        f'{"".join(types)}<EntityContainer Name="System">{sets}</EntityContainer>'
        "</Schema></edmx:DataServices></edmx:Edmx>"
    )
