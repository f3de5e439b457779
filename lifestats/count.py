"""Records -> partial statistics.

:class:`PageCounter` is the one place that looks inside records: it validates each one (SPEC section 2),
drops bots, de-duplicates ids within a slice and adds the rest to a :class:`~lifestats.stats.Partial`,
one page at a time: the page's counted records become one :class:`~lifestats.statistics.Columns`
(item, category, visitor, local day, series bucket) handed to the partial's statistics, exact or approx
(a worker's counter holds pages back and hands them over in batches: :meth:`PageCounter.settle`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeGuard
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import orjson

from .bots import BotFilter
from .columnar import FastCounter, FastPage, FieldNames, column, joined, select_by_id, usable_mask
from .config import Settings
from .decode import Record, as_dict
from .paginate import int_id
from .sanity import FIELDS_CHECKED, having, judged_fields
from .seen import SeenIds
from .statistics import FUTURE, NO_BUCKET, NO_TIME, Columns, concatenated
from .stats import Key, Partial, new_statistics
from .timeline import END_INSTANT, FIRST_INSTANT, MICROS, Buckets, Clock, Windows, epoch_micros

MAX_REJECT_SAMPLES = 100
COLUMNAR_MIN = 8  # pages with fewer records than this are counted record by record (numpy's overhead)
BATCH_ROWS = 1 << 15  # a worker's counted rows held back for one add to the statistics (PageCounter.settle)
_MS_THRESHOLD = 10**11


class Rejected(ValueError):
    """A record that cannot be counted; the message is the reason."""


@dataclass
class SliceCursor:
    """Where a slice's crawl stands: its id range and the highest id counted so far."""

    begin: int
    end: int | None
    high_water: int  # ids <= high_water were seen already (begin - 1 at the start)
    # The lowest slice of an id range that discovery found: no record lies below it, so the records without
    # an id that lead its first page are its own (see PageCounter.count_page).
    lowest: bool = False


_INT64_MIN: Final = -(2**63)
_INT64_END: Final = 2**63  # ids, items, categories and visitors are signed 64-bit integers or strings


def _all_objects(records: Sequence[Any]) -> bool:
    """Whether every record is a JSON object: all dicts, or all :class:`~lifestats.decode.Record` structs."""
    types = set(map(type, records))
    if len(types) != 1:
        return False
    kind = types.pop()
    return kind is dict or issubclass(kind, Record)


def _as_dicts(records: Sequence[Any]) -> Sequence[Any]:
    """A page's records for the per-record path: a decoded page's as dicts (all of its records are
    :class:`~lifestats.decode.Record` structs), any other page as it is."""
    if records and isinstance(records[0], Record):
        return [as_dict(record) for record in records]
    return records


def usable_key(value: Any) -> TypeGuard[Key]:
    """An id-like value: a string, or an int (not a bool) in the signed 64-bit range."""
    if isinstance(value, str):
        return True
    return isinstance(value, int) and not isinstance(value, bool) and _INT64_MIN <= value < _INT64_END


def parse_timestamp(value: Any) -> int | None:
    """Epoch microseconds of a record's timestamp, exactly; None when it has none. Raises :class:`Rejected`.

    A number above 10^11 is milliseconds; any other number, negative ones included, is seconds (a float
    read to the nearest microsecond, halves to even, as ``datetime.fromtimestamp`` reads it). The instant
    must lie between the years 1 and 9999 in UTC (whether it does in the stats time zone too is the
    caller's check, see :meth:`PageCounter._count`).
    """
    if value is None:
        return None
    if isinstance(value, str):
        return _parse_iso(value)
    if isinstance(value, bool):
        raise Rejected("timestamp is a boolean")
    if isinstance(value, int):
        if value > _MS_THRESHOLD:
            if value >= END_INSTANT * 1000:
                raise Rejected("timestamp is a number of milliseconds after the year 9999")
            return value * 1000
        if value < FIRST_INSTANT:
            raise Rejected("timestamp is a number of seconds before the year 1")
        return value * MICROS
    if isinstance(value, float):
        if value != value or value in (math.inf, -math.inf):
            raise Rejected("timestamp is not a finite number")
        seconds = value / 1000 if value > _MS_THRESHOLD else value
        if not FIRST_INSTANT <= seconds < END_INSTANT:
            raise Rejected(f"timestamp {value!r} is outside the years 1 to 9999")
        fraction, whole = math.modf(seconds)
        micros = int(whole) * MICROS + round(fraction * 1e6)  # round(): halves to even, as datetime does
        if micros >= END_INSTANT * MICROS:
            raise Rejected(f"timestamp {value!r} is outside the years 1 to 9999")
        return micros
    raise Rejected(f"timestamp has type {type(value).__name__}")


