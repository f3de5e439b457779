"""An ``offset_id`` API that answers a stretch of ids without records with an empty page naming the next
offset (an API that pages by id windows): the count does not depend on how the slices cut the range, and
an API that names a next offset past its data is not followed to the end of the id space. Real servers
on 127.0.0.1; the truth is counted from the records the servers hold."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from lifestats.config import load_settings

from .conftest import run
from .json_api import JsonHandler, crawl_offset_ids, serving

# Ids 1000-1009, nothing from 1010 to 1019, then 1020-1029; the API answers an offset in the gap with an
# empty page whose next offset is 1020.
_LOW = [{"id": i, "item": 1} for i in range(1000, 1010)]
_HIGH = [{"id": i, "item": 2} for i in range(1020, 1030)]


class _Windows(JsonHandler):
    def do_GET(self) -> None:
        offset = int(parse_qs(urlsplit(self.path).query)["offset"][0])
        if offset < 1010:
            body: dict[str, Any] = {"response": _LOW, "meta": {"next_offset": 1010}}
        elif offset < 1020:
            body = {"response": [], "meta": {"next_offset": 1020}}
        elif offset < 1030:
            body = {"response": _HIGH, "meta": {"next_offset": None}}
        else:
            body = {"response": [], "meta": {"next_offset": None}}
        self.send_json(200, body)


class _NextPastTheData(JsonHandler):
    """Records 1000-1024 in pages of 10 from the offset; past them, empty pages that always name the offset
    one page further on."""

    requests = 0

    def do_GET(self) -> None:
        type(self).requests += 1
        query = parse_qs(urlsplit(self.path).query)
        offset, limit = int(query["offset"][0]), int(query["limit"][0])
        rows = [{"id": i, "item": i % 4} for i in range(max(offset, 1000), 1025)][:limit]
        following = rows[-1]["id"] + 1 if rows else min(offset + limit, 2**63 - 1)
        self.send_json(200, {"response": rows, "meta": {"next_offset": following}})


@pytest.mark.parametrize("slices", [1, 3, 4, 10])
def test_an_empty_stretch_of_ids_answered_with_an_empty_page_is_crossed(state_dir: Path, slices: int) -> None:
    """The empty page ended the data of the slice that met it: 10 records and exit 4 at one or two
    slices, 16 to 19 with exit 0 and no warning at three to ten, all 20 only at a hundred (SPEC audit)."""
    outcome = crawl_offset_ids(_Windows, slices, state_dir)
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["records"]["counted"] == len(_LOW) + len(_HIGH)
    top = {row["id"]: row["visits"] for row in outcome.report["windows"]["all"]["top_items"]}
    assert top == {1: len(_LOW), 2: len(_HIGH)}


def test_an_api_that_names_a_next_offset_past_its_data_is_not_followed_there(state_dir: Path) -> None:
    _NextPastTheData.requests = 0
    outcome = crawl_offset_ids(_NextPastTheData, 4, state_dir)
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["records"]["counted"] == 25
    # Discovery's probes (up to 64 doublings and the bisection) and a few pages per slice, not a walk of
    # empty pages through the id space.
    assert _NextPastTheData.requests < 200


class _EmptyLowestWindow(JsonHandler):
    """Ids 1000-1019 in windows of 10; any offset below them is answered with an empty page naming 1000."""

    def do_GET(self) -> None:
        offset = int(parse_qs(urlsplit(self.path).query)["offset"][0])
        rows = [{"id": i, "item": i % 3} for i in range(1000, 1020) if offset <= i < offset + 10]
        if offset < 1000:
            body: dict[str, Any] = {"response": [], "meta": {"next_offset": 1000}}
        else:
            body = {"response": rows, "meta": {"next_offset": offset + 10 if offset + 10 < 1020 else None}}
        self.send_json(200, body)


@pytest.mark.parametrize("slices", [1, 4])
def test_an_empty_lowest_window_naming_the_next_is_followed_to_the_first_id(state_dir: Path, slices: int) -> None:
    """Discovery read the empty page at the lowest offset as an API without records: it took 0 as the first
    id, and the crawl's empty page ended the data: 0 of 20 records, exit 0 (audit N)."""
    outcome = crawl_offset_ids(_EmptyLowestWindow, slices, state_dir)
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["records"]["counted"] == 20
    top = {row["id"]: row["visits"] for row in outcome.report["windows"]["all"]["top_items"]}
    assert top == dict(collections.Counter(i % 3 for i in range(1000, 1020)))


