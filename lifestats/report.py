"""The report: statistics -> the JSON document of SPEC section 6.

:func:`build_report` is the only place that turns counts into rankings. Every rendering of the document
(terminal, HTML, CSV: :mod:`lifestats.terminal`, :mod:`lifestats.report_html`, :mod:`lifestats.report_csv`)
is a pure function of it, so a saved report can be shown again without crawling.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .config import Settings
from .statistics import Estimate, Statistics, report_fields, window_days
from .stats import RECORD_COUNTS, Partial, new_statistics
from .timeline import WINDOWS, Buckets, Clock

SCHEMA = "lifestats.report/1"


def build_report(
    total: Partial, settings: Settings, as_of: datetime, run: dict[str, Any], *, partial: bool
) -> dict[str, Any]:
    names = WINDOWS if settings.fields.timestamp is not None else ("all",)
    records = {name: total.records.get(name, 0) for name in RECORD_COUNTS}
    records["future"] = total.records.get("future", 0)
    stats = total.stats if total.stats is not None else new_statistics(settings.stats)
    return {
        "schema": SCHEMA,
        "partial": partial,
        "run": run,
        "records": records,
        "windows": estimated_windows(stats, names, settings, as_of),
        "series": estimated_series(stats, total, settings, as_of),
    }


# -- the document read through the statistics interface (approx estimates carry their bounds) --


def estimated_windows(stats: Statistics, names: tuple[str, ...], settings: Settings, as_of: datetime) -> dict[str, Any]:
    """Every window from the statistics' day ranges (SPEC section 3), estimates with ``<name>_bounds``."""
    has_visitors = settings.fields.visitor is not None
    ranges = window_days(as_of, ZoneInfo(settings.stats.timezone))
    windows: dict[str, Any] = {}
    for name in names:
        days = ranges[name]
        items = []
        for row in stats.top_items(days, settings.stats.top_items):
            visitors = row.distinct_visitors if has_visitors else None
            items.append(
                {"id": row.id, **report_fields("visits", row.visits), **report_fields("distinct_visitors", visitors)}
            )
        categories = [
            {"id": row.id, **report_fields("visits", row.visits)}
            for row in stats.top_categories(days, settings.stats.top_categories)
        ]
        windows[name] = {
            **report_fields("visits", stats.visits(days)),
            **report_fields("distinct_visitors", stats.distinct_visitors(days) if has_visitors else None),
            "top_items": items,
            "top_categories": categories,
        }
    return windows


def estimated_series(stats: Statistics, total: Partial, settings: Settings, as_of: datetime) -> dict[str, Any]:
    """Visits and distinct visitors per bucket, from the earliest counted record's bucket (not after
    ``as_of``) to the bucket that holds ``as_of``: at most ``stats.series_max_points`` points, the oldest
    cut (``truncated_before`` then names the first start kept). Only the points shown are read."""
    unit = settings.stats.series
    report: dict[str, Any] = {"bucket": unit, "points": []}
    span = stats.bucket_span()
    if span is None and not total.series_cut:
        return report
    buckets = Buckets(unit, Clock(ZoneInfo(settings.stats.timezone)))
    earliest = span[0] if span is not None and not total.series_cut else None
    keys = buckets.run(buckets.key_of(as_of), earliest, total.series_floor, settings.stats.series_max_points)
    kept = stats.bucket_points(keys[0], keys[-1])
    has_visitors = settings.fields.visitor is not None
    nothing = Estimate(0) if settings.stats.mode == "exact" else Estimate(0, 0, 0)
    points = report["points"]
    for key in keys:
        point = kept.get(key)
        visitors = (point.distinct_visitors if point else nothing) if has_visitors else None
        points.append(
            {
                "start": buckets.start(key),
                **report_fields("visits", point.visits if point else Estimate(0)),
                **report_fields("distinct_visitors", visitors),
            }
        )
    if total.series_cut or (earliest is not None and earliest < keys[0]):
        report["truncated_before"] = points[0]["start"]
    return report
