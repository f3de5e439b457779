"""The JSON report as CSV files for spreadsheets and scripts: a pure function of the report.

``summary.csv`` (the run and the record counts), ``windows.csv``, ``top_items.csv``,
``top_categories.csv`` and ``series.csv``, each with a header row. Ids are written as the API gave
them, with an ``id_type`` column (``int`` or ``string``), because the API may send the item ``123``
and the item ``"123"`` as two different things. In approx mode every estimate with bounds gains
``<name>_lower`` and ``<name>_upper`` columns.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return as a
formula, and ids and names come from the API: such a text cell is written with a leading ``'`` (the
usual guard against CSV injection; spreadsheets show the text, scripts see the quote and ``id_type``
``string``). Numbers are written as they are (``-5`` is a number). The JSON report keeps every id exactly.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from .outputs import write_atomic

FILES = ("summary.csv", "windows.csv", "top_items.csv", "top_categories.csv", "series.csv")


def json_type(value: Any) -> str:
    """The JSON type of an id: ``int``, ``string``, or what else the API sent."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> str:
    """A JSON value as CSV text: ``null`` empty, booleans lower case, anything nested as JSON, and a
    text that a spreadsheet would run as a formula (or one that starts with ``'``) behind a leading ``'``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return _inert(json.dumps(value, ensure_ascii=False))
    if isinstance(value, str):
        return _inert(value)
    return str(value)


def _inert(text: str) -> str:
    """Behind a ``'`` when it would run; a text that starts with ``'`` itself gets one too, so that two
    texts never read alike (``-5`` and ``'-5``): dropping one leading ``'`` from a cell that has one
    always gives the text back."""
    return "'" + text if text.startswith(_FORMULA_STARTS) or text.startswith("'") else text


def _table(header: list[str], rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180; a CR or LF inside a cell is then quoted
    writer.writerow(header)
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return buffer.getvalue().encode("utf-8")


def _with_bounds(columns: list[str], rows: list[dict[str, Any]]) -> list[str]:
    """``columns`` plus ``<c>_lower``, ``<c>_upper`` for each that carries ``<c>_bounds`` in any row."""
    out = list(columns)
    for column in columns:
        if any(isinstance(row.get(f"{column}_bounds"), list) for row in rows):
            out += [f"{column}_lower", f"{column}_upper"]
    return out


def _values(row: dict[str, Any], columns: list[str]) -> list[Any]:
    out = []
    for column in columns:
        base, _, end = column.rpartition("_")
        if end in ("lower", "upper") and isinstance(row.get(f"{base}_bounds"), list):
            bounds = row[f"{base}_bounds"]
            out.append(bounds[0 if end == "lower" else 1] if len(bounds) == 2 else None)
        elif column == "id_type":
            out.append(json_type(row.get("id")))
        else:
            out.append(row.get(column))
    return out


def summary_rows(report: dict[str, Any]) -> list[list[Any]]:
    """``section, key, value`` rows: the run, the record counts, the series' shape, each warning."""
    rows: list[list[Any]] = [["report", "schema", report.get("schema")], ["report", "partial", report.get("partial")]]
    if report.get("partial_reason"):
        rows.append(["report", "partial_reason", report["partial_reason"]])
    for section in ("run", "records"):
        for key, value in (report.get(section) or {}).items():
            if isinstance(value, list) and key.endswith("_bounds") and len(value) == 2:
                rows += [[section, f"{key[:-7]}_lower", value[0]], [section, f"{key[:-7]}_upper", value[1]]]
            else:
                rows.append([section, key, value])
    series = report.get("series") or {}
    for key in ("bucket", "truncated_before"):
        if key in series:
            rows.append(["series", key, series[key]])
    rows.append(["series", "points", len(series.get("points") or [])])
    rows += [["warnings", "warning", w] for w in report.get("warnings") or []]
    return rows


def csv_files(report: dict[str, Any]) -> dict[str, bytes]:
    """Every CSV file of the report, by file name."""
    windows: dict[str, Any] = report.get("windows") or {}
    window_rows = [{"window": name, **(w or {})} for name, w in windows.items()]
    columns = _with_bounds(["window", "visits", "distinct_visitors"], window_rows)
    files = {
        "summary.csv": _table(["section", "key", "value"], summary_rows(report)),
        "windows.csv": _table(columns, [_values(r, columns) for r in window_rows]),
    }
    for ranking, base in (
        ("top_items", ["window", "rank", "id", "id_type", "visits", "distinct_visitors"]),
        ("top_categories", ["window", "rank", "id", "id_type", "visits"]),
    ):
        rows = [
            {"window": name, "rank": rank, **row}
            for name, w in windows.items()
            for rank, row in enumerate((w or {}).get(ranking) or [], start=1)
        ]
        columns = _with_bounds(base, rows)
        files[f"{ranking}.csv"] = _table(columns, [_values(r, columns) for r in rows])
    points = (report.get("series") or {}).get("points") or []
    columns = _with_bounds(["start", "visits", "distinct_visitors"], points)
    files["series.csv"] = _table(columns, [_values(p, columns) for p in points])
    return files


def write_csv(report: dict[str, Any], directory: str | Path) -> list[Path]:
    """Write the CSV files into ``directory`` (created if needed), each atomically; return their paths."""
    written = []
    for name, data in csv_files(report).items():
        path = Path(directory) / name
        write_atomic(path, data)
        written.append(path)
    return written
