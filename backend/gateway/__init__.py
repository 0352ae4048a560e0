"""The sync gateway: Litestar app, push/pull/bootstrap/events/metadata/blobs routes.

Invariants (guarded by ``tests/unit/backend/gateway`` and ``tests/integration/gateway``):
the gateway never writes records (pushes go to the applier); every read is filtered by
the caller's channel grants; an error about an out-of-scope record is indistinguishable
from one about a missing record; every error is ``application/problem+json``.
"""
