"""The id space -> slices, and finding the id space when the config does not give it.

A slice ``[begin, end)`` counts exactly the records with ``begin <= id < end``; ``end`` None is open
(crawl until the API has no next page). Discovery works with a single function, ``probe(offset) ->
Page``, so it knows nothing about HTTP, and it copes with servers that answer an offset with a page
whose records lie below it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .fetch import Page


@dataclass(frozen=True)
class Slice:
    index: int
    begin: int
    end: int | None


@dataclass(frozen=True)
class Bounds:
    first_id: int
    last_id: int | None  # exclusive; None: open-ended
    estimated_end: int  # a best guess of the end, for the plan and the progress bar
    probes: int = 0


def split(first_id: int, end: int, count: int) -> list[tuple[int, int]]:
    """``[first_id, end)`` cut into at most ``count`` contiguous, non-empty ranges of near-equal width."""
    width = end - first_id
    count = max(1, min(count, width))
    cuts = [first_id + (width * i) // count for i in range(count + 1)]
    return [(cuts[i], cuts[i + 1]) for i in range(count)]


def plan_slices(bounds: Bounds, count: int) -> list[Slice]:
    """Slices over the bounds; the last one is open when the API's end is not fixed."""
    end = max(bounds.estimated_end, bounds.first_id + 1)
    ranges = split(bounds.first_id, end, count)
    slices = [Slice(i, begin, stop) for i, (begin, stop) in enumerate(ranges)]
    if bounds.last_id is None:
        last = slices[-1]
        slices[-1] = Slice(last.index, last.begin, None)
    return slices


def _ids(page: Page, id_field: str) -> list[int]:
    return [
        r[id_field]
        for r in page.records
        if isinstance(r, dict) and isinstance(r.get(id_field), int) and not isinstance(r.get(id_field), bool)
    ]


def discover(
    probe: Callable[[int], Page],
    id_field: str,
    first_id: int | None,
    last_id: int | None,
) -> Bounds:
    """Fill in what the config leaves out, in O(log n) probes.

    ``first_id``: the smallest id of the page at offset 0. The end: the smallest offset above every
    record, found by doubling then bisecting on "does anything exist at or above this offset", which a
    page answers with a record id at or above it, or with a next page.
    """
    probes = 0

    def at(offset: int) -> tuple[bool, int | None]:
        nonlocal probes
        probes += 1
        page = probe(offset)
        ids = _ids(page, id_field)
        top = max(ids) if ids else None
        more = (top is not None and top >= offset) or page.next_offset is not None
        return more, top

    if first_id is None:
        probes += 1
        ids = _ids(probe(0), id_field)
        if not ids:
            return Bounds(0, last_id, last_id or 1, probes)
        first_id = min(ids)
    if last_id is not None:
        return Bounds(first_id, last_id, last_id, probes)
    # Doubling: find an offset with nothing at or above it.
    low = first_id  # something exists at or above `low`
    highest_seen = first_id
    step = 1
    while True:
        more, top = at(low + step)
        if top is not None:
            highest_seen = max(highest_seen, top)
        if not more:
            high = low + step
            break
        low = max(low + step, highest_seen)
        step *= 2
    # Bisect in (low, high]: smallest offset with nothing at or above it.
    low = highest_seen
    while high - low > 1:
        mid = (low + high) // 2
        more, top = at(mid)
        if top is not None:
            highest_seen = max(highest_seen, top)
        if more:
            low = max(mid, highest_seen)
        else:
            high = mid
    return Bounds(first_id, None, max(high, highest_seen + 1), probes)
