"""Bulk import of a CSV or JSONL file into one entity, through the applier.

Invariants (tested in ``tests/integration/importer/test_file_import.py``):

* **Every row is validated**; a row with any bad cell is rejected whole and every bad cell
  is in the reject report with its row number, column and reason. Valid rows are applied.
* **Resumable**: rows are published in fixed batches (batch *k* = data rows
  ``k*B+1 .. (k+1)*B``) and the number of batches published is stored after each one, keyed
  by the file's SHA-256; a rerun after a crash starts after the last published batch.
* **Idempotent**: batch ids and clocks are functions of the file content and the row
  number (clocks are based on the file's modification time at the first run, stored with
  the progress), so publishing a batch twice is a replay for the applier, and a finished
  file imported again changes nothing.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sync_protocol.changesets import Mutation
from sync_protocol.entities import schema
from sync_protocol.hlc import HLC

from ..errors import FileHeaderError, FileReadError
from ..publisher import UpstreamPublisher
from ..state import FileProgress, StateStore, file_key
from .readers import FileRows, RowError, detect_format
from .report import RejectReport, default_report_path
from .validation import ColumnPlan, Reject, RowValidator, plan_columns

FILE_NODE = "upstream:file"
"""Clock node of file imports: upstream, so ``upstream_wins`` fields rank them like Dynamics."""

Progress = Callable[[int, int], None]
"""``(bytes_done, bytes_total)`` callback."""


@dataclass(slots=True)
class FileImportResult:
    """What an import run did.

    Attributes:
        path: The file.
        entity: Target entity.
        sha256: The file's content hash (its identity for resume and no-op reruns).
        rows: Data rows in the file.
        valid: Rows published to the applier (over all runs).
        rejected: Rows rejected.
        batches: Batches published (over all runs).
        resumed_batches: Batches a previous run had already published.
        already_done: The file had been imported completely before: nothing was sent.
        report_path: The reject report.
        batch_ids: Ids of every published batch (results are stored under them).
    """

    path: Path
    entity: str
    sha256: str
    rows: int = 0
    valid: int = 0
    rejected: int = 0
    batches: int = 0
    resumed_batches: int = 0
    already_done: bool = False
    report_path: Path | None = None
    batch_ids: list[str] = field(default_factory=list)


def file_facts(path: Path) -> tuple[str, int, int]:
    """SHA-256 of a file's content, its size and its modification time in ms.

    Raises:
        FileReadError: The file cannot be read.
    """
    h = hashlib.sha256()
    try:
        st = path.stat()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError as e:
        raise FileReadError(f"{path.name}: {e.strerror or e}") from e
    return h.hexdigest(), st.st_size, int(st.st_mtime * 1000)


def row_clock(as_of_ms: int, row_no: int) -> HLC:
    """The clock of data row ``row_no``: later rows of a file win over earlier ones."""
    return HLC(as_of_ms + (row_no >> 16), row_no & 0xFFFF, FILE_NODE)


class FileImporter:
    """Imports files into entities (see the module docstring).

    Args:
        state: Durable importer state (progress per file).
        publisher: Publishes the valid rows to the applier (source ``file``).
        batch_rows: Data rows per batch.
    """

    def __init__(
        self, state: StateStore, publisher: UpstreamPublisher, *, batch_rows: int = 1000
    ) -> None:
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        self.state = state
        self.publisher = publisher
        self.batch_rows = batch_rows

    async def run(
        self,
        path: Path,
        entity: str,
        *,
        fmt: str | None = None,
        report_path: Path | None = None,
        force: bool = False,
        ignore_unknown: bool = False,
        progress: Progress | None = None,
    ) -> FileImportResult:
        """Import ``path`` into ``entity``.

        Args:
            path: CSV or JSONL file.
            entity: Target entity.
            fmt: ``csv`` or ``jsonl`` (default: from the suffix).
            report_path: Where to write the reject report (default ``<file>.rejects.csv``).
            force: Publish again even if the file was imported completely (still a no-op
                for records that did not change since).
            ignore_unknown: Skip columns the entity does not have instead of failing.
            progress: Called with ``(bytes_read, total_bytes)`` as the file is read.

        Returns:
            What the run did.

        Raises:
            UnknownEntityError: ``entity`` is not synced.
            FileImportError: The file cannot be read or its header is unusable.
            PublishError: NATS refused the batches.
        """
        schema(entity)
        file_format = detect_format(path, fmt)
        sha, total, mtime_ms = file_facts(path)
        key = file_key(sha, entity)
        report = report_path or default_report_path(path)
        result = FileImportResult(path=path, entity=entity, sha256=sha, report_path=report)
        saved = await self.state.get(key, FileProgress)
        if saved is not None and saved.status == "done" and not force:
            result.rows = saved.rows
            result.valid = saved.valid
            result.rejected = saved.rejected
            result.batches = saved.batches
            result.resumed_batches = saved.batches
            result.batch_ids = list(saved.batch_ids)
            result.already_done = True
            return result
        now = int(time.time() * 1000)
        if saved is None or force:
            saved = FileProgress(
                file_name=path.name,
                as_of_ms=mtime_ms,
                started_ms=now,
                batch_ids=[],
            )
        done_batches = saved.batches if saved.status == "running" else 0
        result.resumed_batches = done_batches

        rows = FileRows(path, file_format)
        typed = file_format == "jsonl"
        csv_validator: RowValidator | None = None
        json_validators: dict[tuple[str, ...], RowValidator | Reject] = {}
        pending: list[Mutation] = []
        batch_no = 0
        valid_total = 0
        rejected_total = 0
        row_no = 0

        async def flush(last_row: int) -> None:
            nonlocal batch_no, pending
            if batch_no >= done_batches:
                ids = await self.publisher.publish(
                    entity, pending, f"file:{sha[:32]}:{entity}:{batch_no}"
                )
                saved.batch_ids.extend(ids)
                saved.batches = batch_no + 1
                saved.rows = last_row
                saved.valid = valid_total
                saved.rejected = rejected_total
                await self.state.put(key, saved)
            batch_no += 1
            pending = []

        with RejectReport(report) as rejects:
            for row_no, cells in rows:
                if isinstance(cells, RowError):
                    rejects.add([Reject(row_no, "", cells.code, cells.reason)])
                    rejected_total += 1
                else:
                    if typed:
                        validator = self._json_validator(
                            entity, cells, json_validators, ignore_unknown
                        )
                    else:
                        if csv_validator is None:
                            csv_validator = RowValidator(
                                entity, self._plan(entity, rows.header, ignore_unknown), typed=False
                            )
                        validator = csv_validator
                    if isinstance(validator, Reject):
                        outcome: tuple[str, dict[str, Any]] | list[Reject] = [
                            Reject(row_no, validator.column, validator.code, validator.reason)
                        ]
                    else:
                        outcome = validator.validate(row_no, cells)
                    if isinstance(outcome, list):
                        rejects.add(outcome)
                        rejected_total += 1
                    else:
                        record_id, values = outcome
                        valid_total += 1
                        pending.append(
                            Mutation(
                                entity=entity,
                                id=record_id,
                                clock=row_clock(saved.as_of_ms, row_no),
                                fields=values,
                            )
                        )
                if row_no % self.batch_rows == 0:
                    await flush(row_no)
                if progress is not None and row_no % 256 == 0:
                    progress(rows.bytes_read, total)
            if row_no % self.batch_rows != 0 or row_no == 0:
                await flush(row_no)
            if csv_validator is None and not typed:
                self._plan(entity, rows.header, ignore_unknown)  # header errors, even with no rows

        saved.status = "done"
        saved.rows = row_no
        saved.valid = valid_total
        saved.rejected = rejected_total
        saved.finished_ms = int(time.time() * 1000)
        await self.state.put(key, saved)
        if progress is not None:
            progress(total, total)
        result.rows = row_no
        result.valid = valid_total
        result.rejected = rejected_total
        result.batches = batch_no
        result.batch_ids = list(saved.batch_ids)
        return result

    @staticmethod
    def _plan(entity: str, header: list[str], ignore_unknown: bool) -> ColumnPlan:
        return plan_columns(entity, header, ignore_unknown=ignore_unknown)

    @staticmethod
    def _json_validator(
        entity: str,
        cells: Mapping[str, Any],
        cache: dict[tuple[str, ...], RowValidator | Reject],
        ignore_unknown: bool,
    ) -> RowValidator | Reject:
        keys = tuple(cells)
        hit = cache.get(keys)
        if hit is None:
            # A JSONL line's keys are its header: a bad one rejects the line, not the file.
            try:
                hit = RowValidator(
                    entity, plan_columns(entity, keys, ignore_unknown=ignore_unknown), typed=True
                )
            except FileHeaderError as e:
                hit = Reject(0, "", "bad_columns", e.message)
            cache[keys] = hit
        return hit
