"""Declarative sync rules: which channels a record is in, what each profile may see and do.

A rules file (TOML) has four parts::

    version = 1
    max_channels_per_user = 200
    profile_claim = "crm_profile"          # token claim naming the profile

    [channels]                             # record -> channels (templates over fields)
    default = ["owner:{ownerid}", "territory:{territory}", "country:{country}"]

    [policies.account]                     # conflict policy per entity
    upstream_wins = ["accountnumber"]
    manual = ["description"]
    delete = "lww"

    [profiles.sales_rep]                   # profile -> channels from token claims
    read = ["owner:{sub}"]
    [profiles.sales_rep.write.account]     # and write permissions per entity
    create = true
    update = true
    fields = ["name", "telephone1"]        # or "*" (every non-system field), or exclude = [...]

A template ``{name}`` takes a record field (for ``[channels]``) or a token claim (for
``read``); a list-valued claim yields one channel per element, and an empty value yields
none. Parsing is pure: callers read the file and pass its text.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .entities import SCHEMAS, schema
from .errors import ChannelLimitError, RulesError
from .policy import (
    DELETE_POLICIES,
    FIELD_POLICIES,
    READ_ONLY,
    EntityPolicy,
    WritePermission,
)

_TEMPLATE_RE = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_CHANNEL_TEXT_RE = re.compile(r"^[a-z_]+(:[^{}\s]*)?$")
_CHANNEL_VALUE_RE = re.compile(r"^[A-Za-z0-9_@.\-]{1,100}$")


@dataclass(frozen=True, slots=True)
class Profile:
    """A profile: the channel templates it reads and its write permissions per entity."""

    name: str
    read: tuple[str, ...]
    write: dict[str, WritePermission]

    def permission(self, entity: str) -> WritePermission:
        """The profile's permission on ``entity`` (read-only if not granted)."""
        return self.write.get(entity, READ_ONLY)


@dataclass(frozen=True, slots=True)
class Grants:
    """What one user may see and do, resolved from their token claims."""

    user: str
    profile: Profile
    channels: frozenset[str]

    def covers(self, channels: Iterable[str]) -> bool:
        """True if any of ``channels`` is granted."""
        return not self.channels.isdisjoint(channels)


@dataclass(frozen=True, slots=True)
class GrantDiff:
    """How a user's visible channels change: backfill ``added``, purge ``removed``."""

    added: frozenset[str]
    removed: frozenset[str]

    @property
    def empty(self) -> bool:
        """True if nothing changes for the user."""
        return not self.added and not self.removed


@dataclass(frozen=True, slots=True)
class SyncRules:
    """Parsed, validated sync rules."""

    version: int
    max_channels_per_user: int
    profile_claim: str
    channels: dict[str, tuple[str, ...]]
    policies: dict[str, EntityPolicy]
    profiles: dict[str, Profile]
    source_text: str = field(default="", repr=False, compare=False)

    def channels_for(self, entity: str, fields: Mapping[str, Any]) -> list[str]:
        """The channels a record of ``entity`` with ``fields`` belongs to (sorted)."""
        out: set[str] = set()
        for template in self.channels.get(entity, ()):
            out.update(_expand(template, fields))
        return sorted(out)

    def policy(self, entity: str) -> EntityPolicy:
        """The conflict policy of ``entity``."""
        return self.policies[entity]

    def profile(self, name: str) -> Profile:
        """The profile called ``name``.

        Raises:
            RulesError: no such profile (the token names a profile the rules do not know).
        """
        try:
            return self.profiles[name]
        except KeyError:
            raise RulesError(f"unknown profile {name[:40]!r}", key="profiles") from None

    def grants_for(self, claims: Mapping[str, Any]) -> Grants:
        """Resolve a user's grants from verified token claims.

        Raises:
            RulesError: the profile claim is missing or unknown.
            ChannelLimitError: the grants expand past ``max_channels_per_user``.
        """
        name = claims.get(self.profile_claim)
        if not isinstance(name, str):
            raise RulesError(f"token has no {self.profile_claim!r} claim", key=self.profile_claim)
        profile = self.profile(name)
        channels: set[str] = set()
        for template in profile.read:
            channels.update(_expand(template, claims))
        if len(channels) > self.max_channels_per_user:
            raise ChannelLimitError(
                f"{len(channels)} channels exceed the limit of {self.max_channels_per_user}"
            )
        return Grants(str(claims.get("sub", "")), profile, frozenset(channels))


