"""Offset pages cut into slices, from an API that caps its pages below api.page_size and serves each
page's rows in any order: every row counted once, the right ones (a real server on 127.0.0.1)."""

from __future__ import annotations

import collections
import random
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from lifestats.config import load_settings
from lifestats.run import Outcome

from .conftest import run
from .json_api import JsonHandler, serving

ROWS = [{"id": f"r{k}", "item": k % 11, "visitor": k} for k in range(1001)]
CAP = 70


class _Capped(JsonHandler):
    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        offset, limit = int(query["offset"][0]), int(query["limit"][0])
        rows = ROWS[offset : offset + min(limit, CAP)]
        random.Random(offset).shuffle(rows)
        self.send_json(200, {"results": rows}, {"X-Total-Count": str(len(ROWS))})


def _crawl(handler: type[JsonHandler], slices: int, state_dir: Path) -> Outcome:
    """The job over ``handler``'s rows: offset pages of 100, the total in X-Total-Count."""
    with serving(handler) as base:
        section = {"url": f"{base}/events", "paginator": "offset", "records_path": "results"}
        section |= {"total_header": "X-Total-Count", "page_size": 100}
        overrides = {"api": section, "fields": {"item": "item", "visitor": "visitor"}, "crawl": {"slices": slices}}
        return run(load_settings(None, "test", environ={}, overrides=overrides), state_dir)


def test_capped_shuffled_pages_across_slice_ends_count_each_row_once(state_dir: Path) -> None:
    outcome = _crawl(_Capped, 6, state_dir)
    assert outcome.exit_code == 0, outcome.message
    window = outcome.report["windows"]["all"]
    assert outcome.report["records"]["counted"] == len(ROWS)
    assert window["distinct_visitors"] == len(ROWS)  # every row once: no row twice, none left out
    top = {row["id"]: (row["visits"], row["distinct_visitors"]) for row in window["top_items"]}
    assert top == {k: (n, n) for k in range(11) for n in [sum(1 for r in ROWS if r["item"] == k)]}


class _LowTotal(JsonHandler):
    """Says it holds 651 rows (a capped or stale count) and serves all 1,001."""

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        offset, limit = int(query["offset"][0]), int(query["limit"][0])
        self.send_json(200, {"results": ROWS[offset : offset + limit]}, {"X-Total-Count": "651"})


@pytest.mark.parametrize("slices", [1, 5])
def test_a_total_below_the_rows_served_does_not_cut_the_crawl(state_dir: Path, slices: int) -> None:
    outcome = _crawl(_LowTotal, slices, state_dir)
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["records"]["counted"] == len(ROWS)
    assert outcome.report["windows"]["all"]["distinct_visitors"] == len(ROWS)


class _LowTotalOnAPage(JsonHandler):
    """Says 600 rows (a multiple of the page size: the page that ends on it is full) and serves 1,001;
    ``past``: how it answers an offset past its rows (an empty page, a 404, or its last page again)."""

    past = "empty"
    total = "600"
    rows = ROWS

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        offset, limit = int(query["offset"][0]), int(query["limit"][0])
        if offset >= len(self.rows) and self.past in ("404", "204"):
            self.send_json(int(self.past), {"detail": "no such offset"})
            return
        if offset >= len(self.rows) and self.past == "last":
            offset = len(self.rows) - 100
        self.send_json(200, {"results": self.rows[offset : offset + limit]}, {"X-Total-Count": self.total})


class _LowTotal404(_LowTotalOnAPage):
    past = "404"


class _LowTotalLast(_LowTotalOnAPage):
    past = "last"


class _LowTotalOffAPage404(_LowTotalOnAPage):
    total, past = "651", "404"


