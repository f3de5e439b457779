"""An API whose next reference moves on while its pages bring nothing new: a clear stop, not an endless crawl.

A real HTTP server on 127.0.0.1 answers every offset with the same records and a next offset one higher
(so the offset creeps forward, never past them), or every cursor with the same records and a new
cursor. Each next reference is new, so no loop is seen; the job must still stop with exit 3 and say why,
after a bounded number of requests, and keep what it counted resumable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
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
