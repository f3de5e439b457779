"""The crawl -> slices, and finding what the config does not give: the id range, or the total.

How a crawl can be cut depends on the API's pagination style (:attr:`Paginator.slicing`):

- by id (``offset_id``, ``keyset``): a slice ``[begin, end)`` counts exactly the records with
  ``begin <= id < end``. Discovery finds the smallest id (negative ids included) and the end of the
  id space in O(log n) probes of a single function, ``probe(offset) -> Page``, so it knows nothing about
  HTTP, and it copes with servers that answer an offset with a page whose records lie below it.
- by position (``offset``, ``page_number`` with a total): a slice is a range of row positions or page
  numbers; discovery is one request that reads the total.
- sequential (everything else): one slice ``[0, None)``, no discovery.

``end`` None is open: crawl until the API has no next page.
"""

from __future__ import annotations

import bisect
import collections
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Final

from .errors import ApiError, ConfigError
from .paginate import INT64_MAX, INT64_MIN, Page, Paginator, record_ids


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
    # Ids discovery saw on the API's pages (the highest of each probe's page, ascending): records that
    # exist, so a slice whose crawl ended below one of them missed records (see :func:`early_ends`).
    known_ids: tuple[int, ...] = ()
    # The API's first page held all its records (it said no page follows, and a probe past its highest id
    # found nothing): one slice crawls them, where every slice of a plan costs a request at least.
    one_page: bool = False
    # Where discovery found the lowest id (the lowest offset the API takes), when the config gives no
    # first_id: the lowest slice starts its crawl there, so that records without a usable id served
    # before the first id are counted (rejected) too.
    floor: int | None = None