class _FarWindows(JsonHandler):
    """Ids 150-169 in windows of 10 from any offset, the next window named while records lie above it."""

    def do_GET(self) -> None:
        offset = int(parse_qs(urlsplit(self.path).query)["offset"][0])
        rows = [{"id": i, "item": i % 3} for i in range(150, 170) if offset <= i < offset + 10]
        self.send_json(200, {"response": rows, "meta": {"next_offset": offset + 10 if offset + 10 < 170 else None}})


def test_empty_windows_past_the_pages_discovery_follows_are_refused_not_read_as_no_data(state_dir: Path) -> None:
    """Past the pages discovery follows from the lowest offset, the empty windows were read as an API without
    records: 0 of 20 counted, exit 0 (audit Q). Now refused, naming api.first_id; given it, all are counted."""
    outcome = crawl_offset_ids(_FarWindows, 1, state_dir)
    assert outcome.exit_code == 2
    assert "set api.first_id" in (outcome.message or "")
    with serving(_FarWindows) as base:
        overrides = {
            "api": {"url": f"{base}/events", "page_size": 10, "first_id": 150},
            "fields": {"id": "id", "item": "item"},
            "crawl": {"slices": 2, "workers": 2},
        }
        counted = run(load_settings(None, "test", environ={}, overrides=overrides), state_dir / "given")
    assert counted.exit_code == 0 and counted.report["records"]["counted"] == 20


def _window_api(ids: list[int], width: int = 10) -> type[JsonHandler]:
    """An API that pages by id windows of ``width`` from the offset asked for: a window with records names
    the offset after it while records lie above, an empty window names the lowest id above it (the next
    window that holds records), and nothing above names no next offset."""
    held = sorted(ids)

    class Windows(JsonHandler):
        requests = 0

        def do_GET(self) -> None:
            type(self).requests += 1
            offset = int(parse_qs(urlsplit(self.path).query)["offset"][0])
            rows = [{"id": i, "item": i % 7} for i in held if offset <= i < offset + width]
            above = [i for i in held if i >= offset + width] if rows else [i for i in held if i >= offset]
            following = (offset + width if rows else min(above)) if above else None
            self.send_json(200, {"response": rows, "meta": {"next_offset": following}})

    return Windows


_STRETCHES = {
    "one far stretch": [*range(0, 10), *range(5000, 5010)],
    "two stretches": [*range(0, 10), *range(5000, 5010), *range(5020, 5030)],
    "a long run then a far window": [*range(0, 100), *range(900, 910)],
    "negative ids": [*range(-5000, -4990), *range(-9, 1)],
    "three windows far apart": [*range(0, 10), *range(100, 110), *range(1000, 1010)],
}


def _crawl_windows(ids: list[int], slices: int, state_dir: Path, **api: Any) -> Any:
    with serving(_window_api(ids)) as base:
        overrides = {
            "api": {"url": f"{base}/events", "page_size": 10, **api},
            "fields": {"id": "id", "item": "item"},
            "crawl": {"slices": slices, "workers": 2},
        }
        return run(load_settings(None, "test", environ={}, overrides=overrides), state_dir)


