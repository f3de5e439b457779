"""The unit of work: crawl one slice from its position, count its pages, flush every few pages.

The client's paginator says how to page; this module says which records belong to the slice (by id
for the id styles, by row or page for the positional ones, all of them for a sequential crawl).

:func:`crawl_slice` is a plain function of the task, a page fetcher, a counter and a flush callback,
so the local process pool and a cluster executor run the same code.
"""

from __future__ import annotations

import collections
import functools
import queue
import threading
from collections.abc import Callable
from typing import Any

import orjson

from .count import PageCounter, SliceCursor
from .decode import RECORD_TYPES
from .errors import ApiError
from .fetch import ApiClient, Page
from .paginate import DataEnd, same_records
from .protocol import Flush, Split, StopRequested, Task
from .sanity import PEEKS_FAILED
from .seen import SeenIds, encode_ids
from .stats import Partial

# A split is accepted only when each half would keep at least this many pages (estimated from the ids
# the last page spanned): a smaller half costs a request more than it saves.
MIN_SPLIT_PAGES = 1

# Slices that start together would flush together (every worker counting and serialising at the same
# moment, none asking for its next page): a slice's first flush comes after a share of ``flush_every``
# pages that differs from slice to slice (multiples of the golden ratio, so any few consecutive slices
# are spread over the interval), its later flushes every ``flush_every`` pages.
_PHASE_STEP = 0.6180339887498949


def first_flush_after(index: int, flush_every: int) -> int:
    """Pages before a slice's first flush: between 1 and ``flush_every``, staggered by slice index."""
    return flush_every - int((index * _PHASE_STEP) % 1.0 * flush_every)


# A sequential crawl remembers this many of its last positions to refuse a next reference that loops.
LOOP_MEMORY = 10_000
# A slice stops (exit 3) after this many pages in a row that serve the same records again and bring
# nothing new (every one a record the slice already took, or below where it starts): an API whose next
# reference moves on without moving past its records (an offset that creeps up by one, a new cursor for
# the same page). Pages of other records already taken (an API sorted by a field that changed during
# the crawl serves them again at its end) do not count: their crawl moves on.
STUCK_PAGES = 20
# Answers to a sequential crawl's next reference (not its first page) that say the API no longer takes it.
REFUSED_REFERENCE = frozenset({400, 404, 410, 422})


