"""The admin API (devices, conflicts, audit, health) and metrics, on their own port.

Invariant: every ``/admin`` endpoint needs a token with the admin profile (guarded by
``tests/unit/backend/gateway/test_admin.py``).
"""
