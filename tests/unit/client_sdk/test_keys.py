"""Key management: DEK wrapping, unlock errors, KEK changes, splicing, crypto-shred."""

from __future__ import annotations

import base64
import json
import time
import unicodedata
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from client_sdk import keys
from client_sdk.errors import (
    InvalidKekError,
    KekKindMismatchError,
    KeyFileCorruptError,
    KeyFileExistsError,
    KeyFileNotFoundError,
    UnsupportedKeyFileError,
    WrongKeystoreKeyError,
    WrongPassphraseError,
)
from client_sdk.keys import (
    DEFAULT_SCRYPT,
    KeystoreKey,
    Passphrase,
    ScryptParams,
    change_kek,
    create_key_file,
    read_key_file,
    shred_key_file,
    unlock_key_file,
)


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "replica.db.key"


def test_passphrase_round_trip(key_path: Path, passphrase: Passphrase) -> None:
    created = create_key_file(key_path, passphrase)
    unlocked = unlock_key_file(key_path, Passphrase(passphrase.text, passphrase.params))
    assert unlocked == created
    assert len(unlocked.material) == 32
    assert unlocked.sqlcipher_pragma_value() == f"\"x'{created.material.hex()}'\""


def test_keystore_round_trip(key_path: Path, keystore_key: KeystoreKey) -> None:
    created = create_key_file(key_path, keystore_key)
    assert unlock_key_file(key_path, keystore_key) == created
    assert read_key_file(key_path).kdf == "keystore"


def test_key_file_layout_holds_no_clear_key(key_path: Path, passphrase: Passphrase) -> None:
    data_key = create_key_file(key_path, passphrase)
    raw = key_path.read_bytes()
    document = json.loads(raw)
    assert set(document) == {"version", "key_id", "kdf", "salt", "params", "nonce", "wrapped_dek"}
    assert document["version"] == 1
    assert document["kdf"] == "scrypt"
    assert document["key_id"] == data_key.key_id
    assert document["params"] == {"n": 16, "r": 1, "p": 1}
    assert len(base64.b64decode(document["salt"])) == 16
    assert len(base64.b64decode(document["nonce"])) == 12
    assert len(base64.b64decode(document["wrapped_dek"])) == 48  # 32 + GCM tag
    for form in (
        data_key.material,
        data_key.material.hex().encode(),
        base64.b64encode(data_key.material),
    ):
        assert form not in raw
    assert key_path.stat().st_mode & 0o077 == 0  # owner-only


def test_wrong_passphrase_is_typed_not_invalid_tag(key_path: Path, passphrase: Passphrase) -> None:
    create_key_file(key_path, passphrase)
    with pytest.raises(WrongPassphraseError) as info:
        unlock_key_file(key_path, Passphrase("Correct horse battery staple", passphrase.params))
    assert info.value.code == "wrong_passphrase"
    assert not isinstance(info.value, InvalidTag)
    assert isinstance(info.value.__cause__, InvalidTag)


def test_wrong_keystore_key(key_path: Path, keystore_key: KeystoreKey) -> None:
    create_key_file(key_path, keystore_key)
    with pytest.raises(WrongKeystoreKeyError) as info:
        unlock_key_file(key_path, KeystoreKey(b"\x00" * 32))
    assert info.value.code == "wrong_keystore_key"


def test_kek_kind_mismatch(
    key_path: Path, passphrase: Passphrase, keystore_key: KeystoreKey
) -> None:
    create_key_file(key_path, passphrase)
    with pytest.raises(KekKindMismatchError):
        unlock_key_file(key_path, keystore_key)


def test_passphrase_is_nfc_normalised(key_path: Path, cheap_scrypt: ScryptParams) -> None:
    composed = unicodedata.normalize("NFC", "Pässwörd-Łódź")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    create_key_file(key_path, Passphrase(composed, cheap_scrypt))
    assert unlock_key_file(key_path, Passphrase(decomposed, cheap_scrypt)).key_id


def test_splicing_a_wrapped_key_into_another_file_fails(
    tmp_path: Path, keystore_key: KeystoreKey
) -> None:
    # Two key files under the same KEK: swapping the wrapped DEK (and its nonce) into
    # the other file must not yield a key, because the AAD binds the key id.
    a, b = tmp_path / "a.key", tmp_path / "b.key"
    create_key_file(a, keystore_key)
    create_key_file(b, keystore_key)
    doc_a, doc_b = json.loads(a.read_bytes()), json.loads(b.read_bytes())
    doc_b["wrapped_dek"], doc_b["nonce"] = doc_a["wrapped_dek"], doc_a["nonce"]
    b.write_text(json.dumps(doc_b))
    with pytest.raises(WrongKeystoreKeyError):
        unlock_key_file(b, keystore_key)


def test_tampered_key_id_or_params_fail(key_path: Path, passphrase: Passphrase) -> None:
    create_key_file(key_path, passphrase)
    original = json.loads(key_path.read_bytes())
    for field, value in (("key_id", "0" * 32), ("params", {"n": 32, "r": 1, "p": 1})):
        key_path.write_text(json.dumps({**original, field: value}))
        with pytest.raises(WrongPassphraseError):
            unlock_key_file(key_path, passphrase)


def test_change_passphrase_rewraps_same_key(key_path: Path, passphrase: Passphrase) -> None:
    created = create_key_file(key_path, passphrase)
    before = read_key_file(key_path)
    new = Passphrase("a whole new passphrase", passphrase.params)
    assert change_kek(key_path, passphrase, new) == created
    after = read_key_file(key_path)
    assert after.salt != before.salt and after.nonce != before.nonce
    assert unlock_key_file(key_path, new) == created
    with pytest.raises(WrongPassphraseError):
        unlock_key_file(key_path, passphrase)


