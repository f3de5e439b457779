"""The JSON report as one self-contained HTML page: a pure function of the report.

Tables, summary and bar charts are static HTML and inline SVG generated here, every string from the
API passed through :func:`html.escape`. The series is drawn in the browser by uPlot (MIT, vendored
under ``lifestats/static/`` with its licence, about 50 KB), from JSON embedded in a
``<script type="application/json">`` block whose ``<``, ``>`` and ``&`` are written as ``\\u003c``
escapes, so no string from the API can close the block or run as script. Scripts and styles are
inline and a Content-Security-Policy admits only those scripts (by hash) and no request to any host.
Nothing depends on the time of rendering, so the same report always gives the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from functools import cache
from html import escape
from importlib import resources
from typing import Any

from .terminal import (
    RECORD_NAMES,
    WINDOW_TITLES,
    clock,
    duration,
    partial_state,
    short_label,
    shown_id,
    visible,
)


@cache
def _asset(name: str) -> str:
    return (resources.files("lifestats") / "static" / name).read_text(encoding="utf-8")


def smallest_html() -> int:
    """The fewest bytes an HTML report takes: the chart library, script and styles it embeds."""
    names = ("uPlot.iife.min.js", "report.js", "uPlot.min.css", "report.css")
    return sum(len(_asset(name).encode("utf-8")) for name in names)


def _script_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode() + "'"


def embed_json(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` survives literally."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _t(value: Any) -> str:
    """Text from anywhere (the API included) as HTML text: escaped, control characters made visible."""
    return escape(visible(str(value)), quote=True)


def _count(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value):,}"
    return _t(value)


def _bounds(bounds: Any) -> str:
    if isinstance(bounds, list) and len(bounds) == 2:
        return f"<small>range {_count(bounds[0])} - {_count(bounds[1])}</small>"
    return ""


def _id(value: Any) -> str:
    kind = "str" if isinstance(value, str) else "int" if isinstance(value, int) else "other"
    title = {"str": "string id", "int": "integer id"}.get(kind, "id")
    return f'<span class="{kind}" title="{title}">{_t(shown_id(value))}</span>'


def _bar(value: Any, bounds: Any, top: float, kind: str) -> str:
    """A bar scaled to ``top`` (SVG, percent units) with the estimate's range as a whisker when known."""
    if not isinstance(value, int | float) or top <= 0:
        return ""
    width = max(min(value / top * 100, 100), 0)
    parts = [f'<rect class="{kind}" x="0" y="1" width="{width:.2f}" height="6"/>']
    if isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, int | float) for b in bounds):
        lo, hi = (max(min(b / top * 100, 100), 0) for b in bounds)
        parts.append(f'<path d="M{lo:.2f} 4H{hi:.2f}M{lo:.2f} 1V7M{hi:.2f} 1V7"/>')
    return '<svg class="bar" viewBox="0 0 100 8" preserveAspectRatio="none">' + "".join(parts) + "</svg>"


def _top(rows: Sequence[dict[str, Any]], key: str) -> float:
    """The longest bar: the largest value or upper bound in the column."""
    best = 0.0
    for row in rows:
        for value in (row.get(key), *(row.get(f"{key}_bounds") or ())):
            if isinstance(value, int | float) and not isinstance(value, bool):
                best = max(best, float(value))
    return best


def _stat(key: str, label: str, value: str, extra: str = "") -> str:
    return f'<div class="stat" data-key="{escape(key)}"><dt>{escape(label)}</dt><dd>{value}{extra}</dd></div>'


def _summary(report: dict[str, Any]) -> str:
    run, records = report.get("run") or {}, report.get("records") or {}
    cards = [
        _stat(f"records.{k}", f"records {k}", _count(records[k]), _bounds(records.get(f"{k}_bounds")))
        for k in RECORD_NAMES
        if k in records
    ]
    if "requests" in run:
        cards.append(_stat("run.requests", "requests", _count(run["requests"])))
    if "retries" in run:
        cards.append(_stat("run.retries", "retries", _count(run["retries"])))
    cards.append(_stat("run.duration", "duration", escape(clock(duration(run)))))
    rate, limit = run.get("achieved_rate"), run.get("rate_limit")
    if isinstance(rate, int | float):
        share = f"<small>{rate / limit:.0%} of the limit {_count(limit)}/s</small>" if limit else ""
        cards.append(_stat("run.achieved_rate", "requests per second", _count(rate), share))
    for key, label in (
        ("records_per_second", "records per second"),
        ("cpu_seconds", "CPU seconds"),
        ("peak_rss_bytes", "peak memory (bytes)"),
        ("slices", "slices"),
        ("workers", "workers"),
        ("workers_lost", "workers lost"),
        ("slices_split", "slices split"),
    ):
        if run.get(key) is not None:
            cards.append(_stat(f"run.{key}", label, _count(run[key])))
    meta = []
    for key, label in (("as_of", "as of"), ("started_at", "started"), ("finished_at", "finished"), ("mode", "mode")):
        if run.get(key) is not None:
            meta.append(f"{label} <b>{_t(run[key])}</b>")
    if run.get("resumed"):
        meta.append("resumed from a checkpoint")
    out = ["<section id=summary><h2>Run</h2>", f'<p class="meta">{" · ".join(meta)}</p>']
    out.append(f'<dl class="stats">{"".join(cards)}</dl>')
    warnings = report.get("warnings") or []
    if warnings:
        items = "".join(f"<li>{_t(w)}</li>" for w in warnings)
        out.append(f'<h3>Warnings</h3><ul class="warnings" id="warnings">{items}</ul>')
    out.append("</section>")
    return "".join(out)