@pytest.mark.parametrize("handler", [_LowTotalOnAPage, _LowTotal404, _LowTotalLast, _LowTotalOffAPage404])
@pytest.mark.parametrize("slices", [1, 3])
def test_a_total_too_low_that_ends_on_a_full_page_does_not_cut_the_crawl(
    state_dir: Path, slices: int, handler: type[JsonHandler]
) -> None:
    """It used to: the page that ended on the total was full, and the crawl stopped there (600 of 1,001)."""
    outcome = _crawl(handler, slices, state_dir)
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["records"]["counted"] == len(ROWS)
    assert outcome.report["windows"]["all"]["distinct_visitors"] == len(ROWS)


class _TrueTotal(_LowTotalOnAPage):
    rows, total = ROWS[:1000], "1000"


class _TrueTotal404(_TrueTotal):
    past = "404"


class _TrueTotalLast(_TrueTotal):
    past = "last"


class _TrueTotal204(_TrueTotal):
    past = "204"


@pytest.mark.parametrize("handler", [_TrueTotal, _TrueTotal404, _TrueTotalLast, _TrueTotal204])
def test_a_true_total_on_a_full_page_ends_the_crawl_whatever_the_api_says_past_it(
    state_dir: Path, handler: type[JsonHandler]
) -> None:
    """One more page is asked for, to see that the data ends: empty, refused (404) or the last page again."""
    outcome = _crawl(handler, 4, state_dir)
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["records"]["counted"] == 1000
    assert outcome.report["records"]["duplicates"] == 0  # the last page again is no record of the data


class _IgnoresOffset(JsonHandler):
    """Answers every offset with its first rows (an API that pages by another parameter)."""

    def do_GET(self) -> None:
        limit = int(parse_qs(urlsplit(self.path).query)["limit"][0])
        self.send_json(200, {"results": ROWS[:limit]}, {"X-Total-Count": str(len(ROWS))})


def test_an_api_that_ignores_the_offset_is_refused_before_the_crawl(state_dir: Path) -> None:
    """It used to count its first page once per slice, with exit 0 (800 visits of 100 records at 8 slices)."""
    outcome = _crawl(_IgnoresOffset, 8, state_dir)
    assert outcome.exit_code == 2, outcome.report["records"]
    assert "it does not page by api.offset_param ('offset')" in (outcome.message or "")


def _served_twice(ids: str) -> list[dict[str, object]]:
    """ROWS (their ids as strings, or as integers) with rows r100 and r101 listed again at positions 700
    and 900: as if rows inserted before them while the crawl ran moved them into later slices."""
    rows = ROWS if ids == "strings" else [dict(row, id=int(str(row["id"])[1:])) for row in ROWS]
    return [*rows[:700], rows[100], *rows[700:900], rows[101], *rows[900:]]


class _ServedTwice(JsonHandler):
    listing: ClassVar[list[dict[str, object]]] = []

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        offset, limit = int(query["offset"][0]), int(query["limit"][0])
        rows = self.listing[offset : offset + limit]
        self.send_json(200, {"results": rows}, {"X-Total-Count": str(len(self.listing))})


@pytest.mark.parametrize("ids", ["strings", "integers"])
def test_records_served_again_in_another_slice_are_a_warning_not_a_quiet_count(state_dir: Path, ids: str) -> None:
    """Two slices cannot see each other's ids: a row the API's order moved into a later slice is counted
    in both. The job finds the ids two slices took and says so (exit 4, the number of copies), where it
    used to end with exit 0 and visits too high. One slice counts each row once."""
    _ServedTwice.listing = _served_twice(ids)
    outcome = _crawl(_ServedTwice, 6, state_dir / "six")
    assert outcome.exit_code == 4, outcome.message
    assert outcome.report["records"]["counted"] == len(ROWS) + 2  # each slice counted its copy
    (warning,) = outcome.report["warnings"]
    assert "2 record id(s) were counted by two or more slices (2 extra copies)" in warning
    # Copies of one id in a static API read the same to the job: the warning blamed only a changing order.
    assert "holds copies of one id" in warning and "crawl.slices: 1 (each id then counts once)" in warning
    alone = _crawl(_ServedTwice, 1, state_dir / "one")
    assert alone.exit_code == 0, alone.message
    assert alone.report["records"]["counted"] == len(ROWS)
    assert alone.report["records"]["duplicates"] == 2
    assert alone.report["warnings"] == []


