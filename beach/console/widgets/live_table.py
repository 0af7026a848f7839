"""`LiveTable`: a DataTable kept in step with rows that change under it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from textual.widgets import DataTable


class Column(NamedTuple):
    """One column: its key, its heading and its width (None: as wide as its content)."""

    key: str
    label: str
    width: int | None = None


class LiveTable(DataTable[Any]):
    """A DataTable whose rows are given as ``{key: cells}`` again and again (with a row cursor,
    unless ``cursor`` is False).

    `sync` adds, updates and removes rows in place, so the cursor and the scroll position stay where
    the person left them; rows keep the order of the mapping.
    """

    def __init__(self, columns: Sequence[Column], *, cursor: bool = True, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(cursor_type="row" if cursor else "none", zebra_stripes=True, id=id, classes=classes)
        self._layout = list(columns)
        self._order: list[str] = []

    def on_mount(self) -> None:
        """Add the columns."""
        self._add_columns()

    def _add_columns(self) -> None:
        for column in self._layout:
            self.add_column(column.label, key=column.key, width=column.width)

    @property
    def cursor_key(self) -> str | None:
        """The key of the row under the cursor (None when the table is empty)."""
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def set_widths(self, widths: Mapping[str, int | None], rows: Mapping[str, Sequence[Any]]) -> None:
        """Give columns new widths (a DataTable cannot narrow a column in place: it is rebuilt)."""
        layout = [c._replace(width=widths.get(c.key, c.width)) for c in self._layout]
        if layout == self._layout:
            return
        self._layout = layout
        self._rebuild(rows, columns=True)

    def sync(self, rows: Mapping[str, Sequence[Any]]) -> None:
        """Show exactly ``rows`` (``{key: cells}``), changing only what differs."""
        if list(rows) != self._order and set(rows) - set(self._order):
            self._rebuild(rows)  # new rows go where they belong, not at the end
            return
        for key in [k for k in self._order if k not in rows]:
            self.remove_row(key)
        self._order = list(rows)
        for key, cells in rows.items():
            for column, new, old in zip(self._layout, cells, self.get_row(key), strict=False):
                if new != old:
                    self.update_cell(key, column.key, new, update_width=column.width is None)

    def _rebuild(self, rows: Mapping[str, Sequence[Any]], columns: bool = False) -> None:
        keep = self.cursor_key
        self.clear(columns=columns)
        if columns:
            self._add_columns()
        for key, cells in rows.items():
            self.add_row(*cells, key=key)
        self._order = list(rows)
        if keep is not None and keep in rows:
            self.move_cursor(row=self._order.index(keep), animate=False)
