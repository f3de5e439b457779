"""Slices and discovering the id space in O(log n) probes."""

from __future__ import annotations

import bisect
import itertools
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lifestats.config import load_settings
from lifestats.errors import ApiError, ConfigError
from lifestats.paginate import INT64_MAX, INT64_MIN, Page, make_paginator
from lifestats.plan import Bounds, discover, find_bounds, plan_slices, split
from mocks.server import MockServer
from mocks.source import ListSource

from .conftest import job_settings, run


def source(ids: list[int], limit: int = 10, below: bool = False):
    """Probe over sorted ids; ``below`` answers with the fixed page covering the offset (Lifesum style)."""
    pages = [ids[i : i + limit] for i in range(0, len(ids), limit)]

    def probe(offset: int) -> Page:
        if below:
            starts = [p[0] for p in pages]
            k = max(bisect.bisect_right(starts, offset) - 1, 0)
            chunk = pages[k] if pages else []
            nxt = pages[k + 1][0] if k + 1 < len(pages) else None
            return Page(offset, [{"id": i} for i in chunk], nxt)
        start = bisect.bisect_left(ids, offset)
        chunk = ids[start : start + limit]
        more = start + limit < len(ids)
        return Page(offset, [{"id": i} for i in chunk], chunk[-1] + 1 if more else None)

    return probe


@given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=300, unique=True), st.booleans())
def test_discovery_finds_first_and_end_in_logarithmic_probes(ids: list[int], below: bool) -> None:
    ids.sort()
    bounds = discover(source(ids, below=below), "id", None, None)
    assert bounds.first_id == ids[0]
    assert bounds.last_id is None
    assert bounds.estimated_end == ids[-1] + 1
    assert bounds.probes <= 4 * math.log2(ids[-1] - ids[0] + 2) + 4


def test_discovery_keeps_configured_bounds() -> None:
    bounds = discover(source([5, 6, 7]), "id", 3, 100)
    assert (bounds.first_id, bounds.last_id, bounds.estimated_end, bounds.probes) == (3, 100, 100, 0)


def test_empty_api() -> None:
    bounds = discover(source([]), "id", None, None)
    assert bounds.first_id == 0


@given(st.integers(0, 2**40), st.integers(1, 10**6), st.integers(1, 200))
def test_split_covers_the_range_exactly(first: int, width: int, count: int) -> None:
    ranges = split(first, first + width, count)
    assert ranges[0][0] == first and ranges[-1][1] == first + width
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert all(b > a for a, b in ranges)
    assert len(ranges) == min(count, width)


def test_open_ended_plan_when_the_end_is_not_configured() -> None:
    slices = plan_slices(Bounds(100, None, 200), 4)
    assert [(s.begin, s.end) for s in slices] == [(100, 125), (125, 150), (150, 175), (175, None)]
    fixed = plan_slices(Bounds(100, 200, 200), 4)
    assert fixed[-1].end == 200


def test_negative_ids_are_discovered() -> None:
    """The first probe asks for the smallest signed 64-bit offset: ids below zero are found."""
    ids = sorted([-5000 + 7 * i for i in range(1000)])
    bounds = discover(source(ids), "id", None, None)
    assert (bounds.first_id, bounds.estimated_end) == (-5000, ids[-1] + 1)


@pytest.mark.parametrize("status", [400, 404, 422, 500, 502])
def test_an_api_that_refuses_negative_offsets_is_probed_from_zero(status: int) -> None:
    ids = list(range(10, 500, 3))
    probe = source(ids)
    asked: list[int] = []

    def strict(offset: int) -> Page:
        asked.append(offset)
        if offset < 0:
            raise ApiError(f"HTTP {status}", status=status)
        return probe(offset)

    bounds = discover(strict, "id", None, None)
    assert asked[:2] == [INT64_MIN, 0]
    assert (bounds.first_id, bounds.estimated_end) == (10, ids[-1] + 1)


