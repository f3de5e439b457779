"""The statistics interface: what counting writes and what the report reads, keyed by local day.

Counting hands a page of counted records to :meth:`Statistics.add` as :class:`Columns`; workers,
flushes and checkpoints combine with :meth:`Statistics.merge` and travel as
:meth:`Statistics.to_bytes`; the report asks questions (``visits``, ``distinct_visitors``,
``top_items``, ...) about a :class:`DayRange`. Neither side reaches into the other's fields, so an
implementation may keep its facts in memory (:class:`ExactStatistics`, the reference), in sketches
(:class:`lifestats.sketch.ApproxStatistics`) or in an out-of-core engine that answers each read as a
query.

Why days: window bounds are local midnights (``this_year`` ends at ``as_of``, but records after
``as_of`` carry the :data:`FUTURE` key, so its range ends on ``as_of``'s day), so every window is a
range of day numbers, and the day-unit series (and week, month, year) is a list of day ranges. Days
also let later runs keep statistics across runs and expire old days. Records without a timestamp carry
:data:`NO_TIME`. The two sentinels sit below and above every real day so that :data:`ALL` is simply
the widest range. Series units finer than a day (minute, hour) are elapsed-time stretches that days
cannot rebuild; counting then gives each record a bucket key too.

Every number is an :class:`Estimate`: exact implementations leave its bounds ``None``.
"""

from __future__ import annotations

import heapq
import struct
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final, Protocol, Self, TypeGuard
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

Key = int | str  # an item, category or visitor id keeps the JSON type the API gave it (5 and "5" differ)

NO_TIME: Final = -(2**31)  # the day key of a record without a timestamp
FUTURE: Final = 2**31 - 1  # the day key of a record stamped after as_of
NO_BUCKET: Final = -(2**63)  # the bucket key of a record that is in no fine series bucket
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()


def day_number(day: date) -> int:
    """Days since 1970-01-01 of a local calendar day."""
    return day.toordinal() - _EPOCH_ORDINAL


def day_date(number: int) -> date:
    """The local calendar day of a day number (not a sentinel)."""
    return date.fromordinal(number + _EPOCH_ORDINAL)


@dataclass(frozen=True, order=True)
class DayRange:
    """Day numbers ``first..last``, both included. :data:`ALL` also holds :data:`NO_TIME` and :data:`FUTURE`."""

    first: int
    last: int

    def __contains__(self, day: object) -> bool:
        return isinstance(day, int) and self.first <= day <= self.last


ALL: Final = DayRange(NO_TIME, FUTURE)


def window_days(as_of: datetime, tz: ZoneInfo) -> dict[str, DayRange]:
    """The day range of every window of SPEC section 3 around ``as_of`` (D = the local day of ``as_of``)."""
    today = day_number(as_of.astimezone(tz).date())
    new_year = day_number(date(day_date(today).year, 1, 1))
    return {
        "all": ALL,
        "yesterday": DayRange(today - 1, today - 1),
        "last_7_days": DayRange(today - 7, today - 1),
        "last_30_days": DayRange(today - 30, today - 1),
        "this_year": DayRange(new_year, today),  # records after as_of are FUTURE, not today's
    }


