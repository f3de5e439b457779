"""The JSON report as terminal text: summary, windows, a sparkline of the series, the rankings.

Rendering is a pure function of the report (plus where the rejected records' sample lives, which only
the run knows), so ``lifestats report REPORT.json`` prints what the run printed. Every string that came
from the API is built into :class:`rich.text.Text` (never parsed as markup) after :func:`visible` has
made its control characters visible, so a name like ``[/bold]`` or ``"\\x1b[2J"`` is shown, not obeyed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

WINDOW_TITLES = {
    "all": "all time",
    "yesterday": "yesterday",
    "last_7_days": "last 7 days",
    "last_30_days": "last 30 days",
    "this_year": "this year",
}
RECORD_NAMES = ("fetched", "counted", "rejected", "bots", "duplicates", "future")
DEFAULT_ROWS = 20
SPARKS = "▁▂▃▄▅▆▇█"
# Bidirectional overrides and line separators reorder or break what follows them on a terminal line.
_INVISIBLE = frozenset("\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")
_LOOKS_TYPED = re.compile(r"[+-]?(\d[\d_,]*(\.\d*)?|\.\d+)([eE][+-]?\d+)?|true|false|null|none|nan|inf|-")


def visible(text: str) -> str:
    """``text`` with every control character (C0, DEL, C1, bidi controls) written as an escape."""
    if text.isprintable() and not any(c in _INVISIBLE for c in text):
        return text
    out = []
    for char in text:
        code = ord(char)
        if char in _INVISIBLE or unicodedata.category(char) in ("Cc", "Cs", "Co", "Cn"):
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out)


def shown_id(value: Any) -> str:
    """An id as the reader should see it: numbers bare, a string quoted when it could pass for something else.

    The API may send ``123`` and ``"123"`` as two different items; printed alike they would look like one.
    A string is quoted when it reads as a number, a JSON literal or the "-" of a missing value, when it is
    empty or has spaces at its ends, or when it holds control characters (then shown as escapes).
    """
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, str):
        return visible(str(value))
    shown = visible(value)
    if (
        value == ""
        or value != value.strip()
        or shown != value
        or value.startswith('"')
        or _LOOKS_TYPED.fullmatch(value.strip().lower())
    ):
        return '"' + shown.replace('"', '\\"') + '"'
    return shown


def number(value: Any, bounds: Sequence[Any] | None = None) -> str:
    """A count with thousands separators, ``-`` for none, and its ``[lower-upper]`` range in approx mode."""
    if value is None:
        return "-"
    text = f"{value:,}" if isinstance(value, int) else f"{value:,.4g}" if isinstance(value, float) else str(value)
    if bounds is not None and len(bounds) == 2:
        text += f" [{_short(bounds[0])}-{_short(bounds[1])}]"
    return text


def _short(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.4g}" if isinstance(value, float) else str(value)


def partial_state(report: dict[str, Any]) -> str:
    """``complete``, or why the report is partial (the reason the command line recorded, when there is one)."""
    if not report.get("partial"):
        return "complete"
    reason = report.get("partial_reason")
    return f"PARTIAL: {visible(str(reason))}" if reason else "PARTIAL: the run did not reach the end"


def duration(run: dict[str, Any]) -> float | None:
    """Seconds from ``started_at`` to ``finished_at``, when both are readable."""
    try:
        started = datetime.fromisoformat(str(run["started_at"]))
        finished = datetime.fromisoformat(str(run["finished_at"]))
    except (KeyError, TypeError, ValueError):
        return None
    return (finished - started).total_seconds()


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def spark(values: Sequence[float], width: int) -> str:
    """``values`` squeezed into at most ``width`` characters, each the mean of its share of the points."""
    if not values or width <= 0:
        return ""
    count = len(values)
    bins = min(width, count)
    means = []
    for b in range(bins):
        lo, hi = b * count // bins, max((b + 1) * count // bins, b * count // bins + 1)
        chunk = values[lo:hi]
        means.append(sum(chunk) / len(chunk))
    top = max(means)
    if top <= 0:
        return SPARKS[0] * bins
    return "".join(SPARKS[min(int(m / top * (len(SPARKS) - 1) + 0.5), len(SPARKS) - 1)] for m in means)


def short_label(start: str, bucket: str) -> str:
    """A bucket's start, shortened: the date for calendar buckets, date and time for minutes and hours."""
    if bucket in ("day", "week"):
        return start[:10]
    if bucket == "month":
        return start[:7]
    if bucket == "year":
        return start[:4]
    return start[:16].replace("T", " ")


def render(
    report: dict[str, Any],
    console: Console,
    *,
    rows: int | None = DEFAULT_ROWS,
    rejects_file: Path | None = None,
) -> None:
    """Print the report: the run at a glance, the windows, the series, then the rankings of all time."""
    _summary(report, console, rejects_file)
    _windows(report, console)
    _series(report, console)
    windows = report.get("windows") or {}
    everything = windows.get("all") or {}
    _ranking(console, everything.get("top_items") or [], "items", "item", rows, with_visitors=True)
    if any(w.get("top_categories") for w in windows.values()):
        _ranking(console, everything.get("top_categories") or [], "categories", "category", rows, with_visitors=False)


