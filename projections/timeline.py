"""A bitemporal table written in batches.

Each row of a timeline holds the state of one key from ``recorded_at`` until ``to_recorded_at``
(``NULL``: still current). Replacing a key's state closes its current row and opens a new one,
so asking "as of R" is an indexed range condition, never a replay. Rows are lists in the
table's column order (cheap to make by the million), collected in memory and written with
executemany when the batch ends.
"""

from __future__ import annotations

from typing import Any


class Timeline:
    def __init__(self, table: str, key: tuple[str, ...], columns: tuple[str, ...]):
        self.columns = columns  # includes the key columns, recorded_at and to_recorded_at
        self.index = {name: i for i, name in enumerate(columns)}
        self._recorded_at, self._to_recorded_at = self.index["recorded_at"], self.index["to_recorded_at"]
        self._open: dict[tuple, list] = {}  # rows opened in this batch, by key
        self._inserts: list[list] = []
        self._closes: list[tuple] = []
        where = " AND ".join(f"{k} = ?" for k in key)
        self._select = f"SELECT {', '.join(columns)} FROM {table} WHERE {where} AND to_recorded_at IS NULL"
        self._keys = f"SELECT {', '.join(key)} FROM {table} WHERE to_recorded_at IS NULL"
        self._close = f"UPDATE {table} SET to_recorded_at = ? WHERE {where} AND to_recorded_at IS NULL"
        self._insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"

    def row(self, **values: Any) -> list:
        """A row from its columns' values (those left out are NULL)."""
        return [values.get(column) for column in self.columns]

    def current(self, cursor: Any, key: tuple) -> list | None:
        """The key's current row: the one this batch opened (the same list), else a copy of
        the stored one."""
        if key in self._open:
            return self._open[key]
        cursor.execute(self._select, key)
        row = cursor.fetchone()
        return list(row) if row else None

    def current_where(self, cursor: Any, column: str, value: Any) -> list[tuple]:
        """The keys whose current row has ``value`` in ``column``: those this batch opened
        with it, and the stored ones this batch left as they were. Nothing is written, so a
        batch can be worked out in a read transaction."""
        at = self.index[column]
        cursor.execute(f"{self._keys} AND {column} = ?", (value,))
        changed = self._open.keys() | {closed[1:] for closed in self._closes}
        stored = [key for key in cursor.fetchall() if key not in changed]
        return stored + [key for key, row in self._open.items() if row[at] == value]

    def replace(self, key: tuple, row: list, *, known_new: bool = False) -> None:
        """Makes ``row`` the key's state from its ``recorded_at`` on; ``known_new``: the key has
        no stored row to close."""
        if not known_new:
            at = row[self._recorded_at]
            previous = self._open.get(key)
            if previous is not None:
                previous[self._to_recorded_at] = at
            else:
                self._closes.append((at, *key))
        row[self._to_recorded_at] = None
        self._open[key] = row
        self._inserts.append(row)

    def end(self, key: tuple, at: int) -> None:
        """The key has no state from ``at`` on: its current row is closed, none is opened."""
        previous = self._open.pop(key, None)
        if previous is not None:
            previous[self._to_recorded_at] = at
        else:
            self._closes.append((at, *key))

    def flush(self, cursor: Any) -> None:
        if self._closes:  # before the inserts: only rows stored by earlier batches are closed here
            cursor.executemany(self._close, self._closes)
        if self._inserts:
            cursor.executemany(self._insert, self._inserts)
        self._open.clear()
        self._inserts.clear()
        self._closes.clear()
