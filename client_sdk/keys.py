"""Data-key management: a random 256-bit DEK wrapped by a key-encryption key (KEK).

The database is encrypted with a random data-encryption key (DEK). The DEK is never
stored in clear: it is wrapped with AES-256-GCM under a KEK and kept in a small JSON
key file next to the database. The KEK comes either from the user's passphrase
(scrypt) or from the host platform's keystore (32 raw bytes, e.g. an Android Keystore
or iOS Keychain secret the app hands in).

Invariants:
- The AES-GCM associated data binds the key id, the KDF and its parameters, so a
  wrapped DEK cannot be spliced into another key file.
- A wrong passphrase raises :class:`WrongPassphraseError` (stable code), never a bare
  ``InvalidTag``.
- Key files are replaced atomically (write temp, fsync, rename, fsync dir): a crash
  leaves either the old or the new file, never a torn one.
- Changing the KEK re-wraps the same DEK; the database is not touched.
- :func:`shred_key_file` overwrites then deletes the file. On flash storage the
  overwrite is best effort (wear levelling may keep old blocks); the guarantee is
  that a *keystore* KEK destroyed by the platform makes the wrapped DEK useless.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import struct
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, TypeAlias

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

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

KEY_FILE_VERSION: Final = 1
DEK_BYTES: Final = 32
KEK_BYTES: Final = 32
NONCE_BYTES: Final = 12
SALT_BYTES: Final = 16
# Upper bounds applied to parameters read from a key file, so a tampered file cannot
# make unlock allocate gigabytes or spin for minutes.
_MAX_SCRYPT_N: Final = 2**20
_MAX_SCRYPT_MEMORY: Final = 256 * 1024 * 1024
_AAD_PREFIX: Final = b"crmsync.dek.v1\x00"

KdfName: TypeAlias = Literal["scrypt", "keystore"]


class ScryptParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """scrypt cost parameters (memory = 128 * n * r bytes).

    The default, n=2**14, r=8, p=1 (16 MiB), takes about 40 ms on one server core
    (AMD EPYC) and so roughly 60-120 ms on a mid-range phone core, which is the
    unlock latency we aim for. Tests pass much cheaper parameters.
    """

    n: int = 2**14
    r: int = 8
    p: int = 1

    def validate(self) -> None:
        """Reject parameters that are malformed or would exhaust a phone.

        Raises:
            InvalidKekError: ``n`` is not a power of two in [2, 2**20], ``r``/``p`` are
                out of [1, 64], or the memory cost exceeds 256 MiB.
        """
        n, r, p = self.n, self.r, self.p
        if not (2 <= n <= _MAX_SCRYPT_N and n & (n - 1) == 0):
            raise InvalidKekError(f"scrypt n must be a power of two in [2, 2**20], got {n}")
        if not (1 <= r <= 64 and 1 <= p <= 64):
            raise InvalidKekError("scrypt r and p must be in [1, 64]")
        if 128 * n * r > _MAX_SCRYPT_MEMORY:
            raise InvalidKekError("scrypt memory cost above 256 MiB")


DEFAULT_SCRYPT: Final = ScryptParams()


class KeyFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """On-disk form of a wrapped DEK (JSON; bytes fields are base64)."""

    version: int
    key_id: str
    kdf: KdfName
    salt: bytes = b""
    params: ScryptParams | None = None
    nonce: bytes
    wrapped_dek: bytes


_key_file_encoder = msgspec.json.Encoder()
_key_file_decoder = msgspec.json.Decoder(KeyFile)


@dataclass(frozen=True)
class Passphrase:
    """A KEK derived from the user's passphrase with scrypt.

    ``params`` is used only when wrapping (create, change KEK, rekey); unlocking uses
    the parameters stored in the key file.
    """

    text: str = field(repr=False)
    params: ScryptParams = DEFAULT_SCRYPT

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text:
            raise InvalidKekError("passphrase must be a non-empty string")
        self.params.validate()

    def secret(self) -> bytes:
        """The KDF input: NFC-normalised UTF-8, so every keyboard yields the same bytes."""
        return unicodedata.normalize("NFC", self.text).encode("utf-8")


@dataclass(frozen=True)
class KeystoreKey:
    """A KEK handed in directly by the platform keystore (32 raw bytes)."""

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != KEK_BYTES:
            raise InvalidKekError(f"keystore KEK must be exactly {KEK_BYTES} bytes")


Kek: TypeAlias = Passphrase | KeystoreKey


@dataclass(frozen=True)
class DataKey:
    """An unwrapped data-encryption key and the id of the key file that wraps it."""

    key_id: str
    material: bytes = field(repr=False)

    def sqlcipher_pragma_value(self) -> str:
        """The raw-key form SQLCipher expects: ``"x'<64 hex>'"`` (no PBKDF2 round)."""
        return f"\"x'{self.material.hex()}'\""


def calibrate_scrypt(target_seconds: float = 0.075, max_n: int = 2**18) -> ScryptParams:
    """Pick the largest scrypt ``n`` (r=8, p=1) whose derivation stays under a target.

    Meant to run once on the device when the key file is created.

    Args:
        target_seconds: Unlock latency to aim for on this device.
        max_n: Upper bound for ``n``.

    Returns:
        The chosen parameters (never below n=2**12).
    """
    n = 2**12
    while n < max_n:
        started = time.perf_counter()
        Scrypt(salt=b"\x00" * SALT_BYTES, length=KEK_BYTES, n=n, r=8, p=1).derive(b"probe")
        elapsed = time.perf_counter() - started
        if elapsed * 2 > target_seconds:
            break
        n *= 2
    return ScryptParams(n=n, r=8, p=1)


def _aad(key_id: str, kdf: KdfName, salt: bytes, params: ScryptParams | None) -> bytes:
    n, r, p = (params.n, params.r, params.p) if params else (0, 0, 0)
    return b"".join(
        (
            _AAD_PREFIX,
            key_id.encode("utf-8"),
            b"\x00",
            kdf.encode("ascii"),
            b"\x00",
            salt,
            struct.pack(">QII", n, r, p),
        )
    )


def _derive(kek: Kek, salt: bytes, params: ScryptParams | None) -> bytes:
    if isinstance(kek, KeystoreKey):
        return kek.key
    assert params is not None  # checked by the caller against the key file's kdf
    params.validate()
    return Scrypt(salt=salt, length=KEK_BYTES, n=params.n, r=params.r, p=params.p).derive(
        kek.secret()
    )


def wrap_data_key(data_key: DataKey, kek: Kek) -> KeyFile:
    """Wrap a DEK under a KEK (fresh salt and nonce every time).

    Args:
        data_key: The DEK to protect; its ``key_id`` is bound into the AAD.
        kek: Passphrase (scrypt with ``kek.params``) or keystore key.

    Returns:
        The key file content (not yet written).
    """
    if isinstance(kek, Passphrase):
        kdf: KdfName = "scrypt"
        salt = secrets.token_bytes(SALT_BYTES)
        params: ScryptParams | None = kek.params
    else:
        kdf, salt, params = "keystore", b"", None
    wrapping_key = _derive(kek, salt, params)
    nonce = secrets.token_bytes(NONCE_BYTES)
    wrapped = AESGCM(wrapping_key).encrypt(
        nonce, data_key.material, _aad(data_key.key_id, kdf, salt, params)
    )
    return KeyFile(
        version=KEY_FILE_VERSION,
        key_id=data_key.key_id,
        kdf=kdf,
        salt=salt,
        params=params,
        nonce=nonce,
        wrapped_dek=wrapped,
    )


def unwrap_data_key(key_file: KeyFile, kek: Kek) -> DataKey:
    """Unwrap the DEK of a key file.

    Raises:
        KekKindMismatchError: A passphrase was given for a keystore-wrapped file or
            the other way round.
        WrongPassphraseError: The passphrase does not unlock the file.
        WrongKeystoreKeyError: The keystore key does not unlock the file.
        KeyFileCorruptError: Field sizes are wrong.
    """
    expected: KdfName = "scrypt" if isinstance(kek, Passphrase) else "keystore"
    if key_file.kdf != expected:
        raise KekKindMismatchError(f"key file is wrapped by a {key_file.kdf} KEK, not {expected}")
    if len(key_file.nonce) != NONCE_BYTES or len(key_file.wrapped_dek) != DEK_BYTES + 16:
        raise KeyFileCorruptError("key file nonce or wrapped key has the wrong size")
    if key_file.kdf == "scrypt" and (key_file.params is None or not key_file.salt):
        raise KeyFileCorruptError("scrypt key file without salt or parameters")
    if key_file.params is not None:
        try:
            key_file.params.validate()
        except InvalidKekError as e:
            raise KeyFileCorruptError(f"key file has unusable scrypt parameters: {e}") from e
    wrapping_key = _derive(kek, key_file.salt, key_file.params)
    aad = _aad(key_file.key_id, key_file.kdf, key_file.salt, key_file.params)
    try:
        material = AESGCM(wrapping_key).decrypt(key_file.nonce, key_file.wrapped_dek, aad)
    except InvalidTag as e:
        # A wrong KEK and a tampered file are indistinguishable by design of GCM.
        if isinstance(kek, Passphrase):
            raise WrongPassphraseError() from e
        raise WrongKeystoreKeyError() from e
    return DataKey(key_id=key_file.key_id, material=material)


def new_data_key() -> DataKey:
    """A fresh random 256-bit DEK with a fresh random key id."""
    return DataKey(key_id=secrets.token_hex(16), material=secrets.token_bytes(DEK_BYTES))


def read_key_file(path: str | os.PathLike[str]) -> KeyFile:
    """Read and decode a key file.

    Raises:
        KeyFileNotFoundError: No file at ``path``.
        KeyFileCorruptError: The file is not a valid key file.
        UnsupportedKeyFileError: The file's version is unknown to this SDK.
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError as e:
        raise KeyFileNotFoundError(f"no key file at {path}") from e
    try:
        version = msgspec.json.decode(raw, type=dict[str, object]).get("version")
    except msgspec.DecodeError as e:
        raise KeyFileCorruptError("key file is not valid JSON") from e
    if version != KEY_FILE_VERSION:
        raise UnsupportedKeyFileError(f"key file version {version!r} is not supported")
    try:
        return _key_file_decoder.decode(raw)
    except msgspec.ValidationError as e:
        if "kdf" in str(e):
            raise UnsupportedKeyFileError(f"unsupported key file: {e}") from e
        raise KeyFileCorruptError(f"malformed key file: {e}") from e
    except msgspec.DecodeError as e:
        raise KeyFileCorruptError(f"malformed key file: {e}") from e


