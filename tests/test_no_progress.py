"""An API whose next reference moves on while its pages bring nothing new: a clear stop, not an endless crawl.

A real HTTP server on 127.0.0.1 answers every offset with the same records and a next offset one higher
(so the offset creeps forward, never past them), or every cursor with the same records and a new
cursor. Each next reference is new, so no loop is seen; the job must still stop with exit 3 and say why,
after a bounded number of requests, and keep what it counted resumable.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from lifestats.config import load_settings
from lifestats.task import STUCK_PAGES

from .conftest import run

RECORDS = [{"id": i, "item": i % 3} for i in range(10)]


class _Api(BaseHTTPRequestHandler):
    style = "offset_id"
    requests: list[str]

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.requests.append(self.path)
        query = parse_qs(urlsplit(self.path).query)
        if self.style == "offset_id":
            offset = int(query.get("offset", ["0"])[0])
            body: Any = {"response": RECORDS, "meta": {"next_offset": max(offset, 0) + 1}}
        else:
            cursor = int(query.get("cursor", ["0"])[0])
            body = {"data": RECORDS, "next_cursor": str(cursor + 1)}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(params=["offset_id", "cursor"])
def api(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, list[str]]]:
    requests: list[str] = []
    handler = type("Api", (_Api,), {"style": request.param, "requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield request.param, f"http://127.0.0.1:{server.server_address[1]}/events", requests
    finally:
        server.shutdown()
        server.server_close()


def test_pages_that_bring_nothing_new_stop_the_crawl(api: tuple[str, str, list[str]], state_dir: Path) -> None:
    style, url, requests = api
    section: dict[str, Any] = {"url": url, "page_size": len(RECORDS)}
    if style == "offset_id":
        section |= {"first_id": 0, "last_id": 10**6}  # known: no discovery, a million offsets to creep through
    else:
        section |= {"paginator": "cursor", "records_path": "data", "cursor_path": "next_cursor"}
    settings = load_settings(None, "test", environ={}, overrides={"api": section, "crawl": {"slices": 1, "workers": 1}})
    outcome = run(settings, state_dir)
    print(f"\n{style}: exit {outcome.exit_code} after {len(requests)} requests: {outcome.message}")

    assert outcome.exit_code == 3, outcome.message
    assert "nothing new" in (outcome.message or "")
    assert len(requests) <= STUCK_PAGES + 3  # the first page, the stuck ones, one fetched ahead
    assert outcome.report["records"]["counted"] == len(RECORDS)  # what it did count is kept