def _windows(report: dict[str, Any]) -> str:
    windows = report.get("windows") or {}
    if not windows:
        return ""
    rows = [{"name": name, **(w or {})} for name, w in windows.items()]
    visitors = any(r.get("distinct_visitors") is not None for r in rows)
    top_v, top_d = _top(rows, "visits"), _top(rows, "distinct_visitors")
    head = (
        '<th>window</th><th class="n">visits</th>'
        '<th class="chart"><span class="legend-key v" title="visits"></span></th>'
    )
    if visitors:
        head += (
            '<th class="n">distinct visitors</th>'
            '<th class="chart"><span class="legend-key d" title="distinct visitors"></span></th>'
        )
    body = []
    for r in rows:
        cells = [
            f"<td>{_t(WINDOW_TITLES.get(r['name'], r['name']))}</td>",
            f'<td class="n" data-field="visits">{_count(r.get("visits"))}{_bounds(r.get("visits_bounds"))}</td>',
            f'<td class="chart">{_bar(r.get("visits"), r.get("visits_bounds"), top_v, "v")}</td>',
        ]
        if visitors:
            cells.append(
                f'<td class="n" data-field="distinct_visitors">{_count(r.get("distinct_visitors"))}'
                f"{_bounds(r.get('distinct_visitors_bounds'))}</td>"
            )
            cells.append(
                f'<td class="chart">{_bar(r.get("distinct_visitors"), r.get("distinct_visitors_bounds"), top_d, "d")}'
                "</td>"
            )
        body.append(f'<tr data-window="{escape(str(r["name"]))}">{"".join(cells)}</tr>')
    return (
        "<section id=windows><h2>Windows</h2>"
        '<p class="small">Each bar is scaled to the largest window; whiskers show the range of an estimate.</p>'
        f'<div class="scroll"><table id="windows-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div></section>"
    )


def _series(report: dict[str, Any]) -> str:
    series = report.get("series") or {}
    points = series.get("points") or []
    bucket = str(series.get("bucket", "bucket"))
    if not points:
        return f"<section id=series><h2>Visits per {_t(bucket)}</h2><p>No timestamped records.</p></section>"
    labels = [str(p.get("start")) for p in points]
    data: dict[str, Any] = {
        "bucket": bucket,
        "labels": labels,
        "short": [short_label(s, bucket) for s in labels],
        "visits": [p.get("visits") for p in points],
        "visitors": [p.get("distinct_visitors") for p in points]
        if any(p.get("distinct_visitors") is not None for p in points)
        else None,
    }
    for key, name in (("visits", "visits_bounds"), ("distinct_visitors", "visitors_bounds")):
        if any(isinstance(p.get(f"{key}_bounds"), list) for p in points):
            data[name] = [[(p.get(f"{key}_bounds") or [None, None])[i] for p in points] for i in (0, 1)]
    visits = [v for v in data["visits"] if isinstance(v, int | float)]
    peak = max(visits) if visits else 0
    notes = [
        f'<span data-field="points">{len(points):,}</span> points'
        f" from <b>{_t(short_label(labels[0], bucket))}</b> to <b>{_t(short_label(labels[-1], bucket))}</b>",
        f'peak <span data-field="peak">{_count(peak)}</span> visits per {_t(bucket)}',
        f'total <span data-field="series-visits">{_count(sum(visits))}</span> visits',
    ]
    if series.get("truncated_before"):
        notes.append(f"earlier records are left out (the series starts at {_t(series['truncated_before'])})")
    return (
        f"<section id=series><h2>Visits per {_t(bucket)}</h2>"
        f'<p class="meta">{"; ".join(notes)}. Drag across the chart to zoom in, double-click to zoom out.</p>'
        '<div id="series-chart"></div>'
        f'<script type="application/json" id="series-data">{embed_json(data)}</script></section>'
    )


