"""A bitemporal table written in batches.

Each row of a timeline holds the state of one key from ``recorded_at`` until ``to_recorded_at``
(``NULL``: still current). Replacing a key's state closes its current row and opens a new one,
so asking "as of R" is an indexed range condition, never a replay. Rows are collected in memory
and written with executemany when the batch ends.
"""

from __future__ import annotations

from typing import Any


class Timeline:
    def __init__(self, table: str, key: tuple[str, ...], columns: tuple[str, ...]):
        self.table = table
        self.key = key
        self.columns = columns  # includes key columns, recorded_at and to_recorded_at
        self._open: dict[tuple, dict[str, Any]] = {}  # rows opened in this batch, by key
        self._inserts: list[dict[str, Any]] = []
        self._closes: list[tuple] = []
        where = " AND ".join(f"{k} = ?" for k in key)
        self._select = f"SELECT {', '.join(columns)} FROM {table} WHERE {where} AND to_recorded_at IS NULL"
        self._close = f"UPDATE {table} SET to_recorded_at = ? WHERE {where} AND to_recorded_at IS NULL"
        self._insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"

    def current(self, cursor: Any, key: tuple) -> dict[str, Any] | None:
        if key in self._open:
            return self._open[key]
        cursor.execute(self._select, key)
        row = cursor.fetchone()
        return dict(zip(self.columns, row, strict=True)) if row else None

    def replace(self, cursor: Any, key: tuple, row: dict[str, Any], *, known_new: bool = False) -> None:
        """Makes ``row`` the key's state from ``row['recorded_at']`` on."""
        at = row["recorded_at"]
        previous = self._open.get(key)
        if previous is not None:
            previous["to_recorded_at"] = at
        elif not known_new:
            self._closes.append((at, *key))
        row["to_recorded_at"] = None
        self._open[key] = row
        self._inserts.append(row)

    def flush(self, cursor: Any) -> None:
        if self._closes:
            cursor.executemany(self._close, self._closes)
        if self._inserts:
            cursor.executemany(self._insert, [tuple(r[c] for c in self.columns) for r in self._inserts])
        self._open.clear()
        self._inserts.clear()
        self._closes.clear()
