"""The reject report of a file import: one CSV line per bad cell (row, column, code, reason).

Cell values are not copied into the report: they may be personal data, and the row
number is enough to find them in the source file.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import TextIO

from .validation import Reject

REPORT_HEADER = ("row", "column", "code", "reason")


def default_report_path(source: Path) -> Path:
    """``<file>.rejects.csv`` next to the imported file."""
    return source.with_name(source.name + ".rejects.csv")


class RejectReport:
    """Writes rejects as they are found (the file is complete even if the import stops).

    Args:
        path: Where to write (overwritten).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self.entries = 0
        self._file: TextIO | None = None
        self._writer: csv.DictWriter[str] | None = None

    def __enter__(self) -> RejectReport:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", encoding="utf-8", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=list(REPORT_HEADER))
        self._writer.writeheader()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def add(self, rejects: Iterable[Reject]) -> None:
        """Record the rejects of one row."""
        assert self._writer is not None, "use RejectReport as a context manager"
        counted = False
        for r in rejects:
            self._writer.writerow(
                {"row": r.row, "column": r.column, "code": r.code, "reason": r.reason}
            )
            self.entries += 1
            if not counted:
                self.rows += 1
                counted = True


def read_report(path: Path) -> list[Reject]:
    """Read a reject report back (for tests and tooling)."""
    with path.open(encoding="utf-8", newline="") as f:
        return [
            Reject(int(r["row"]), r["column"], r["code"], r["reason"]) for r in csv.DictReader(f)
        ]