_UTC_SUFFIX: Final = "+00:00"
_UNKNOWN_OFFSET: Final = timedelta(days=1)  # a sentinel that no valid offset equals
_offsets: dict[str, timedelta | None] = {}  # "+05:30" -> its offset; None: not a valid offset


def _parse_iso(text: str) -> int:
    """The epoch microseconds of ``datetime.fromisoformat(text)`` of a printable ``text``, with the instant
    required to lie in the years 1 to 9999 in UTC. The usual ``±HH:MM`` suffix is read once per distinct
    text and the rest parsed as UTC, which spares building a time zone object per record; any other form
    is left to datetime whole."""
    if not text.isprintable():  # datetime reads up to a NUL and ignores the rest
        raise Rejected(f"timestamp {text[:40]!r} holds control characters")
    moment: datetime | None = None
    offset: timedelta | None = None
    if len(text) > 6 and text[-6] in "+-" and text[-3] == ":":
        offset = _offsets.get(text[-6:], _UNKNOWN_OFFSET)
        if offset is _UNKNOWN_OFFSET:
            offset = _offset_of(text[-6:])
        if offset is not None:
            moment = _fromisoformat(text[:-6] + _UTC_SUFFIX)
            if moment is not None and moment.tzinfo is not UTC:  # the rest carried an offset of its own
                moment = None
    if moment is None:
        offset = None
        moment = _fromisoformat(text)
        if moment is None and text.endswith("z"):  # RFC 3339 allows a lower-case Z (and T, which datetime reads)
            moment = _fromisoformat(text[:-1] + "Z")
        if moment is None:
            raise Rejected(f"timestamp {text[:40]!r} is not ISO 8601")
        if moment.tzinfo is None:
            raise Rejected(f"timestamp {text[:40]!r} has no UTC offset")
    try:
        utc = moment - offset if offset else moment.astimezone(UTC)
    except OverflowError:
        raise Rejected(f"timestamp {text[:40]!r} is outside the years 1 to 9999 in UTC") from None
    return epoch_micros(utc)


def offset_of(suffix: str) -> timedelta | None:
    """The UTC offset of a ``±HH:MM`` suffix as :func:`datetime.fromisoformat` reads it (None: not one),
    once per distinct suffix."""
    known = _offsets.get(suffix, _UNKNOWN_OFFSET)
    return _offset_of(suffix) if known is _UNKNOWN_OFFSET else known


def _offset_of(suffix: str) -> timedelta | None:
    moment = _fromisoformat("2000-01-01T00:00:00" + suffix)
    offset = moment.utcoffset() if moment is not None else None
    if len(_offsets) < 10_000:
        _offsets[suffix] = offset
    return offset


