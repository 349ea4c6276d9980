"""Streaming CSV rows as real dataset files have them, for the importers.

- One row at a time: memory does not grow with the file.
- A UTF-8 byte-order mark is dropped; ``encoding`` reads other files (``latin-1`` for older
  ACLED exports). In a UTF-8 file a cell that is not valid UTF-8 rejects its row, not the file.
- Quoted cells may hold separators, quotes and newlines; a row is reported by the physical line
  where it starts (``line 7: low: …``), counting the header as line 1.
- Header names are compared after trimming spaces and folding case. Blank rows are skipped; a
  row with too few cells, or with extra non-empty ones, is rejected.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

# Real cells (notes, article lists) can be long; the csv module's default cap is 128 KiB.
csv.field_size_limit(max(csv.field_size_limit(), 1 << 24))

Progress = Callable[[int, int], None]  # (bytes read, rows read) so far


class BadFile(ValueError):
    """The file as a whole cannot be imported (missing, unreadable, not the expected columns)."""


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    cells: dict[str, str]


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    error: str


class RowError(ValueError):
    """A cell that cannot be converted; ``column`` names it."""

    def __init__(self, column: str, message: str):
        super().__init__(f"{column}: {message}")
        self.column = column
        self.message = message


def check_encoding(encoding: str) -> str:
    """The codec to read with: UTF-8 drops a byte-order mark."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise BadFile(f"--encoding: unknown encoding {encoding!r}") from None
    return "utf-8-sig" if name in ("utf-8", "utf-8-sig") else name


class _Hashing(io.RawIOBase):
    """The bytes of a file as they are read, hashed on the way (SHA-256): the hash of what was
    imported, whatever the file held before or after."""

    def __init__(self, inner: IO[bytes]):
        self.inner = inner
        self.sha256 = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        read = self.inner.readinto(buffer)
        if read:
            self.sha256.update(memoryview(buffer)[:read])
            self.count += read
        return read or 0

    def fileno(self) -> int:
        return self.inner.fileno()


class CsvRows:
    """The rows of one CSV file; iterate once. ``size`` and ``done`` are in bytes (for progress);
    ``sha256`` is the hash of the bytes read, the whole file's once every row is read."""

    def __init__(self, path: str, *, required: Sequence[str], kind: str, encoding: str = "utf-8",
                 progress: Progress | None = None, progress_every: int = 500):
        self.path = path
        self.kind = kind
        self.required = tuple(required)
        self.encoding = check_encoding(encoding)
        self.progress = progress
        self.progress_every = progress_every
        self._file = self._open(path)
        try:
            self.size: int | None = os.fstat(self._file.fileno()).st_size if path != "-" else None
        except (OSError, io.UnsupportedOperation):
            self.size = None
        self._hashing = _Hashing(self._file)
        self._text = io.TextIOWrapper(io.BufferedReader(self._hashing, 1 << 16), encoding=self.encoding,
                                      errors="surrogateescape", newline="")
        self._reader = csv.reader(self._text)
        self._check_utf8 = self.encoding.startswith("utf-8")
        self.header: list[str] = []
        self._read_header()

    @staticmethod
    def _open(path: str) -> IO[bytes]:
        if path == "-":
            return sys.stdin.buffer
        if os.path.isdir(path):
            raise BadFile(f"{path}: is a folder, not a file")
        try:
            return open(path, "rb")
        except FileNotFoundError:
            raise BadFile(f"{path}: no such file") from None
        except OSError as error:
            raise BadFile(f"{path}: cannot read: {error.strerror or error}") from None

    def close(self) -> None:
        if self._file is not sys.stdin.buffer:
            self._file.close()

    @property
    def sha256(self) -> str:
        return self._hashing.sha256.hexdigest()

    def __enter__(self) -> CsvRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def done(self) -> int:
        return self._hashing.count

    def _read_header(self) -> None:
        try:
            for cells in self._reader:
                if any(cell.strip() for cell in cells):
                    self.header = [cell.strip().lower() for cell in cells]
                    break
        except csv.Error as error:
            raise BadFile(f"{self.path}: line {self._reader.line_num}: cannot read the header: {error}") from None
        except UnicodeDecodeError as error:  # only from codecs that do not escape
            raise BadFile(f"{self.path}: not {self.encoding} text: {error}") from None
        if not self.header:
            raise BadFile(f"{self.path}: empty file, no header row")
        if self._check_utf8 and not _is_utf8("".join(self.header)):
            raise BadFile(f"{self.path}: the header is not UTF-8 text; give the file's --encoding (e.g. latin-1)")
        missing = [name for name in self.required if name not in self.header]
        if missing:
            raise BadFile(f"{self.path}: not {self.kind} file: no column {', '.join(missing)}")

    def __iter__(self) -> Iterator[Row | BadRow]:
        header = self.header
        width = len(header)
        index = {}
        for position, name in enumerate(header):
            index.setdefault(name, position)
        names = list(index.items())
        reader = self._reader
        last = reader.line_num
        every, count = self.progress_every, 0  # rows read
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as error:
                yield BadRow(last + 1, f"csv: {error}")
                last = reader.line_num
                continue
            line, last = last + 1, reader.line_num
            if not cells or not any(cells):
                continue
            if self.progress is not None:
                count += 1
                if count % every == 0:
                    self.progress(self.done, count)
            if len(cells) != width:
                if len(cells) < width:
                    yield BadRow(line, f"has {len(cells)} cells, the header has {width}")
                    continue
                if any(cell.strip() for cell in cells[width:]):
                    yield BadRow(line, f"has {len(cells)} cells, the header has {width}")
                    continue
            if self._check_utf8 and not _is_utf8("".join(cells)):
                column = next((header[at] for at, cell in enumerate(cells[:width]) if not _is_utf8(cell)), "?")
                yield BadRow(line, f"{column}: not valid UTF-8 (give the file's --encoding, e.g. latin-1)")
                continue
            yield Row(line, {name: cells[at] for name, at in names})
        if self.progress is not None:
            self.progress(self.done, count)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