@pytest.mark.parametrize("name", sorted(_STRETCHES))
@pytest.mark.parametrize("slices", [1, 10])
@pytest.mark.parametrize("bounds", ["discovered", "last_id", "both"])
def test_empty_windows_naming_the_next_window_with_records_are_crossed(
    state_dir: Path, name: str, slices: int, bounds: str
) -> None:
    """An empty window past every id discovery saw ended its slice: 10 of 20 counted with exit 0 and no
    warning (ids 0-9 and 5000-5009, api.last_id 7000, at 1, 3 and 10 slices), and the same with both
    bounds given or neither (audit N)."""
    ids = _STRETCHES[name]
    # "last_id" and "both" bound the range well above the data, as a user who knows only a bound would.
    last_id = max(ids) + 2000
    api: dict[str, Any] = {"discovered": {}, "last_id": {"last_id": last_id}}.get(bounds, {})
    if bounds == "both":
        api = {"first_id": min(ids), "last_id": last_id}
    outcome = _crawl_windows(ids, slices, state_dir, **api)
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["records"]["counted"] == len(ids)
    top = {row["id"]: row["visits"] for row in outcome.report["windows"]["all"]["top_items"]}
    assert top == dict(collections.Counter(i % 7 for i in ids))


class _RefusedPastItsData(JsonHandler):
    """Ids 0-24 in pages of 10 from the offset, each naming the id after its last (the last page too); an
    offset from 25 to 29 gets an empty page naming the offset 10 further on; one from 30 up is refused
    with ``status``."""

    status = 404

    def do_GET(self) -> None:
        offset = int(parse_qs(urlsplit(self.path).query)["offset"][0])
        rows = [{"id": i, "item": i % 3} for i in range(max(offset, 0), 25)][:10]
        if rows:
            self.send_json(200, {"response": rows, "meta": {"next_offset": rows[-1]["id"] + 1}})
        elif offset < 30:
            self.send_json(200, {"response": [], "meta": {"next_offset": offset + 10}})
        else:
            self.send_json(type(self).status, {"error": "no such offset"})


def test_a_crawl_stopped_at_the_offset_asked_for_once_resumes_at_the_empty_page_before_it(state_dir: Path) -> None:
    """The offset past an empty page, asked for once, was stored as the slice's position when the API failed
    there: the resumed crawl took it for a page of the data, and its refusal (404) failed every resume
    (exit 3) where one run ends the data there (audit V)."""
    overrides = {
        "api": {"page_size": 10, "first_id": 0, "last_id": 10**6},
        "fields": {"id": "id", "item": "item"},
        "crawl": {"slices": 1, "workers": 1},
    }
    truth = dict(collections.Counter(i % 3 for i in range(25)))
    with serving(_RefusedPastItsData) as base:
        overrides["api"]["url"] = f"{base}/events"
        settings = load_settings(None, "test", environ={}, overrides=overrides)
        _RefusedPastItsData.status = 401  # fails at offset 35: a failure that does not end the data
        failed = run(settings, state_dir)
        assert failed.exit_code == 3 and "offset=35" in (failed.message or "")
        _RefusedPastItsData.status = 404
        resumed = run(settings, state_dir)
    assert resumed.exit_code == 0, resumed.message
    assert resumed.report["records"]["counted"] == 25
    assert {row["id"]: row["visits"] for row in resumed.report["windows"]["all"]["top_items"]} == truth


def test_an_api_that_fails_at_the_offset_asked_for_once_ends_the_data_there_with_a_warning(state_dir: Path) -> None:
    """An API that answers every offset past its data with a 500 failed the run at the offset asked for
    once past its last empty page, and every resume there again (exit 3, audit Y): the data ends there,
    the report is whole, and a warning says why (exit 4)."""
    overrides = {
        "api": {"page_size": 10, "first_id": 0, "last_id": 10**6},
        "fields": {"id": "id", "item": "item"},
        "crawl": {"slices": 1, "workers": 1, "retries": 1},
    }
    with serving(_RefusedPastItsData) as base:
        overrides["api"]["url"] = f"{base}/events"
        _RefusedPastItsData.status = 500
        outcome = run(load_settings(None, "test", environ={}, overrides=overrides), state_dir)
    assert outcome.exit_code == 4, outcome.message
    assert outcome.report["records"]["counted"] == 25
    assert {row["id"]: row["visits"] for row in outcome.report["windows"]["all"]["top_items"]} == dict(
        collections.Counter(i % 3 for i in range(25))
    )
    (warning,) = outcome.report["warnings"]
    assert "failed to answer" in warning and "api.last_id" in warning


