"""Provision the Couchbase record store: ``python -m infra.couchbase [--replicas 0]``.

Reads ``CRMSYNC_COUCHBASE_URL``, ``_USERNAME``, ``_PASSWORD``, ``_BUCKET`` and ``_SCOPE``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from backend.store.config import StoreConfig
from backend.store.errors import StoreConfigError
from infra.couchbase.provision import provision_sync


def main(argv: list[str] | None = None) -> int:
    """Create whatever is missing and print what was created.

    Args:
        argv: Command-line arguments (defaults to ``sys.argv[1:]``).

    Returns:
        Process exit code (2 for a configuration error).
    """
    parser = argparse.ArgumentParser(prog="python -m infra.couchbase", description=__doc__)
    parser.add_argument("--ram-quota-mb", type=int, default=512, help="for a new bucket")
    parser.add_argument("--replicas", type=int, default=1, help="for a new bucket (0: one node)")
    parser.add_argument("--primary-indexes", action="store_true", help="also primary indexes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        config = StoreConfig.from_env(os.environ).with_overrides(backend="couchbase")
    except StoreConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    report = provision_sync(
        config,
        ram_quota_mb=args.ram_quota_mb,
        replicas=args.replicas,
        primary_indexes=args.primary_indexes,
    )
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
