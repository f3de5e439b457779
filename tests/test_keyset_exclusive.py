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
