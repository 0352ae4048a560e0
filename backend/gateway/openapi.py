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

from sync_protocol.changesets import PushRequest
from sync_protocol.codec import MSGPACK_MEDIA_TYPE
from sync_protocol.version import PROTOCOL_VERSION

from .problems import PROBLEM_MEDIA_TYPE, Problem

_REF = "#/components/schemas/{name}"
_DONE = "x-crmsync-completed"
BEARER = "bearer"
_METHODS = ("get", "put", "post", "delete", "patch")


def complete_schema(doc: dict[str, Any], *, raw_bodies: bool = True) -> dict[str, Any]:
    """Add wire schemas, problem responses and raw request bodies to a rendered document.

    Idempotent and in place (the rendered document is cached by Litestar).
    """
    if doc.get(_DONE):
        return doc
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    _, wire = msgspec.json.schema_components((PushRequest, Problem), ref_template=_REF)
    for name, schema in wire.items():
        schemas.setdefault(name, schema)
    problem = {
        "description": "Problem (application/problem+json) with a stable `code`.",
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": _REF.format(name="Problem")}}},
    }
    for path, item in doc.get("paths", {}).items():
        for method in _METHODS:
            op = item.get(method)
            if op is None:
                continue
            op.setdefault("responses", {}).setdefault("default", problem)
            if not raw_bodies:
                continue
            if path == "/v1/sync/push" and method == "post":
                ref = {"$ref": _REF.format(name="PushRequest")}
                op["requestBody"] = {
                    "required": True,
                    "description": "A changeset, JSON or msgpack.",
                    "content": {
                        "application/json": {"schema": ref},
                        MSGPACK_MEDIA_TYPE: {"schema": ref},
                    },
                }
            elif path == "/v1/blobs/{sha256}" and method == "put":
                op["requestBody"] = {
                    "required": True,
                    "description": "The attachment's bytes.",
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                }
    doc[_DONE] = True
    return doc


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