def _fsync_dir(directory: Path) -> None:
    # Directory fsync makes the rename durable; not every platform allows it.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_key_file(path: str | os.PathLike[str], key_file: KeyFile) -> None:
    """Write a key file atomically (temp file, fsync, rename, fsync directory)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    data = _key_file_encoder.encode(key_file)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)


def replace_key_file(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Atomically move a written key file over another one (rename, fsync directory)."""
    os.replace(source, target)
    _fsync_dir(Path(target).parent)


def create_key_file(path: str | os.PathLike[str], kek: Kek) -> DataKey:
    """Generate a new DEK, wrap it under ``kek`` and write the key file.

    Raises:
        KeyFileExistsError: A key file already exists at ``path`` (never overwritten:
            that would destroy the only way into an existing database).
    """
    if Path(path).exists():
        raise KeyFileExistsError(f"a key file already exists at {path}")
    data_key = new_data_key()
    write_key_file(path, wrap_data_key(data_key, kek))
    return data_key


def unlock_key_file(path: str | os.PathLike[str], kek: Kek) -> DataKey:
    """Read the key file and unwrap its DEK.

    Raises:
        KeyFileNotFoundError, KeyFileCorruptError, UnsupportedKeyFileError,
        KekKindMismatchError, WrongPassphraseError, WrongKeystoreKeyError.
    """
    return unwrap_data_key(read_key_file(path), kek)


def change_kek(path: str | os.PathLike[str], old: Kek, new: Kek) -> DataKey:
    """Re-wrap the DEK under a new KEK; the database is untouched.

    Covers passphrase change (Passphrase -> Passphrase), and switching between a
    passphrase and the platform keystore in either direction.

    Args:
        path: The key file.
        old: The KEK that currently unlocks it (proves the caller may change it).
        new: The KEK to wrap under from now on.

    Returns:
        The (unchanged) data key.
    """
    data_key = unlock_key_file(path, old)
    write_key_file(path, wrap_data_key(data_key, new))
    return data_key


def shred_key_file(path: str | os.PathLike[str]) -> bool:
    """Crypto-shred a key file: overwrite it with random bytes, fsync, then delete it.

    Returns:
        True if a file was there.
    """
    target = Path(path)
    try:
        size = target.stat().st_size
    except FileNotFoundError:
        return False
    with contextlib.suppress(FileNotFoundError), open(target, "r+b") as f:
        f.write(secrets.token_bytes(max(size, 512)))
        f.flush()
        os.fsync(f.fileno())
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    _fsync_dir(target.parent)
    return True
