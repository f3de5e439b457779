"""The HTML report in a real browser (headless Chromium driven by Playwright).

It must load with no console error and no request beyond the file itself, draw its charts, show the
numbers of the JSON report, stay inside a phone's width, and show hostile names as text. Screenshots
at 1280 and 390 px go to ``artifacts/`` (ignored by git) for a person to look at.

Skipped only when Chromium is absent and this is not CI; in CI (``CI=true``) ``.ci/run`` installs it.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lifestats.report_html import render_html
from mocks.dataset import DatasetSpec, generate
from mocks.server import MockServer
from mocks.source import ListSource

from .conftest import REPO, job_settings, run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = REPO / "artifacts"

IN_CI = os.environ.get("CI") == "true"
if not IN_CI and not Path(CHROMIUM).exists():
    pytest.skip("chromium is not installed (apt-get install chromium); CI installs it", allow_module_level=True)
if not IN_CI:
    pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


class Visit:
    """A page opened on a file, with what it logged and requested."""

    def __init__(self, browser: Browser, path: Path, width: int) -> None:
        self.page: Page = browser.new_page(viewport={"width": width, "height": 900})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("dialog", self._dialog)
        self.url = path.resolve().as_uri()
        self.page.goto(self.url, wait_until="load")

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()


def _int(text: str) -> int:
    return int(text.strip().replace(",", ""))


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The report of a real run over a small synthetic dataset."""
    data = generate(DatasetSpec(seed=33, records=4_000))
    with MockServer(data) as server:
        outcome = run(job_settings(server.url), tmp_path_factory.mktemp("state"))
    assert outcome.exit_code == 0
    return outcome.report