class _NoTotalRefusingPastTheData(JsonHandler):
    """950 rows in offset pages, no total; an offset past them is refused (``status``), or, with
    ``cap``, pages are capped at that many rows."""

    status: ClassVar[int] = 404
    cap: ClassVar[int] = 1000
    requests: ClassVar[list[int]] = []

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        offset, limit = int(query["offset"][0]), int(query["limit"][0])
        type(self).requests.append(offset)
        if offset >= 950:
            return self.send_json(self.status, {"detail": "Not found."})
        self.send_json(200, {"results": ROWS[offset : min(offset + min(limit, self.cap), 950)]})


@pytest.mark.parametrize(("status", "cap"), [(404, 1000), (400, 1000), (204, 1000), (404, 70)])
def test_an_offset_crawl_without_a_total_ends_at_a_refusal_after_a_short_page(
    state_dir: Path, status: int, cap: int
) -> None:
    """Without a count, the page after the short last one was asked for and its refusal (a 404 past the
    data) stopped the job with exit 3 after counting everything (audit S). A refusal after a full page is
    still a failure: it may lie inside the data."""
    handler = type("Api", (_NoTotalRefusingPastTheData,), {"status": status, "cap": cap, "requests": []})
    with serving(handler) as base:
        section = {"url": f"{base}/events", "paginator": "offset", "records_path": "results", "page_size": 100}
        overrides = {"api": section, "fields": {"item": "item", "visitor": "visitor"}}
        outcome = run(load_settings(None, "test", environ={}, overrides=overrides), state_dir)
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["records"]["counted"] == 950
    truth = collections.Counter(row["item"] for row in ROWS[:950])
    assert {r["id"]: r["visits"] for r in outcome.report["windows"]["all"]["top_items"]} == dict(truth)


class _CappedPagesCappedOffsets(_NoTotalRefusingPastTheData):
    """Pages capped at 70 rows (every one short of api.page_size), and offsets refused from 490 on (a cap on
    offsets, as search engines have), inside the data."""

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        offset, limit = int(query["offset"][0]), int(query["limit"][0])
        if offset >= 490:
            return self.send_json(400, {"detail": "offset too large"})
        self.send_json(200, {"results": ROWS[offset : min(offset + min(limit, 70), 950)]})


def test_a_refusal_after_a_page_as_long_as_the_ones_before_still_fails(state_dir: Path) -> None:
    """An API that caps its pages serves every page short of api.page_size: a refusal after one as long as
    the others may lie inside the data, and stops the job (audit T: read as the end, 490 of 950, exit 0)."""
    with serving(_CappedPagesCappedOffsets) as base:
        section = {"url": f"{base}/events", "paginator": "offset", "records_path": "results", "page_size": 100}
        overrides = {"api": section, "fields": {"item": "item", "visitor": "visitor"}}
        outcome = run(load_settings(None, "test", environ={}, overrides=overrides), state_dir)
    assert outcome.exit_code == 3, outcome.message


def test_an_offset_crawl_without_a_total_refused_after_a_full_page_still_fails(state_dir: Path) -> None:
    handler = type("Api", (_NoTotalRefusingPastTheData,), {"status": 404, "cap": 1000, "requests": []})
    with serving(handler) as base:
        section = {"url": f"{base}/events", "paginator": "offset", "records_path": "results", "page_size": 50}
        overrides = {"api": section, "fields": {"item": "item", "visitor": "visitor"}}
        outcome = run(load_settings(None, "test", environ={}, overrides=overrides), state_dir)
    assert outcome.exit_code == 3  # 950 is a multiple of 50: the refused page follows a full one
