"""Fixtures for the client SDK's storage tests: cheap KEKs and an open local database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from client_sdk.database import LocalDatabase
from client_sdk.keys import KeystoreKey, Passphrase, ScryptParams

# scrypt at n=16 costs microseconds; production parameters are exercised once in
# test_keys.py.
CHEAP_SCRYPT = ScryptParams(n=16, r=1, p=1)


@pytest.fixture
def cheap_scrypt() -> ScryptParams:
    """scrypt parameters cheap enough for unit tests."""
    return CHEAP_SCRYPT


@pytest.fixture
def passphrase() -> Passphrase:
    """The test user's passphrase (cheap scrypt)."""
    return Passphrase("correct horse battery staple", CHEAP_SCRYPT)


@pytest.fixture
def keystore_key() -> KeystoreKey:
    """A platform-keystore KEK."""
    return KeystoreKey(bytes(range(32)))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the replica lives (its key file is ``<path>.key``)."""
    return tmp_path / "replica.db"


@pytest.fixture
def local_db(db_path: Path, passphrase: Passphrase) -> Iterator[LocalDatabase]:
    """A freshly created, open replica; closed after the test."""
    db = LocalDatabase.create(db_path, passphrase)
    try:
        yield db
    finally:
        db.close()
