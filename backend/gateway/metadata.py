"""``/v1/metadata``: entity schemas, option-set labels in every language, and what the
caller's profile may write.

The document is derived from :data:`sync_protocol.entities.SCHEMAS` and the sync rules,
built once per profile and served with a strong ``ETag`` so an app revalidates cheaply.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import msgspec

from sync_protocol.entities import LANGUAGES, SCHEMAS, FieldKind
from sync_protocol.rules import SyncRules
from sync_protocol.version import PROTOCOL_VERSION, SCHEMA_VERSION, SUPPORTED_VERSIONS


class FieldMeta(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One field: kind, limits, option labels, display labels."""

    kind: FieldKind
    labels: dict[str, str] = {}
    max_length: int = 0
    options: dict[str, dict[str, str]] = {}
    target: list[str] = []
    searchable: bool = False
    system: bool = False


class PermissionMeta(msgspec.Struct, kw_only=True):
    """What the caller's profile may do to one entity."""

    create: bool
    update: bool
    delete: bool
    fields: list[str]


class EntityMeta(msgspec.Struct, kw_only=True):
    """One entity: its Dynamics names, labels, fields and the caller's permission."""

    entity_set: str
    key: str
    primary_name: str
    labels: dict[str, str]
    fields: dict[str, FieldMeta]
    permission: PermissionMeta


class Metadata(msgspec.Struct, kw_only=True):
    """The metadata document."""

    protocol: int
    supported_protocols: list[int]
    schema_version: int
    languages: list[str]
    profile: str
    max_clock_skew_ms: int
    entities: dict[str, EntityMeta]


def build_metadata(rules: SyncRules, profile: str, max_clock_skew_ms: int) -> Metadata:
    """The metadata document for ``profile``."""
    p = rules.profile(profile)
    entities: dict[str, EntityMeta] = {}
    for name, s in SCHEMAS.items():
        perm = p.permission(name)
        writable = [f for f, spec in s.fields.items() if not spec.system and perm.may_write(f)]
        if not (perm.create or perm.update):
            writable = []
        entities[name] = EntityMeta(
            entity_set=s.entity_set,
            key=s.key,
            primary_name=s.primary_name,
            labels=dict(s.labels),
            fields={
                f: FieldMeta(
                    kind=spec.kind,
                    labels=dict(spec.labels),
                    max_length=spec.max_length,
                    options={str(v): dict(lbl) for v, lbl in spec.options.items()},
                    target=list(spec.target),
                    searchable=spec.searchable,
                    system=spec.system,
                )
                for f, spec in s.fields.items()
            },
            permission=PermissionMeta(
                create=perm.create, update=perm.update, delete=perm.delete, fields=sorted(writable)
            ),
        )
    return Metadata(
        protocol=PROTOCOL_VERSION,
        supported_protocols=sorted(SUPPORTED_VERSIONS),
        schema_version=SCHEMA_VERSION,
        languages=list(LANGUAGES),
        profile=profile,
        max_clock_skew_ms=max_clock_skew_ms,
        entities=entities,
    )


class MetadataCache:
    """Encoded metadata documents and their ETags, per profile and format."""

    def __init__(self, rules: SyncRules, max_clock_skew_ms: int) -> None:
        self.rules = rules
        self.max_clock_skew_ms = max_clock_skew_ms
        self._get = lru_cache(maxsize=64)(self._build)

    def _build(self, profile: str, fmt: str) -> tuple[bytes, str]:
        doc = build_metadata(self.rules, profile, self.max_clock_skew_ms)
        body = msgspec.msgpack.encode(doc) if fmt == "msgpack" else msgspec.json.encode(doc)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        return body, etag

    def get(self, profile: str, fmt: str) -> tuple[bytes, str]:
        """``(body, etag)`` for a profile in ``json`` or ``msgpack``."""
        return self._get(profile, fmt)
