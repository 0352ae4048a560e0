"""``python -m backend.applier``: run one applier process (same as ``crmsync applier``)."""

from __future__ import annotations

import sys

from backend.cli import main

if __name__ == "__main__":
    main(["applier", *sys.argv[1:]])