@pytest.mark.parametrize("status", [401, 403, 404, 429, None])
def test_a_refused_credential_the_rate_limit_or_a_wrong_url_still_fail_discovery(status: int | None) -> None:
    """401, 403 and 429 fail at once; a 404 at every offset (a wrong URL) fails with the request at 0."""

    def refusing(offset: int) -> Page:
        if status == 404 and offset >= 0:
            raise ApiError(f"HTTP 404 at offset {offset}", status=404)
        if status != 404:
            raise ApiError(f"HTTP {status}", status=status)
        raise ApiError("HTTP 404 at the smallest offset", status=404)

    with pytest.raises(ApiError) as failure:
        discover(refusing, "id", None, None)
    if status == 404:
        assert str(failure.value) == "HTTP 404 at offset 0"


def test_ids_at_the_top_of_the_64_bit_range() -> None:
    ids = [INT64_MAX - 3, INT64_MAX - 1, INT64_MAX]
    bounds = discover(source(ids), "id", None, None)
    assert bounds.first_id == INT64_MAX - 3 and bounds.estimated_end == INT64_MAX + 1
    slices = plan_slices(bounds, 4)
    assert slices[-1].end is None  # the open last slice: no end id above the 64-bit range is ever stored


def paginator(**api: object):  # type: ignore[no-untyped-def]
    settings = load_settings(None, "test", environ={}, overrides={"api": {"url": "https://x.test/e", **api}})
    return make_paginator(settings.api)


def test_positional_bounds_come_from_the_total_in_one_probe() -> None:
    offset = paginator(paginator="offset", total_path="count", page_size=10)
    bounds = find_bounds(lambda k: Page(k, [{"id": k}], k + 1, 95), offset, None, None)
    assert (bounds.first_id, bounds.estimated_end, bounds.probes) == (0, 95, 1)
    pages = paginator(paginator="page_number", total_pages_path="pages", first_page=1)
    bounds = find_bounds(lambda p: Page(p, [{"id": p}] if p >= 1 else [], p + 1, 12), pages, None, None)
    assert (bounds.first_id, bounds.estimated_end) == (1, 13)
    with pytest.raises(ConfigError, match="no total"):
        find_bounds(lambda k: Page(k, [], None, None), offset, None, None)


def test_sequential_styles_plan_one_slice_without_a_request() -> None:
    cursor = paginator(paginator="cursor", cursor_path="next")
    bounds = find_bounds(lambda _: pytest.fail("no request"), cursor, None, None)
    assert [(s.begin, s.end) for s in plan_slices(bounds, 100)] == [(0, None)]


@given(st.integers(0, 10**5), st.integers(1, 10**5), st.integers(1, 50), st.integers(1, 200))
def test_row_slices_start_at_page_boundaries(first: int, width: int, count: int, page: int) -> None:
    ranges = split(first, first + width, count, page)
    assert ranges[0][0] == first and ranges[-1][1] == first + width
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert all(b > a for a, b in ranges)
    assert all((a - first) % page == 0 for a, _ in ranges)


@given(
    st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=300, unique=True),
    st.booleans(),
    st.integers(2, 8),
    st.sampled_from([0.0, 1 / 8, 1 / 64]),
)
def test_parallel_discovery_finds_the_same_range(ids: list[int], below: bool, parallel: int, slack: float) -> None:
    """Several probes at a time find the same first id; the end exactly, or within ``slack`` of the range."""
    ids.sort()
    bounds = discover(source(ids, below=below), "id", None, None, parallel=parallel, slack=slack)
    end = ids[-1] + 1
    assert bounds.first_id == ids[0] and bounds.last_id is None
    if slack == 0:
        assert bounds.estimated_end == end
    else:
        assert end <= bounds.estimated_end <= end + slack * (2 * (end - ids[0]) + 2) + 1
    assert bounds.probes <= parallel * (2 * math.log2(ids[-1] - ids[0] + 2) + 4)


@pytest.mark.parametrize("parallel", [1, 8])
def test_discovery_does_not_probe_what_the_first_page_showed(parallel: int) -> None:
    """Every offset up to the highest id of the first page has a record at or above it: no probe asks."""
    ids = list(range(1000, 400_000, 3))
    probe = source(ids, limit=500)
    asked: list[int] = []

    def recording(offset: int) -> Page:
        asked.append(offset)
        return probe(offset)

    bounds = discover(recording, "id", None, None, parallel=parallel)
    assert (bounds.first_id, bounds.estimated_end) == (ids[0], ids[-1] + 1)
    first_page_top = ids[499]
    assert asked[0] == INT64_MIN
    assert [offset for offset in asked[1:] if offset <= first_page_top] == []