def local_days(epoch_seconds: npt.NDArray[np.float64], utc_offsets: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Local day numbers of instants, given each instant's UTC offset in seconds (vectorised)."""
    return np.floor_divide(np.floor(epoch_seconds).astype(np.int64) + utc_offsets, 86_400)


@dataclass(frozen=True)
class Columns:
    """One page of counted records (valid, in range, not bots), one entry per record in every column.

    ``items`` never holds None; ``categories`` and ``visitors`` hold None where the record has none.
    ``days`` holds each record's local day number, :data:`NO_TIME` or :data:`FUTURE`. ``buckets`` is
    given only when the series unit is finer than a day: each record's bucket key, or :data:`NO_BUCKET`
    (no timestamp, after ``as_of``, or before the oldest bucket the series can show).
    Key columns may be lists or numpy arrays (an integer array is read as Python ints).
    """

    items: Sequence[Key] | npt.NDArray[Any]
    categories: Sequence[Key | None] | npt.NDArray[Any]
    visitors: Sequence[Key | None] | npt.NDArray[Any]
    days: npt.NDArray[np.int64]
    buckets: npt.NDArray[np.int64] | None = None

    def __post_init__(self) -> None:
        n = len(self.days)
        lengths = {len(self.items), len(self.categories), len(self.visitors)}
        if self.buckets is not None:
            lengths.add(len(self.buckets))
        if lengths != {n}:
            raise ValueError(f"columns of one page differ in length: {sorted(lengths | {n})}")

    def __len__(self) -> int:
        return len(self.days)

    def day_indices(self) -> Iterator[tuple[int, npt.NDArray[np.intp] | None]]:
        """The page split by day: (day, the records' positions), positions None when the whole page is one day."""
        days = np.asarray(self.days)
        if len(days) == 0:
            return
        first = int(days[0])
        if bool((days == first).all()):  # the common case: a page within one day
            yield first, None
            return
        for day in np.unique(days).tolist():
            yield int(day), np.flatnonzero(days == day)

    def groups(self) -> Iterator[tuple[int, list[Key], list[Key | None], list[Key | None]]]:
        """The page split by day: (day, items, categories, visitors), as Python lists."""
        items, categories, visitors = as_list(self.items), as_list(self.categories), as_list(self.visitors)
        for day, where in self.day_indices():
            if where is None:
                yield day, items, categories, visitors
            else:
                at = where.tolist()
                yield day, [items[i] for i in at], [categories[i] for i in at], [visitors[i] for i in at]

    def bucket_groups(self) -> Iterator[tuple[int, list[Key | None]]]:
        """The page's visitors split by fine series bucket (records without a bucket left out)."""
        if self.buckets is None:
            return
        buckets = np.asarray(self.buckets)
        visitors = as_list(self.visitors)
        for bucket in np.unique(buckets).tolist():
            if bucket == NO_BUCKET:
                continue
            yield int(bucket), [visitors[i] for i in np.flatnonzero(buckets == bucket).tolist()]


def as_list(column: Sequence[Any] | npt.NDArray[Any]) -> list[Any]:
    return column.tolist() if isinstance(column, np.ndarray) else list(column)


def concatenated(parts: Sequence[Columns]) -> Columns:
    """The rows of several :class:`Columns` in one, in order (a key column stays an integer array only
    when it is one in every part)."""
    if len(parts) == 1:
        return parts[0]

    def keys(name: str) -> Sequence[Any] | npt.NDArray[Any]:
        columns = [getattr(part, name) for part in parts]
        if all(isinstance(c, np.ndarray) and c.dtype.kind in "iu" for c in columns):
            return np.concatenate(columns)
        joined: list[Any] = []
        for c in columns:
            joined.extend(c.tolist() if isinstance(c, np.ndarray) else c)
        return joined

    buckets = [part.buckets for part in parts]
    return Columns(
        keys("items"),
        keys("categories"),
        keys("visitors"),
        np.concatenate([np.asarray(part.days, dtype=np.int64) for part in parts]),
        None
        if all(b is None for b in buckets)
        else np.concatenate(
            [
                np.full(len(part), NO_BUCKET, dtype=np.int64) if b is None else np.asarray(b, dtype=np.int64)
                for part, b in zip(parts, buckets, strict=True)
            ]
        ),
    )


def usable_key(value: Any) -> TypeGuard[Key]:
    """An id-like value: an int (not a bool) or a string."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


@dataclass(frozen=True)
class Estimate:
    """A number and, when it is estimated, the interval the true value lies in (None: exact)."""

    value: int
    lower: int | None = None
    upper: int | None = None

    @property
    def bounds(self) -> list[int] | None:
        """``[lower, upper]`` for the report's ``<name>_bounds``, or None when the value is exact."""
        return None if self.lower is None or self.upper is None else [self.lower, self.upper]

    def holds(self, truth: int) -> bool:
        """Whether ``truth`` is consistent with this estimate (equal to it when exact)."""
        if self.lower is None or self.upper is None:
            return truth == self.value
        return self.lower <= truth <= self.upper


def report_fields(name: str, estimate: Estimate | None) -> dict[str, Any]:
    """The JSON report's ``name`` (and, when estimated, ``<name>_bounds``) for an estimate (SPEC section 6).

    None (e.g. distinct visitors without a ``visitor`` field) gives ``name: null``.
    """
    if estimate is None:
        return {name: None}
    bounds = estimate.bounds
    return {name: estimate.value} if bounds is None else {name: estimate.value, f"{name}_bounds": bounds}


@dataclass(frozen=True)
class ItemRow:
    id: Key
    visits: Estimate
    distinct_visitors: Estimate


@dataclass(frozen=True)
class CategoryRow:
    id: Key
    visits: Estimate


@dataclass(frozen=True)
class Point:
    """One series bucket."""

    visits: Estimate
    distinct_visitors: Estimate


def rank_key(key: Key, visits: int) -> tuple[int, int, int | str]:
    """Most visits first; ties by id, numbers before strings, numbers numerically, strings by code point."""
    return (-visits, 0, key) if isinstance(key, int) else (-visits, 1, key)


class Statistics(Protocol):
    """What every statistics implementation offers (exact in memory, approximate, or out of core).

    Writes: :meth:`add` and :meth:`merge` (associative and commutative; an empty instance is the
    identity). Transport: :meth:`to_bytes` / :meth:`from_bytes`, compact and versioned. Reads are
    questions about a day range, so an engine can answer them as queries without handing out its state.
    """

    def add(self, columns: Columns) -> None:
        """Count one page of counted records."""

    def merge(self, other: Self) -> Self:
        """Add everything ``other`` counted into this one (``other`` is left as it was); returns self."""

    def to_bytes(self) -> bytes:
        """A compact binary form with a versioned header."""

    @classmethod
    def from_bytes(cls, body: bytes) -> Self:
        """The statistics that :meth:`to_bytes` wrote (raises ValueError on a foreign or newer body)."""

    def nbytes(self) -> int:
        """Approximate memory held, in bytes."""

    def visits(self, days: DayRange) -> Estimate:
        """Counted records on those days."""

    def distinct_visitors(self, days: DayRange) -> Estimate:
        """Distinct visitor keys on those days."""

    def top_items(self, days: DayRange, k: int) -> list[ItemRow]:
        """The ``k`` items with the most visits on those days, ranked (ties per :func:`rank_key`)."""

    def top_categories(self, days: DayRange, k: int) -> list[CategoryRow]:
        """The ``k`` categories with the most visits on those days, ranked."""

    def dated_days(self) -> DayRange | None:
        """The first and last real day that holds records (sentinels left out); None when none does."""

    def day_points(self, spans: Sequence[DayRange]) -> list[Point]:
        """One point per span: the series for day, week, month and year buckets."""

    def bucket_span(self) -> tuple[int, int] | None:
        """The first and last fine series bucket that holds records; None when none does."""

    def bucket_points(self, first: int, last: int) -> dict[int, Point]:
        """The fine series buckets from ``first`` to ``last`` that hold records (the others are zero)."""


# -- the exact reference ----------------------------------------------------------------------------


@dataclass
class _DayFacts:
    visits: int = 0
    visitors: set[Key] = field(default_factory=set)
    items: Counter[Key] = field(default_factory=Counter)
    item_visitors: dict[Key, set[Key]] = field(default_factory=dict)
    categories: Counter[Key] = field(default_factory=Counter)


@dataclass
class _BucketFacts:
    visits: int = 0
    visitors: set[Key] = field(default_factory=set)


class DayKeyed:
    """The reads every implementation derives the same way from its ``_days`` and ``_buckets`` keys."""

    _days: Mapping[int, Any]
    _buckets: Mapping[int, Any]

    def visits(self, days: DayRange) -> Estimate:
        raise NotImplementedError

    def distinct_visitors(self, days: DayRange) -> Estimate:
        raise NotImplementedError

    def _bucket_point(self, point: Any) -> Point:
        raise NotImplementedError

    def dated_days(self) -> DayRange | None:
        dated = [day for day in self._days if day not in (NO_TIME, FUTURE)]
        return DayRange(min(dated), max(dated)) if dated else None

    def day_points(self, spans: Sequence[DayRange]) -> list[Point]:
        return [Point(self.visits(span), self.distinct_visitors(span)) for span in spans]

    def bucket_span(self) -> tuple[int, int] | None:
        return (min(self._buckets), max(self._buckets)) if self._buckets else None

    def bucket_points(self, first: int, last: int) -> dict[int, Point]:
        return {
            bucket: self._bucket_point(point)
            for bucket, point in sorted(self._buckets.items())
            if first <= bucket <= last
        }


class ExactStatistics(DayKeyed):
    """Exact counts per day in Python containers: the reference for tests and small runs.

    Memory grows with the distinct (day, item, visitor) facts; large exact runs belong in an
    out-of-core store that implements the same :class:`Statistics` protocol.
    """

    MAGIC: Final = b"LSEX"
    VERSION: Final = 1

    def __init__(self) -> None:
        self._days: dict[int, _DayFacts] = {}
        self._buckets: dict[int, _BucketFacts] = {}

    # -- writes ---------------------------------------------------------------------------------------
    def add(self, columns: Columns) -> None:
        for day, items, categories, visitors in columns.groups():
            facts = self._days.get(day)
            if facts is None:
                facts = self._days[day] = _DayFacts()
            facts.visits += len(items)
            facts.items.update(items)
            facts.categories.update(c for c in categories if c is not None)
            seen = facts.visitors
            item_visitors = facts.item_visitors
            for item, visitor in zip(items, visitors, strict=True):
                if visitor is None:
                    continue
                seen.add(visitor)
                known = item_visitors.get(item)
                if known is None:
                    item_visitors[item] = {visitor}
                else:
                    known.add(visitor)
        for bucket, visitors in columns.bucket_groups():
            point = self._buckets.get(bucket)
            if point is None:
                point = self._buckets[bucket] = _BucketFacts()
            point.visits += len(visitors)
            point.visitors.update(v for v in visitors if v is not None)

    def merge(self, other: ExactStatistics) -> ExactStatistics:
        for day, theirs in other._days.items():
            mine = self._days.get(day)
            if mine is None:
                mine = self._days[day] = _DayFacts()
            mine.visits += theirs.visits
            mine.visitors |= theirs.visitors
            mine.items.update(theirs.items)
            mine.categories.update(theirs.categories)
            for item, visitors in theirs.item_visitors.items():
                known = mine.item_visitors.get(item)
                if known is None:
                    mine.item_visitors[item] = set(visitors)
                else:
                    known |= visitors
        for bucket, their_point in other._buckets.items():
            point = self._buckets.get(bucket)
            if point is None:
                point = self._buckets[bucket] = _BucketFacts()
            point.visits += their_point.visits
            point.visitors |= their_point.visitors
        return self

    # -- reads ----------------------------------------------------------------------------------------
    def _in(self, days: DayRange) -> list[_DayFacts]:
        return [facts for day, facts in self._days.items() if days.first <= day <= days.last]

    def visits(self, days: DayRange) -> Estimate:
        return Estimate(sum(facts.visits for facts in self._in(days)))

    def distinct_visitors(self, days: DayRange) -> Estimate:
        return Estimate(len(_union(facts.visitors for facts in self._in(days))))

    def top_items(self, days: DayRange, k: int) -> list[ItemRow]:
        chosen = self._in(days)
        counts: Counter[Key] = Counter()
        for facts in chosen:
            counts.update(facts.items)
        rows = []
        for item, visits in _top(counts, k):
            visitors = _union(facts.item_visitors.get(item, ()) for facts in chosen)
            rows.append(ItemRow(item, Estimate(visits), Estimate(len(visitors))))
        return rows

    def top_categories(self, days: DayRange, k: int) -> list[CategoryRow]:
        counts: Counter[Key] = Counter()
        for facts in self._in(days):
            counts.update(facts.categories)
        return [CategoryRow(category, Estimate(visits)) for category, visits in _top(counts, k)]

    def _bucket_point(self, point: _BucketFacts) -> Point:
        return Point(Estimate(point.visits), Estimate(len(point.visitors)))

    def nbytes(self) -> int:
        """A rough figure: about 100 bytes per kept key and 60 per count, as CPython containers hold them."""
        total = 0
        for facts in self._days.values():
            total += 300 + 100 * len(facts.visitors) + 60 * (len(facts.items) + len(facts.categories))
            total += sum(200 + 100 * len(v) for v in facts.item_visitors.values())
        total += sum(200 + 100 * len(point.visitors) for point in self._buckets.values())
        return total

    # -- transport ------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Header, one key table (each key once, typed), then integer arrays that refer to it by index.

        Keys are written in rank order (numbers first), so equal statistics give equal bytes."""
        keys = _KeyTable()
        out = BinaryWriter()
        out.raw(self.MAGIC + struct.pack("<H", self.VERSION))
        body = BinaryWriter()

        def indices(members: Iterable[Key]) -> npt.NDArray[np.uint32]:
            return np.array([keys.index(k) for k in _ordered(members)], dtype=np.uint32)

        def counts(counter: Counter[Key]) -> None:
            ordered = _ordered(counter)
            body.array(np.array([keys.index(k) for k in ordered], dtype=np.uint32))
            body.array(np.array([counter[k] for k in ordered], dtype=np.int64))

        body.u32(len(self._days))
        for day, facts in sorted(self._days.items()):
            body.i64(day)
            body.i64(facts.visits)
            body.array(indices(facts.visitors))
            counts(facts.items)
            counts(facts.categories)
            owners: list[int] = []
            members: list[int] = []
            for item in _ordered(facts.item_visitors):
                who = indices(facts.item_visitors[item]).tolist()
                owners.extend([keys.index(item)] * len(who))
                members.extend(who)
            body.array(np.array(owners, dtype=np.uint32))
            body.array(np.array(members, dtype=np.uint32))
        body.u32(len(self._buckets))
        for bucket, point in sorted(self._buckets.items()):
            body.i64(bucket)
            body.i64(point.visits)
            body.array(indices(point.visitors))
        keys.write(out)
        out.raw(body.getvalue())
        return out.getvalue()

    @classmethod
    def from_bytes(cls, body: bytes) -> ExactStatistics:
        reader = BinaryReader(body)
        check_header(reader, cls.MAGIC, cls.VERSION, "exact statistics")
        keys = _KeyTable.read(reader)
        stats = cls()
        for _ in range(reader.u32()):
            day = reader.i64()
            facts = stats._days[day] = _DayFacts(visits=reader.i64())
            facts.visitors = {keys[i] for i in reader.array(np.uint32).tolist()}
            items = [keys[i] for i in reader.array(np.uint32).tolist()]
            facts.items = Counter(dict(zip(items, reader.array(np.int64).tolist(), strict=True)))
            categories = [keys[i] for i in reader.array(np.uint32).tolist()]
            facts.categories = Counter(dict(zip(categories, reader.array(np.int64).tolist(), strict=True)))
            owners = reader.array(np.uint32).tolist()
            members = reader.array(np.uint32).tolist()
            for owner, member in zip(owners, members, strict=True):
                facts.item_visitors.setdefault(keys[owner], set()).add(keys[member])
        for _ in range(reader.u32()):
            bucket = reader.i64()
            point = stats._buckets[bucket] = _BucketFacts(visits=reader.i64())
            point.visitors = {keys[i] for i in reader.array(np.uint32).tolist()}
        reader.end()
        return stats


def _union(sets: Iterable[Iterable[Key]]) -> set[Key]:
    result: set[Key] = set()
    for members in sets:
        result.update(members)
    return result


def _ordered(keys: Iterable[Key]) -> list[Key]:
    """Keys in a fixed order: numbers numerically, then strings by code point."""
    return sorted(keys, key=lambda k: (1, k) if isinstance(k, str) else (0, k))


def _top(counts: Counter[Key], k: int) -> list[tuple[Key, int]]:
    return heapq.nsmallest(k, counts.items(), key=lambda kv: rank_key(kv[0], kv[1]))


# -- binary helpers shared by the implementations -----------------------------------------------------


def encode_key(key: Key) -> str:
    """A key as a string that keeps its type: ``i<decimal>`` for an int, ``s<text>`` for a string."""
    return f"i{key}" if isinstance(key, int) else "s" + key


def decode_key(text: str) -> Key:
    """The key that :func:`encode_key` wrote."""
    if text[:1] == "i":
        return int(text[1:])
    if text[:1] == "s":
        return text[1:]
    raise ValueError(f"not an encoded key: {text[:40]!r}")


class _KeyTable:
    """Each distinct key once, typed, numbered in order of first use."""

    def __init__(self) -> None:
        self._index: dict[tuple[type, Key], int] = {}  # by type too: 5 and "5" are different keys
        self.keys: list[Key] = []

    def index(self, key: Key) -> int:
        typed = (type(key), key)
        found = self._index.get(typed)
        if found is None:
            found = self._index[typed] = len(self.keys)
            self.keys.append(key)
        return found

    def __getitem__(self, index: int) -> Key:
        return self.keys[index]

    def write(self, out: BinaryWriter) -> None:
        out.strings([encode_key(key) for key in self.keys])

    @classmethod
    def read(cls, reader: BinaryReader) -> _KeyTable:
        table = cls()
        table.keys = [decode_key(text) for text in reader.strings()]
        return table


class BinaryWriter:
    """Little-endian framing: fixed-width numbers, length-prefixed blobs, arrays and string lists."""

    def __init__(self) -> None:
        self._parts: list[bytes | memoryview] = []

    def raw(self, data: bytes | memoryview) -> None:
        self._parts.append(data)

    def u32(self, value: int) -> None:
        self._parts.append(struct.pack("<I", value))

    def i64(self, value: int) -> None:
        self._parts.append(struct.pack("<q", value))

    def blob(self, data: bytes | memoryview) -> None:
        self._parts.append(struct.pack("<I", len(data)))
        self._parts.append(data)

    def array(self, values: npt.NDArray[Any]) -> None:
        self.blob(values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes())

    def strings(self, texts: Sequence[str]) -> None:
        joined = "".join(texts)
        if joined.isascii():  # the common case (encoded keys): one encoding, lengths in characters are bytes
            self.array(np.fromiter(map(len, texts), dtype=np.uint32, count=len(texts)))
            self.blob(joined.encode("ascii"))
            return
        encoded = [t.encode("utf-8", "surrogatepass") for t in texts]
        self.array(np.fromiter(map(len, encoded), dtype=np.uint32, count=len(encoded)))
        self.blob(b"".join(encoded))

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")
_I64: Final = struct.Struct("<q")


class BinaryReader:
    """Reads what :class:`BinaryWriter` wrote, from bytes or a memoryview (numbers are unpacked in place,
    not copied out first: a day of approximate statistics is hundreds of fields)."""

    def __init__(self, body: bytes | memoryview) -> None:
        self._view = memoryview(body)
        self._at = 0

    def _take(self, n: int) -> int:
        """The offset of the next ``n`` bytes, which are then consumed."""
        at = self._at
        if n < 0 or at + n > len(self._view):
            raise ValueError("statistics body is truncated")
        self._at = at + n
        return at

    def raw(self, n: int) -> bytes:
        at = self._take(n)
        return bytes(self._view[at : at + n])

    def u32(self) -> int:
        return int(_U32.unpack_from(self._view, self._take(4))[0])

    def u16(self) -> int:
        return int(_U16.unpack_from(self._view, self._take(2))[0])

    def i64(self) -> int:
        return int(_I64.unpack_from(self._view, self._take(8))[0])

    def blob(self) -> bytes:
        return self.raw(self.u32())

    def view(self) -> memoryview:
        """The next blob as a view of the body (no copy)."""
        n = self.u32()
        at = self._take(n)
        return self._view[at : at + n]

    def rest(self) -> memoryview:
        """Everything not read yet, as a view of the body (which is then read to its end)."""
        at = self._take(len(self._view) - self._at)
        return self._view[at:]

    def array(self, dtype: type[np.generic]) -> npt.NDArray[Any]:
        return np.frombuffer(self.view(), dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)

    def strings(self) -> list[str]:
        lengths = self.array(np.uint32)
        data = self.view()
        ends = np.cumsum(lengths, dtype=np.int64).tolist()
        if (ends[-1] if ends else 0) != len(data):
            raise ValueError("statistics body has a malformed list of strings")
        starts = [0, *ends[:-1]] if ends else []
        if data.tobytes().isascii():  # one decoding, then slices (byte offsets are character offsets)
            text = str(data, "ascii")
            return [text[start:end] for start, end in zip(starts, ends, strict=True)]
        return [str(data[start:end], "utf-8", "surrogatepass") for start, end in zip(starts, ends, strict=True)]

    def end(self) -> None:
        if self._at != len(self._view):
            raise ValueError("statistics body has trailing bytes")


def check_header(reader: BinaryReader, magic: bytes, version: int, what: str, *, oldest: int | None = None) -> int:
    """Check the magic and the format version (``oldest`` to ``version`` are read); returns the version."""
    found = reader.raw(len(magic))
    if found != magic:
        raise ValueError(f"not {what}: the body starts with {found!r}, not {magic!r}")
    got = reader.u16()
    first = version if oldest is None else oldest
    if not first <= got <= version:
        reads = f"version {version}" if first == version else f"versions {first} to {version}"
        raise ValueError(f"{what} of format version {got}; this Lifestats reads {reads}")
    return got
