"""Page-number crawls over APIs whose totals are wrong, or whose pages are smaller than api.page_size:
every row counted once, or a clear refusal before the crawl (a real server on 127.0.0.1)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from lifestats.config import load_settings
from lifestats.run import Outcome

from .conftest import run
from .json_api import JsonHandler, serving

ROWS = [{"id": k, "item": k % 13, "visitor": k} for k in range(1001)]
PAGE = 100


class _Pages(JsonHandler):
    """``?page=p&limit=n`` from 1 over ROWS, pages of at most ``cap`` rows, the total in a header."""

    total: ClassVar[str] = str(len(ROWS))
    cap: ClassVar[int] = PAGE
    requested: ClassVar[list[int]]
    lock = threading.Lock()

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        page, limit = int(query["page"][0]), int(query["limit"][0])
        size = min(limit, self.cap)
        with self.lock:
            self.requested.append(page)
        self.send_json(200, {"results": ROWS[(page - 1) * size : page * size]}, {"X-Total-Count": self.total})


def _crawl(handler: type[_Pages], slices: int, state_dir: Path, **api: object) -> Outcome:
    handler.requested = []
    with serving(handler) as base:
        section = {"url": f"{base}/events", "paginator": "page_number", "records_path": "results"}
        section |= {"total_header": "X-Total-Count", "page_size": PAGE} | api
        overrides = {"api": section, "fields": {"item": "item", "visitor": "visitor"}, "crawl": {"slices": slices}}
        return run(load_settings(None, "test", environ={}, overrides=overrides), state_dir)


def _assert_every_row_once(outcome: Outcome) -> None:
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["records"]["counted"] == len(ROWS)
    window = outcome.report["windows"]["all"]
    assert window["distinct_visitors"] == len(ROWS)
    top = {row["id"]: row["visits"] for row in window["top_items"]}
    assert top == {k: sum(1 for r in ROWS if r["item"] == k) for k in range(13)}


class _HighTotal(_Pages):
    total = "1500"  # a stale count: the API has 1,001 rows, 11 pages


class _LowTotal(_Pages):
    total = "651"  # a capped count: seven pages by the total, eleven served


@pytest.mark.parametrize("slices", [1, 5])
def test_a_total_above_the_rows_served_ends_where_the_rows_end(state_dir: Path, slices: int) -> None:
    _assert_every_row_once(_crawl(_HighTotal, slices, state_dir))


@pytest.mark.parametrize("slices", [1, 5])
def test_a_total_below_the_rows_served_does_not_cut_the_crawl(state_dir: Path, slices: int) -> None:
    _assert_every_row_once(_crawl(_LowTotal, slices, state_dir))
    assert max(_LowTotal.requested) == 12  # on to the first empty page, not further


def test_a_true_total_costs_no_request_past_the_last_page(state_dir: Path) -> None:
    _assert_every_row_once(_crawl(_Pages, 1, state_dir))
    assert max(_Pages.requested) == 11


class _Capped(_Pages):
    cap = 70  # the API serves 70 rows a page whatever the limit: page numbers at 100 would skip rows


def test_pages_smaller_than_page_size_are_refused_before_the_crawl(state_dir: Path) -> None:
    outcome = _crawl(_Capped, 5, state_dir)
    assert outcome.exit_code == 2
    assert "api.page_size" in outcome.message and "70" in outcome.message
    assert sorted(_Capped.requested) == [1, 2]  # the first page and the one that shows it was not the last


class _LowTotalOnAPage(_Pages):
    total = "600"  # six full pages by the count: the sixth ends on it, and eleven are served


class _LowTotalOnAPage404(_LowTotalOnAPage):
    """Answers a page past its rows with a 404, as many page-number APIs do."""

    def do_GET(self) -> None:
        page = int(parse_qs(urlsplit(self.path).query)["page"][0])
        if (page - 1) * PAGE >= len(ROWS):
            with self.lock:
                self.requested.append(page)
            self.send_json(404, {"detail": "Invalid page."})
            return
        super().do_GET()


@pytest.mark.parametrize("handler", [_LowTotalOnAPage, _LowTotalOnAPage404])
@pytest.mark.parametrize("slices", [1, 4])
def test_a_total_too_low_that_ends_on_a_full_page_does_not_cut_the_crawl(
    state_dir: Path, slices: int, handler: type[_Pages]
) -> None:
    """It used to: page 6 ended on the count of 600 rows and was full, and the crawl stopped there."""
    _assert_every_row_once(_crawl(handler, slices, state_dir))
    assert max(handler.requested) == 12  # on to the first page past the rows, not further


class _FromZero(_Pages):
    """Numbers its pages from 0."""

    def do_GET(self) -> None:
        page = int(parse_qs(urlsplit(self.path).query)["page"][0])
        with self.lock:
            self.requested.append(page)
        self.send_json(200, {"results": ROWS[page * PAGE : (page + 1) * PAGE]}, {"X-Total-Count": self.total})


class _IgnoresPage(_Pages):
    """Answers every page with the first."""

    def do_GET(self) -> None:
        self.send_json(200, {"results": ROWS[:PAGE]}, {"X-Total-Count": self.total})


class _ClampsToOne(_Pages):
    """Numbers its pages from 1 and answers page 0 with page 1, as many do."""

    def do_GET(self) -> None:
        page = max(1, int(parse_qs(urlsplit(self.path).query)["page"][0]))
        self.send_json(200, {"results": ROWS[(page - 1) * PAGE : page * PAGE]}, {"X-Total-Count": self.total})


@pytest.mark.parametrize(
    ("handler", "first_page", "said"),
    [
        (_FromZero, 1, "page=0 holds records too, other than those of page=1"),  # used to lose page 0
        (_Pages, 0, "page=0 is empty but page=1 holds records"),  # used to end slice 0 at once
        (_ClampsToOne, 0, "or numbers its pages from 1 (api.first_page)"),  # used to lose the last page
        (_IgnoresPage, 1, "it does not page by api.page_param ('page')"),  # used to count page 1 per slice
    ],
)
def test_an_api_that_numbers_or_ignores_pages_otherwise_is_refused_before_the_crawl(
    state_dir: Path, handler: type[_Pages], first_page: int, said: str
) -> None:
    outcome = _crawl(handler, 4, state_dir, first_page=first_page)
    assert outcome.exit_code == 2, outcome.report["records"]
    assert said in (outcome.message or "")
    if "first_page" in said or "numbers its pages" in said:
        assert "api.first_page" in (outcome.message or "")


def test_an_api_that_numbers_its_pages_from_zero_is_counted_exactly_with_first_page_0(state_dir: Path) -> None:
    _assert_every_row_once(_crawl(_FromZero, 4, state_dir, first_page=0))


class _FailsOnPageZero(_Pages):
    """Numbers its pages from 1 and crashes on page 0 (a 500), as a server that never expected it may."""

    def do_GET(self) -> None:
        page = int(parse_qs(urlsplit(self.path).query)["page"][0])
        if page == 0:
            with self.lock:
                self.requested.append(page)
            self.send_json(500, {"error": "division by zero"})
            return
        super().do_GET()


def test_a_page_before_the_first_that_fails_is_asked_once_and_read_as_no_page(state_dir: Path) -> None:
    _assert_every_row_once(_crawl(_FailsOnPageZero, 4, state_dir))
    assert _FailsOnPageZero.requested.count(0) == 1  # no retries, no wait: it is not a page


class _Django(JsonHandler):
    """Page numbers from 1 as Django REST Framework and Django's ``Paginator.get_page`` serve them: ``before``
    and ``past`` say how a page out of range is answered ("404" as DRF's "Invalid page.", or "last": the
    last page, as ``get_page`` does); ``count`` in the body unless ``counted`` is False."""

    rows: ClassVar[list[dict[str, int]]] = ROWS
    before: ClassVar[str] = "404"
    past: ClassVar[str] = "404"
    counted: ClassVar[bool] = True
    requested: ClassVar[list[int]] = []

    def do_GET(self) -> None:
        page = int(parse_qs(urlsplit(self.path).query)["page"][0])
        self.requested.append(page)
        pages = max(1, -(-len(self.rows) // PAGE))
        if not 1 <= page <= pages:
            if (self.before if page < 1 else self.past) == "404":
                self.send_json(404, {"detail": "Invalid page."})
                return
            page = pages
        body: dict[str, object] = {"results": self.rows[(page - 1) * PAGE : page * PAGE]}
        if self.counted:
            body["count"] = len(self.rows)
        self.send_json(200, body)


def _django(
    state_dir: Path, slices: int = 4, base: type[_Django] | None = None, **kinds: object
) -> tuple[Outcome, list[int]]:
    handler = type("Handler", (base or _Django,), {"requested": [], **kinds})
    with serving(handler) as base:
        section = {"url": f"{base}/events", "paginator": "page_number", "records_path": "results", "page_size": PAGE}
        if handler.counted:
            section["total_path"] = "count"
        overrides = {"api": section, "fields": {"item": "item", "visitor": "visitor"}, "crawl": {"slices": slices}}
        return run(load_settings(None, "test", environ={}, overrides=overrides), state_dir), handler.requested


@pytest.mark.parametrize("counted", [True, False])
@pytest.mark.parametrize(("before", "past"), [("404", "404"), ("last", "last"), ("404", "last"), ("last", "404")])
@pytest.mark.parametrize("rows", [60, 1000, 1001])
def test_django_style_pages_are_counted_whatever_they_answer_out_of_range(
    state_dir: Path, rows: int, before: str, past: str, counted: bool
) -> None:
    """Each of these used to be refused: a first page shorter than page_size whose next page is a 404 (exit
    3), a page 0 that is the last page (exit 2, "numbers its pages from 0"), a single page served again as
    page 2 (exit 2); and without a count, a 404 or the last page again past the data (exit 3)."""
    data = ROWS[:rows]
    outcome, requested = _django(state_dir, rows=data, before=before, past=past, counted=counted)
    assert outcome.exit_code == 0, outcome.message
    records = outcome.report["records"]
    assert records["counted"] == rows and records["duplicates"] == 0
    top = {row["id"]: row["visits"] for row in outcome.report["windows"]["all"]["top_items"]}
    assert top == {k: n for k in range(13) if (n := sum(1 for r in data if r["item"] == k))}
    # One page past the data at most; two when only a page served again says the data ended (the crawl has
    # asked for the next page while it counted that one).
    assert max(requested) <= -(-rows // PAGE) + (2 if past == "last" else 1)


class _IgnoresPageUncounted(_Django):
    """Answers every page with the first, and gives no count."""

    counted = False

    def do_GET(self) -> None:
        self.send_json(200, {"results": self.rows[:PAGE]})


def test_an_api_that_ignores_page_numbers_without_a_count_still_stops_with_exit_3(state_dir: Path) -> None:
    """A full page served again ends a page-number crawl only after two pages of new records: an API that
    ignores the page parameter never serves two, so it is not read as one whose data ended on page 1."""
    with serving(_IgnoresPageUncounted) as base:
        section = {"url": f"{base}/events", "paginator": "page_number", "records_path": "results", "page_size": PAGE}
        overrides = {"api": section, "fields": {"item": "item", "visitor": "visitor"}}
        outcome = run(load_settings(None, "test", environ={}, overrides=overrides), state_dir)
    assert outcome.exit_code == 3
    assert "served the same records again" in (outcome.message or "")


class _NewestFirstGrowing(_Django):
    """Newest first, without a count, the last page served past the data (as ``get_page`` does); after
    ``grow_after`` answers, ``grown`` rows are added at the head (newer ids than any before)."""

    counted = False
    past = "last"
    grow_after: ClassVar[int] = 3
    grown: ClassVar[int] = PAGE
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            if len(self.requested) == self.grow_after:
                newest = self.rows[0]["id"]
                head = [{"id": newest + k, "item": 13, "visitor": newest + k} for k in range(self.grown, 0, -1)]
                type(self).rows = head + self.rows
            super().do_GET()


@pytest.mark.parametrize("grown", [PAGE, 2 * PAGE, PAGE // 2])
def test_rows_added_at_the_head_of_a_newest_first_api_do_not_end_the_crawl(state_dir: Path, grown: int) -> None:
    """A page or two of rows added at the head while the crawl is past it makes the next page repeat one
    already taken: that is no end of the data, the page after it has new rows. Every row that was there
    from the start is counted once; the rows added at the head were passed and are not. Before, the
    repeated page ended the crawl: exit 0, and every row after it left out."""
    rows = sorted(ROWS, key=lambda row: -row["id"])
    outcome, _ = _django(state_dir, slices=1, base=_NewestFirstGrowing, rows=rows, grown=grown)
    assert outcome.exit_code == 0, outcome.message
    records = outcome.report["records"]
    assert records["counted"] == len(ROWS) and records["duplicates"] == grown
    window = outcome.report["windows"]["all"]
    assert window["distinct_visitors"] == len(ROWS)
    top = {row["id"]: row["visits"] for row in window["top_items"]}
    assert top == {k: sum(1 for r in ROWS if r["item"] == k) for k in range(13)}
