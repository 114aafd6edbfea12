"""Plain-text tables: one helper every module may use (it imports nothing from slmlib)."""
from __future__ import annotations

from collections.abc import Sequence


class Table(str):
    """format_table's text. print() gives the text; a notebook shows it as a rendered table (left as a
    cell's last line, or display()ed), so a wide table neither wraps mid-number nor shows its pipes."""

    def _repr_markdown_(self) -> str:
        return self.replace("<", "&lt;")  # a token such as <unk> is text here, not an HTML tag

    def __repr__(self) -> str:  # the plain-text stand-in: the table, not a quoted string
        return str(self)


def format_table(rows: Sequence[dict], columns: Sequence[str]) -> Table:
    """A markdown table (reads fine as plain text too)."""
    def cell(v, column):
        if isinstance(v, float):
            return f"{v:.1f}" if "seconds" in column or column in ("epochs", "passes") else f"{v:.3f}"
        if isinstance(v, int) and not isinstance(v, bool) and column != "seed":
            return f"{v:,}"  # 1,696,724 reads; 1696724 does not
        return "" if v is None else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, ""), c) for c in columns) + " |" for r in rows]
    return Table("\n".join(lines))
