"""Slices and discovering the id space in O(log n) probes."""

from __future__ import annotations

import bisect
import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from lifestats.fetch import Page
from lifestats.plan import Bounds, discover, plan_slices, split


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


@given(st.lists(st.integers(0, 2**40), min_size=1, max_size=300, unique=True), st.booleans())
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
