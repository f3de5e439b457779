"""Where a ``keyset`` API's data ends: one that answers a bound past its data with its last page, and one
that does not read ``api.id_param`` at all. Real HTTP servers on 127.0.0.1; the truth is counted from
the records they hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from lifestats.config import load_settings
from lifestats.run import Outcome

from .conftest import run
from .json_api import JsonHandler, serving

IDS = range(0, 100)  # ten full pages of 10


class _LastPageAbove(JsonHandler):
    """Ids from ``since_id`` on; a bound above every id is answered with the last page."""

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        since, limit = int(query.get("since_id", [-(2**63)])[0]), int(query["limit"][0])
        rows = [i for i in IDS if i >= since][:limit] or list(IDS[-limit:])
        self.send_json(200, {"response": [{"id": i, "item": i % 7} for i in rows]})


class _Unread(JsonHandler):
    """``since_id`` is not read: every request is answered with the first page (of at most ``cap`` records)."""

    cap = 1000

    def do_GET(self) -> None:
        limit = min(int(parse_qs(urlsplit(self.path).query)["limit"][0]), self.cap)
        self.send_json(200, {"response": [{"id": i, "item": i % 7} for i in IDS[:limit]]})


class _FixedPages(JsonHandler):
    """Pages of 10 ids fixed in place: a bound anywhere inside one is answered with the whole page (records
    below the bound included, as SPEC section 1 allows); past the data, nothing."""

    def do_GET(self) -> None:
        since = int(parse_qs(urlsplit(self.path).query).get("since_id", [-(2**63)])[0])
        start = max(since, 0) // 10 * 10
        self.send_json(200, {"response": [{"id": i, "item": i % 7} for i in IDS if start <= i < start + 10]})


def _crawl(handler: type[JsonHandler], state_dir: Path, slices: int, **api: Any) -> Outcome:
    with serving(handler) as base:
        section = {"url": f"{base}/events", "paginator": "keyset", "id_param": "since_id", "page_size": 10}
        section |= api
        overrides = {"api": section, "fields": {"id": "id", "item": "item"}, "crawl": {"slices": slices}}
        return run(load_settings(None, "test", environ={}, overrides=overrides), state_dir)


@pytest.mark.parametrize("api", [{}, {"first_id": 0, "last_id": 2000}])
@pytest.mark.parametrize("handler", [_LastPageAbove, _FixedPages])
@pytest.mark.parametrize("slices", [1, 4, 7])
def test_a_bound_past_the_data_answered_with_the_last_page_ends_the_data(
    state_dir: Path, slices: int, handler: type[JsonHandler], api: dict[str, int]
) -> None:
    """The last page served again for a bound past it read as a page that does not move the crawl forward:
    retried, then exit 3 with "run the same command to resume", which met it again (discovery asks for
    bounds past the data, so no slicing escaped it). Pages fixed in place are counted as before."""
    outcome = _crawl(handler, state_dir, slices, **api)
    assert outcome.exit_code == 0, outcome.message
    records = outcome.report["records"]
    assert records["fetched"] == records["counted"] == len(IDS) and records["duplicates"] == 0
    top = {row["id"]: row["visits"] for row in outcome.report["windows"]["all"]["top_items"]}
    assert top == {k: sum(1 for i in IDS if i % 7 == k) for k in range(7)}


@pytest.mark.parametrize(
    "api", [{}, {"first_id": 0}, {"first_id": 0, "last_id": 100}, {"page_size": 2}, {"page_size": 2, "first_id": 0}]
)
def test_an_api_that_does_not_read_the_id_param_is_refused_naming_it(state_dir: Path, api: dict[str, int]) -> None:
    """Answering every bound with its first page, it would look like data that ends on its first page: it
    is refused before the crawl (before: exit 3 after retries, "run the same command to resume")."""
    outcome = _crawl(_Unread, state_dir, 4, **api)
    assert outcome.exit_code == 2, outcome.message
    assert "api.id_param ('since_id')" in (outcome.message or "")
    assert outcome.report["records"]["counted"] == 0


def test_an_api_that_does_not_read_the_id_param_and_caps_its_pages_is_refused_too(state_dir: Path) -> None:
    """Its first page is not full (it holds 5 where api.page_size asks for 10), so it could be all the data
    on an API that answers past it with that page again; asked for its lowest id + 1, it sends the same page
    (one that reads its bound leaves that id out): refused, where it could have ended with 5 of 100 counted."""
    capped = type("Capped", (_Unread,), {"cap": 5})
    outcome = _crawl(capped, state_dir, 4)
    assert outcome.exit_code == 2, outcome.message
    assert "api.id_param ('since_id')" in (outcome.message or "")


class _OnePage(JsonHandler):
    """All its data on one page (``size`` ids from 0), a bound past them answered with that page again."""

    size = 10

    def do_GET(self) -> None:
        since = int(parse_qs(urlsplit(self.path).query).get("since_id", [-(2**63)])[0])
        rows = [i for i in range(self.size) if i >= since] or list(range(self.size))
        self.send_json(200, {"response": [{"id": i, "item": i % 3} for i in rows]})


@pytest.mark.parametrize("size", [10, 6])
@pytest.mark.parametrize("api", [{}, {"last_id": 100}])
def test_one_page_of_data_answered_past_itself_with_itself_is_counted(
    state_dir: Path, size: int, api: dict[str, int]
) -> None:
    """Indistinguishable from an API that does not read its bound when asked past the page, it reads it
    when asked inside the page (its lowest id left out): counted, where it was refused (exit 2 full, exit
    3 otherwise, also with the api.last_id the message advised)."""
    outcome = _crawl(type("One", (_OnePage,), {"size": size}), state_dir, 4, **api)
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["records"]["counted"] == size and outcome.report["records"]["duplicates"] == 0


class _StaleOnce(JsonHandler):
    """Answers past its data with nothing; once the crawl has begun, the first bound at or above 990 is
    answered with the page before it (a stale page: a cache or a lagging replica)."""

    asked: ClassVar[list[int]] = []
    served_stale = False

    def do_GET(self) -> None:
        since = int(parse_qs(urlsplit(self.path).query).get("since_id", [-(2**63)])[0])
        cls = type(self)
        cls.asked.append(since)
        rows = [i for i in range(1000) if i >= since][:10]
        if since >= 990 and len(cls.asked) > 40 and not cls.served_stale:
            cls.served_stale, rows = True, list(range(since - 10, since))
        self.send_json(200, {"response": [{"id": i, "item": i % 7} for i in rows]})


def test_a_stale_page_past_every_id_discovery_saw_is_retried_not_taken_for_the_end(state_dir: Path) -> None:
    """A page below its bound from an API that answers past its data with nothing is a stale one: retried.
    It ended the data when the bound lay above the highest id discovery saw (998 of 1000, exit 0)."""
    handler = type("Stale", (_StaleOnce,), {"asked": [], "served_stale": False})
    outcome = _crawl(handler, state_dir, 1)
    assert outcome.exit_code == 0, outcome.message
    assert handler.served_stale
    records = outcome.report["records"]
    assert records["counted"] == 1000 and records["duplicates"] == 0


class _RefusesHugeBounds(JsonHandler):
    """Answers past its data with nothing, and refuses a bound beyond 32 bits with 400 (an int32 column)."""

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        since, limit = int(query.get("since_id", [0])[0]), int(query["limit"][0])
        if since >= 2**31:
            return self.send_json(400, {"error": "since_id out of range"})
        rows = [i for i in IDS if i >= since][:limit]
        self.send_json(200, {"response": [{"id": i, "item": i % 7} for i in rows]})


def test_an_api_that_refuses_a_bound_far_past_its_data_is_counted(state_dir: Path) -> None:
    """Discovery asks at the highest id there can be whether the API answers past its data with its last
    page; an API that refuses so large a bound answers with nothing there, and the crawl goes on as usual."""
    outcome = _crawl(_RefusesHugeBounds, state_dir, 4, first_id=0)
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["records"]["counted"] == len(IDS)
