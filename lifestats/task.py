"""The unit of work: crawl one slice from its position, count its pages, flush every few pages.

:func:`crawl_slice` is a plain function of the task, a page fetcher, a counter and a flush callback,
so the local process pool and a cluster executor run the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .count import PageCounter, SliceCursor
from .fetch import ApiClient, Page
from .merge import Flush
from .plan import Slice
from .stats import Partial


@dataclass(frozen=True)
class Split:
    """A worker's answer to a proposal to end its slice at ``new_end`` (the rest becomes a new slice)."""

    slice: int
    attempt: int
    new_end: int
    accepted: bool


@dataclass(frozen=True)
class Task:
    slice: Slice
    attempt: int
    position: Any  # where the crawl goes on (a JSON value); for offsets by id, the offset to request next
    high_water: int | None
    seq: int  # the last committed flush of the slice


def slice_finished(page: Page, end: int | None, id_field: str) -> bool:
    """True when no record of ``[.., end)`` can follow this page."""
    if page.next_offset is None or not page.records:
        return True
    if end is None:
        return False
    if page.next_offset >= end:
        return True
    last = page.records[-1]
    rid = last.get(id_field) if isinstance(last, dict) else None
    return isinstance(rid, int) and not isinstance(rid, bool) and rid >= end


def crawl_slice(
    task: Task,
    client: ApiClient,
    counter: PageCounter,
    flush_every: int,
    emit: Callable[[Flush | Split], None],
    proposals: Callable[[], int | None] = lambda: None,
) -> None:
    """Crawl ``task.slice`` from ``task.position`` to its end, emitting a :class:`Flush` every
    ``flush_every`` pages and one last flush (``position`` None) when the slice is done.

    Between pages it asks ``proposals`` whether the coordinator wants to cut the slice short so that
    an idle worker can take its remaining range, and answers each proposal with a :class:`Split`.
    """
    high_water = task.high_water if task.high_water is not None else task.slice.begin - 1
    cursor = SliceCursor(task.slice.begin, task.slice.end, high_water)
    offset: int | None = task.position
    seq = task.seq
    partial = Partial()
    pages = 0
    counts = client.counts
    requests0, retries0 = counts.requests, counts.retries
    while offset is not None:
        new_end = proposals()
        if new_end is not None:
            accepted = new_end > max(offset, cursor.high_water) and (cursor.end is None or new_end < cursor.end)
            if accepted:
                cursor.end = new_end
            emit(Split(task.slice.index, task.attempt, new_end, accepted))
        page = client.get_page(offset)
        counter.count_page(partial, page.records, offset, cursor)
        pages += 1
        offset = None if slice_finished(page, cursor.end, counter.id_field) else page.next_offset
        if offset is None or pages == flush_every:
            seq += 1
            emit(
                Flush(
                    slice=task.slice.index,
                    attempt=task.attempt,
                    seq=seq,
                    position=offset,
                    high_water=cursor.high_water,
                    pages=pages,
                    requests=counts.requests - requests0,
                    retries=counts.retries - retries0,
                    partial=partial.to_bytes(),
                )
            )
            partial, pages = Partial(), 0
            requests0, retries0 = counts.requests, counts.retries