def test_the_html_report_of_a_real_run_loads_offline_draws_and_shows_the_json_numbers(
    tmp_path: Path, browser: Browser, synthetic_report: dict[str, Any]
) -> None:
    report = synthetic_report
    path = tmp_path / "report.html"
    path.write_text(render_html(report), encoding="utf-8")
    visit = Visit(browser, path, 1280)
    page = visit.page
    page.wait_for_selector("#series-chart canvas")

    assert visit.errors == []
    assert visit.requests == [visit.url]

    # The charts are drawn: the series canvas and the bars have a size.
    canvas = page.locator("#series-chart canvas").first.bounding_box()
    assert canvas is not None and canvas["width"] > 600 and canvas["height"] > 100
    bars = page.locator("svg.bar")
    assert bars.count() > 50
    box = bars.first.bounding_box()
    assert box is not None and box["width"] > 20 and box["height"] > 0

    # The numbers on the page are the JSON report's.
    shown_records = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('[data-key^="records."] dd')]
             .map(dd => [dd.parentElement.dataset.key.slice(8), dd.firstChild.textContent]))"""
    )
    assert {k: _int(v) for k, v in shown_records.items()} == report["records"]
    shown_requests = page.locator('[data-key="run.requests"] dd').inner_text()
    assert _int(shown_requests) == report["run"]["requests"]
    windows = page.evaluate(
        """() => [...document.querySelectorAll('#windows-table tbody tr')].map(tr => [tr.dataset.window,
             tr.querySelector('[data-field=visits]').textContent,
             tr.querySelector('[data-field=distinct_visitors]').textContent])"""
    )
    assert [(n, _int(v), _int(d)) for n, v, d in windows] == [
        (name, w["visits"], w["distinct_visitors"]) for name, w in report["windows"].items()
    ]
    rankings = page.evaluate(
        """() => [...document.querySelectorAll('details[data-window]')].map(d => [d.dataset.window,
             [...d.querySelectorAll('table[data-ranking=top_items] tbody tr')].map(tr =>
               [tr.querySelector('[data-field=id]').textContent, tr.querySelector('[data-field=visits]').textContent,
                tr.querySelector('[data-field=distinct_visitors]').textContent]),
             [...d.querySelectorAll('table[data-ranking=top_categories] tbody tr')].map(tr =>
               [tr.querySelector('[data-field=id]').textContent,
                tr.querySelector('[data-field=visits]').textContent])])"""
    )
    assert [name for name, _, _ in rankings] == list(report["windows"])
    for name, items, categories in rankings:
        window = report["windows"][name]
        assert [(_id(i), _int(v), _int(d)) for i, v, d in items] == [
            (r["id"], r["visits"], r["distinct_visitors"]) for r in window["top_items"]
        ]
        assert [(_id(i), _int(v)) for i, v in categories] == [(r["id"], r["visits"]) for r in window["top_categories"]]
    points = report["series"]["points"]
    assert _int(page.locator("[data-field=points]").inner_text()) == len(points)
    assert _int(page.locator("[data-field=series-visits]").inner_text()) == sum(p["visits"] for p in points)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report-1280.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    # The chart redraws for the new width. Polled from here: the page's Content-Security-Policy forbids the
    # eval that Playwright's wait_for_function would run inside it.
    chart = page.locator("#series-chart canvas")
    for _ in range(200):
        box = chart.bounding_box()
        if box is not None and box["width"] < 390:
            break
        page.wait_for_timeout(25)
    box = chart.bounding_box()
    assert box is not None and box["width"] < 390
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than a phone
    page.screenshot(path=str(ARTIFACTS / "report-390.png"), full_page=True)
    assert visit.errors == []
    assert visit.requests == [visit.url]


def _id(text: str) -> int | str:
    """An id as the page shows it: digits are an int, a quoted string is that string."""
    text = text.strip()
    if text.startswith('"') and text.endswith('"'):
        return json.loads(text)
    try:
        return int(text)
    except ValueError:
        return text


HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(2)>",
    "</script><script>alert(3)</script>",
    '"><svg onload=alert(4)>',
    "&lt;b&gt;",
]


def test_names_from_the_api_are_shown_as_text_never_run(tmp_path: Path, browser: Browser) -> None:
    records = [
        {
            "id": 10 + i,
            "item": HOSTILE[i % len(HOSTILE)],
            "category": HOSTILE[(i + 2) % len(HOSTILE)],
            "visitor": i % 3,
            "timestamp": f"2026-03-{1 + i % 14:02d}T08:00:00+00:00",
        }
        for i in range(50)
    ]
    with MockServer(ListSource(records)) as server:
        outcome = run(job_settings(server.url, bots={"ips": [], "user_agents": []}), tmp_path / "state")
    assert outcome.exit_code == 0
    path = tmp_path / "hostile.html"
    path.write_text(render_html(outcome.report), encoding="utf-8")
    visit = Visit(browser, path, 1280)
    visit.page.wait_for_selector("#series-chart canvas")
    assert visit.dialogs == [] and visit.errors == []
    assert visit.requests == [visit.url]
    shown = visit.page.evaluate(
        """() => [...document.querySelectorAll(
               'details[data-window=all] table[data-ranking=top_items] [data-field=id]')].map(td => td.textContent)"""
    )
    assert sorted(_id(text) for text in shown) == sorted(HOSTILE)  # type: ignore[type-var]
    assert visit.page.locator("img").count() == 0  # no element was made from a name
    assert visit.page.locator("svg:not(.bar)").count() == 0


def _with_bounds(value: int) -> list[int]:
    return [value - value // 10, value + value // 10 + 1]


def test_approx_bounds_are_drawn_as_ranges(tmp_path: Path, browser: Browser, synthetic_report: dict[str, Any]) -> None:
    """Bounds as approx mode writes them (a ``<name>_bounds`` sibling) show as ranges and whiskers, and as bands."""
    report = copy.deepcopy(synthetic_report)
    report["run"]["mode"] = "approx"
    for window in report["windows"].values():
        window["distinct_visitors_bounds"] = _with_bounds(window["distinct_visitors"])
        for row in window["top_items"]:
            row["visits_bounds"] = _with_bounds(row["visits"])
    for point in report["series"]["points"]:
        point["distinct_visitors_bounds"] = _with_bounds(point["distinct_visitors"])
    path = tmp_path / "approx.html"
    path.write_text(render_html(report), encoding="utf-8")
    visit = Visit(browser, path, 1280)
    visit.page.wait_for_selector("#series-chart canvas")
    assert visit.errors == [] and visit.requests == [visit.url]
    ranges = visit.page.evaluate(
        """() => [...document.querySelectorAll('details[data-window=all] table[data-ranking=top_items] tbody tr')]
             .map(tr => tr.querySelector('[data-field=visits] small').textContent)"""
    )
    expected = [row["visits_bounds"] for row in report["windows"]["all"]["top_items"]]
    assert [[_int(x) for x in text.removeprefix("range ").split(" - ")] for text in ranges] == expected
    whiskers = visit.page.locator("details[data-window=all] table[data-ranking=top_items] svg.bar path")
    assert whiskers.count() == len(expected)
    legend = visit.page.locator(".u-legend").inner_text()
    assert "distinct visitors lower" in legend and "distinct visitors upper" in legend
