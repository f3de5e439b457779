"""De-duplication where ids are not ordered: a record served again at any distance counts once.

Checked against a plain Python set (the ids taken so far), and through the whole job against a real
HTTP server on 127.0.0.1 whose cursor pages serve records again far apart, as an API sorted by a field
that changes during the crawl does.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lifestats import seen as seen_module
from lifestats.config import load_settings
from lifestats.seen import SeenIds, decode_ids, encode_ids

from .conftest import run
from .json_api import JsonHandler, serving

IDS = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-5, 5),  # the same few ids again and again
    st.sampled_from(["5", "-1", "a", "", "é"]),  # "5" is not 5
    st.text(max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(batches=st.lists(st.lists(IDS, max_size=12), max_size=40), run_size=st.sampled_from([1, 2, 3, 8, 1 << 16]))
def test_seen_ids_answer_as_a_set_of_every_id_taken_does(batches: list[list[Any]], run_size: int) -> None:
    original = seen_module._RUN
    seen_module._RUN = run_size  # small runs: many merges of sorted runs
    try:
        ids, taken = SeenIds(), set()
        for batch in batches:
            expected = [rid in taken for rid in batch]
            assert ids.seen_mask(batch) == expected
            assert [ids.seen(rid) for rid in batch] == expected
            fresh = {rid for rid in batch if rid not in taken}
            ids.remember(fresh)
            taken |= fresh
            assert len(ids) == len(taken)
    finally:
        seen_module._RUN = original


@settings(max_examples=300, deadline=None)
@given(batches=st.lists(st.lists(st.one_of(IDS, st.sampled_from(["\ud800", "a\udfff"])), max_size=12), max_size=8))
def test_ids_taken_go_out_with_each_flush_and_a_new_attempt_starts_from_them(batches: list[list[Any]]) -> None:
    ids, flushed, taken = SeenIds(), [], set()
    for batch in batches:
        fresh = list(dict.fromkeys(rid for rid in batch if rid not in taken))
        ids.remember(fresh)
        taken |= set(fresh)
        body = encode_ids(ids.take_fresh())
        assert sorted(map(repr, decode_ids(body))) == sorted(map(repr, fresh))  # types kept: 5 is not "5"
        flushed.append(body)
    again = SeenIds.restore(flushed)
    assert len(again) == len(taken) and again.take_fresh() == []
    probe = [rid for batch in batches for rid in batch] + [2**62, "never"]
    assert again.seen_mask(probe) == [rid in taken for rid in probe]


PER_PAGE, PAGES = 10, 30
# Page p serves records p*10 .. p*10+9, except that page 12 serves page 0's records again, page 20 a
# mix of pages 3 and 11, and page 29 one record of each earlier page (ids as strings on odd pages).
RECORDS = {
    i: {"id": i if (i // PER_PAGE) % 2 == 0 else f"r{i}", "item": i % 7, "visitor": i % 13}
    for i in range(PER_PAGE * PAGES)
}


def _page(number: int) -> list[dict[str, Any]]:
    if number == 12:
        rows = list(range(0, 10))
    elif number == 20:
        rows = [30, 31, 32, 33, 34, 110, 111, 112, 113, 114]
    elif number == 29:
        rows = [p * PER_PAGE + 3 for p in range(10)]
    else:
        rows = list(range(number * PER_PAGE, (number + 1) * PER_PAGE))
    return [RECORDS[i] for i in rows]


class _Api(JsonHandler):
    broken_page: int | None = None  # a page answered with HTTP 500 while set

    def do_GET(self) -> None:
        number = int(parse_qs(urlsplit(self.path).query).get("cursor", ["0"])[0])
        if number == self.broken_page:
            return self.send_json(500, {"error": "broken"})
        body = {"data": _page(number), "next_cursor": str(number + 1) if number + 1 < PAGES else None}
        return self.send_json(200, body)


@pytest.fixture
def api() -> Iterator[tuple[str, type[_Api]]]:
    handler = type("Api", (_Api,), {})
    with serving(handler) as base:
        yield f"{base}/events", handler


def _settings(url: str) -> Any:
    api = {"url": url, "paginator": "cursor", "records_path": "data", "cursor_path": "next_cursor"}
    return load_settings(
        None,
        "test",
        environ={},
        overrides={
            "api": {**api, "page_size": PER_PAGE},
            "fields": {"item": "item", "visitor": "visitor"},
            "crawl": {"flush_every": 4, "retries": 1, "backoff": 0.01, "backoff_max": 0.05},
        },
    )


@pytest.mark.parametrize("resumed", [False, True])
def test_a_record_served_again_many_pages_later_counts_once(
    api: tuple[str, type[_Api]], state_dir: Path, resumed: bool
) -> None:
    """Also when the crawl failed (page 17 answered 500 until the API was mended) and was resumed between
    the first serving of a record and its second: the ids a slice took are committed with its flushes."""
    url, handler = api
    served = [record for number in range(PAGES) for record in _page(number)]
    distinct = {json.dumps(record["id"]): record for record in served}  # 5 and "5" would be two ids
    if resumed:
        handler.broken_page = 17
        failed = run(_settings(url), state_dir)
        assert failed.exit_code == 3, failed.message
        assert failed.report["partial"] and 0 < failed.report["records"]["fetched"] < len(served)
        handler.broken_page = None
    outcome = run(_settings(url), state_dir)

    assert outcome.exit_code == 0, outcome.message
    records = outcome.report["records"]
    assert records["fetched"] == len(served)
    assert records["duplicates"] == len(served) - len(distinct) == 10 + 10 + 10
    assert records["counted"] == len(distinct)
    truth = collections.Counter(record["item"] for record in distinct.values())
    window = outcome.report["windows"]["all"]
    assert {row["id"]: row["visits"] for row in window["top_items"]} == dict(truth)
    assert window["distinct_visitors"] == len({record["visitor"] for record in distinct.values()})