def test_parallel_probes_are_in_flight_together() -> None:
    """The first round's probes wait for one another at a barrier: sent one after the other, they would never
    all arrive (the barrier's timeout would break it and fail the discovery)."""
    import threading

    parallel = 4
    barrier = threading.Barrier(parallel, timeout=30)
    ids = list(range(1000, 50_000, 7))
    probe = source(ids)
    calls = itertools.count()

    def meeting(offset: int) -> Page:
        if 1 <= next(calls) <= parallel:  # after the probe for the lowest offset: the first round
            barrier.wait()
        return probe(offset)

    bounds = discover(meeting, "id", None, None, parallel=parallel)
    assert (bounds.first_id, bounds.estimated_end) == (ids[0], ids[-1] + 1)


def _ascending(ids: list[int], size: int = 3):  # type: ignore[no-untyped-def]
    """An offset_id API over ``ids``: the lowest ``size`` ids at or above the offset, next = the last + 1."""

    def probe(offset: int) -> Page:
        page = [i for i in ids if i >= offset][:size]
        more = bool(page) and page[-1] < ids[-1]
        return Page(offset, [{"id": i} for i in page], page[-1] + 1 if more else None)

    return probe


def test_a_first_page_whose_next_offset_lies_below_its_ids_is_asked_again_then_refused() -> None:
    ids = list(range(5, 21))
    ascending = _ascending(ids)
    glitches = [Page(INT64_MIN, [{"id": 5}, {"id": 6}, {"id": 7}], 6)]  # once: a glitch, not the API's order

    def once_odd(offset: int) -> Page:
        return glitches.pop() if glitches else ascending(offset)

    bounds = find_bounds(once_odd, paginator(), None, None)
    assert bounds.first_id == 5
    newest_first = lambda offset: Page(offset, [{"id": 20}, {"id": 19}, {"id": 18}], 18)  # noqa: E731
    with pytest.raises(ConfigError, match=r"ids 18 to 20 but gives 18 as the next offset"):
        find_bounds(newest_first, paginator(), None, None)


SPARSE = [{"id": 10**9 * k + 7, "item": f"i{k % 3}"} for k in range(1, 21)]


@pytest.mark.parametrize("slices", [1, 3000])
def test_data_on_one_page_is_crawled_as_one_slice_whatever_the_id_range(state_dir: Path, slices: int) -> None:
    """20 records 10^9 ids apart, all on the first page, which says no page follows: one probe past its
    highest id confirms it, and one slice crawls it. A plan of 3,000 slices used to ask 3,018 requests (one
    per slice at least), 100,000 slices ran for minutes."""
    with MockServer(ListSource(SPARSE)) as server:
        settings = job_settings(
            server.url,
            api={"page_size": 100},
            fields={"category": None, "visitor": None, "timestamp": None, "ip": None, "user_agent": None},
            crawl={"slices": slices},
            bots={"ips": [], "user_agents": []},
        )
        outcome = run(settings, state_dir)
        requests = len(server.request_log)
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["records"]["counted"] == len(SPARSE)
    top = {row["id"]: row["visits"] for row in outcome.report["windows"]["all"]["top_items"]}
    assert top == {"i0": 6, "i1": 7, "i2": 7}
    print(f"\n{slices} slices: {requests} requests")
    assert requests <= 6  # the lowest offset (and 0 when refused), the lowest id, one probe past, the slice
    assert outcome.report["run"]["requests"] == requests


@pytest.mark.parametrize("last_id", [1000, 500])
def test_a_last_id_at_or_below_the_lowest_id_is_refused(state_dir: Path, last_id: int) -> None:
    """Ids 1000-1024 and ``api.last_id`` 1000 (exclusive) or 500: no record lies in the range, yet the plan's
    one slice began at the lowest id and counted the record 1000, exit 0 (audit N)."""
    records = [{"id": i, "item": "a"} for i in range(1000, 1025)]
    with MockServer(ListSource(records)) as server:
        settings = job_settings(server.url, api={"page_size": 10, "last_id": last_id})
        outcome = run(settings, state_dir)
    assert outcome.exit_code == 2
    assert f"api.last_id ({last_id:,}) is at or below the lowest id the API serves (1,000)" in (outcome.message or "")
