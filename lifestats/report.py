"""The report: statistics -> the JSON document of SPEC section 6.

:func:`build_report` is the only place that turns counts into rankings. Every rendering of the document
(terminal, HTML, CSV: :mod:`lifestats.terminal`, :mod:`lifestats.report_html`, :mod:`lifestats.report_csv`)
is a pure function of it, so a saved report can be shown again without crawling.
"""

from __future__ import annotations

import heapq
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .config import Settings
from .stats import RECORD_COUNTS, Key, Partial, WindowStats
from .timeline import WINDOWS, Buckets

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


def series_report(total: Partial, settings: Settings) -> dict[str, Any]:
    unit = settings.stats.series
    points: list[dict[str, Any]] = []
    if total.series:
        buckets = Buckets(unit, ZoneInfo(settings.stats.timezone))
        has_visitors = settings.fields.visitor is not None
        for key in buckets.span(min(total.series), max(total.series)):
            point = total.series.get(key)
            visits = point.visits if point else 0
            visitors = len(point.visitors) if point else 0
            points.append(
                {"start": buckets.start(key), "visits": visits, "distinct_visitors": visitors if has_visitors else None}
            )
    return {"bucket": unit, "points": points}


def build_report(
    total: Partial, settings: Settings, as_of: datetime, run: dict[str, Any], *, partial: bool
) -> dict[str, Any]:
    names = WINDOWS if settings.fields.timestamp is not None else ("all",)
    return {
        "schema": SCHEMA,
        "partial": partial,
        "run": run,
        "records": {name: total.records.get(name, 0) for name in RECORD_COUNTS},
        "windows": {name: window_report(total.windows.get(name) or WindowStats(), settings) for name in names},
        "series": series_report(total, settings),
    }