SHOWN_ROWS = 20


def _ranking(rows: list[dict[str, Any]], name: str, label: str, caption: str, *, with_visitors: bool) -> str:
    """A ranking table with a bar per row; past the first rows, the rest folds away under a summary."""
    if not rows:
        return f'<p class="small">No {escape(label)} counted.</p>'
    visitors = with_visitors and any(r.get("distinct_visitors") is not None for r in rows)
    top_v = _top(rows, "visits")
    head = f'<th class="n">#</th><th>{escape(label)}</th><th class="n">visits</th>'
    if visitors:
        head += '<th class="n">distinct visitors</th>'
    head += '<th class="chart"><span class="legend-key v" title="visits"></span></th>'
    body = []
    for rank, r in enumerate(rows, start=1):
        cells = [
            f'<td class="rank">{rank}</td>',
            f'<td class="id" data-field="id">{_id(r.get("id"))}</td>',
            f'<td class="n" data-field="visits">{_count(r.get("visits"))}{_bounds(r.get("visits_bounds"))}</td>',
        ]
        if visitors:
            cells.append(
                f'<td class="n" data-field="distinct_visitors">{_count(r.get("distinct_visitors"))}'
                f"{_bounds(r.get('distinct_visitors_bounds'))}</td>"
            )
        cells.append(f'<td class="chart">{_bar(r.get("visits"), r.get("visits_bounds"), top_v, "v")}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")

    def table(part: list[str], title: str) -> str:
        return (
            f'<div class="scroll"><table class="ranking" data-ranking="{escape(name)}">'
            f"{title}<thead><tr>{head}</tr></thead><tbody>{''.join(part)}</tbody></table></div>"
        )

    out = table(body[:SHOWN_ROWS], f"<caption>{escape(caption)}</caption>")
    if len(body) > SHOWN_ROWS:
        rest = len(body) - SHOWN_ROWS
        out += f'<details class="more"><summary>{rest} more</summary>{table(body[SHOWN_ROWS:], "")}</details>'
    return f"<div>{out}</div>"


def _rankings(report: dict[str, Any]) -> str:
    windows = report.get("windows") or {}
    has_categories = any((w or {}).get("top_categories") for w in windows.values())
    out = ["<section id=rankings><h2>Top items and categories</h2>"]
    for index, (name, window) in enumerate(windows.items()):
        window = window or {}
        title = WINDOW_TITLES.get(name, visible(str(name)))
        items = window.get("top_items") or []
        categories = window.get("top_categories") or []
        parts = [
            _ranking(items, "top_items", "item", f"Top {len(items)} items ({title})", with_visitors=True),
        ]
        if has_categories:
            parts.append(
                _ranking(
                    categories,
                    "top_categories",
                    "category",
                    f"Top {len(categories)} categories ({title})",
                    with_visitors=False,
                )
            )
        opened = " open" if index == 0 else ""
        out.append(
            f'<details data-window="{escape(str(name))}"{opened}><summary>{escape(title)}</summary>'
            f'<div class="pair">{"".join(parts)}</div></details>'
        )
    out.append("</section>")
    return "".join(out)


def render_html(report: dict[str, Any]) -> str:
    """The whole page for ``report``; the same report always gives the same text."""
    run = report.get("run") or {}
    uplot, script = _asset("uPlot.iife.min.js"), _asset("report.js")
    policy = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src {_script_hash(uplot)} {_script_hash(script)}; base-uri 'none'; form-action 'none'"
    )
    state = partial_state(report)
    state_html = f'<b class="partial">{_t(state)}</b>' if report.get("partial") else _t(state)
    title = f"Lifestats report · {visible(str(run.get('env', '')))} · as of {visible(str(run.get('as_of', '')))}"
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{escape(policy)}">'
        f"<title>{escape(title)}</title>"
        f"<style>{_asset('uPlot.min.css')}\n{_asset('report.css')}</style></head>\n"
        "<body><main>"
        f"<header><h1>Lifestats report</h1>"
        f'<p class="state" id="state">{_t(run.get("env", ""))} · {state_html}</p></header>'
        f"{_summary(report)}{_windows(report)}{_series(report)}{_rankings(report)}"
        '<p class="small">Made by Lifestats from its JSON report. Charts: uPlot (MIT licence).</p>'
        "</main>\n"
        f"<script>{uplot}</script>\n<script>{script}</script>\n"
        "</body></html>\n"
    )


def write_html(report: dict[str, Any], path: str) -> None:
    """Write the page atomically."""
    from .outputs import write_atomic

    write_atomic(path, render_html(report).encode("utf-8"))
