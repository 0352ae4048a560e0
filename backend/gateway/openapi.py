"""OpenAPI document touches Litestar cannot infer: raw bodies, problems, bearer auth.

Push and blob upload read their bodies raw (JSON *or* msgpack, or arbitrary bytes), so
their request bodies are declared here from the msgspec wire types; every operation gets
the problem document as its ``default`` response; and the bearer scheme is declared.
"""

from __future__ import annotations

from typing import Any, cast

import msgspec
from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.openapi.spec.enums import OpenAPIType

from sync_protocol.changesets import PushRequest
from sync_protocol.codec import MSGPACK_MEDIA_TYPE
from sync_protocol.version import PROTOCOL_VERSION

from .problems import PROBLEM_MEDIA_TYPE, Problem

_REF = "#/components/schemas/{name}"
BEARER = "bearer"


def openapi_config(title: str, description: str) -> OpenAPIConfig:
    """The OpenAPI config (served at ``/schema``) with bearer auth required by default."""
    return OpenAPIConfig(
        title=title,
        version=f"protocol {PROTOCOL_VERSION}",
        description=description,
        path="/schema",
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


def _wire_components(*types: type) -> dict[str, Any]:
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    return components


def complete_openapi(app: Litestar, *, raw_bodies: bool = True) -> None:
    """Add raw request bodies, problem responses and wire schemas to ``app``'s document."""
    doc = app.openapi_schema
    components = doc.components if isinstance(doc.components, Components) else Components()
    schemas = cast(dict[str, Any], components.schemas if components.schemas is not None else {})
    for name, schema in _wire_components(PushRequest, Problem).items():
        schemas.setdefault(name, schema)
    components.schemas = schemas
    doc.components = components
    problem = OpenAPIResponse(
        description="Problem (application/problem+json) with a stable `code`.",
        content={
            PROBLEM_MEDIA_TYPE: OpenAPIMediaType(schema=Reference(_REF.format(name="Problem")))
        },
    )
    for path, item in (doc.paths or {}).items():
        for method in ("get", "put", "post", "delete", "patch"):
            op = getattr(item, method, None)
            if op is None:
                continue
            responses = dict(op.responses or {})
            responses.setdefault("default", problem)
            op.responses = responses
            if not raw_bodies:
                continue
            if path == "/v1/sync/push" and method == "post":
                ref = Reference(_REF.format(name="PushRequest"))
                op.request_body = RequestBody(
                    required=True,
                    description="A changeset, JSON or msgpack.",
                    content={
                        "application/json": OpenAPIMediaType(schema=ref),
                        MSGPACK_MEDIA_TYPE: OpenAPIMediaType(schema=ref),
                    },
                )
            elif path == "/v1/blobs/{sha256}" and method == "put":
                op.request_body = RequestBody(
                    required=True,
                    description="The attachment's bytes.",
                    content={
                        "application/octet-stream": OpenAPIMediaType(
                            schema=Schema(type=OpenAPIType.STRING, format=cast(Any, "binary"))
                        )
                    },
                )