def grant_diff(old: Grants | frozenset[str], new: Grants | frozenset[str]) -> GrantDiff:
    """What becomes visible and what must be removed when grants change."""
    a = old.channels if isinstance(old, Grants) else old
    b = new.channels if isinstance(new, Grants) else new
    return GrantDiff(added=b - a, removed=a - b)


def rules_change_diff(old: SyncRules, new: SyncRules, claims: Mapping[str, Any]) -> GrantDiff:
    """The grant diff one user sees when the rules change from ``old`` to ``new``."""
    return grant_diff(old.grants_for(claims), new.grants_for(claims))


def _values(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list | tuple | set | frozenset):
        return [str(v) for v in value if v is not None and v != ""]
    return [str(value)]


def _expand(template: str, data: Mapping[str, Any]) -> list[str]:
    names = _TEMPLATE_RE.findall(template)
    if not names:
        return [template]
    results = [template]
    for name in names:
        values = [v for v in _values(data.get(name)) if _CHANNEL_VALUE_RE.match(v)]
        results = [r.replace("{" + name + "}", v, 1) for r in results for v in values]
        if not results:
            return []
    return results


# -- parsing ----------------------------------------------------------------------------

_TOP_KEYS = {
    "version",
    "max_channels_per_user",
    "profile_claim",
    "channels",
    "policies",
    "profiles",
}
_POLICY_KEYS = {"default", "delete", "upstream_wins", "manual", "lww"}
_PROFILE_KEYS = {"read", "write", "description"}
_WRITE_KEYS = {"create", "update", "delete", "fields", "exclude"}


def _fail(key: str, why: str) -> RulesError:
    return RulesError(f"{key}: {why}", key=key)


