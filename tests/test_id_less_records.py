"""Records without a usable id on an API crawled by id, cut into slices: each is rejected once, whatever the
slices, wherever it sits (SPEC sections 1 and 2: "a record with another id is rejected", and
``fetched = counted + rejected + bots + duplicates``). Real servers on 127.0.0.1; the truth is counted
from the data the servers hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from .json_api import JsonHandler, crawl_offset_ids


def _bad(n: int) -> dict[str, Any]:
    return {"id": f"bad-{n}", "item": "x"} if n % 2 else {"item": "x"}


# Pages of the original Lifesum server's kind: each served whole for any offset inside it (page N + 1 starts
# at page N's next offset, the first covers every offset below the second, the last every offset above its
# start). Records without an id lead the first page, lead a later one, and sit inside pages.
_PAGES: list[list[dict[str, Any]]] = [
    [_bad(0), _bad(1), _bad(2), *({"id": i, "item": i % 3} for i in range(1000, 1007))],
    [{"id": 1007, "item": 0}, _bad(3), *({"id": i, "item": i % 3} for i in range(1008, 1014))],
    [_bad(4), _bad(5), *({"id": i, "item": i % 3} for i in range(1014, 1020)), _bad(6)],
    [*({"id": i, "item": i % 3} for i in range(1020, 1024)), _bad(7)],
]
_STARTS = [1000, 1007, 1014, 1020]  # the first id of each page: the next offset of the page before


class _FixedPages(JsonHandler):
    pages: ClassVar = _PAGES

    def do_GET(self) -> None:
        offset = int(parse_qs(urlsplit(self.path).query)["offset"][0])
        number = max([0, *(k for k, start in enumerate(_STARTS) if start <= offset)])
        following = _STARTS[number + 1] if number + 1 < len(_STARTS) else None
        self.send_json(200, {"response": self.pages[number], "meta": {"next_offset": following}})


# An API that answers an offset with the records from it up, 10 at a time, whose first 12 records have no
# usable id (positions 0 to 11), followed by ids 1000 to 1007 (at their own positions).
_ROWS: list[tuple[int, dict[str, Any]]] = [(k, _bad(k)) for k in range(12)] + [
    (i, {"id": i, "item": "a"}) for i in range(1000, 1008)
]


class _FromOffset(JsonHandler):
    rows: ClassVar = _ROWS

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        offset, limit = int(query["offset"][0]), int(query["limit"][0])
        rows = [row for row in self.rows if row[0] >= offset]
        page, rest = rows[:limit], rows[limit:]
        following = page[-1][0] + 1 if rest else None
        self.send_json(200, {"response": [record for _, record in page], "meta": {"next_offset": following}})


def _truth(records: list[dict[str, Any]]) -> tuple[int, int]:
    """(records with a usable id, records without one), from the data the server holds."""
    usable = sum(1 for record in records if isinstance(record.get("id"), int))
    return usable, len(records) - usable


@pytest.mark.parametrize("slices", [1, 3, 5, 24])
def test_records_without_an_id_on_pages_served_whole_are_rejected_once(state_dir: Path, slices: int) -> None:
    """Every slice whose begin falls inside a page receives that page: its records without an id were
    rejected once per such slice (wrong figures with exit 0, or a false exit 4 once they outnumbered the
    counted ones; SPEC audit)."""
    outcome = crawl_offset_ids(_FixedPages, slices, state_dir)
    usable, bad = _truth([record for page in _PAGES for record in page])
    assert outcome.exit_code == 0, outcome.message
    records = outcome.report["records"]
    assert (records["counted"], records["rejected"], records["fetched"]) == (usable, bad, usable + bad)


@pytest.mark.parametrize("slices", [1, 4])
def test_records_without_an_id_before_the_first_id_are_rejected(state_dir: Path, slices: int) -> None:
    """The crawl began at the first usable id that discovery found, so the 12 records before it were
    never counted: 2 rejected of 10 and exit 0, where 12 of 20 (60%, above crawl.max_rejected_share)
    is exit 4."""
    outcome = crawl_offset_ids(_FromOffset, slices, state_dir)
    usable, bad = _truth([record for _, record in _ROWS])
    assert outcome.exit_code == 4, outcome.message
    records = outcome.report["records"]
    assert (records["counted"], records["rejected"], records["fetched"]) == (usable, bad, usable + bad)
    assert "12 of 20 records (60%) were rejected" in outcome.report["warnings"][0]


class _IdLessFirstPage(_FromOffset):
    """12 records without a usable id first (a whole first page of them), then ids -500 to 49."""

    rows: ClassVar = [(-1000 + k, _bad(k)) for k in range(12)] + [
        (i, {"id": i, "item": i % 3}) for i in range(-500, 50)
    ]


@pytest.mark.parametrize("slices", [1, 4])
def test_a_first_page_without_any_usable_id_does_not_hide_the_ids_after_it(state_dir: Path, slices: int) -> None:
    """Discovery read a first page without ids as an empty API starting at 0: every negative id was skipped
    (50 of 550 counted) and none of the 12 records without an id rejected, exit 0 (audit of changes)."""
    outcome = crawl_offset_ids(_IdLessFirstPage, slices, state_dir)
    usable, bad = _truth([record for _, record in _IdLessFirstPage.rows])
    assert outcome.exit_code == 0, outcome.message
    records = outcome.report["records"]
    assert (records["counted"], records["rejected"], records["fetched"]) == (usable, bad, usable + bad)
