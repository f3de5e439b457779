"""A tiny JSON API on 127.0.0.1 for tests that need an API to behave one particular way."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from lifestats.config import load_settings
from lifestats.run import Outcome

from .conftest import AS_OF, run


class JsonHandler(BaseHTTPRequestHandler):
    """A quiet handler with :meth:`send_json`; subclasses write ``do_GET``."""

    def log_message(self, *args: Any) -> None:
        pass

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port; yields ``http://127.0.0.1:PORT``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def crawl_offset_ids(handler: type[JsonHandler], slices: int, state_dir: Path) -> Outcome:
    """The job over ``handler``'s ``offset_id`` API (pages of 10, records at ``response``, the next offset at
    ``meta.next_offset``), its id range discovered, in ``slices`` slices by 2 workers."""
    with serving(handler) as base:
        overrides = {
            "api": {"url": f"{base}/events", "page_size": 10},
            "fields": {"id": "id", "item": "item"},
            "crawl": {"slices": slices, "workers": 2},
        }
        return run(load_settings(None, "test", environ={}, overrides=overrides), state_dir, as_of=AS_OF)
