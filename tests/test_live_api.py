"""An API that keeps adding records while the job crawls it (a live event stream), by id: the run ends.

A crawl by id without ``api.last_id`` goes on until the API says its data ends, and a live API never
says so once the crawl has caught up with it (each page brings the few records added since the last
one). The open last slice now ends at the first page that is not full past the end of the data the run
found at its start. Every record that existed at the start is counted once (a real server on 127.0.0.1).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from lifestats.config import load_settings
from lifestats.run import Outcome

from .conftest import run
from .json_api import JsonHandler, serving

ORIGINAL = 600
ADDED_PER_REQUEST = 3
ADDING_UNTIL = 4_000  # requests; past them the stream stops (so that a crawl that chases it ends too)


class _Changing(JsonHandler):
    """Records by id from 1, ascending, served in the ``keyset`` or ``offset_id`` style (a next offset in
    the body after every page that has records); ``change(requests)`` alters them before each answer."""

    lock: ClassVar = threading.Lock()
    rows: ClassVar[list[dict[str, Any]]] = []
    requests: ClassVar = 0
    style: ClassVar = "keyset"

    @classmethod
    def reset(cls, style: str, rows: list[dict[str, Any]]) -> None:
        cls.rows, cls.requests, cls.style = rows, 0, style

    @classmethod
    def change(cls, requests: int) -> None:
        pass

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        cls = type(self)
        with self.lock:
            cls.requests += 1
            cls.change(cls.requests)
            rows = list(cls.rows)
        at, limit = int(query["from"][0]), int(query["limit"][0])
        page = [row for row in rows if row["id"] >= at][:limit]
        if self.style == "keyset":
            self.send_json(200, {"rows": page})
        else:
            self.send_json(200, {"rows": page, "meta": {"next_offset": page[-1]["id"] + 1 if page else None}})


def _crawl(handler: type[_Changing], style: str, slices: int, state_dir: Path) -> Outcome:
    with serving(handler) as base:
        section: dict[str, Any] = {"url": f"{base}/events", "paginator": style, "records_path": "rows", "page_size": 50}
        section |= {"id_param": "from"} if style == "keyset" else {"offset_param": "from"}
        overrides = {"api": section, "fields": {"category": None, "visitor": None, "timestamp": None}}
        overrides |= {"crawl": {"slices": slices, "rate_limit": 1000}, "bots": {"ips": [], "user_agents": []}}
        return run(load_settings(None, "test", environ={}, overrides=overrides), state_dir)


def _visits(outcome: Outcome) -> dict[Any, int]:
    return {row["id"]: row["visits"] for row in outcome.report["windows"]["all"]["top_items"]}


class _Live(_Changing):
    """Each request adds 3 records (item "added") after the highest id, for the first 4,000 requests."""

    @classmethod
    def change(cls, requests: int) -> None:
        if requests <= ADDING_UNTIL:
            top = cls.rows[-1]["id"]
            cls.rows.extend({"id": top + k, "item": "added"} for k in range(1, ADDED_PER_REQUEST + 1))


@pytest.mark.parametrize("style", ["keyset", "offset_id"])
@pytest.mark.parametrize("slices", [1, 4])
def test_a_crawl_by_id_of_an_api_that_keeps_adding_records_ends(state_dir: Path, style: str, slices: int) -> None:
    _Live.reset(style, [{"id": i, "item": "original"} for i in range(1, ORIGINAL + 1)])
    outcome = _crawl(_Live, style, slices, state_dir)
    served = _Live.requests
    print(f"\n{style}, {slices} slice(s): {served} requests")
    assert outcome.exit_code == 0, outcome.message
    assert _visits(outcome)["original"] == ORIGINAL  # every record that existed at the start, once
    assert outcome.report["records"]["duplicates"] == 0
    # It stopped once it had caught up (before: it chased the stream until the stream stopped).
    assert served < ADDING_UNTIL / 10, served


class _Expiring(_Changing):
    """Deletes the 3 oldest records on its second request (a retention window letting old events go)."""

    @classmethod
    def change(cls, requests: int) -> None:
        if requests == 2:
            cls.rows = [row for row in cls.rows if row["id"] > 3]


@pytest.mark.parametrize("style", ["keyset", "offset_id"])
def test_an_api_whose_oldest_records_expire_is_not_refused_as_exclusive(state_dir: Path, style: str) -> None:
    """Discovery asks for the lowest id it saw by itself, to catch an API whose bound is exclusive. When
    that record was deleted in between, the run stopped with exit 2 saying the bound was exclusive and
    advising settings that could not read the API; the lowest id the API serves now tells the two apart."""
    _Expiring.reset(style, [{"id": i, "item": "expired" if i <= 3 else "kept"} for i in range(1, ORIGINAL + 1)])
    outcome = _crawl(_Expiring, style, 4, state_dir)
    assert outcome.exit_code == 0, outcome.message
    assert _visits(outcome)["kept"] == ORIGINAL - 3
    assert outcome.report["records"]["duplicates"] == 0


class _ExpiringCursor(JsonHandler):
    """A cursor API whose first page's cursor has expired by the time it is used: it answers ``status``."""

    status: ClassVar = 410

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        if "cursor" in query:
            self.send_json(self.status, {"error": "cursor expired"})
        else:
            self.send_json(200, {"data": [{"id": i, "item": i % 5} for i in range(1, 51)], "next_cursor": "c1"})


@pytest.mark.parametrize("status", [400, 404, 410, 422])
def test_an_expired_cursor_says_to_start_over(state_dir: Path, status: int) -> None:
    """Resuming re-sends the checkpointed cursor, which the API refuses again: the message said to run the
    same command (422) or that the run resumes once the problem is fixed (400, 404, 410)."""
    _ExpiringCursor.status = status
    with serving(_ExpiringCursor) as base:
        section = {"url": f"{base}/events", "paginator": "cursor", "records_path": "data", "cursor_path": "next_cursor"}
        overrides = {"api": section, "fields": {"category": None, "visitor": None, "timestamp": None}}
        overrides |= {"crawl": {"retries": 1, "retry_max_seconds": 1}, "bots": {"ips": [], "user_agents": []}}
        outcome = run(load_settings(None, "test", environ={}, overrides=overrides), state_dir)
    assert outcome.exit_code == 3, outcome.message
    assert f"HTTP {status}" in outcome.message
    assert "start over with --fresh" in outcome.message
    assert "run the same command to resume" not in outcome.message
    assert outcome.report["partial"] is True
