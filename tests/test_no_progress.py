"""An API whose next reference moves on while its pages bring nothing new: a clear stop, not an endless crawl.

A real HTTP server on 127.0.0.1 answers every offset with the same records and a next offset one higher
(so the offset creeps forward, never past them), or every cursor with the same records and a new
cursor. Each next reference is new, so no loop is seen; the job must still stop with exit 3 and say why,
after a bounded number of requests, and keep what it counted resumable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from lifestats.config import load_settings
from lifestats.task import STUCK_PAGES

from .conftest import run
from .json_api import JsonHandler, serving

RECORDS = [{"id": i, "item": i % 3} for i in range(10)]


class _Api(JsonHandler):
    style = "offset_id"
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        query = parse_qs(urlsplit(self.path).query)
        if self.style == "offset_id":
            offset = int(query.get("offset", ["0"])[0])
            body: Any = {"response": RECORDS, "meta": {"next_offset": max(offset, 0) + 1}}
        else:
            cursor = int(query.get("cursor", ["0"])[0])
            body = {"data": RECORDS, "next_cursor": str(cursor + 1)}
        self.send_json(200, body)


@pytest.fixture(params=["offset_id", "cursor"])
def api(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, list[str]]]:
    requests: list[str] = []
    handler = type("Api", (_Api,), {"style": request.param, "requests": requests})
    with serving(handler) as base:
        yield request.param, f"{base}/events", requests


def test_pages_that_bring_nothing_new_stop_the_crawl(api: tuple[str, str, list[str]], state_dir: Path) -> None:
    style, url, requests = api
    section: dict[str, Any] = {"url": url, "page_size": len(RECORDS)}
    if style == "offset_id":
        section |= {"first_id": 0, "last_id": 10**6}  # known: no discovery, a million offsets to creep through
    else:
        section |= {"paginator": "cursor", "records_path": "data", "cursor_path": "next_cursor"}
    settings = load_settings(None, "test", environ={}, overrides={"api": section, "crawl": {"slices": 1, "workers": 1}})
    outcome = run(settings, state_dir)
    print(f"\n{style}: exit {outcome.exit_code} after {len(requests)} requests: {outcome.message}")

    assert outcome.exit_code == 3, outcome.message
    assert "nothing new" in (outcome.message or "")
    assert len(requests) <= STUCK_PAGES + 3  # the first page, the stuck ones, one fetched ahead
    assert outcome.report["records"]["counted"] == len(RECORDS)  # what it did count is kept


class _UpdatedTail(JsonHandler):
    """Pages 0-29 bring 10 new records each; pages 30-54 serve pages 0-24 again, one after the other (an
    API sorted by a field that changed during the crawl), and then the data ends."""

    def do_GET(self) -> None:
        number = int(parse_qs(urlsplit(self.path).query).get("cursor", ["0"])[0])
        first = (number if number < 30 else number - 30) * 10
        records = [{"id": i, "item": i % 3} for i in range(first, first + 10)]
        self.send_json(200, {"data": records, "next_cursor": str(number + 1) if number < 54 else None})


def test_many_pages_of_other_records_already_taken_do_not_stop_the_crawl(state_dir: Path) -> None:
    with serving(_UpdatedTail) as base:
        section = {"url": f"{base}/events", "page_size": 10, "paginator": "cursor"}
        section |= {"records_path": "data", "cursor_path": "next_cursor"}
        settings = load_settings(None, "test", environ={}, overrides={"api": section})
        outcome = run(settings, state_dir)
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["records"]["counted"] == 300
    assert outcome.report["records"]["duplicates"] == 250


class _FailsFromPage12(JsonHandler):
    """A cursor API of 30 pages of 10 records that answers 503 from page 12 on while ``broken``."""

    broken = True
    requested: ClassVar[list[int]] = []

    def do_GET(self) -> None:
        number = int(parse_qs(urlsplit(self.path).query).get("cursor", ["0"])[0])
        self.requested.append(number)
        if self.broken and number >= 12:
            self.send_json(503, {"detail": "down"})
            return
        records = [{"id": i, "item": i % 3} for i in range(number * 10, number * 10 + 10)]
        self.send_json(200, {"data": records, "next_cursor": str(number + 1) if number < 29 else None})


def test_what_was_counted_before_the_api_failed_is_kept(state_dir: Path) -> None:
    """The API fails for good after 12 pages, before the slice's first flush (25 pages): the partial report
    holds those 12 pages, and the resume starts at the page that failed, not at the slice's start. Before,
    what a worker had counted since its last flush was dropped and fetched again on the resume."""
    handler = type("Api", (_FailsFromPage12,), {"requested": []})
    with serving(handler) as base:
        section = {"url": f"{base}/events", "paginator": "cursor", "records_path": "data"}
        section |= {"cursor_path": "next_cursor", "page_size": 10}
        crawl = {"slices": 1, "workers": 1, "flush_every": 25, "retries": 1, "retry_max_seconds": 1}
        settings = load_settings(None, "test", environ={}, overrides={"api": section, "crawl": crawl})
        failed = run(settings, state_dir)
        assert failed.exit_code == 3, failed.message
        assert failed.report["records"]["counted"] == 120
        handler.broken, handler.requested = False, []
        resumed = run(settings, state_dir)
    assert resumed.exit_code == 0, resumed.message
    assert resumed.report["records"]["counted"] == 300 and resumed.report["records"]["duplicates"] == 0
    top = {row["id"]: row["visits"] for row in resumed.report["windows"]["all"]["top_items"]}
    assert top == {0: 100, 1: 100, 2: 100}
    assert min(handler.requested) == 12
