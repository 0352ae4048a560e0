"""Key sets: parsing, matching by kid and algorithm, caching and refresh limits."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from backend.auth.dev_signer import DevSigner
from backend.auth.errors import InvalidTokenError, KeySetConfigError, KeySetUnavailableError
from backend.auth.jwks import (
    FileKeySetSource,
    KeySet,
    KeySetCache,
    StaticKeySetSource,
    UrlKeySetSource,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingSource:
    def __init__(self, documents: list[dict[str, object]]) -> None:
        self.documents = documents
        self.calls = 0
        self.fail = False

    async def fetch(self) -> KeySet:
        self.calls += 1
        if self.fail:
            raise KeySetUnavailableError("down")
        return KeySet.parse(self.documents[min(self.calls - 1, len(self.documents) - 1)])


@pytest.mark.parametrize(
    "doc", [b"not json", b"[]", b'{"keys": 1}', b'{"keys": [1]}', b'{"keys": [{"kty": "RSA"}]}']
)
def test_invalid_documents_are_config_errors(doc: bytes) -> None:
    with pytest.raises(KeySetConfigError):
        KeySet.parse(doc)


def test_private_members_are_dropped_and_foreign_keys_skipped(signer: DevSigner) -> None:
    jwk = {**signer.jwks()["keys"][0], "d": "secret"}
    enc = {**signer.jwks()["keys"][0], "kid": "enc", "use": "enc"}
    sym = {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}
    keys = KeySet.parse({"keys": [jwk, enc, sym]})
    assert list(keys.keys) == [signer.kid]
    assert "d" not in keys.keys[signer.kid]


def test_find_matches_kid_family_and_alg(signer: DevSigner) -> None:
    keys = KeySet.parse(signer.jwks())
    assert keys.find(signer.kid, "RS256") is not None
    assert keys.find(signer.kid, "ES256") is None
    assert keys.find("other", "RS256") is None
    assert keys.find(signer.kid, "HS256") is None
    assert keys.find(None, "RS256") is not None  # the only RSA key


async def test_unknown_kid_refreshes_at_most_once_per_interval(signer: DevSigner) -> None:
    rotated = DevSigner.generate()
    source = CountingSource([signer.jwks(), rotated.jwks()])
    clock = Clock()
    cache = KeySetCache(source, min_refresh_interval_s=30, clock=clock)
    assert await cache.key_for(signer.kid, "RS256")
    assert source.calls == 1
    clock.now += 31
    assert await cache.key_for(rotated.kid, "RS256")  # refreshed on the unknown kid
    assert source.calls == 2
    for _ in range(5):
        with pytest.raises(InvalidTokenError):
            await cache.key_for("made-up", "RS256")
    assert source.calls == 2  # within the interval: no more fetches


async def test_ttl_expiry_refetches_and_failures_keep_the_last_set(signer: DevSigner) -> None:
    source = CountingSource([signer.jwks()])
    clock = Clock()
    cache = KeySetCache(source, ttl_s=60, clock=clock)
    await cache.key_for(signer.kid, "RS256")
    clock.now += 61
    source.fail = True
    assert await cache.key_for(signer.kid, "RS256")  # stale set still serves
    assert source.calls == 2


async def test_no_set_at_all_is_unavailable() -> None:
    source = CountingSource([])
    source.fail = True
    with pytest.raises(KeySetUnavailableError) as e:
        await KeySetCache(source).key_for("k", "RS256")
    assert e.value.status == 503


async def test_file_source_reads_the_file(tmp_path: Path, signer: DevSigner) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(signer.jwks()))
    keys = await FileKeySetSource(path).fetch()
    assert signer.kid in keys.keys
    with pytest.raises(KeySetUnavailableError):
        await FileKeySetSource(tmp_path / "missing.json").fetch()


async def test_url_source_downloads_and_checks_status(signer: DevSigner) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/keys":
            return httpx.Response(200, json=signer.jwks())
        return httpx.Response(500)

    transport = httpx.MockTransport(handler)
    keys = await UrlKeySetSource("https://idp.test/keys", transport=transport).fetch()
    assert signer.kid in keys.keys
    with pytest.raises(KeySetUnavailableError):
        await UrlKeySetSource("https://idp.test/broken", transport=transport).fetch()


async def test_static_source_round_trips(signer: DevSigner) -> None:
    keys = await StaticKeySetSource(signer.jwks()).fetch()
    assert keys.find(signer.kid, "RS256") is not None
