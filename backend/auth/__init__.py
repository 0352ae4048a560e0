"""Authentication: JWKS-verified bearer tokens, principals, the device registry, a dev signer.

Invariants (guarded by ``tests/unit/backend/auth`` and ``tests/integration/gateway``):
only RS256/ES256 tokens from the configured issuer for the configured audience pass;
a device is bound to one user; a revoked device is answered "wipe".
"""

from .devices import DeviceEntry, DeviceRegistry, DeviceView
from .errors import AuthError
from .jwks import KeySet, KeySetCache
from .principal import Authenticator, Principal
from .tokens import TokenVerifier

__all__ = [
    "AuthError",
    "Authenticator",
    "DeviceEntry",
    "DeviceRegistry",
    "DeviceView",
    "KeySet",
    "KeySetCache",
    "Principal",
    "TokenVerifier",
]
