"""The terminal rendering: API strings shown as text, ids told apart, nothing wider than 80 columns."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from lifestats.terminal import render, shown_id, spark, visible

HOSTILE = ["[/bold]", "[bold red]x[/bold red]", "\x1b[2J", "a\rb", "tab\there", "nul\x00", "c1\x9b31m", "rtl\u202eevil"]


def report(**changes: Any) -> dict[str, Any]:
    """A hand-written report in the shape of SPEC section 6."""
    items = [{"id": i, "visits": 100 - i, "distinct_visitors": 50 - i} for i in range(30)]
    base: dict[str, Any] = {
        "schema": "lifestats.report/1",
        "partial": False,
        "run": {
            "env": "test",
            "mode": "exact",
            "as_of": "2026-03-15T12:00:00+00:00",
            "started_at": "2026-03-15T12:00:00+00:00",
            "finished_at": "2026-03-15T12:01:05+00:00",
            "slices": 10,
            "workers": 2,
            "requests": 1234,
            "retries": 5,
            "rate_limit": 50.0,
            "achieved_rate": 19.0,
        },
        "records": {"fetched": 2000, "counted": 1900, "rejected": 50, "bots": 40, "duplicates": 10},
        "windows": {
            "all": {
                "visits": 1900,
                "distinct_visitors": 321,
                "top_items": items,
                "top_categories": [{"id": "c1", "visits": 900}, {"id": 7, "visits": 12}],
            },
            "yesterday": {"visits": 0, "distinct_visitors": 0, "top_items": [], "top_categories": []},
        },
        "series": {
            "bucket": "day",
            "points": [
                {"start": f"2026-03-{d:02d}T00:00:00+00:00", "visits": d * 3, "distinct_visitors": d}
                for d in range(1, 16)
            ],
        },
    }
    base.update(changes)
    return base


def printed(doc: dict[str, Any], width: int = 80, **kwargs: Any) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, force_terminal=False, legacy_windows=False)
    render(doc, console, **kwargs)
    return out.getvalue()


def test_strings_from_the_api_are_text_not_markup_or_control_sequences() -> None:
    doc = report()
    doc["windows"]["all"]["top_items"] = [
        {"id": name, "visits": 10 - i, "distinct_visitors": 1} for i, name in enumerate(HOSTILE)
    ]
    doc["windows"]["all"]["top_categories"] = [{"id": "[/bold]", "visits": 3}]
    doc["warnings"] = ["odd [/red] data \x1b[31m"]
    doc["run"]["env"] = "[/env]"
    text = printed(doc)
    assert "[/bold]" in text and "[bold red]x[/bold red]" in text and "[/env]" in text and "[/red]" in text
    assert "\\x1b[2J" in text and "a\\x0db" in text and "\\x9b31m" in text and "rtl\\u202eevil" in text
    for raw in ("\x1b", "\r", "\x00", "\x9b", "\u202e", "\t"):
        assert raw not in text


def test_each_line_fits_80_columns_even_with_long_names() -> None:
    doc = report()
    doc["windows"]["all"]["top_items"][0]["id"] = "a-very-long-item-name-" * 8
    doc["windows"]["all"]["top_categories"][0]["id"] = "category " * 20
    doc["series"]["points"] = [
        {"start": f"2020-01-01T{h % 24:02d}:00:00+00:00", "visits": h % 17, "distinct_visitors": 1} for h in range(3000)
    ]
    doc["warnings"] = ["a sentence that is long enough to need more than one line on a narrow terminal " * 3]
    text = printed(doc, rows=30)
    lines = text.splitlines()
    assert len(lines) > 40
    assert max(len(line) for line in lines) <= 80
    assert "a-very-long-item" in text


def test_int_and_string_ids_that_print_alike_are_told_apart() -> None:
    assert shown_id(123) == "123"
    assert shown_id("123") == '"123"'
    assert shown_id("apple") == "apple"
    assert shown_id("") == '""'
    assert shown_id(" x") == '" x"'
    assert shown_id("-") == '"-"' and shown_id(None) == "-"
    assert shown_id("true") == '"true"' and shown_id("1e3") == '"1e3"'
    doc = report()
    doc["windows"]["all"]["top_items"] = [
        {"id": 4483334, "visits": 9, "distinct_visitors": 1},
        {"id": "4483334", "visits": 8, "distinct_visitors": 1},
    ]
    rows = [line for line in printed(doc).splitlines() if "4483334" in line and "│" in line]
    assert len(rows) == 3  # the windows table's leader and the two ranking rows
    assert any('"4483334"' in r for r in rows) and any(" 4483334 " in r for r in rows)


def test_rows_default_to_20_and_the_title_says_how_many_of_how_many() -> None:
    text = printed(report())
    assert "Top 20 of 30 items (all time)" in text
    assert "│ 20 │" in text and "│ 21 │" not in text
    text = printed(report(), rows=3)
    assert "Top 3 of 30 items (all time)" in text and "│  4 │" not in text
    assert "Top 2 of 2 categories (all time)" in text


def test_no_category_table_without_a_category_field() -> None:
    doc = report()
    for window in doc["windows"].values():
        window["top_categories"] = []
    text = printed(doc)
    assert "categor" not in text


def test_summary_sparkline_and_rejects_file(tmp_path: Path) -> None:
    rejects = tmp_path / "state" / "rejects.jsonl"
    text = printed(report(), rejects_file=rejects)
    assert "1,234 requests (5 retries) at 19.0/s of 50/s (38%)" in text
    assert "ran 1m 05s" in text
    header = next(line for line in text.splitlines() if line.startswith("records"))
    assert header.split() == ["records", "fetched", "counted", "rejected", "bots", "duplicates"]
    counts = text.splitlines()[text.splitlines().index(header) + 1]
    assert counts.split() == ["2,000", "1,900", "50", "40", "10"]
    assert f"a sample is in {rejects}" in "".join(text.splitlines())  # a long path folds, never cut
    assert "Visits per day: 15 points, 2026-03-01 to 2026-03-15" in text
    assert "▁" in text and "█" in text
    no_rejects = report(records={"fetched": 5, "counted": 5, "rejected": 0, "bots": 0, "duplicates": 0})
    assert "sample" not in printed(no_rejects, rejects_file=rejects)


@pytest.mark.parametrize(
    ("partial", "reason", "expected", "absent"),
    [
        (False, None, "complete", "PARTIAL"),
        (True, "the API failed", "PARTIAL: the API failed", "interrupted"),
        (True, "interrupted (Ctrl-C, SIGTERM or SIGHUP)", "PARTIAL: interrupted", "API"),
    ],
)
def test_header_says_why_a_report_is_partial(partial: bool, reason: str | None, expected: str, absent: str) -> None:
    doc = report(partial=partial)
    if reason:
        doc["partial_reason"] = reason
    header = printed(doc).splitlines()[0]
    assert expected in header and absent not in header


def test_approx_bounds_are_shown_next_to_the_estimate() -> None:
    doc = report()
    doc["windows"]["all"]["distinct_visitors_bounds"] = [300, 340]
    doc["windows"]["all"]["top_items"][0]["visits_bounds"] = [95, 100]
    text = printed(doc)
    assert "321 [300-340]" in text and "100 [95-100]" in text


def test_spark_squeezes_thousands_of_points_into_the_width() -> None:
    line = spark([float(i % 10) for i in range(10_000)], 50)
    assert len(line) == 50
    assert spark([0, 0, 5, 10], 10) == "▁▁▅█"
    assert spark([], 10) == ""


def test_visible_keeps_ordinary_text() -> None:
    assert visible("Café ☕ 東京") == "Café ☕ 東京"
    assert visible("a\nb") == "a\\x0ab"


def test_a_resumed_run_says_so_beside_its_as_of() -> None:
    """A resume keeps the interrupted run's as-of (with no --as-of, not this run's "now"): the summary said
    nothing of it (changes-between-runs audit)."""
    resumed = report()
    resumed["run"]["resumed"] = True
    assert "as of 2026-03-15T12:00:00+00:00 (resumed: as-of, slices and earlier counts kept)" in printed(resumed)
    assert "resumed" not in printed(report())