class _Positions:
    """The positions a slice's crawl went through, to stop a next reference that leads back (a loop)."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._order: collections.deque[str] = collections.deque()

    def visit(self, position: Any, where: str) -> None:
        key = orjson.dumps(position, option=orjson.OPT_SORT_KEYS).decode()
        if key in self._seen:
            raise ApiError(f"the API's next reference leads back to {where}, a page already crawled: it would loop")
        self._seen.add(key)
        self._order.append(key)
        if len(self._order) > LOOP_MEMORY:
            self._seen.discard(self._order.popleft())


_Answer = tuple[Page | None, BaseException | None]  # a page, or the failure that is raised where it is taken


class _Ahead:
    """What both ways of fetching share: the page asked for can be looked at (:meth:`peek`) before it is
    taken (:meth:`take`), with one request either way."""

    _held: _Answer | None = None  # the answer to the page asked for, once fetched

    def take(self) -> Page:
        page, error = self._answer()
        self._held = None
        self._taken()
        if error is not None:
            raise error
        assert page is not None
        return page

    def peek(self) -> Page | None:
        """The page asked for, without taking it (None: it failed; the failure is raised where it is taken)."""
        return self._answer()[0]

    def _answer(self) -> _Answer:
        if self._held is None:
            self._held = self._fetch()
        return self._held

    def _fetch(self) -> _Answer:
        raise NotImplementedError

    def _taken(self) -> None:
        pass


class _Prefetch(_Ahead):
    """Fetches one page ahead on a thread of its own, so that waiting on the API overlaps counting.

    At most one request is in flight, and pages are asked for in crawl order, so the limiter sees the
    same sequence of requests as without it. A failure is raised where the page is taken.
    """

    def __init__(self, client: ApiClient) -> None:
        self._client = client
        self._asks: queue.SimpleQueue[tuple[Any, int | None] | None] = queue.SimpleQueue()
        self._answers: queue.SimpleQueue[_Answer] = queue.SimpleQueue()
        self._pending = False
        self._thread = threading.Thread(target=self._serve, name="prefetch", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while (ask := self._asks.get()) is not None:
            try:
                self._answers.put((self._client.get_page(*ask), None))
            except BaseException as exc:  # handed to the crawl, which raises it
                self._answers.put((None, exc))

    def ask(self, position: Any, end: int | None) -> None:
        assert not self._pending, "one page ahead at most"
        self._pending = True
        self._asks.put((position, end))

    def _fetch(self) -> _Answer:
        return self._answers.get()

    def _taken(self) -> None:
        self._pending = False

    def close(self, wait: bool) -> None:
        """Stop the thread once its request (if any) has ended; its page, if any, is dropped.

        ``wait``: until it has ended, so that no request of this slice outlives it on the same client.
        """
        self._asks.put(None)
        if wait and self._pending:
            self._thread.join()


class _InPlace(_Ahead):
    """The same calls as :class:`_Prefetch`, fetching on the calling thread when the page is taken."""

    def __init__(self, client: ApiClient) -> None:
        self._client = client
        self._ask: tuple[Any, int | None] | None = None

    def ask(self, position: Any, end: int | None) -> None:
        self._ask, self._held = (position, end), None

    def _fetch(self) -> _Answer:
        assert self._ask is not None
        try:
            return self._client.get_page(*self._ask), None
        except Exception as exc:  # raised where the page is taken
            return None, exc

    def _taken(self) -> None:
        self._ask = None

    def close(self, wait: bool) -> None:
        self._ask = self._held = None


def crawl_slice(
    task: Task,
    client: ApiClient,
    counter: PageCounter,
    flush_every: int,
    emit: Callable[[Flush | Split], None],
    proposals: Callable[[], int | None] = lambda: None,
    *,
    prefetch: bool = True,
) -> None:
    """Crawl ``task.slice`` from ``task.position`` to its end, emitting a :class:`Flush` every
    ``flush_every`` pages (the first one sooner, staggered by slice: :func:`first_flush_after`) and one
    last flush (``position`` None) when the slice is done.

    Between pages it asks ``proposals`` whether the coordinator wants to cut the slice short so that
    an idle worker can take its remaining range. A proposal names the id the coordinator expects the
    slice to reach (its end, or the estimated end of the id range for the open last slice); the worker
    halves what is left between where it really is (ahead of its last committed flush) and that id,
    and answers with a :class:`Split` naming the end it chose. It refuses when less than
    :data:`MIN_SPLIT_PAGES` pages would be left on either side, or when it cannot cut (a sequential
    crawl, which has no range).

    The next page is requested as soon as the paginator has read the current one (which gives the next
    position), and counted after the current one: waiting on the API overlaps counting. A page fetched
    before a split is counted against the slice's new end, so nothing past it is counted; a flush's
    position is always the first page not yet counted, so a resume redoes the page fetched ahead.
    ``prefetch=False`` fetches on the calling thread, one page after the other (for a client or limiter
    that only works on the thread that runs the task, such as one that asks a Dask scheduler).
    """
    ahead = _Prefetch(client) if prefetch else _InPlace(client)
    try:
        _crawl(task, client, counter, flush_every, emit, proposals, ahead)
    except StopRequested:
        ahead.close(wait=False)  # the run is stopping: do not wait for the page asked for ahead
        raise
    except Exception:
        ahead.close(wait=True)  # the worker's next task uses the same client
        raise
    except BaseException:
        ahead.close(wait=False)  # the process is stopping: do not wait for the API
        raise
    ahead.close(wait=False)  # nothing is in flight after the slice's last page


def _crawl(
    task: Task,
    client: ApiClient,
    counter: PageCounter,
    flush_every: int,
    emit: Callable[[Flush | Split], None],
    proposals: Callable[[], int | None],
    prefetch: _Prefetch | _InPlace,
) -> None:
    paginator = client.paginator
    by_id = paginator.slicing == "id"
    high_water = task.high_water if task.high_water is not None else task.slice.begin - 1
    ids = SliceCursor(task.slice.begin, task.slice.end, high_water, lowest=task.lowest)
    recent = SeenIds.restore(task.taken)  # the ids of the committed flushes of the slice
    loops = _Positions()
    position: Any = task.position
    end = task.slice.end
    seq = task.seq
    partial = Partial()
    pages = 0
    due = first_flush_after(task.slice.index, flush_every)
    counts = client.counts
    requests0, retries0 = counts.requests, counts.retries
    sequential = paginator.slicing == "sequential"
    if position is not None:
        if sequential:
            loops.visit(position, paginator.describe(position))
        prefetch.ask(position, end)
    loop: ApiError | None = None  # a next reference that leads back, raised where its page would be taken
    stuck = 0  # pages in a row that served the same records again and brought nothing new
    last_ids: list[str] | None = None  # the ids of the last page that brought nothing new
    stride = 0  # ids the last page spanned (by id): how much a page covers
    data_end = DataEnd(paginator, task.horizon if by_id else None, task.known if by_id else None)

    def flush(position: Any) -> None:
        """Emit what was counted since the last flush; ``position``: the first page not counted."""
        nonlocal seq, partial, pages, due, requests0, retries0
        requests, retries = counts.requests, counts.retries  # read once: the prefetch may add to them
        seq += 1
        counter.settle(partial)
        emit(
            Flush(
                slice=task.slice.index,
                attempt=task.attempt,
                seq=seq,
                position=position,
                high_water=ids.high_water if by_id else None,
                pages=pages,
                requests=requests - requests0,
                retries=retries - retries0,
                partial=partial.to_bytes(),
                taken=b"" if by_id else encode_ids(recent.take_fresh()),
            )
        )
        partial, pages, due = Partial(), 0, flush_every
        requests0, retries0 = requests, retries

    try:
        while position is not None:
            until = proposals()
            if until is not None:
                at = paginator.progress(position)
                # by id: past what was counted; by position: past the page already asked for
                floor = max(at, ids.high_water + 1) if by_id and at is not None else at
                if not by_id and floor is not None:
                    floor += paginator.span()
                new_end, accepted = _halve(floor, end, until, stride)
                if accepted:
                    end = ids.end = new_end
                emit(Split(task.slice.index, task.attempt, new_end, accepted))
            if loop is not None:
                raise loop
            data_end.taking(position)
            try:
                page = prefetch.take()
            except ApiError as exc:
                if data_end.refused(exc):
                    page = Page(position, [], None)  # the API refuses a page past its data: the data ends
                elif data_end.failed_past_the_data(exc):
                    partial.records[PEEKS_FAILED] += 1  # the data ends here too, and the report says so
                    page = Page(position, [], None)
                elif sequential and isinstance(position, dict) and exc.status in REFUSED_REFERENCE:
                    raise ApiError(
                        f"{exc}: the API refused the {paginator.describe(position)} it gave with the page before (a "
                        "reference that expired, as the cursors of many APIs do after a while)",
                        status=exc.status,
                        fresh=True,
                    ) from exc
                else:
                    raise
            next_position = data_end.next_position(page, end)
            # Fetched while this page is counted; after, for the offset asked for once past an empty page: a
            # page there that brings nothing new ends the data, and its next page is not asked for.
            ask_later = data_end.peeking
            if next_position is not None and not ask_later:
                try:
                    if sequential:
                        loops.visit(next_position, paginator.describe(next_position))
                    prefetch.ask(next_position, end)
                except ApiError as exc:
                    loop = exc
            tally = partial.records
            fetched, duplicates, received = tally["fetched"], tally["duplicates"], tally["received"]
            if by_id:
                counter.count_page(partial, page.records, page.position, ids)
            else:
                at = paginator.progress(position)
                room = None
                if paginator.style == "offset" and end is not None and at is not None:
                    room = end - at  # the rows of the page that still lie inside the slice
                counter.count_rows(partial, page.records, room, recent)
            nothing_new = tally["fetched"] - fetched == tally["duplicates"] - duplicates
            asked = next_position is not None and loop is None and not ask_later
            next_serves_it = functools.partial(_serves_again, prefetch, page, paginator.id_field, asked)
            if data_end.served_again(page, nothing_new, next_serves_it):  # the API's answer past its data: not counted
                tally["fetched"], tally["duplicates"], tally["received"] = fetched, duplicates, received
                next_position = None
            if ask_later and next_position is not None:
                prefetch.ask(next_position, end)  # (by id: no reference that could lead back)
            if page.records and next_position is not None and nothing_new:
                page_ids = sorted(_id_text(record, paginator.id_field) for record in page.records)
                stuck = stuck + 1 if page_ids == last_ids else 1
                last_ids = page_ids
            else:
                stuck, last_ids = 0, None
            if stuck >= STUCK_PAGES and loop is None:
                loop = ApiError(
                    f"the API's last {stuck} pages served the same records again and brought nothing new (every "
                    f"one a record this slice had already taken, or outside it), though its next reference moved "
                    f"on each time, now to {paginator.describe(next_position)}: it does not move past its "
                    "records, so the crawl would not end"
                )
            pages += 1
            if next_position is not None and position is not None:
                step = paginator.progress(next_position), paginator.progress(position)
                if step[0] is not None and step[1] is not None:
                    stride = step[0] - step[1]
            position = next_position
            # Never stored as a position: the offset asked for once past an empty page (a resume would take
            # it for a page of the data); the flush waits for its answer.
            if position is None or (pages >= due and not data_end.peek_ahead):
                flush(position)
    except (ApiError, StopRequested):
        # What was counted is kept: a resume starts at the page that failed, or that was not taken because
        # the worker was asked to stop, not at the last flush; at the empty page before an offset asked for
        # once, which a resume asks for once again.
        if pages:
            flush(data_end.resume_at(position))
        raise


def _serves_again(prefetch: _Ahead, page: Page, id_field: str, asked: bool) -> bool:
    """Whether the page asked for after ``page`` (``asked``: one was) holds ``page``'s records again; True
    when none was asked for, or it failed (its failure is raised where it is taken, if it is)."""
    following = prefetch.peek() if asked else None
    return following is None or same_records(page, following, id_field)


def _id_text(record: Any, id_field: str) -> str:
    """A record's id as text, to compare two pages' records (a record that is no object: itself)."""
    return repr(record.get(id_field) if isinstance(record, RECORD_TYPES) else record)


def _halve(floor: int | None, end: int | None, until: int, stride: int) -> tuple[int, bool]:
    """Where to end a slice that is asked to hand over half of what is left up to ``until`` (its end, or
    the coordinator's estimate for an open one): the middle between ``floor``, the first id (or row, or
    page) the slice may still count, and ``until``, if both halves keep :data:`MIN_SPLIT_PAGES` pages'
    worth (``stride``: what the last page spanned). None: a crawl that cannot be cut."""
    if floor is None:
        return until, False
    target = until if end is None else min(until, end)
    new_end = floor + (target - floor) // 2
    room = MIN_SPLIT_PAGES * max(stride, 1)
    accepted = new_end - floor >= room and target - new_end >= room and (end is None or new_end < end)
    return new_end, accepted
