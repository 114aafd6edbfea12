"""Plain-text tables: one helper every module may use (it imports nothing from slmlib)."""
from __future__ import annotations

from collections.abc import Sequence


def format_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A markdown table (reads fine as plain text too)."""
    def cell(v, column):
        if isinstance(v, float):
            return f"{v:.1f}" if "seconds" in column or column in ("epochs", "passes") else f"{v:.3f}"
        if isinstance(v, int) and not isinstance(v, bool) and column != "seed":
            return f"{v:,}"  # 1,696,724 reads; 1696724 does not
        return "" if v is None else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, ""), c) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
