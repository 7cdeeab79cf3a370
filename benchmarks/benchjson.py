"""The interface every ``bench_*.py`` follows, for the scripts of this folder that share it.

Each script accepts ``--quick`` and ``--json PATH``, always prints its tables, and with
``--json`` writes::

    {"benchmark": NAME, "title": str,
     "tables": [{"title": str, "columns": [str], "rows": [[...]]}],
     "notes": [str], "extra": {}}

``python -m benchmarks`` runs every script, collects these files and renders the Markdown.
Imported as a sibling module (``import benchjson``): a script run as a file has its own
folder first on ``sys.path``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser, quick_help: str) -> None:
    """The two options of the interface."""
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results here")


def table(title: str, columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    """One table of results; cells are numbers or strings."""
    return {"title": title, "columns": columns, "rows": rows}


def print_table(data: dict[str, Any]) -> None:
    """A table as aligned plain text."""
    cells = [[str(c) for c in data["columns"]]] + [[_text(c) for c in r] for r in data["rows"]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    print(data["title"])
    for row in cells:
        first, *rest = row
        line = first.ljust(widths[0]) + "".join(
            c.rjust(w + 2) for c, w in zip(rest, widths[1:], strict=True)
        )
        print("  " + line)


def _text(cell: Any) -> str:
    if isinstance(cell, float):
        return f"{cell:.3g}" if abs(cell) < 100 else f"{cell:.0f}"
    return str(cell)


def emit(
    path: Path | None,
    *,
    benchmark: str,
    title: str,
    tables: list[dict[str, Any]],
    notes: list[str],
    extra: dict[str, Any] | None = None,
) -> None:
    """Print every table and note; with a path, write the results document there."""
    print(title)
    for data in tables:
        print()
        print_table(data)
    for note in notes:
        print(f"  note: {note}")
    if path is not None:
        document = {
            "benchmark": benchmark,
            "title": title,
            "tables": tables,
            "notes": notes,
            "extra": extra or {},
        }
        path.write_text(json.dumps(document, indent=1), encoding="utf-8")
