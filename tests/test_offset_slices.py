"""Offset pages cut into slices, from an API that caps its pages below api.page_size and serves each
page's rows in any order: every row counted once, the right ones (a real server on 127.0.0.1)."""

from __future__ import annotations

import random
from pathlib import Path
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
