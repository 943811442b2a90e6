"""Plain-text tables for the terminal (results stay data; this is the edge that prints them)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

Column = tuple[str, str, str]  # (key, header, format spec)


def _cell(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, str) or spec == "s":
        return str(value)
    return format(value, spec)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], title: str = "") -> str:
    """Right-aligned columns, a header rule, an optional title line."""
    cells = [[_cell(row.get(key), spec) for key, _, spec in columns] for row in rows]
    headers = [header for _, header, _ in columns]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = [title] if title else []
    lines.append("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells)
    return "\n".join(lines)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """The same columns as a GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "---:|" * len(columns)]
    lines.extend("| " + " | ".join(_cell(row.get(k), spec) for k, _, spec in columns) + " |" for row in rows)
    return "\n".join(lines) + "\n"


def csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as CSV text, columns in first-seen order."""
    import csv
    import io

    fields = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