def split(first_id: int, end: int, count: int, align: int = 1) -> list[tuple[int, int]]:
    """``[first_id, end)`` cut into at most ``count`` contiguous, non-empty ranges of near-equal width,
    each starting ``first_id`` plus a multiple of ``align`` (a page of rows, so no page straddles two)."""
    units = -(-(end - first_id) // align)
    count = max(1, min(count, units))
    cuts = [first_id + (units * i) // count * align for i in range(count)] + [end]
    return [(cuts[i], cuts[i + 1]) for i in range(count)]


def plan_slices(bounds: Bounds, count: int, align: int = 1) -> list[Slice]:
    """Slices over the bounds; the last one is open when the API's end is not fixed."""
    end = max(bounds.estimated_end, bounds.first_id + 1)
    ranges = split(bounds.first_id, end, 1 if bounds.one_page else count, align)
    slices = [Slice(i, begin, stop) for i, (begin, stop) in enumerate(ranges)]
    if bounds.last_id is None:
        last = slices[-1]
        slices[-1] = Slice(last.index, last.begin, None)
    return slices


def _ids(page: Page, id_field: str) -> list[int]:
    return record_ids(page.records, id_field)


def find_bounds(
    probe: Callable[[int], Page],
    paginator: Paginator,
    first_id: int | None,
    last_id: int | None,
    *,
    parallel: int = 1,
    slack: float = 0.0,
    probe_once: Callable[[int], Page] | None = None,
) -> Bounds:
    """What the slices need, per the paginator's style: the id range, the total, or nothing.

    ``parallel`` and ``slack``: see :func:`discover` (``probe`` must then be safe to call from threads).
    ``probe_once``: ``probe`` without retries, for pages the API may refuse (see :meth:`Paginator.confirm`)."""
    if paginator.slicing == "id":
        # The lowest id, once found, is asked for by itself (Paginator.confirm_first_id) beside the probes
        # that seek the end, so that the check costs the limit a slot and no wait.
        checking = ThreadPoolExecutor(1, thread_name_prefix="confirm") if parallel > 1 else None
        checks: list[Future[None]] = []
        found: list[int] = []

        def found_first(lowest: int) -> None:
            found.append(lowest)
            if checking is not None:
                checks.append(checking.submit(paginator.confirm_first_id, lowest, probe))

        try:
            bounds = discover(
                probe, paginator.id_field, first_id, last_id, parallel=parallel, slack=slack, found_first=found_first
            )
            for check in checks:
                check.result()
        finally:
            if checking is not None:
                checking.shutdown(wait=True, cancel_futures=True)
        if checking is None:
            for lowest in found:
                paginator.confirm_first_id(lowest, probe)
        return replace(bounds, probes=bounds.probes + len(found))
    start = paginator.first()
    if paginator.slicing == "sequential":
        return Bounds(start, None, start + 1, 0)
    page = probe(start)
    if page.total is None:  # the paginator reads the total its config names, or says why not
        where = paginator.describe(start)
        raise ConfigError(f"the API gave no total at {where}: set api.total_path or api.total_header")
    paginator.confirm(page, probe, probe_once)
    return Bounds(start, None, start + max(page.total, 1), 1)


def _newest_first(page: Page, ids: list[int]) -> bool:
    """Whether a page's next offset lies below an id of the page: ascending ids from the offset put every
    id of a page below its next offset (keyset derives it so); an API that serves its newest records first
    does not."""
    following = page.next_offset
    return isinstance(following, int) and not isinstance(following, bool) and bool(ids) and following < max(ids)


def _inside(known: set[int], first_id: int, end: int | None) -> tuple[int, ...]:
    return tuple(sorted(k for k in known if k >= first_id and (end is None or k < end)))


def early_ends(
    slices: Iterable[tuple[Slice, int | None, bool]], known_ids: Sequence[int]
) -> list[tuple[int, int, int]]:
    """The done slices of an id crawl that stopped below a record discovery saw in their range, as
    (slice index, the highest id the slice took, the lowest such id). ``slices``: (slice, high-water mark,
    done). A crawl by id ends when the API says its data ends (no next offset, an empty page); an API
    that says so below an id it has shown has records the crawl never fetched: a next path the answers
    lack (a wrong ``api.next_offset_path`` reads as the end of the data on a page that is not full), or
    records deleted while the crawl ran."""
    found = []
    for piece, high_water, done in slices:
        if not done:
            continue
        floor = piece.begin - 1 if high_water is None else high_water
        at = bisect.bisect_right(known_ids, floor)
        if at < len(known_ids) and (piece.end is None or known_ids[at] < piece.end):
            found.append((piece.index, floor, known_ids[at]))
    return found


def slice_alignment(paginator: Paginator) -> int:
    """Row-position slices start at a page boundary; ids and page numbers need no alignment."""
    return paginator.api.page_size if paginator.style == "offset" else 1


# Pages of records without a usable id that discovery follows from the first page to find the first id.
IDLESS_PAGES: Final = 10


def _lowest(probe: Callable[[int], Page]) -> tuple[Page, int]:
    """The page at the lowest offset the API takes: the smallest signed 64-bit one, else 0.

    An API whose ids may be negative answers the smallest offset with its first page; one that refuses
    negative offsets has no negative ids, and its first page is at 0. APIs refuse it in many ways (400,
    422, a 404 "no such page", a 500 from a parser that never expected it): any HTTP error but a refused
    credential or the rate limit is read as such a refusal. A URL that is wrong fails at 0 too, with the
    error of that request.
    """
    try:
        return probe(INT64_MIN), 1
    except ApiError as exc:
        if exc.status is None or exc.status in (401, 403, 429):
            raise
    return probe(0), 2


def discover(
    probe: Callable[[int], Page],
    id_field: str,
    first_id: int | None,
    last_id: int | None,
    *,
    parallel: int = 1,
    slack: float = 0.0,
    found_first: Callable[[int], None] | None = None,
) -> Bounds:
    """Fill in what the config leaves out, in O(log n) probes.

    ``first_id``: the smallest id of the page at offset 0. The end: the smallest offset above every
    record, found by doubling then bisecting on "does anything exist at or above this offset", which a
    page answers with a record id at or above it, or with a next page.

    ``parallel`` probes go out at a time (each round of doubling then tries that many powers of two, each
    round of bisection that many evenly spaced offsets), so that discovery keeps the rate limit busy
    instead of waiting on one answer after the other. ``slack``: bisection stops once the end is known
    to within that share of the id range (the estimated end is then an upper bound; the last slice is
    open anyway, so this only shapes the plan). ``found_first``: called with the lowest id once a page has
    shown it (not when the config gives ``first_id``), while the end is still being sought.
    """
    probes = 0
    known: set[int] = set()
    # Twice ``parallel`` threads: a bisection round goes out while the doubling's last probes are answered.
    pool = ThreadPoolExecutor(2 * parallel, thread_name_prefix="probe") if parallel > 1 else None

    def at(offset: int) -> tuple[bool, int | None]:
        page = probe(min(offset, INT64_MAX))
        ids = _ids(page, id_field)
        top = max(ids) if ids else None
        if top is not None:
            known.add(top)
        more = (top is not None and top >= offset) or page.next_offset is not None
        return more, top

    def round_of(offsets: list[int]) -> list[tuple[bool, int | None]]:
        nonlocal probes
        probes += len(offsets)
        if pool is None or len(offsets) == 1:
            return [at(offset) for offset in offsets]
        return list(pool.map(at, offsets))

    floor: int | None = None
    try:
        highest_seen: int | None = None
        ends_there = False  # the first page said no page follows it
        if first_id is None:
            page, used = _lowest(probe)
            probes += used
            floor = page.position
            ids = _ids(page, id_field)
            # A first page of records without a usable id, or of none (an API that pages by id windows, whose
            # lowest window is empty) that names a next offset: the first id is on a page after it.
            for _ in range(IDLESS_PAGES):
                if ids or page.next_offset is None:
                    break
                page = probe(page.next_offset)
                probes += 1
                ids = _ids(page, id_field)
            if not ids:
                if not page.records and page.next_offset is not None:
                    raise ConfigError(
                        f"the API answered {probes} pages from its lowest offset with no record, each naming a next "
                        f"offset (the last: {page.next_offset}): an API that pages by id windows has its first "
                        "records further on; set api.first_id to its lowest id"
                    )
                return Bounds(0, last_id, last_id or 1, probes, floor=floor)
            if _newest_first(page, ids):  # asked once more: a glitch of one answer is not the API's order
                page = probe(page.position)
                probes += 1
                ids = _ids(page, id_field) or ids
            first_id, highest_seen = min(ids), max(ids)
            following = page.next_offset
            if _newest_first(page, ids):
                raise ConfigError(
                    f"the API's first page holds ids {first_id:,} to {highest_seen:,} but gives {following:,} as "
                    "the next offset: it does not serve its records in ascending id order from the offset "
                    "(newest first?), which crawling by id needs; use api.paginator offset, page_number, cursor, "
                    "next_url or link_header, which page by position"
                )
            known.add(highest_seen)
            ends_there = following is None
            if found_first is not None:
                found_first(first_id)
        if last_id is not None:
            if first_id >= last_id:  # (a configured first_id is below last_id: the config checks it)
                raise ConfigError(
                    f"api.last_id ({last_id:,}) is at or below the lowest id the API serves ({first_id:,}): no "
                    "record lies below it (it is exclusive); raise api.last_id, or leave it out to crawl to the end"
                )
            return Bounds(first_id, last_id, last_id, probes, _inside(known, first_id, last_id), floor=floor)
        if ends_there and highest_seen is not None and highest_seen < INT64_MAX:
            # One probe past the first page tells whether it said the truth (an API whose next offset sits
            # elsewhere than api.next_offset_path answers it with records): the whole range is then known.
            more, top = round_of([highest_seen + 1])[0]
            if not more:
                known_ids = _inside(known, first_id, None)
                return Bounds(first_id, None, highest_seen + 1, probes, known_ids, one_page=True, floor=floor)
            highest_seen = max(highest_seen, top) if top is not None else highest_seen
        # Doubling: find an offset with nothing at or above it. Offsets up to the highest id the first
        # page showed are known to have something at or above them: the doubling starts past it.
        highest_seen = first_id if highest_seen is None else highest_seen
        high: int | None = None
        leftovers: list[Future[tuple[bool, int | None]]] = []
        if pool is None:
            low = highest_seen  # something exists at or above `low`
            step = 1
            while high is None:
                if low + step > INT64_MAX:  # something at the very top of the id space: the end is its edge
                    high = INT64_MAX + 1
                    break
                more, top = round_of([low + step])[0]
                if top is not None:
                    highest_seen = max(highest_seen, top)
                if not more:
                    high = low + step
                    break
                low = max(low + step, highest_seen)
                step *= 2
        else:
            # Pipelined: first_id + 2**k for k = p, p + 1, ... (p: the first power past the highest id seen)
            # go out while earlier answers are awaited, ``parallel`` at most in flight; the first offset
            # with nothing at or above it ends the stream.
            flying: collections.deque[tuple[int, Future[tuple[bool, int | None]]]] = collections.deque()
            power = (highest_seen - first_id).bit_length()  # first_id + 2**power > highest_seen
            while high is None:
                while len(flying) < parallel and first_id + 2**power <= INT64_MAX:
                    offset = first_id + 2**power
                    flying.append((offset, pool.submit(at, offset)))
                    probes += 1
                    power += 1
                if not flying:
                    high = INT64_MAX + 1  # something at the very top of the id space: the end is its edge
                    break
                offset, answer = flying.popleft()
                more, top = answer.result()
                if top is not None:
                    highest_seen = max(highest_seen, top)
                if not more:
                    high = offset
            # Probes past the end still in flight: their answers are awaited after the bisection, whose
            # probes go out behind them at once rather than one round trip later.
            leftovers = [answer for _, answer in flying]
        # Bisect in (low, high]: the smallest offset with nothing at or above it.
        low = max(highest_seen, first_id)
        resolution = max(1, int(slack * (high - first_id)))
        while high - low > resolution:
            width = high - low
            offsets = sorted({low + width * k // (parallel + 1) for k in range(1, parallel + 1)} - {low})
            for offset, (more, top) in zip(offsets, round_of(offsets), strict=True):
                if top is not None:
                    highest_seen = max(highest_seen, top)
                if not more:
                    high = offset
                    break
                low = max(offset, highest_seen)
            low = max(low, highest_seen)
        for answer in leftovers:  # sent already: they count, and their answers are still facts
            _, top = answer.result()
            if top is not None:
                highest_seen = max(highest_seen, top)
        known_ids = _inside(known, first_id, None)
        return Bounds(first_id, None, max(high, highest_seen + 1), probes, known_ids, floor=floor)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