def test_change_kek_requires_the_old_one(key_path: Path, passphrase: Passphrase) -> None:
    create_key_file(key_path, passphrase)
    with pytest.raises(WrongPassphraseError):
        change_kek(
            key_path, Passphrase("guess", passphrase.params), Passphrase("x", passphrase.params)
        )
    assert unlock_key_file(key_path, passphrase)


def test_switch_between_passphrase_and_keystore(
    key_path: Path, passphrase: Passphrase, keystore_key: KeystoreKey
) -> None:
    created = create_key_file(key_path, passphrase)
    change_kek(key_path, passphrase, keystore_key)
    assert read_key_file(key_path).kdf == "keystore"
    assert read_key_file(key_path).params is None
    assert unlock_key_file(key_path, keystore_key) == created
    with pytest.raises(KekKindMismatchError):
        unlock_key_file(key_path, passphrase)
    change_kek(key_path, keystore_key, passphrase)
    assert unlock_key_file(key_path, passphrase) == created


def test_create_never_overwrites(key_path: Path, passphrase: Passphrase) -> None:
    first = create_key_file(key_path, passphrase)
    with pytest.raises(KeyFileExistsError) as info:
        create_key_file(key_path, passphrase)
    assert info.value.code == "key_file_exists"
    assert unlock_key_file(key_path, passphrase) == first


def test_missing_corrupt_and_unsupported_files(key_path: Path, passphrase: Passphrase) -> None:
    with pytest.raises(KeyFileNotFoundError):
        unlock_key_file(key_path, passphrase)
    key_path.write_bytes(b"\x00garbage")
    with pytest.raises(KeyFileCorruptError):
        unlock_key_file(key_path, passphrase)
    create_key_file(key_path.with_name("ok.key"), passphrase)
    good = json.loads(key_path.with_name("ok.key").read_bytes())
    cases: list[tuple[dict[str, object], type[Exception]]] = [
        ({**good, "version": 99}, UnsupportedKeyFileError),
        ({**good, "kdf": "argon2id"}, UnsupportedKeyFileError),
        ({**good, "nonce": base64.b64encode(b"short").decode()}, KeyFileCorruptError),
        ({k: v for k, v in good.items() if k != "wrapped_dek"}, KeyFileCorruptError),
        ({**good, "salt": 12}, KeyFileCorruptError),
        ({**good, "extra": 1}, KeyFileCorruptError),
    ]
    for document, error in cases:
        key_path.write_text(json.dumps(document))
        with pytest.raises(error):
            unlock_key_file(key_path, passphrase)


def test_hostile_scrypt_parameters_are_refused_fast(key_path: Path, passphrase: Passphrase) -> None:
    create_key_file(key_path, passphrase)
    document = json.loads(key_path.read_bytes())
    for params in (
        {"n": 2**30, "r": 8, "p": 1},
        {"n": 2**20, "r": 64, "p": 1},
        {"n": 1000, "r": 8, "p": 1},
    ):
        key_path.write_text(json.dumps({**document, "params": params}))
        started = time.monotonic()
        with pytest.raises(KeyFileCorruptError):
            unlock_key_file(key_path, passphrase)
        assert time.monotonic() - started < 1.0


def test_invalid_kek_material() -> None:
    with pytest.raises(InvalidKekError) as info:
        Passphrase("")
    assert info.value.code == "invalid_kek"
    with pytest.raises(InvalidKekError):
        KeystoreKey(b"\x01" * 16)
    with pytest.raises(InvalidKekError):
        Passphrase("x", ScryptParams(n=3, r=1, p=1))


def test_secrets_stay_out_of_reprs(key_path: Path) -> None:
    kek = Passphrase("hunter2-secret", ScryptParams(n=16, r=1, p=1))
    data_key = create_key_file(key_path, kek)
    assert "hunter2" not in repr(kek)
    assert data_key.material.hex() not in repr(data_key)
    assert "\\x" not in repr(KeystoreKey(b"\x07" * 32))


def test_shred_overwrites_before_deleting(
    key_path: Path, passphrase: Passphrase, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_key_file(key_path, passphrase)
    original = key_path.read_bytes()
    seen_before_unlink: list[bytes] = []
    real_unlink = Path.unlink

    def spy_unlink(self: Path, missing_ok: bool = False) -> None:
        if self == key_path:
            seen_before_unlink.append(self.read_bytes())
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", spy_unlink)
    assert shred_key_file(key_path) is True
    assert not key_path.exists()
    assert len(seen_before_unlink) == 1
    assert seen_before_unlink[0] != original
    assert len(seen_before_unlink[0]) >= len(original)
    assert shred_key_file(key_path) is False


def test_default_scrypt_costs_tens_of_milliseconds(key_path: Path) -> None:
    assert (DEFAULT_SCRYPT.n, DEFAULT_SCRYPT.r, DEFAULT_SCRYPT.p) == (2**14, 8, 1)
    kek = Passphrase("production strength")
    create_key_file(key_path, kek)
    started = time.perf_counter()
    unlock_key_file(key_path, kek)
    # ~40 ms on the reference server core; generous bound for a loaded CI machine.
    assert time.perf_counter() - started < 2.0


def test_calibrate_scrypt_returns_usable_params() -> None:
    params = keys.calibrate_scrypt(target_seconds=0.001, max_n=2**13)
    params.validate()
    assert 2**12 <= params.n <= 2**13
    assert (params.r, params.p) == (8, 1)
