"""The report: statistics -> the JSON document of SPEC section 6, and that document -> terminal tables.

:func:`build_report` is the only place that turns counts into rankings. Rendering (:func:`render`) is a
pure function of the JSON report, so a saved report can be shown again without crawling.
"""

from __future__ import annotations

import heapq
import os
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from rich.console import Console
from rich.table import Table

from .config import Settings
from .stats import RECORD_COUNTS, Key, Partial, WindowStats
from .timeline import WINDOWS, Buckets, Clock

SCHEMA = "lifestats.report/1"


def rank_key(key: Key, visits: int) -> tuple[int, int, int | str]:
    """Most visits first; ties by id, numbers before strings, numbers numerically, strings by code point."""
    return (-visits, 0, key) if isinstance(key, int) else (-visits, 1, key)  # type: ignore[return-value]


def top(counts: dict[Key, int], k: int) -> list[tuple[Key, int]]:
    return heapq.nsmallest(k, counts.items(), key=lambda kv: rank_key(kv[0], kv[1]))


def window_report(stats: WindowStats, settings: Settings) -> dict[str, Any]:
    has_visitors = settings.fields.visitor is not None
    items = []
    for item, visits in top(stats.items, settings.stats.top_items):
        visitors = len(stats.item_visitors.get(item, ())) if has_visitors else None
        items.append({"id": item, "visits": visits, "distinct_visitors": visitors})
    categories = [{"id": c, "visits": v} for c, v in top(stats.categories, settings.stats.top_categories)]
    return {
        "visits": stats.visits,
        "distinct_visitors": len(stats.visitors) if has_visitors else None,
        "top_items": items,
        "top_categories": categories,
    }


def series_report(total: Partial, settings: Settings, as_of: datetime) -> dict[str, Any]:
    """Visits and distinct visitors per bucket, from the earliest counted record's bucket (not after
    ``as_of``) to the bucket that holds ``as_of``: at most ``stats.series_max_points`` points, the oldest
    cut (``truncated_before`` then names the first start kept). Only the points shown are built."""
    unit = settings.stats.series
    report: dict[str, Any] = {"bucket": unit, "points": []}
    if not total.series and not total.series_cut:
        return report
    buckets = Buckets(unit, Clock(ZoneInfo(settings.stats.timezone)))
    # Records cut while counting lie before every point kept: then the series reaches back as far as allowed.
    earliest = min(total.series) if total.series and not total.series_cut else None
    limit = settings.stats.series_max_points
    keys = buckets.run(buckets.key_of(as_of), earliest, total.series_floor, limit)
    has_visitors = settings.fields.visitor is not None
    points = report["points"]
    for key in keys:
        point = total.series.get(key)
        visits = point.visits if point else 0
        visitors = len(point.visitors) if point else 0
        points.append(
            {"start": buckets.start(key), "visits": visits, "distinct_visitors": visitors if has_visitors else None}
        )
    if total.series_cut or (earliest is not None and earliest < keys[0]):
        report["truncated_before"] = points[0]["start"]
    return report


def build_report(
    total: Partial, settings: Settings, as_of: datetime, run: dict[str, Any], *, partial: bool
) -> dict[str, Any]:
    names = WINDOWS if settings.fields.timestamp is not None else ("all",)
    records = {name: total.records.get(name, 0) for name in RECORD_COUNTS}
    records["future"] = total.records.get("future", 0)
    return {
        "schema": SCHEMA,
        "partial": partial,
        "run": run,
        "records": records,
        "windows": {name: window_report(total.windows.get(name) or WindowStats(), settings) for name in names},
        "series": series_report(total, settings, as_of),
    }


def write_json(report: dict[str, Any], path: str | Path) -> None:
    """Write atomically: a reader never sees half a report."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    temporary.replace(target)


_TITLES = {
    "all": "all time",
    "yesterday": "yesterday",
    "last_7_days": "last 7 days",
    "last_30_days": "last 30 days",
    "this_year": "this year",
}


def render(report: dict[str, Any], console: Console, *, rows: int | None = None) -> None:
    """Print the report as tables: the windows at a glance, then the rankings of all time."""
    run, records = report["run"], report["records"]
    state = "PARTIAL (interrupted; run the same command to resume)" if report["partial"] else "complete"
    console.print(f"[bold]Lifestats[/bold] {run['env']} · {state}")
    console.print(f"started {run['started_at']}  finished {run['finished_at']}  as of {run['as_of']}")
    console.print(
        f"{run['requests']:,} requests ({run['retries']:,} retries) at {run['achieved_rate']:.1f}/s "
        f"(limit {run['rate_limit']:g}/s), {run['slices']} slices, {run['workers']} workers"
    )
    console.print("records: " + ", ".join(f"{records[k]:,} {k}" for k in RECORD_COUNTS))

    overview = Table(title="Windows", title_justify="left")
    for column in ("window", "visits", "distinct visitors", "top item"):
        overview.add_column(column, justify="left" if column in ("window", "top item") else "right")
    for name, window in report["windows"].items():
        leader = window["top_items"][0] if window["top_items"] else None
        overview.add_row(
            _TITLES.get(name, name),
            f"{window['visits']:,}",
            _number(window["distinct_visitors"]),
            f"{leader['id']} ({leader['visits']:,})" if leader else "-",
        )
    console.print(overview)

    everything = report["windows"]["all"]
    items = Table(title=f"Top {len(everything['top_items'])} items (all time)", title_justify="left")
    for column in ("#", "item", "visits", "distinct visitors"):
        items.add_column(column, justify="left" if column == "item" else "right")
    for rank, row in enumerate(everything["top_items"][:rows], start=1):
        items.add_row(str(rank), str(row["id"]), f"{row['visits']:,}", _number(row["distinct_visitors"]))
    console.print(items)

    categories = Table(title=f"Top {len(everything['top_categories'])} categories (all time)", title_justify="left")
    for column in ("#", "category", "visits"):
        categories.add_column(column, justify="left" if column == "category" else "right")
    for rank, row in enumerate(everything["top_categories"], start=1):
        categories.add_row(str(rank), str(row["id"]), f"{row['visits']:,}")
    console.print(categories)


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
