"""OpenAPI document touches Litestar cannot infer: raw bodies, problems, bearer auth.

Push and blob upload read their bodies raw (JSON *or* msgpack, or arbitrary bytes), so
their request bodies are declared here from the msgspec wire types; every operation gets
the problem document as its ``default`` response; the bearer scheme is declared.

The additions are made to the rendered document the first time it is served (by the
render plugins below), so building an app stays cheap: the schema is generated only when
someone asks for ``/schema/openapi.json`` (or YAML, or the Swagger UI).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from sync_protocol.changesets import ChangesetResult, PushRequest
from sync_protocol.codec import MSGPACK_MEDIA_TYPE
from sync_protocol.pull import BootstrapBatch, PullResponse
from sync_protocol.version import PROTOCOL_VERSION, SUPPORTED_VERSIONS

from .bootstrap import MSGPACK_FRAMES, NDJSON_FRAMES
from .metadata import Metadata
from .problems import PROBLEM_MEDIA_TYPE, Problem

_REF = "#/components/schemas/{name}"
_DONE = "x-crmsync-completed"
BEARER = "bearer"
_METHODS = ("get", "put", "post", "delete", "patch")


_WIRE_TYPES: tuple[type, ...] = (
    PushRequest,
    ChangesetResult,
    PullResponse,
    BootstrapBatch,
    Metadata,
    Problem,
)
"""Types whose msgspec schema is the truth on the wire (array-like structs such as HLC and
ChannelChecksum encode as arrays, which Litestar's generator would call objects)."""

_PUBLIC_PATHS = ("/healthz", "/readyz", "/metrics", "/dev/")
_BOTH_FORMATS = {
    ("/v1/sync/push", "post"),
    ("/v1/sync/pull", "get"),
    ("/v1/sync/changesets/{changeset_id}", "get"),
    ("/v1/metadata", "get"),
}


_PROTOCOL_SCHEMA = {"type": "integer", "enum": sorted(SUPPORTED_VERSIONS)}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def complete_schema(doc: dict[str, Any], *, raw_bodies: bool = True) -> dict[str, Any]:
    """Add wire schemas, problem responses and raw request bodies to a rendered document.

    Idempotent and in place (the rendered document is cached by Litestar).
    """
    if doc.get(_DONE):
        return doc
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    _, wire = msgspec.json.schema_components(_WIRE_TYPES, ref_template=_REF)
    schemas.update(wire)
    # Only served versions are valid; others get 426 with an upgrade message.
    schemas["PushRequest"]["properties"]["protocol"] = _PROTOCOL_SCHEMA
    problem = {
        "description": "Problem (application/problem+json) with a stable `code`.",
        "content": {PROBLEM_MEDIA_TYPE: {"schema": _ref("Problem")}},
    }
    for path, item in doc.get("paths", {}).items():
        for method in _METHODS:
            op = item.get(method)
            if op is None:
                continue
            _complete_operation(path, method, op, problem, raw_bodies)
    doc[_DONE] = True
    return doc


def _complete_operation(
    path: str, method: str, op: dict[str, Any], problem: dict[str, Any], raw_bodies: bool
) -> None:
    for param in op.get("parameters", []):
        if param.get("name") == "protocol" and param.get("in") == "query":
            param["schema"] = {**_PROTOCOL_SCHEMA, "default": PROTOCOL_VERSION}
    responses = op.setdefault("responses", {})
    for status in list(responses):
        if status.isdigit() and int(status) >= 400:
            responses[status] = problem
    responses["default"] = problem
    if path.startswith(_PUBLIC_PATHS):
        op["security"] = []
    if (path, method) in _BOTH_FORMATS:
        for status in ("200", "201", "202"):
            content = responses.get(status, {}).get("content", {})
            if "application/json" in content:
                content[MSGPACK_MEDIA_TYPE] = content["application/json"]
    if path == "/v1/sync/push" and method == "post":
        both = {"application/json": {"schema": _ref("ChangesetResult")}}
        both[MSGPACK_MEDIA_TYPE] = both["application/json"]
        responses["200"] = {"description": "The changeset's result.", "content": both}
        responses["202"] = {
            "description": "Not answered in time: status 'pending'; poll Location or pull.",
            "headers": {"Location": {"schema": {"type": "string"}}},
            "content": both,
        }
    elif path == "/v1/sync/changesets/{changeset_id}":
        responses["202"] = {"description": "Still pending.", "content": responses["200"]["content"]}
    elif path == "/v1/sync/bootstrap":
        responses["200"] = {
            "description": "BootstrapBatch frames (NDJSON, or length-prefixed msgpack).",
            "content": {
                NDJSON_FRAMES: {"schema": {"type": "string"}},
                MSGPACK_FRAMES: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    elif path == "/v1/blobs/{sha256}" and method == "get":
        responses["200"] = {
            "description": "The attachment's bytes, in its stored content type.",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        }
        responses["304"] = {"description": "Not modified (If-None-Match)."}
    elif path == "/metrics":
        responses["200"] = {
            "description": "Prometheus text exposition.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    elif path == "/v1/metadata":
        responses["304"] = {"description": "Not modified (If-None-Match)."}
    if not raw_bodies:
        return
    if path == "/v1/sync/push" and method == "post":
        ref = _ref("PushRequest")
        op["requestBody"] = {
            "required": True,
            "description": "A changeset, JSON or msgpack.",
            "content": {"application/json": {"schema": ref}, MSGPACK_MEDIA_TYPE: {"schema": ref}},
        }
    elif path == "/v1/blobs/{sha256}" and method == "put":
        op["requestBody"] = {
            "required": True,
            "description": "The attachment's bytes.",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }


class _Completing:
    raw_bodies: bool

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        complete_schema(openapi_schema, raw_bodies=self.raw_bodies)
        return super().render(request, openapi_schema)  # type: ignore[misc,no-any-return]


class CompletingJsonRenderPlugin(_Completing, JsonRenderPlugin):
    """``/schema/openapi.json`` with the gateway's additions."""


class CompletingYamlRenderPlugin(_Completing, YamlRenderPlugin):
    """``/schema/openapi.yaml`` with the gateway's additions."""


class CompletingSwaggerRenderPlugin(_Completing, SwaggerRenderPlugin):
    """``/schema`` and ``/schema/swagger``: Swagger UI over the completed document."""


def openapi_config(title: str, description: str, *, raw_bodies: bool = True) -> OpenAPIConfig:
    """The OpenAPI config (served under ``/schema``) with bearer auth required by default."""
    plugins: list[Any] = [
        CompletingJsonRenderPlugin(),
        CompletingYamlRenderPlugin(),
        CompletingSwaggerRenderPlugin(path=["/", "/swagger"]),
    ]
    for plugin in plugins:
        plugin.raw_bodies = raw_bodies
    return OpenAPIConfig(
        title=title,
        version=f"protocol {PROTOCOL_VERSION}",
        description=description,
        path="/schema",
        render_plugins=plugins,
        components=Components(
            security_schemes={
                BEARER: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    bearer_format="JWT",
                    description="RS256/ES256 token from the identity provider.",
                )
            }
        ),
        security=[{BEARER: []}],
        use_handler_docstrings=True,
    )
