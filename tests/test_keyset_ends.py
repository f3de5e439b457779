"""Where a ``keyset`` API's data ends: one that answers a bound past its data with its last page, and one
that does not read ``api.id_param`` at all. Real HTTP servers on 127.0.0.1; the truth is counted from
the records they hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any
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


@pytest.mark.parametrize("handler", [_LastPageAbove, _FixedPages])
@pytest.mark.parametrize("slices", [1, 4, 7])
def test_a_bound_past_the_data_answered_with_the_last_page_ends_the_data(
    state_dir: Path, slices: int, handler: type[JsonHandler]
) -> None:
    """The last page served again for a bound past it read as a page that does not move the crawl forward:
    retried, then exit 3 with "run the same command to resume", which met it again (discovery asks for
    bounds past the data, so no slicing escaped it). Pages fixed in place are counted as before."""
    outcome = _crawl(handler, state_dir, slices)
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


def test_an_api_that_does_not_read_the_id_param_and_caps_its_pages_is_never_counted_as_done(state_dir: Path) -> None:
    """Its first page is not full (it holds 5 where api.page_size asks for 10), so it could be all the data
    on an API that answers past it with that page again: the crawl does not end there quietly (with 5 of
    100 counted and exit 0), it stops as a fault naming api.id_param."""
    capped = type("Capped", (_Unread,), {"cap": 5})
    outcome = _crawl(capped, state_dir, 4)
    assert outcome.exit_code == 3, outcome.message
    assert "api.id_param ('since_id')" in (outcome.message or "")