class _PaddedIds(JsonHandler):
    """Ids 1-30 from the offset in pages of 10, every third one written as 20 zero-padded digits."""

    def do_GET(self) -> None:
        offset = int(parse_qs(urlsplit(self.path).query)["offset"][0])
        ids = [i for i in range(max(offset, 1), 31)][:10]
        rows = [{"id": f"{i:020d}" if i % 3 == 0 else i, "item": i % 4} for i in ids]
        following = ids[-1] + 1 if ids and ids[-1] < 30 else None
        self.send_json(200, {"response": rows, "meta": {"next_offset": following}})


@pytest.mark.parametrize("slices", [1, 3])
def test_ids_written_as_zero_padded_digits_are_counted(state_dir: Path, slices: int) -> None:
    """Ids of 20 zero-padded digits were rejected as no ids: 20 of 30 counted, exit 0 (audit W)."""
    outcome = crawl_offset_ids(_PaddedIds, slices, state_dir)
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["records"]["counted"] == 30 and outcome.report["records"]["rejected"] == 0
    top = {row["id"]: row["visits"] for row in outcome.report["windows"]["all"]["top_items"]}
    assert top == dict(collections.Counter(i % 4 for i in range(1, 31)))


class _LastPageAgainPastAGap(JsonHandler):
    """Ids 0-9; an offset from 10 to 19 gets an empty page naming 20; any offset from 20 up gets the page of
    ids 0-9 again, naming the offset 10 further on (an API that serves its last page for any offset past
    its data)."""

    past: ClassVar[list[int]] = []

    def do_GET(self) -> None:
        offset = int(parse_qs(urlsplit(self.path).query)["offset"][0])
        rows = [{"id": i, "item": i % 2} for i in range(10)]
        if offset < 10:
            self.send_json(200, {"response": rows, "meta": {"next_offset": 10}})
        elif offset < 20:
            self.send_json(200, {"response": [], "meta": {"next_offset": 20}})
        else:
            type(self).past.append(offset)
            self.send_json(200, {"response": rows, "meta": {"next_offset": offset + 10}})


def test_the_offset_asked_for_once_served_with_records_already_taken_ends_the_data_with_one_request(
    state_dir: Path,
) -> None:
    """The page there, all of its records taken already, ends the data and is not counted; the page after it
    was fetched ahead and thrown away, two requests where one was said (audit Y)."""
    _LastPageAgainPastAGap.past = []
    overrides = {
        "api": {"page_size": 10, "first_id": 0, "last_id": 1000},
        "fields": {"id": "id", "item": "item"},
        "crawl": {"slices": 1, "workers": 1},
    }
    with serving(_LastPageAgainPastAGap) as base:
        overrides["api"]["url"] = f"{base}/events"
        outcome = run(load_settings(None, "test", environ={}, overrides=overrides), state_dir)
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["records"]["fetched"] == outcome.report["records"]["counted"] == 10
    assert _LastPageAgainPastAGap.past == [20]


@pytest.mark.parametrize("status", [429, 403])
def test_a_failure_at_the_offset_asked_for_once_that_running_again_cannot_mend_stops_the_run(
    state_dir: Path, status: int
) -> None:
    """A 429 past every retry lost its status and read as the end of the data with a warning (exit 4), as
    did a 403, with the advice to run again (audit Z): the run stops (exit 3), as at any other page."""
    overrides = {
        "api": {"page_size": 10, "first_id": 0, "last_id": 10**6},
        "fields": {"id": "id", "item": "item"},
        "crawl": {"slices": 1, "workers": 1, "retries": 1, "max_retry_after": 0.05},
    }
    with serving(_RefusedPastItsData) as base:
        overrides["api"]["url"] = f"{base}/events"
        _RefusedPastItsData.status = status
        outcome = run(load_settings(None, "test", environ={}, overrides=overrides), state_dir)
    assert outcome.exit_code == 3, outcome.message
    assert "offset=35" in (outcome.message or "") and not outcome.report["warnings"]
