"""Streaming readers of CSV and JSONL import files.

Both yield ``(row_number, header, values)`` one row at a time, so a file of millions of rows
is imported in flat memory. Row numbers count data rows from 1 (the CSV header is not a row;
in JSONL every non-blank line is one), and the reject report uses them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

import msgspec

from ..errors import FileHeaderError, FileReadError, UnsupportedFileFormatError

FileFormat = Literal["csv", "jsonl"]

_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
_CSV_SUFFIXES = (".csv", ".tsv", ".txt")
_json_decode = msgspec.json.Decoder().decode


class RowError(msgspec.Struct, frozen=True):
    """A row the reader could not even split into cells (bad JSON, ragged CSV)."""

    code: str
    reason: str


def detect_format(path: Path, explicit: str | None = None) -> FileFormat:
    """The file's format: ``explicit`` if given, else from its suffix.

    Raises:
        UnsupportedFileFormatError: Neither CSV nor JSONL.
    """
    name = (explicit or path.suffix.lstrip(".")).lower()
    if name in ("csv", "tsv", "txt") or f".{name}" in _CSV_SUFFIXES:
        return "csv"
    if name in ("jsonl", "ndjson", "json") or f".{name}" in _JSONL_SUFFIXES:
        return "jsonl"
    raise UnsupportedFileFormatError(f"{path.name}: expected a .csv or .jsonl file")


class _CountingReader(io.RawIOBase):
    """Counts bytes read from a binary stream (for the progress bar)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self._raw.read(len(b))
        n = len(data)
        b[:n] = data
        self.consumed += n
        return n


class FileRows:
    """Iterates the rows of one import file.

    Args:
        path: The file.
        fmt: ``csv`` or ``jsonl``.
        delimiter: CSV delimiter (``None``: sniffed from the header line, ``,`` or ``;``
            or a tab).

    Attributes:
        header: Column names in file order (for JSONL: the union seen so far, in order).
        bytes_read: Bytes consumed so far (for progress).
    """

    def __init__(self, path: Path, fmt: FileFormat, delimiter: str | None = None) -> None:
        self.path = path
        self.fmt = fmt
        self.delimiter = delimiter
        self.header: list[str] = []
        self._counter: _CountingReader | None = None

    @property
    def bytes_read(self) -> int:
        """Bytes of the file consumed so far."""
        return self._counter.consumed if self._counter is not None else 0

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
        """Yield ``(row_number, cells)`` or ``(row_number, RowError)`` per data row.

        Raises:
            FileReadError: The file cannot be opened or is not UTF-8.
            FileHeaderError: A CSV file without a header, or with a repeated column.
        """
        try:
            raw = self.path.open("rb")
        except OSError as e:
            raise FileReadError(f"{self.path.name}: {e.strerror or e}") from e
        with raw:
            self._counter = _CountingReader(raw)
            buffered = io.BufferedReader(self._counter, buffer_size=1 << 20)
            text = io.TextIOWrapper(buffered, encoding="utf-8-sig", newline="")
            try:
                if self.fmt == "csv":
                    yield from self._csv(text)
                else:
                    yield from self._jsonl(text)
            except UnicodeDecodeError as e:
                raise FileReadError(f"{self.path.name}: not UTF-8 text ({e.reason})") from e

    def _csv(self, text: io.TextIOWrapper) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
        first = text.readline()
        if not first.strip():
            raise FileHeaderError(f"{self.path.name}: the first line must be a header")
        delimiter = self.delimiter or _sniff(first)
        header = next(csv.reader([first], delimiter=delimiter))
        header = [h.strip() for h in header]
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise FileHeaderError(f"{self.path.name}: repeated columns {dupes}")
        self.header = header
        width = len(header)
        reader = csv.reader(text, delimiter=delimiter, strict=True)
        row_no = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                row_no += 1
                yield row_no, RowError("malformed_row", f"CSV syntax error: {e}")
                continue
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue  # blank line
            row_no += 1
            if len(cells) != width:
                yield (
                    row_no,
                    RowError("wrong_column_count", f"expected {width} cells, found {len(cells)}"),
                )
                continue
            yield row_no, dict(zip(header, cells, strict=True))

    def _jsonl(self, text: io.TextIOWrapper) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
        seen: dict[str, None] = {}
        row_no = 0
        for line in text:
            if not line.strip():
                continue
            row_no += 1
            try:
                obj = _json_decode(line)
            except msgspec.DecodeError as e:
                yield row_no, RowError("malformed_row", f"not valid JSON: {e}")
                continue
            if not isinstance(obj, dict):
                yield row_no, RowError("malformed_row", "each line must be a JSON object")
                continue
            for key in obj:
                if key not in seen:
                    seen[key] = None
                    self.header.append(key)
            yield row_no, obj


def _sniff(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","