def _table(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(key, "must be a table")
    return value


def _str_list(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(key, "must be a list of strings")
    return value


def _no_unknown(table: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
    for k in table:
        if k not in allowed:
            raise _fail(f"{prefix}{k}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _check_template(template: str, key: str, allowed: set[str] | None) -> None:
    stripped = _TEMPLATE_RE.sub("x", template)
    if not _CHANNEL_TEXT_RE.match(stripped):
        raise _fail(key, f"{template!r} is not a channel template like 'owner:{{ownerid}}'")
    if allowed is not None:
        for name in _TEMPLATE_RE.findall(template):
            if name not in allowed:
                raise _fail(key, f"{template!r} names unknown field {name!r}")


def _entity_name(name: str, key: str) -> str:
    if name not in SCHEMAS:
        raise _fail(key, f"unknown entity {name!r} (known: {', '.join(SCHEMAS)})")
    return name


def _parse_policy(entity: str, raw: Any) -> EntityPolicy:
    key = f"policies.{entity}"
    t = _table(raw, key)
    _no_unknown(t, _POLICY_KEYS, key + ".")
    s = schema(entity)
    default = t.get("default", "lww")
    if default not in FIELD_POLICIES:
        raise _fail(f"{key}.default", f"must be one of {', '.join(FIELD_POLICIES)}")
    delete = t.get("delete", "lww")
    if delete not in DELETE_POLICIES:
        raise _fail(f"{key}.delete", f"must be one of {', '.join(DELETE_POLICIES)}")
    fields: dict[str, Any] = {}
    for pol in ("lww", "upstream_wins", "manual"):
        for name in _str_list(t.get(pol, []), f"{key}.{pol}"):
            if name not in s.fields:
                raise _fail(f"{key}.{pol}", f"unknown field {name!r} of {entity}")
            if name in fields:
                raise _fail(f"{key}.{pol}", f"field {name!r} has two policies")
            fields[name] = pol
    return EntityPolicy(default=default, fields=fields, delete=delete)


def _parse_write(entity: str, raw: Any, key: str) -> WritePermission:
    t = _table(raw, key)
    _no_unknown(t, _WRITE_KEYS, key + ".")
    s = schema(entity)
    flags = {}
    for flag in ("create", "update", "delete"):
        v = t.get(flag, False)
        if not isinstance(v, bool):
            raise _fail(f"{key}.{flag}", "must be true or false")
        flags[flag] = v
    writable = {n for n, f in s.fields.items() if not f.system}
    spec = t.get("fields", "*")
    if spec == "*":
        chosen = set(writable)
    else:
        chosen = set(_str_list(spec, f"{key}.fields"))
        for name in chosen:
            if name not in s.fields:
                raise _fail(f"{key}.fields", f"unknown field {name!r} of {entity}")
            if s.fields[name].system:
                raise _fail(f"{key}.fields", f"{name!r} is a system field")
    for name in _str_list(t.get("exclude", []), f"{key}.exclude"):
        if name not in s.fields:
            raise _fail(f"{key}.exclude", f"unknown field {name!r} of {entity}")
        chosen.discard(name)
    return WritePermission(fields=frozenset(chosen), **flags)


def parse_rules(text: str, source: str = "<rules>") -> SyncRules:
    """Parse and validate a rules file's text.

    Args:
        text: TOML text.
        source: a name for messages (usually the file path).

    Raises:
        RulesError: with a message naming the offending key.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RulesError(f"{source}: not valid TOML: {e}", key="") from e
    try:
        return _parse(raw, text)
    except RulesError as e:
        raise RulesError(f"{source}: {e.detail}", **e.params) from None


def _parse(raw: dict[str, Any], text: str) -> SyncRules:
    _no_unknown(raw, _TOP_KEYS, "")
    version = raw.get("version")
    if version != 1:
        raise _fail("version", "must be 1")
    max_channels = raw.get("max_channels_per_user", 200)
    if type(max_channels) is not int or not 1 <= max_channels <= 10_000:
        raise _fail("max_channels_per_user", "must be an integer from 1 to 10000")
    claim = raw.get("profile_claim", "crm_profile")
    if not isinstance(claim, str) or not claim:
        raise _fail("profile_claim", "must be a non-empty string")

    ch = _table(raw.get("channels", {}), "channels")
    default_templates = _str_list(ch.get("default", []), "channels.default")
    channels: dict[str, tuple[str, ...]] = {}
    for name in ch:
        if name != "default":
            _entity_name(name, f"channels.{name}")
    for entity, s in SCHEMAS.items():
        templates = _str_list(ch.get(entity, default_templates), f"channels.{entity}")
        for t in templates:
            _check_template(t, f"channels.{entity}", set(s.fields))
        channels[entity] = tuple(templates)

    pol = _table(raw.get("policies", {}), "policies")
    for name in pol:
        _entity_name(name, f"policies.{name}")
    policies = {e: _parse_policy(e, pol[e]) if e in pol else EntityPolicy() for e in SCHEMAS}

    profs = _table(raw.get("profiles", {}), "profiles")
    if not profs:
        raise _fail("profiles", "at least one profile is required")
    profiles: dict[str, Profile] = {}
    for pname, praw in profs.items():
        key = f"profiles.{pname}"
        p = _table(praw, key)
        _no_unknown(p, _PROFILE_KEYS, key + ".")
        read = _str_list(p.get("read", []), f"{key}.read")
        for t in read:
            _check_template(t, f"{key}.read", None)
        w = _table(p.get("write", {}), f"{key}.write")
        write = {
            _entity_name(e, f"{key}.write.{e}"): _parse_write(e, w[e], f"{key}.write.{e}")
            for e in w
        }
        profiles[pname] = Profile(pname, tuple(read), write)
    return SyncRules(1, max_channels, claim, channels, policies, profiles, text)