def _fromisoformat(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


class PageCounter:
    """Counts pages of records into partial statistics, per the run's settings and ``as_of``."""

    def __init__(self, settings: Settings, as_of: datetime, *, columnar: bool = True, batch_rows: int = 0) -> None:
        tz = ZoneInfo(settings.stats.timezone)
        f = settings.fields
        self.id_field = f.id
        self.item_field = f.item
        self.category_field = f.category
        self.visitor_field = f.visitor
        self.timestamp_field = f.timestamp
        self.ip_field = f.ip
        self.ua_field = f.user_agent
        self.windows = Windows.around(as_of, tz)
        self.clock = Clock(tz)
        self.buckets = Buckets(settings.stats.series, self.clock)
        # Records in buckets before this one cannot be in the series: they are counted, not kept.
        self.series_floor = self.buckets.floor(self.buckets.key_of(as_of), settings.stats.series_max_points)
        bots = settings.bots
        self.bots = BotFilter(bots.ips, bots.user_agents, bots.known_crawlers)
        judged = judged_fields(settings)  # the bot fields the end-of-crawl check judges: tallied as they come
        self._judge_ip, self._judge_agent = bool(judged["ip"]), bool(judged["user_agent"])
        self.stats_settings = settings.stats
        self._page = _PageColumns()
        self._fast_pages: list[FastPage] = []
        # Pages' columns held back for one ``add`` of them all (see settle): up to this many rows.
        self.batch_rows = batch_rows
        self._held: list[Columns] = []
        self._held_rows = 0
        self._held_for: Partial | None = None
        # The fast column-by-column checks (lifestats.columnar); records they leave undecided take _count.
        self.fast: FastCounter | None = None
        if columnar:
            names = FieldNames(f.item, f.category, f.visitor, f.timestamp, f.ip, f.user_agent)
            self.fast = FastCounter(
                names, self.clock, self.windows.as_of_micros, self.buckets, self.series_floor, self.bots, offset_of
            )

    def count_page(self, partial: Partial, records: Sequence[Any], offset: int, cursor: SliceCursor) -> None:
        """Add the records of one page (requested at ``offset``) that belong to the id slice at ``cursor``.

        Ids are integers (JSON numbers or strings of decimal digits) and the page's records may come in
        any order: they are taken by ascending id. A record counts when ``begin <= id < end`` and its id is
        above the slice's high-water mark (a lower id inside the range, or the same id twice, was counted
        already: a duplicate). A record without a usable id is placed just after the record before it in
        the page, or just below ``offset`` when it leads the page (the record before it lies below the
        offset), and is rejected when that place is new to the slice: so a page served twice rejects it
        once, and of two slices that meet at it, only the one that holds the record before it does.
        Leading a page that holds records below the slice (an API that serves a whole fixed page for any
        offset inside it, and the slice begins inside that page), it lies below the slice too: the slice
        that holds the page's start rejects it. The lowest slice of a range found by discovery
        (``cursor.lowest``) takes those that lead its first page: nothing lies below it.
        """
        begin, end = cursor.begin, cursor.end
        high_water = cursor.high_water  # as before this page
        tally = partial.records
        tally["received"] += len(records)
        partial.floor_series(self.series_floor)
        self._page = _PageColumns()
        if self.fast is not None and len(records) >= COLUMNAR_MIN and _all_objects(records):
            chosen = select_by_id(column(records, self.id_field), begin, end, high_water)
            if chosen is not None:  # every id a plain integer: none needs placing
                tally["fetched"] += chosen.fetched
                tally["duplicates"] += chosen.duplicates
                self._count_all(partial, [records[i] for i in chosen.positions])
                cursor.high_water = chosen.high_water
                self._add_page(partial)
                return
        records = _as_dicts(records)  # the per-record path reads dicts

        keyed: list[tuple[int, int, dict[str, Any]]] = []
        unplaced: list[tuple[int | None, Any]] = []  # (place, record) of the records without a usable id
        place: int | None = None  # None: leading the page
        for position, record in enumerate(records):
            rid = int_id(record.get(self.id_field)) if isinstance(record, dict) else None
            if rid is None:
                unplaced.append((place, record))
                continue
            place = rid
            keyed.append((rid, position, record))
        keyed.sort(key=lambda entry: (entry[0], entry[1]))
        # A page that holds records below the slice is one the API serves whole for any offset inside it,
        # asked for by a slice that begins inside it: the records that lead it lie below the slice too.
        below = bool(keyed) and keyed[0][0] < begin
        counted: set[int] = set()  # the places that are new to the slice in this page
        top = high_water
        for rid, _, record in keyed:
            if rid < begin or (end is not None and rid >= end):
                continue
            tally["fetched"] += 1
            if rid <= top:
                tally["duplicates"] += 1
                continue
            top = rid
            counted.add(rid)
            try:
                self._count(partial, record)
            except Rejected as reason:
                self._reject(partial, record, str(reason))
        # Leading the page, a record's place is just below the offset: inside the slice when begin < offset
        # <= end (for the lowest slice, any offset up to its begin), and new to it when the offset is above
        # the high-water mark (for the lowest slice below its begin, when it counted nothing yet).
        if cursor.lowest and offset <= begin:
            leading_fresh = high_water < begin
        else:
            leading_fresh = begin < offset and offset > high_water and (end is None or offset <= end)
        for place, record in unplaced:
            leading_mine = place is None and not below and (offset in counted or leading_fresh)
            if leading_mine or (place is not None and place in counted):
                tally["fetched"] += 1
                self._reject(partial, record, "id is missing or not an integer")
        cursor.high_water = top
        self._add_page(partial)

    def count_rows(self, partial: Partial, records: Sequence[Any], room: int | None, cursor: SeenIds) -> None:
        """Add the records of one page of a positional or sequential crawl (ids serve de-duplication only).

        ``room``: how many of the page's records still lie inside the slice (None: all of them). An id
        the slice took before (``cursor``), on this page or any earlier one, is a duplicate; a record
        without an integer or string id is rejected.
        """
        tally = partial.records
        tally["received"] += len(records)
        partial.floor_series(self.series_floor)
        self._page = _PageColumns()
        inside = records if room is None else records[: max(room, 0)]
        page_ids: set[Key] = set()
        if self.fast is not None and len(inside) >= COLUMNAR_MIN and _all_objects(inside):
            ids = column(inside, self.id_field)
            if usable_mask(ids) is None:  # every id usable: no reject to keep in order with the others
                fresh: list[Any] = []
                for record, rid, before in zip(inside, ids, cursor.seen_mask(ids), strict=True):
                    if before or rid in page_ids:
                        tally["duplicates"] += 1
                    else:
                        page_ids.add(rid)
                        fresh.append(record)
                tally["fetched"] += len(inside)
                self._count_all(partial, fresh)
                cursor.remember(page_ids)
                self._add_page(partial)
                return
        for record in _as_dicts(inside):  # the per-record path reads dicts
            tally["fetched"] += 1
            rid = record.get(self.id_field) if isinstance(record, dict) else None
            if not usable_key(rid):
                self._reject(partial, record, "id is missing or not an integer or a string")
                continue
            if rid in page_ids or cursor.seen(rid):
                tally["duplicates"] += 1
                continue
            page_ids.add(rid)
            try:
                self._count(partial, record)
            except Rejected as reason:
                self._reject(partial, record, str(reason))
        cursor.remember(page_ids)
        self._add_page(partial)

    def _count_all(self, partial: Partial, records: list[Any]) -> None:
        """Count records (dicts or :class:`~lifestats.decode.Record` structs) in this order, as :meth:`_count`
        one by one would: the fast checks decide what they can, the rest go through :meth:`_count` in the
        same order (so rejects keep their order), as dicts."""
        if self.fast is None:
            for record in map(as_dict, records):
                try:
                    self._count(partial, record)
                except Rejected as reason:
                    self._reject(partial, record, str(reason))
            return
        tally = partial.records
        page = self.fast.count(records, presence=self._wants_presence(tally))
        tally["counted"] += page.counted
        tally["bots"] += page.bots
        tally["future"] += page.future
        if self._judge_ip:
            tally[having("ip")] += page.ips_present
        if self._judge_agent:
            tally[having("user_agent")] += page.agents_present
        partial.series_cut += page.series_cut
        if page.counted:
            self._fast_pages.append(page)
        for i in page.slow:
            record = as_dict(records[i])
            try:
                self._count(partial, record)
            except Rejected as reason:
                self._reject(partial, record, str(reason))

    def _add_page(self, partial: Partial) -> None:
        """Hand the page's counted records to the partial's statistics as columns (with ``batch_rows``,
        held back until that many rows are waiting or :meth:`settle` is called)."""
        page, fast = self._page, self._fast_pages
        self._page, self._fast_pages = _PageColumns(), []
        if not page.days and not fast:
            return
        columns = joined(fast, page.items, page.categories, page.visitors, page.days, page.buckets)
        self._tally_fields(partial.records, columns)
        if not self.batch_rows:
            self._add(partial, columns)
            return
        if self._held_for is not partial:  # pages held for a partial that was dropped (a failed task)
            self._held, self._held_rows, self._held_for = [], 0, partial
        self._held.append(columns)
        self._held_rows += len(columns)
        if self._held_rows >= self.batch_rows:
            self.settle(partial)

    def _wants_presence(self, tally: Counter[str]) -> bool:
        """Whether the fast checks should tally the records that have an ip or a user agent: while the bot
        rules that read one have not seen one in this partial (see :mod:`lifestats.sanity`)."""
        return (self._judge_ip and not tally[having("ip")]) or (self._judge_agent and not tally[having("user_agent")])

    def _tally_fields(self, tally: Counter[str], columns: Columns) -> None:
        """The field check's tallies of a page's counted records (see :mod:`lifestats.sanity`): once a
        partial has a category, a visitor or a timestamp, its later pages are not looked at for it."""
        tally[FIELDS_CHECKED] += len(columns)
        if self.category_field and not tally[having("category")]:
            tally[having("category")] += _keys_in(columns.categories)
        if self.visitor_field and not tally[having("visitor")]:
            tally[having("visitor")] += _keys_in(columns.visitors)
        if self.timestamp_field and not tally[having("timestamp")]:
            tally[having("timestamp")] += int(np.count_nonzero(columns.days != NO_TIME))

    def settle(self, partial: Partial) -> None:
        """Add the pages held back for ``partial`` to its statistics, as one batch of rows in the order
        they were counted. Call it before the partial is read or sent.

        Why batches: what the statistics pay per ``add`` is paid once per batch instead of once per page.
        Measured with ``bench/phases.py``: exact mode's facts are made and summed from one table instead
        of ten, 1.2-1.4 -> 0.9 µs per record; approx mode's sketches cost the same either way (they are fed
        once per distinct key of a day, and a batch of pages has about as many)."""
        held, held_for = self._held, self._held_for
        self._held, self._held_rows, self._held_for = [], 0, None
        if held and held_for is partial:
            self._add(partial, concatenated(held))

    def _add(self, partial: Partial, columns: Columns) -> None:
        if partial.stats is None:
            partial.stats = new_statistics(self.stats_settings)
        partial.stats.add(columns)

    def _reject(self, partial: Partial, record: Any, reason: str) -> None:
        partial.records["rejected"] += 1
        if len(partial.rejects) < MAX_REJECT_SAMPLES:
            partial.rejects.append({"reason": reason, "record": _storable(record)})

    def _count(self, partial: Partial, record: dict[str, Any]) -> None:
        """Validate (every check that can reject comes before the bot check), then count."""
        item = record.get(self.item_field)
        if not usable_key(item):
            raise Rejected(_key_problem("item", item))
        t: int | None = None  # epoch microseconds
        whole = offset = 0  # the instant's whole second and its UTC offset in the stats time zone
        if self.timestamp_field:
            value = record.get(self.timestamp_field)
            t = parse_timestamp(value)
            if t is not None:
                whole = t // MICROS
                local = self.clock.offset(whole)
                if local is None:
                    zone = self.clock.tz.key
                    raise Rejected(f"timestamp {str(value)[:40]!r} is outside the years 1 to 9999 in {zone}")
                offset = local
        if self.bots.active:
            ip = record.get(self.ip_field) if self.ip_field else None
            agent = record.get(self.ua_field) if self.ua_field else None
            if self._judge_ip:
                partial.records[having("ip")] += isinstance(ip, str)
            if self._judge_agent:
                partial.records[having("user_agent")] += isinstance(agent, str)
            if self.bots.is_bot(ip, agent):
                partial.records["bots"] += 1
                return
        partial.records["counted"] += 1
        visitor = record.get(self.visitor_field) if self.visitor_field else None
        if not usable_key(visitor):
            visitor = None
        category = record.get(self.category_field) if self.category_field else None
        if not usable_key(category):
            category = None
        self._collect(partial, item, category, visitor, t, whole, offset)

    def _collect(
        self,
        partial: Partial,
        item: Key,
        category: Key | None,
        visitor: Key | None,
        t: int | None,
        whole: int,
        offset: int,
    ) -> None:
        """One counted record into the page's columns, with its local day and series bucket.

        A record stamped after ``as_of`` has the day key FUTURE (``all`` only) and no bucket. One stamped
        exactly at ``as_of`` is not future, but it is not before ``as_of`` either: like a future one it
        counts in ``all`` only (day key FUTURE, no bucket), since ``this_year`` ends at ``as_of``
        (excluded) and the series holds the records stamped before ``as_of`` (SPEC section 3)."""
        day, bucket = NO_TIME, NO_BUCKET
        if t is not None:
            as_of = self.windows.as_of_micros
            if t > as_of:
                partial.records["future"] += 1
                day = FUTURE
            elif t == as_of:
                day = FUTURE
            else:
                # The local day number, as statistics.local_days computes it for a column.
                day = (whole + offset) // 86_400
                key = self.buckets.key(whole, offset)
                if self.series_floor is not None and key < self.series_floor:
                    partial.series_cut += 1
                else:
                    bucket = key
        page = self._page
        page.items.append(item)
        page.categories.append(category)
        page.visitors.append(visitor)
        page.days.append(day)
        page.buckets.append(bucket)


@dataclass
class _PageColumns:
    """The counted records of one page, one list per column (see :class:`~lifestats.statistics.Columns`)."""

    items: list[Key] = field(default_factory=list)
    categories: list[Key | None] = field(default_factory=list)
    visitors: list[Key | None] = field(default_factory=list)
    days: list[int] = field(default_factory=list)
    buckets: list[int] = field(default_factory=list)

    def columns(self) -> Columns:
        return Columns(
            self.items,
            self.categories,
            self.visitors,
            np.array(self.days, dtype=np.int64),
            np.array(self.buckets, dtype=np.int64),
        )


def _keys_in(column: Sequence[Key | None] | npt.NDArray[Any]) -> int:
    """How many rows of a key column hold a key (an integer array holds one in every row)."""
    if isinstance(column, np.ndarray):
        return len(column)
    if isinstance(column, list):
        return len(column) - column.count(None)
    return sum(value is not None for value in column)


def _key_problem(name: str, value: Any) -> str:
    if value is None:
        return f"{name} is missing"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{name} is an integer outside the 64-bit range"
    if isinstance(value, float) and value.is_integer() and not -(2**63) <= value < 2**63:
        # A JSON integer with more digits than 64 bits hold is read as a float, as orjson reads it.
        return f"{name} is a number outside the 64-bit integer range"
    return f"{name} has type {type(value).__name__}"


def _storable(record: Any) -> Any:
    """The record as a JSON value, for the sample of rejects; its text when JSON cannot hold it as it is."""
    try:
        orjson.dumps(record)
    except TypeError:  # orjson.JSONEncodeError included
        try:
            return repr(record)[:2000]
        except ValueError:  # an integer with more digits than Python will print
            return f"a {type(record).__name__} that JSON cannot hold"
        except RecursionError:  # values nested deeper than Python's recursion limit (JSON allows it)
            return f"a {type(record).__name__} nested too deeply to show"
    return record
