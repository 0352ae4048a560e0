"""``python -m backend.gateway``: serve the sync and admin APIs."""

from __future__ import annotations

from .server import main

raise SystemExit(main())
