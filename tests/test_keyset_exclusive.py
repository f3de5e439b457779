"""A keyset API whose bound is exclusive ("ids after x"): every record counted, the first of each slice too.

A real HTTP server on 127.0.0.1 serves ids 1 to 600 (consecutive, so every slice starts on a record),
in pages of ids strictly above ``since_id``; the job cuts them into slices and must count all 600.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from lifestats.config import load_settings

from .conftest import run
from .json_api import JsonHandler, serving

IDS = range(1, 601)


class _After(JsonHandler):
    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        after = int(query["since_id"][0]) if "since_id" in query else None
        limit = int(query["limit"][0])
        rows = [{"id": i, "item": i % 9} for i in IDS if after is None or i > after][:limit]
        self.send_json(200, {"rows": rows})


@pytest.mark.parametrize("slices", [1, 7])
def test_an_exclusive_keyset_bound_loses_no_record(state_dir: Path, slices: int) -> None:
    with serving(_After) as base:
        section = {"url": f"{base}/events", "paginator": "keyset", "id_param": "since_id"}
        section |= {"id_param_inclusive": False, "records_path": "rows", "page_size": 40}
        settings = load_settings(None, "test", environ={}, overrides={"api": section, "crawl": {"slices": slices}})
        outcome = run(settings, state_dir)
    assert outcome.exit_code == 0, outcome.message
    records = outcome.report["records"]
    assert records["fetched"] == records["counted"] == len(IDS)
    top = {row["id"]: row["visits"] for row in outcome.report["windows"]["all"]["top_items"]}
    assert top == {k: sum(1 for i in IDS if i % 9 == k) for k in range(9)}


class _OffsetAfter(JsonHandler):
    """An offset_id-like API whose ``offset`` is exclusive: ids strictly above it, ``next_offset`` the
    page's last id."""

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        after = int(query["offset"][0]) if "offset" in query else None
        limit = int(query["limit"][0])
        rows = [{"id": i, "item": i % 9} for i in IDS if after is None or i > after][:limit]
        following = rows[-1]["id"] if rows and rows[-1]["id"] < IDS[-1] else None
        self.send_json(200, {"response": rows, "meta": {"next_offset": following}})


def test_an_exclusive_bound_read_as_inclusive_is_refused_naming_the_setting(state_dir: Path) -> None:
    """It used to lose the first record of every page, so of every slice and of the crawl too, with exit 0
    (579 of 600 at 7 slices): the lowest id, asked for as a bound, must come back."""
    with serving(_After) as base:
        section = {"url": f"{base}/events", "paginator": "keyset", "id_param": "since_id"}
        section |= {"records_path": "rows", "page_size": 40}  # id_param_inclusive: true, the default
        settings = load_settings(None, "test", environ={}, overrides={"api": section, "crawl": {"slices": 7}})
        outcome = run(settings, state_dir / "keyset")
    assert outcome.exit_code == 2, outcome.report["records"]
    assert "since_id=1" in (outcome.message or "") and "set api.id_param_inclusive: false" in (outcome.message or "")
    with serving(_OffsetAfter) as base:
        section = {"url": f"{base}/events", "page_size": 40}  # offset_id, the default style
        settings = load_settings(None, "test", environ={}, overrides={"api": section, "crawl": {"slices": 7}})
        outcome = run(settings, state_dir / "offset_id")
    assert outcome.exit_code == 2, outcome.report["records"]
    message = outcome.message or ""
    assert "api.paginator: keyset, api.id_param: offset, api.id_param_inclusive: false" in message
    # As the message says: every record.
    with serving(_OffsetAfter) as base:
        section = {"url": f"{base}/events", "paginator": "keyset", "id_param": "offset", "page_size": 40}
        section |= {"id_param_inclusive": False}
        settings = load_settings(None, "test", environ={}, overrides={"api": section, "crawl": {"slices": 7}})
        outcome = run(settings, state_dir / "as_told")
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["records"]["counted"] == len(IDS)


class _NewestFirst(JsonHandler):
    """An offset_id-like API that serves the highest ids at or above the offset, newest first, with the
    page's lowest id as the next offset."""

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        low, limit = int(query["offset"][0]), int(query["limit"][0])
        rows = [{"id": i, "item": i % 9} for i in sorted(IDS, reverse=True) if i >= low][:limit]
        following = rows[-1]["id"] if len(rows) == limit else None
        self.send_json(200, {"response": rows, "meta": {"next_offset": following}})


def test_an_id_api_that_serves_newest_first_is_refused(state_dir: Path) -> None:
    """Such an API used to be crawled from its first page's lowest id up (on one, 100 of 2,000 records
    counted with exit 0): the first page's next offset, below the page's own highest id, tells."""
    with serving(_NewestFirst) as base:
        settings = load_settings(
            None, "test", environ={}, overrides={"api": {"url": f"{base}/events", "page_size": 40}}
        )
        outcome = run(settings, state_dir)
    assert outcome.exit_code == 2, outcome.report["records"]
    assert "newest first?" in (outcome.message or "") and "561 to 600" in (outcome.message or "")