def _summary(report: dict[str, Any], console: Console, rejects_file: Path | None) -> None:
    run, records = report.get("run") or {}, report.get("records") or {}
    header = Text()
    header.append("Lifestats", style="bold")
    header.append(f" {visible(str(run.get('env', '?')))} · ")
    header.append(partial_state(report), style="bold yellow" if report.get("partial") else "green")
    console.print(header)
    as_of = f"as of {run.get('as_of', '-')}"
    if run.get("resumed") is True:  # a resumed run keeps the as-of and the counts of the run it resumes
        as_of += " (resumed: as-of, slices and earlier counts kept)"
    lines = [as_of, f"ran {clock(duration(run))} from {run.get('started_at', '-')}"]
    requests = run.get("requests")
    if requests is not None:
        rate, limit = run.get("achieved_rate"), run.get("rate_limit")
        line = f"{requests:,} requests ({run.get('retries', 0):,} retries)"
        if isinstance(rate, int | float):
            line += f" at {rate:,.1f}/s"
            if isinstance(limit, int | float) and limit > 0:
                line += f" of {limit:g}/s ({rate / limit:.0%})"
        lines.append(line)
    extras = []
    if run.get("slices") is not None:
        extras.append(f"{run['slices']} slices")
    if run.get("workers") is not None:
        extras.append(f"{run['workers']} workers")
    if run.get("mode"):
        extras.append(f"{visible(str(run['mode']))} mode")
    if isinstance(run.get("records_per_second"), int | float):
        extras.append(f"{run['records_per_second']:,.0f} records/s")
    if extras:
        lines.append(", ".join(extras))
    lines += _figures(run)
    for line in lines:
        console.print(Text(line), overflow="fold")
    names = [k for k in RECORD_NAMES if k in records]
    if names:
        # One column per count, names above numbers: fits 80 columns for counts in the billions.
        counts = Table(box=None, padding=(0, 1), pad_edge=False, show_edge=False)
        counts.add_column("records")
        for name in names:
            counts.add_column(name, justify="right")
        counts.add_row("", *(number(records[k], records.get(f"{k}_bounds")) for k in names))
        console.print(counts)
    rejected = records.get("rejected") or 0
    if rejects_file is not None and rejected:
        console.print(Text(f"rejected records: a sample is in {visible(str(rejects_file))}"), overflow="fold")
    for warning in report.get("warnings") or []:
        console.print(Text("warning: ", style="bold yellow") + Text(visible(str(warning))), overflow="fold")


def _figures(run: dict[str, Any]) -> list[str]:
    """The run's cost, when the report has it: CPU of the whole job and peak memory (one line)."""
    figures = []
    if isinstance(run.get("cpu_seconds"), int | float):
        figures.append(f"CPU {run['cpu_seconds']:,.1f} s")
    for key, who in (("peak_rss_bytes", "coordinator"), ("worker_peak_rss_bytes", "largest worker")):
        if isinstance(run.get(key), int) and run[key] > 0:
            figures.append(f"{run[key] / 2**20:,.0f} MiB peak ({who})")
    return [", ".join(figures)] if figures else []


def _windows(report: dict[str, Any], console: Console) -> None:
    windows = report.get("windows") or {}
    if not windows:
        return
    console.print(Text("Windows", style="bold"))
    table = Table(expand=False)
    table.add_column("window", no_wrap=True)
    table.add_column("visits", justify="right", no_wrap=True)
    table.add_column("distinct visitors", justify="right", no_wrap=True)
    table.add_column("top item", no_wrap=True, overflow="ellipsis", ratio=1, min_width=6)
    for name, window in windows.items():
        window = window or {}
        items = window.get("top_items") or []
        leader = items[0] if items else None
        table.add_row(
            Text(WINDOW_TITLES.get(name, visible(str(name)))),
            number(window.get("visits"), window.get("visits_bounds")),
            number(window.get("distinct_visitors"), window.get("distinct_visitors_bounds")),
            Text(f"{shown_id(leader.get('id'))} ({number(leader.get('visits'))})") if leader else Text("-"),
        )
    console.print(table)


def _series(report: dict[str, Any], console: Console) -> None:
    series = report.get("series") or {}
    points = series.get("points") or []
    if not points:
        return
    bucket = visible(str(series.get("bucket", "bucket")))
    visits = [p.get("visits") or 0 for p in points]
    first, last = (short_label(str(points[i].get("start", "")), bucket) for i in (0, -1))
    console.print(
        Text(f"Visits per {bucket}: {len(points):,} points, {visible(first)} to {visible(last)}", style="bold"),
        overflow="fold",
    )
    width = max(console.width - 2, 10)
    console.print(Text(spark(visits, width), style="cyan"), no_wrap=True, overflow="crop")
    peak = max(visits)
    note = f"peak {peak:,} visits per {bucket}"
    if len(points) > width:
        note += f"; each mark is the mean of about {len(points) / width:.0f} {bucket}s"
    if series.get("truncated_before"):
        note += (
            f"; earlier records are left out of the series (it starts at {visible(str(series['truncated_before']))})"
        )
    console.print(Text(note), overflow="fold")


def _ranking(
    console: Console, ranking: list[dict[str, Any]], what: str, label: str, rows: int | None, *, with_visitors: bool
) -> None:
    shown = ranking if rows is None else ranking[: max(rows, 0)]
    title = f"Top {len(shown)} of {len(ranking)} {what} (all time)"
    if not ranking:
        console.print(Text(f"No {what} to rank (all time)", style="italic"))
        return
    visitors = with_visitors and any(row.get("distinct_visitors") is not None for row in ranking)
    console.print(Text(title, style="bold"))
    table = Table()
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column(label, no_wrap=True, overflow="ellipsis", ratio=1, min_width=8)
    table.add_column("visits", justify="right", no_wrap=True)
    if visitors:
        table.add_column("distinct visitors", justify="right", no_wrap=True)
    for rank, row in enumerate(shown, start=1):
        cells: list[str | Text] = [
            str(rank),
            Text(shown_id(row.get("id"))),
            number(row.get("visits"), row.get("visits_bounds")),
        ]
        if visitors:
            cells.append(number(row.get("distinct_visitors"), row.get("distinct_visitors_bounds")))
        table.add_row(*cells)
    console.print(table)
