"""Where a ``keyset`` crawl's data ends: a page whose every id lies below the bound asked for is a fault,
never the end of the data. Such a page comes from an API that does not read ``api.id_param``, from a
stale cache, or from an API that answers past its data with its last page, and the first two must not
end a crawl with records missing and exit 0 (rules that took such a page for the end lost 50 of 100,
998 of 1000 and 750 of 1000 records). Real HTTP servers on 127.0.0.1; the truth is counted from the
records they hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from lifestats.config import load_settings
from lifestats.run import Outcome

from .conftest import run
from .json_api import JsonHandler, serving

IDS = range(0, 1000)


def _crawl(handler: type[JsonHandler], state_dir: Path, slices: int, **api: Any) -> Outcome:
    with serving(handler) as base:
        section = {"url": f"{base}/events", "paginator": "keyset", "id_param": "since_id", "page_size": 10}
        section |= api
        overrides = {
            "api": section,
            "fields": {"id": "id", "item": "item"},
            "crawl": {"slices": slices, "retries": 1, "backoff": 0.01, "backoff_max": 0.02},
        }
        return run(load_settings(None, "test", environ={}, overrides=overrides), state_dir)


class _Unread(JsonHandler):
    """``since_id`` is not read: every request is answered with the first page (of at most ``cap``)."""

    cap = 1000

    def do_GET(self) -> None:
        limit = min(int(parse_qs(urlsplit(self.path).query)["limit"][0]), self.cap)
        self.send_json(200, {"response": [{"id": i, "item": i % 7} for i in IDS[:limit]]})


@pytest.mark.parametrize("cap", [1000, 5])
@pytest.mark.parametrize("api", [{}, {"first_id": 0, "last_id": 1000}])
def test_an_api_that_does_not_read_the_id_param_never_ends_as_done(
    state_dir: Path, cap: int, api: dict[str, int]
) -> None:
    outcome = _crawl(type("Unread", (_Unread,), {"cap": cap}), state_dir, 4, **api)
    assert outcome.exit_code != 0, outcome.report["records"]
    assert outcome.report["partial"] is True


class _StaleOnce(JsonHandler):
    """Answers past its data with nothing; once the crawl has begun, the first bound at or above 990 is
    answered with the page before it (a stale page: a cache or a lagging replica)."""

    asked: ClassVar[list[int]] = []
    served_stale = False

    def do_GET(self) -> None:
        since = int(parse_qs(urlsplit(self.path).query).get("since_id", [-(2**63)])[0])
        cls = type(self)
        cls.asked.append(since)
        rows = [i for i in IDS if i >= since][:10]
        if since >= 990 and len(cls.asked) > 40 and not cls.served_stale:
            cls.served_stale, rows = True, list(range(since - 10, since))
        self.send_json(200, {"response": [{"id": i, "item": i % 7} for i in rows]})


def test_a_stale_page_below_its_bound_is_retried_not_taken_for_the_end(state_dir: Path) -> None:
    handler = type("Stale", (_StaleOnce,), {"asked": [], "served_stale": False})
    outcome = _crawl(handler, state_dir, 1)
    assert outcome.exit_code == 0, outcome.message
    assert handler.served_stale
    records = outcome.report["records"]
    assert records["counted"] == len(IDS) and records["duplicates"] == 0
