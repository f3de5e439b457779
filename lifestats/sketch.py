"""Approximate statistics in memory that does not grow with the records: Apache DataSketches per day.

Per local day (and per fine series bucket) :class:`ApproxStatistics` keeps:

- the exact number of visits (a count costs nothing);
- an HLL sketch of the visitors (``stats.hll_lg_k``);
- frequent-items sketches of the items and of the categories (``stats.frequent_lg_max_map_size``),
  whose estimates come with guaranteed lower and upper bounds;
- for at most ``stats.tracked_items`` items, an HLL of their visitors (``stats.item_hll_lg_k``) and
  the exact number of visits counted while the item was tracked.

A window is the merge of its days' sketches. The per-item HLLs are what makes distinct visitors per top
item affordable: keeping one per item would grow with the items, so a day keeps them for its leading
items only (the first ones seen, then whichever the frequent-items sketch shows clearly ahead of the
weakest one tracked; see :meth:`_Day._rebalance`). An item's visitors seen while it was not tracked are
not in its HLL, so its bounds widen by what was missed: with ``v`` its visits (at most the sketch's
upper bound ``V``) and ``t`` the visits seen while tracked, at most ``V - t`` visits went unseen, so
its distinct visitors lie in ``[hll_lower, min(V, hll_upper + V - t)]``. HLL bounds are three standard
deviations (SPEC section 6); frequent-items bounds are guaranteed.

Item and category keys travel through the frequent-items sketches as strings that keep their type
(:func:`~lifestats.statistics.encode_key`), and visitor keys reach the HLLs through :func:`hll_key`, so
5 and "5" stay two keys and the empty string counts.

Memory: a day's sketches fill up and then stop growing, and only a few days are live objects at a
time: the rest stay serialised (several times smaller), in memory up to a budget and then in a
temporary file (:class:`~lifestats.spill.SpillStore`), so memory grows neither with the records nor
with the days counted. Counting speed: integer item and visitor columns take a numpy path (grouping by
item in numpy, one sketch call per distinct key of the page); other columns a single Python pass.
"""

from __future__ import annotations

import heapq
import io
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import datasketches as ds
import numpy as np
import numpy.typing as npt

from .spill import SpillStore
from .statistics import (
    NO_BUCKET,
    BinaryReader,
    BinaryWriter,
    CategoryRow,
    Columns,
    DayKeyed,
    DayRange,
    Estimate,
    ExactStatistics,
    ItemRow,
    Key,
    Point,
    Statistics,
    as_list,
    decode_key,
    rank_key,
)

_HLL_TYPE: Final = ds.tgt_hll_type.HLL_4
_NO_FALSE_NEGATIVES: Final = ds.frequent_items_error_type.NO_FALSE_NEGATIVES
_NEVER_A_KEY: Final = "?"  # encoded keys start with "i" or "s": this one's upper bound is the sketch's max error
_PURGED: Final = "!"  # not a key either: holds a frequent-items map that a purge emptied (see _mend)
_STD_DEVS: Final = 3
_INT_HLL_LIMIT: Final = 2**56
_KEY_TYPES: Final = frozenset({int, str, type(None)})
_DAY_FORMAT: Final = -2  # the tag a day's encoding starts with (format 1 started with its visits)
_REBALANCE_EVERY: Final = 4  # pages of a day between two reviews of its tracked items


@dataclass(frozen=True)
class SketchConfig:
    """Sketch sizes. Bigger is more accurate and costs more memory per day kept.

    Defaults: global HLLs at lg_k 12 (1.6% standard error, about 2.5 KB each), per-item HLLs at lg_k 10
    (3.3%, about 0.6 KB), frequent-items maps of 2^11 slots (an item's visits known to within about
    0.17% of the day's or window's visits), 200 tracked items per day.
    """

    hll_lg_k: int = 12
    item_hll_lg_k: int = 10
    frequent_lg_max_map_size: int = 11
    tracked_items: int = 200

    def __post_init__(self) -> None:
        for name, low, high in (("hll_lg_k", 4, 21), ("item_hll_lg_k", 4, 21), ("frequent_lg_max_map_size", 3, 26)):
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"stats.{name} must be between {low} and {high}, not {value}")
        if self.tracked_items < 0:
            raise ValueError(f"stats.tracked_items must be 0 or more, not {self.tracked_items}")

    @classmethod
    def from_settings(cls, stats: Any) -> SketchConfig:
        """The sizes from the ``stats`` config section (defaults where a key is absent)."""
        defaults = cls()
        return cls(**{name: getattr(stats, name, getattr(defaults, name)) for name in cls.__dataclass_fields__})


def _copy_hll(sketch: ds.hll_sketch) -> ds.hll_sketch:
    return ds.hll_sketch.deserialize(sketch.serialize_updatable())


def _union(sketches: Iterable[ds.hll_sketch], lg_k: int) -> ds.hll_sketch | None:
    """The union of the sketches; a lone sketch itself (read-only), which keeps its more accurate HIP estimate."""
    first = None
    union = None
    for sketch in sketches:
        if first is None:
            first = sketch
            continue
        if union is None:
            union = ds.hll_union(lg_k)
            union.update(first)
        union.update(sketch)
    return union.get_result(_HLL_TYPE) if union is not None else first


def _distinct(sketch: ds.hll_sketch | None, most: int | None = None) -> Estimate:
    """The HLL's estimate and bounds; none above ``most`` (the visits counted exactly beside it: there
    cannot be more distinct visitors than visits)."""
    if sketch is None or sketch.is_empty():
        return Estimate(0, 0, 0)
    lower = max(0, math.floor(sketch.get_lower_bound(_STD_DEVS)))
    upper = math.ceil(sketch.get_upper_bound(_STD_DEVS))
    if most is not None:
        lower, upper = min(lower, most), min(upper, most)
    return Estimate(min(max(round(sketch.get_estimate()), lower), upper), lower, upper)


def hll_key(key: Key) -> int | str:
    """What a visitor key feeds to an HLL, so that no two keys hash alike.

    An HLL hashes an int as its 8 little-endian bytes and a string as its UTF-8 bytes (and ignores the
    empty string), so 5 and "\\x05\\0\\0\\0\\0\\0\\0\\0" would be one visitor. Ints in
    ``[0, 2**56)`` go in as ints (fast; their last byte is 0); every other key goes in as a string tagged
    by its kind that never ends in a 0 byte: ``i<decimal>``, ``s<text>``, or ``n<text>\\x01`` for a text
    that ends in NUL.
    """
    if isinstance(key, int):
        return key if 0 <= key < _INT_HLL_LIMIT else f"i{key}"
    return "s" + key if not key.endswith("\x00") else "n" + key + "\x01"


def _hll_keys(values: npt.NDArray[np.int64]) -> list[int | str]:
    """:func:`hll_key` of every value of an integer array."""
    if len(values) == 0 or (int(values.min()) >= 0 and int(values.max()) < _INT_HLL_LIMIT):
        return values.tolist()  # type: ignore[no-any-return]
    return [hll_key(v) for v in values.tolist()]


def _int_column(column: Any) -> npt.NDArray[np.int64] | None:
    """The column as an int64 array when every entry is an int (no None, no str); else None.

    A list that holds a string or None is answered from its entries' types (numpy would first turn
    the whole list into an array of strings to find that out)."""
    if not isinstance(column, np.ndarray):
        kinds = set(map(type, column))
        if kinds - {int} and kinds <= _KEY_TYPES:
            return None
    array = column if isinstance(column, np.ndarray) else np.asarray(column)
    return array.astype(np.int64, copy=False) if array.dtype.kind == "i" and array.ndim == 1 else None


class _Keys:
    """A key column factorised: each distinct key once, the records as integer codes.

    ``codes[i]`` is the index in ``keys`` of record ``i``'s key, numbered in order of first appearance,
    or -1 where the record has none. A dict does the numbering (5 and "5" stay two keys), so the sketch
    code (:func:`~lifestats.statistics.encode_key`) and the HLL key (:func:`hll_key`) of a key are made
    once per distinct key, not once per record, and numpy does the grouping on the codes."""

    __slots__ = ("_hll", "_names", "codes", "keys", "missing")

    def __init__(self, column: Sequence[Key | None]) -> None:
        index: dict[Key | None, int] = {}
        number = index.setdefault
        codes = np.array([number(key, len(index)) for key in column], dtype=np.intp)
        keys = list(index)
        missing = index.get(None)
        if missing is not None:  # None is no key: its records get -1, the keys after it move down one
            del keys[missing]
            codes = np.where(codes == missing, -1, codes - (codes > missing))
        self.codes: npt.NDArray[np.intp] = codes
        self.keys: list[Key] = keys  # type: ignore[assignment]
        self.missing = missing is not None
        self._names: list[str] | None = None
        self._hll: npt.NDArray[np.object_] | None = None

    @property
    def names(self) -> list[str]:
        """Each key's code in the frequent-items sketches (it keeps the key's type)."""
        if self._names is None:
            self._names = [f"i{k}" if k.__class__ is int else "s" + k for k in self.keys]  # type: ignore[operator]
        return self._names

    @property
    def hll(self) -> npt.NDArray[np.object_]:
        """Each key's :func:`hll_key`, as an object array (so that ``hll[codes]`` picks them per record)."""
        if self._hll is None:
            limit, nul = _INT_HLL_LIMIT, "\x00"
            keys: list[Any] = self.keys
            self._hll = np.empty(len(keys), dtype=object)
            self._hll[:] = [  # hll_key, inlined for the common keys
                k
                if (kind := k.__class__) is int and 0 <= k < limit
                else "s" + k
                if kind is str and k[-1:] != nul
                else hll_key(k)
                for k in keys
            ]
        return self._hll

    def present(self) -> npt.NDArray[np.intp]:
        """The codes of the records that have a key."""
        return self.codes[self.codes >= 0] if self.missing else self.codes


def _objects(column: list[Any]) -> npt.NDArray[np.object_]:
    """A list as a 1-d object array (so that a day's records are picked in C, not in a Python loop)."""
    array = np.empty(len(column), dtype=object)
    array[:] = column
    return array


class _Tracked:
    """An item's visitors (HLL) and its visits, counted while the item was tracked.

    A decoded entry keeps its HLL serialised until it is used (a report reads a few items of a day, a
    merge copies the items it did not have as they are), so reading a day costs little more than its
    table of codes and visits."""

    __slots__ = ("_hll", "_raw", "visits")

    def __init__(self, hll: ds.hll_sketch | None, visits: int = 0, raw: bytes | memoryview | None = None) -> None:
        self._hll = hll
        self._raw = raw  # the serialisation, while the sketch is not made
        self.visits = visits

    @property
    def hll(self) -> ds.hll_sketch:
        """The sketch (made from its serialisation on first use; from then on it may change)."""
        if self._hll is None:
            assert self._raw is not None
            self._hll = ds.hll_sketch.deserialize(bytes(self._raw))
            self._raw = None
        return self._hll

    @hll.setter
    def hll(self, sketch: ds.hll_sketch) -> None:
        self._hll, self._raw = sketch, None

    def serialized(self) -> bytes | memoryview:
        """The sketch in its updatable serialisation (see :meth:`_Day.encode` for why not the compact one)."""
        return self._raw if self._hll is None else self._hll.serialize_updatable()  # type: ignore[return-value]

    def copy(self) -> _Tracked:
        """An independent copy (a serialised one as its own bytes: a view would keep the whole body it
        came from alive)."""
        if self._hll is None:
            return _Tracked(None, self.visits, bytes(self._raw))  # type: ignore[arg-type]
        return _Tracked(_copy_hll(self._hll), self.visits)

    def nbytes(self) -> int:
        if self._hll is None:
            return 100 + len(self._raw)  # type: ignore[arg-type]
        return 200 + int(1.4 * self._hll.get_updatable_serialization_bytes())


class _Day:
    """The sketches of one day key.

    A decoded day parses its parts on first use (:meth:`decode`): reading a window's visits touches only
    each day's count, its distinct visitors only each day's HLL. ``_body`` is the encoding the day was
    decoded from while nothing changed it, so that encoding it again costs nothing."""

    __slots__ = (
        "_body",
        "_categories",
        "_items",
        "_parts",
        "_tracked",
        "_visitors",
        "config",
        "pages",
        "visits",
    )

    def __init__(self, config: SketchConfig) -> None:
        self.config = config
        self.pages = 0  # pages added since this object was made (when to rebalance the tracked items)
        self.visits = 0
        self._visitors: ds.hll_sketch | None = ds.hll_sketch(config.hll_lg_k, _HLL_TYPE)
        self._items: ds.frequent_strings_sketch | None = ds.frequent_strings_sketch(config.frequent_lg_max_map_size)
        self._categories: ds.frequent_strings_sketch | None = ds.frequent_strings_sketch(
            config.frequent_lg_max_map_size
        )
        self._tracked: dict[str, _Tracked] | None = {}
        self._body: bytes | None = None
        self._parts: list[memoryview] = []  # the serialised parts not parsed yet (see decode)

    # -- parts, parsed on first use -------------------------------------------------------------------
    @property
    def visitors(self) -> ds.hll_sketch:
        if self._visitors is None:
            self._visitors = ds.hll_sketch.deserialize(bytes(self._parts[0]))
        return self._visitors

    @visitors.setter
    def visitors(self, sketch: ds.hll_sketch) -> None:
        self._visitors = sketch

    @property
    def items(self) -> ds.frequent_strings_sketch:
        if self._items is None:
            self._items = ds.frequent_strings_sketch.deserialize(bytes(self._parts[1]))
        return self._items

    @property
    def categories(self) -> ds.frequent_strings_sketch:
        if self._categories is None:
            self._categories = ds.frequent_strings_sketch.deserialize(bytes(self._parts[2]))
        return self._categories

    @property
    def tracked(self) -> dict[str, _Tracked]:
        if self._tracked is None:
            self._tracked = _read_tracked(self._parts[3])
        return self._tracked

    def _tracked_rows(self) -> Iterator[tuple[str, int, _Tracked | bytes]]:
        """Each tracked item's code, visits and sketch: its serialisation (bytes) while the table is not
        parsed (so that a merge takes a day's table without making an object per item)."""
        if self._tracked is not None:
            for code, entry in self._tracked.items():
                yield code, entry.visits, entry
            return
        codes, visits, starts, ends, hlls = _tracked_table(self._parts[3])
        for code, n, start, end in zip(codes, visits, starts, ends, strict=True):
            yield code, n, bytes(hlls[start:end])

    def _changing(self) -> None:
        """Called before any change: the encoding it was decoded from no longer holds."""
        self._body = None

    # -- counting -------------------------------------------------------------------------------------
    def add_keys(self, items: _Keys, visitors: _Keys, who: npt.NDArray[np.intp]) -> None:
        """Records with any keys: ``items`` factorised over this day's records, ``who`` their visitors'
        codes in ``visitors`` (-1: none). Numpy groups them by item; Python feeds the sketches once per
        distinct key.

        The sketches get what a per-record pass would give them, in the same order: the items in order of
        first appearance, the visitors as Python sets built in record order (an HLL's HIP estimate depends
        on the order of its inputs, so the order is kept, not only the inputs)."""
        self._changing()
        codes, names = items.codes, items.names
        self.visits += len(codes)
        counts = np.bincount(codes, minlength=len(names)).tolist()
        present = who >= 0
        if not bool(present.all()):
            codes, who = codes[present], who[present]
        keys = visitors.hll[who]
        everyone = set(keys.tolist())  # in record order: the set a per-record pass builds
        order = np.argsort(codes, kind="stable")  # stable: record order within each item
        grouped = keys[order].tolist()
        edges = np.searchsorted(codes[order], np.arange(len(names) + 1)).tolist()
        self._feed(everyone, names, counts, grouped, edges, distinct=False)

    def add_arrays(self, items: npt.NDArray[np.int64], visitors: npt.NDArray[np.int64]) -> None:
        """Integer items and visitors (every record has one): numpy groups them, Python only feeds sketches."""
        self._changing()
        self.visits += len(items)
        unique, inverse, counts = np.unique(items, return_inverse=True, return_counts=True)
        order = np.lexsort((visitors, inverse))
        owner, who = inverse[order], visitors[order]
        fresh = np.ones(len(owner), dtype=bool)
        fresh[1:] = (owner[1:] != owner[:-1]) | (who[1:] != who[:-1])
        owner, who_keys = owner[fresh], _hll_keys(who[fresh])
        edges = np.searchsorted(owner, np.arange(len(unique) + 1)).tolist()
        codes = [f"i{k}" for k in unique.tolist()]
        self._feed(_hll_keys(np.unique(visitors)), codes, counts.tolist(), who_keys, edges, distinct=True)

    def add_categories(self, categories: _Keys | npt.NDArray[np.int64]) -> None:
        """One sketch update per distinct category (in order of first appearance, for any keys)."""
        self._changing()
        update = self.categories.update
        if isinstance(categories, np.ndarray):
            unique, counts = np.unique(categories, return_counts=True)
            for key, n in zip(unique.tolist(), counts.tolist(), strict=True):
                update(f"i{key}", n)
        else:
            names = categories.names
            for code, n in zip(names, np.bincount(categories.present(), minlength=len(names)).tolist(), strict=True):
                update(code, n)
        _mend(self.categories)

    def _feed(
        self,
        everyone: Iterable[int | str],
        codes: list[str],
        counts: list[int],
        grouped: list[int | str],
        edges: list[int],
        *,
        distinct: bool,
    ) -> None:
        """Feed the day's sketches: ``everyone`` to the visitors' HLL, each item code its count, and the
        tracked items' HLLs ``grouped[edges[j]:edges[j + 1]]`` for item ``j`` (made a set first unless
        ``distinct``: the visitors of each item are then distinct already)."""
        update = self.visitors.update
        for who in everyone:
            update(who)
        update_item = self.items.update
        for code, count in zip(codes, counts, strict=True):
            update_item(code, count)
        _mend(self.items)
        self._track(codes, counts, grouped, edges, distinct=distinct)

    def _track(
        self, codes: list[str], counts: list[int], grouped: list[int | str], edges: list[int], *, distinct: bool
    ) -> None:
        """Feed the tracked items' HLLs, and start tracking new items (in order) while there is room."""
        tracked, cap, lg_k = self.tracked, self.config.tracked_items, self.config.item_hll_lg_k
        entries = list(map(tracked.get, codes))
        work: Iterable[tuple[int, _Tracked | None]]
        if len(tracked) >= cap:  # no room: only the items tracked already
            work = [(j, entry) for j, entry in enumerate(entries) if entry is not None]
        else:
            work = enumerate(entries)
        for j, entry in work:
            if entry is None:
                if len(tracked) >= cap:
                    continue
                entry = tracked[codes[j]] = _Tracked(ds.hll_sketch(lg_k, _HLL_TYPE))
            entry.visits += counts[j]
            start, end = edges[j], edges[j + 1]
            if end - start == 1:
                entry.hll.update(grouped[start])
            elif end > start:
                update = entry.hll.update
                for who in grouped[start:end] if distinct else set(grouped[start:end]):
                    update(who)
        self.pages += 1
        if cap and len(tracked) >= cap and self.pages % _REBALANCE_EVERY == 0:
            self._rebalance()

    def _rebalance(self) -> None:
        """Track, in place of the weakest tracked items, the untracked ones that the frequent-items sketch
        shows more than twice as visited (the margin keeps evenly visited items from displacing each other
        again and again; a displaced item's HLL is dropped, and its bounds widen by what it then misses)."""
        tracked = self.tracked
        leaders = self.items.get_frequent_items(_NO_FALSE_NEGATIVES)  # by estimate, highest first
        estimates = {code: estimate for code, estimate, _, _ in leaders}
        weakest = [(estimates.get(code, 0), code) for code in tracked]
        heapq.heapify(weakest)
        lg_k = self.config.item_hll_lg_k
        for code, estimate, _, _ in leaders:
            if estimate <= 2 * weakest[0][0]:
                break
            if code in tracked or code == _PURGED:
                continue
            _, victim = heapq.heapreplace(weakest, (estimate, code))
            del tracked[victim]
            tracked[code] = _Tracked(ds.hll_sketch(lg_k, _HLL_TYPE))

    # -- combining ------------------------------------------------------------------------------------
    def merge(self, other: _Day) -> None:
        self._changing()
        self.visits += other.visits
        union = ds.hll_union(self.config.hll_lg_k)
        union.update(self.visitors)
        union.update(other.visitors)
        self.visitors = union.get_result(_HLL_TYPE)
        self.items.merge(other.items)
        self.categories.merge(other.categories)
        _mend(self.items)
        _mend(self.categories)
        tracked, lg_k = self.tracked, self.config.item_hll_lg_k
        for code, visits, theirs in other._tracked_rows():
            mine = tracked.get(code)
            if mine is None:  # a serialised sketch is taken as it is (its own bytes), a live one copied
                tracked[code] = _Tracked(None, visits, theirs) if isinstance(theirs, bytes) else theirs.copy()
            else:
                item_union = ds.hll_union(lg_k)
                item_union.update(mine.hll)
                item_union.update(ds.hll_sketch.deserialize(theirs) if isinstance(theirs, bytes) else theirs.hll)
                mine.hll = item_union.get_result(_HLL_TYPE)
                mine.visits += visits
        excess = len(tracked) - self.config.tracked_items
        if excess > 0:  # keep the leaders by the merged sketch (ties by code, so merge order does not matter)
            estimate = self.items.get_estimate
            for _, code in heapq.nsmallest(excess, ((estimate(c), c) for c in tracked)):
                del tracked[code]

    # -- transport ------------------------------------------------------------------------------------
    def encode(self) -> bytes:
        """Format 2: a tag (-2; format 1 began with the visits, never negative), the visits, the visitors'
        HLL, the two frequent-items sketches, then the tracked items as one table: their codes, an array of
        their visits, an array of their HLLs' sizes and the HLLs end to end (a few reads per day instead
        of four per item, and a table that is parsed only when an item is asked for). A part never parsed
        is copied as it was read.

        HLLs stay in their updatable form: the compact one is smaller (by about a quarter of a day) and
        deserialises to the same estimate, but a union of compact sketches in list or set mode takes
        their entries in another order and estimates differently, so windows and merged days would
        depend on whether a day had been serialised."""
        if self._body is not None:
            return self._body
        out = BinaryWriter()
        out.i64(_DAY_FORMAT)
        out.i64(self.visits)
        parts = self._parts
        out.blob(self._visitors.serialize_updatable() if self._visitors is not None else parts[0])
        out.blob(self._items.serialize() if self._items is not None else parts[1])
        out.blob(self._categories.serialize() if self._categories is not None else parts[2])
        if self._tracked is None:
            out.raw(parts[3])
        else:
            entries = self._tracked.values()
            hlls = [entry.serialized() for entry in entries]
            out.strings(list(self._tracked))
            out.array(np.fromiter((entry.visits for entry in entries), dtype=np.int64, count=len(hlls)))
            out.array(np.fromiter(map(len, hlls), dtype=np.uint32, count=len(hlls)))
            out.blob(b"".join(hlls))
        return out.getvalue()

    @classmethod
    def decode(cls, body: bytes, config: SketchConfig) -> _Day:
        """The day :meth:`encode` wrote (format 2, parts parsed on first use) or an older Lifestats wrote
        (format 1, parsed at once)."""
        reader = BinaryReader(body)
        tag = reader.i64()
        if tag >= 0:
            return cls._decode_format_1(tag, reader, config)
        if tag != _DAY_FORMAT:
            raise ValueError(
                f"approximate statistics with a day of format {-tag}; this Lifestats reads up to {-_DAY_FORMAT}"
            )
        day = cls.__new__(cls)
        day.config = config
        day.pages = 0
        day.visits = reader.i64()
        day._parts = [reader.view(), reader.view(), reader.view(), reader.rest()]
        day._visitors = day._items = day._categories = None
        day._tracked = None
        day._body = body
        return day

    @classmethod
    def _decode_format_1(cls, visits: int, reader: BinaryReader, config: SketchConfig) -> _Day:
        day = cls(config)
        day.visits = visits
        day.visitors = ds.hll_sketch.deserialize(reader.blob())
        day._items = ds.frequent_strings_sketch.deserialize(reader.blob())
        day._categories = ds.frequent_strings_sketch.deserialize(reader.blob())
        for code in reader.strings():
            visits = reader.i64()
            day.tracked[code] = _Tracked(ds.hll_sketch.deserialize(reader.blob()), visits)
        reader.end()
        return day

    def nbytes(self) -> int:
        """Measured in-memory sizes: about 4x the serialised frequent-items map, 1.4x an HLL, plus objects;
        the serialised size of the parts not parsed yet."""
        size = 300 + sum(len(part) for part in self._parts)
        if self._visitors is not None:
            size += self._visitors.get_updatable_serialization_bytes()
        for sketch in (self._items, self._categories):
            if sketch is not None:
                size += 4 * sketch.get_serialized_size_bytes()
        if self._tracked is not None:
            size += sum(entry.nbytes() for entry in self._tracked.values())
        return size


def _tracked_table(part: memoryview) -> tuple[list[str], list[int], list[int], list[int], memoryview]:
    """The tracked items' table that :meth:`_Day.encode` wrote: codes, visits, where each HLL starts and
    ends in the last value (the HLLs end to end)."""
    reader = BinaryReader(part)
    codes = reader.strings()
    visits = reader.array(np.int64).tolist()
    ends = np.cumsum(reader.array(np.uint32), dtype=np.int64).tolist()
    hlls = reader.view()
    reader.end()
    if not len(codes) == len(visits) == len(ends) or (ends and ends[-1] != len(hlls)):
        raise ValueError("approximate statistics with a malformed table of tracked items")
    return codes, visits, [0, *ends[:-1]] if ends else [], ends, hlls


def _read_tracked(part: memoryview) -> dict[str, _Tracked]:
    """The tracked items, each HLL left serialised (a view of ``part``) until it is used."""
    codes, visits, starts, ends, hlls = _tracked_table(part)
    return {
        code: _Tracked(None, n, hlls[start:end])
        for code, n, start, end in zip(codes, visits, starts, ends, strict=True)
    }


class _Bucket:
    __slots__ = ("visitors", "visits")

    def __init__(self, lg_k: int) -> None:
        self.visits = 0
        self.visitors = ds.hll_sketch(lg_k, _HLL_TYPE)

    def encode(self) -> bytes:
        return self.visits.to_bytes(8, "little", signed=True) + self.visitors.serialize_updatable()

    @classmethod
    def decode(cls, body: bytes, lg_k: int) -> _Bucket:
        point = cls.__new__(cls)
        point.visits = int.from_bytes(body[:8], "little", signed=True)
        point.visitors = ds.hll_sketch.deserialize(body[8:])
        return point


class ApproxStatistics(DayKeyed):
    """The :class:`~lifestats.statistics.Statistics` protocol over DataSketches, per day.

    Days and fine series buckets each live in a :class:`~lifestats.spill.SpillStore`: only the ``live_days``
    most recently updated days are sketch objects; the others wait serialised (several times smaller),
    in memory up to ``memory_bytes`` and then in a temporary file, so memory does not grow with the
    records or the days counted. :meth:`from_bytes` leaves every day serialised until it is needed, and
    reads decode one day at a time.
    """

    MAGIC: Final = b"LSAP"
    VERSION: Final = 2  # 2: days in format 2 (see _Day.encode); version 1 bodies are still read

    def __init__(
        self,
        config: SketchConfig | None = None,
        *,
        live_days: int = 8,
        memory_bytes: int = 8 << 20,
        spill_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.config = config = config or SketchConfig()
        self.live_days = max(1, live_days)
        self.memory_bytes = memory_bytes
        self.spill_dir = spill_dir
        self._days: SpillStore[int, _Day] = SpillStore(
            _Day.encode,
            lambda body: _Day.decode(body, config),
            live=self.live_days,
            memory_bytes=memory_bytes // 2,
            directory=spill_dir,
        )
        self._buckets: SpillStore[int, _Bucket] = SpillStore(
            _Bucket.encode,
            lambda body: _Bucket.decode(body, config.hll_lg_k),
            live=4 * self.live_days,
            memory_bytes=memory_bytes // 2,
            directory=spill_dir,
        )

    def _new_day(self) -> _Day:
        return _Day(self.config)

    def _new_bucket(self) -> _Bucket:
        return _Bucket(self.config.hll_lg_k)

    # -- days, live or serialised ---------------------------------------------------------------------
    def _updating(self, day: int) -> _Day:
        return self._days.updating(day, self._new_day)

    def _reading(self, days: DayRange) -> Iterator[_Day]:
        """The days in the range, oldest first, each decoded only while it is being read."""
        for day in sorted(d for d in self._days if days.first <= d <= days.last):
            yield self._days[day]

    def close(self) -> None:
        """Let go of every sketch and of the spill file now (garbage collection would, later)."""
        self._days.close()
        self._buckets.close()

    # -- writes ---------------------------------------------------------------------------------------
    def add(self, columns: Columns) -> None:
        items, visitors = _int_column(columns.items), _int_column(columns.visitors)
        int_categories = _int_column(columns.categories)
        days = list(columns.day_indices())
        if items is not None and visitors is not None:  # integer keys, none missing: numpy groups them
            category_list = _page_column(columns.categories, int_categories, len(days))
            for day, where in days:
                state = self._updating(day)
                if where is None:
                    state.add_arrays(items, visitors)
                else:
                    state.add_arrays(items[where], visitors[where])
                state.add_categories(_day_keys(int_categories, category_list, where))
            if columns.buckets is not None:
                self._add_buckets(columns.buckets, lambda at: _hll_keys(visitors[at]))
            return
        visitor_keys = _Keys(as_list(columns.visitors))  # for the whole page: days and buckets pick from it
        item_list = _page_column(columns.items, None, len(days))
        category_list = _page_column(columns.categories, int_categories, len(days))
        for day, where in days:
            state = self._updating(day)
            who = visitor_keys.codes if where is None else visitor_keys.codes[where]
            state.add_keys(_Keys(_at(item_list, where)), visitor_keys, who)
            state.add_categories(_day_keys(int_categories, category_list, where))
        if columns.buckets is not None:
            codes, hll = visitor_keys.codes, visitor_keys.hll

            def keys_at(at: npt.NDArray[np.intp]) -> list[int | str]:
                who = codes[at]
                return hll[who[who >= 0]].tolist()  # type: ignore[no-any-return]

            self._add_buckets(columns.buckets, keys_at)

    def _add_buckets(
        self,
        buckets: npt.NDArray[np.int64],
        keys_at: Callable[[npt.NDArray[np.intp]], list[int | str]],
    ) -> None:
        """Visits and visitors per fine series bucket: the records grouped by bucket in numpy (record order
        kept within a bucket), each bucket's HLL fed the set of its visitors' keys, as a per-record pass
        would build it."""
        buckets = np.asarray(buckets)
        order = np.argsort(buckets, kind="stable")
        ordered = buckets[order]
        starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1]))).tolist()
        for start, end in zip(starts, [*starts[1:], len(buckets)], strict=True):
            bucket = int(ordered[start])
            if bucket == NO_BUCKET:
                continue
            point = self._buckets.updating(bucket, self._new_bucket)
            point.visits += end - start
            update = point.visitors.update
            for key in set(keys_at(order[start:end])):
                update(key)

    def merge(self, other: ApproxStatistics) -> ApproxStatistics:
        if other.config != self.config:
            raise ValueError(f"cannot merge sketches of different sizes ({self.config} and {other.config})")
        for day in sorted(other._days):
            if day not in self._days:  # a copy keeps a lone sketch's own (HIP) estimator
                self._days.put_encoded(day, other._days.encoded(day))
                continue
            self._updating(day).merge(other._days[day])
        for bucket in sorted(other._buckets):
            their_point = other._buckets[bucket]
            point = self._buckets.updating(bucket, self._new_bucket)
            point.visits += their_point.visits
            union = ds.hll_union(self.config.hll_lg_k)
            union.update(point.visitors)
            union.update(their_point.visitors)
            point.visitors = union.get_result(_HLL_TYPE)
        return self

    # -- reads ----------------------------------------------------------------------------------------
    def visits(self, days: DayRange) -> Estimate:
        return Estimate(sum(state.visits for state in self._reading(days)))  # counted exactly

    def distinct_visitors(self, days: DayRange) -> Estimate:
        most = self.visits(days).value
        return _distinct(_union((s.visitors for s in self._reading(days)), self.config.hll_lg_k), most)

    def _frequent(self, days: DayRange, which: str) -> ds.frequent_strings_sketch | None:
        merged = None
        for state in self._reading(days):
            sketch = getattr(state, which)
            if merged is None:
                merged = ds.frequent_strings_sketch.deserialize(sketch.serialize())
            else:
                merged.merge(sketch)
        return merged

    def rank_error(self, days: DayRange) -> int:
        """The most visits an item missing from the rankings of ``days`` may have; also the widest
        ``visits_bounds`` of a ranked item (the frequent-items sketch's maximum error)."""
        merged = self._frequent(days, "items")
        return 0 if merged is None else int(merged.get_upper_bound(_NEVER_A_KEY))

    def top_items(self, days: DayRange, k: int) -> list[ItemRow]:
        merged = self._frequent(days, "items")
        if merged is None or k <= 0:
            return []
        ranked = _ranked(merged, k)
        unions = {code: ds.hll_union(self.config.item_hll_lg_k) for _, code, _ in ranked}
        seen = dict.fromkeys(unions, 0)
        sketches = dict.fromkeys(unions, 0)  # how many days tracked the item
        first: dict[str, ds.hll_sketch] = {}  # its sketch when only one day did (no day's sketch is kept longer)
        for state in self._reading(days):
            for code in unions:
                entry = state.tracked.get(code)
                if entry is not None:
                    unions[code].update(entry.hll)
                    seen[code] += entry.visits
                    sketches[code] += 1
                    if sketches[code] == 1:
                        first[code] = entry.hll
                    else:
                        first.pop(code, None)
        rows = []
        for key, code, visits in ranked:
            if not sketches[code]:
                hll = _distinct(None)
            else:  # a lone sketch keeps its own (HIP) estimator; a union answers otherwise
                hll = _distinct(first[code] if sketches[code] == 1 else unions[code].get_result(_HLL_TYPE))
            rows.append(ItemRow(key, visits, _item_visitors(hll, visits, seen[code])))
        return rows

    def top_categories(self, days: DayRange, k: int) -> list[CategoryRow]:
        merged = self._frequent(days, "categories")
        if merged is None or k <= 0:
            return []
        return [CategoryRow(key, visits) for key, _, visits in _ranked(merged, k)]

    def _bucket_point(self, point: _Bucket) -> Point:
        return Point(Estimate(point.visits), _distinct(point.visitors, point.visits))

    def nbytes(self) -> int:
        """Memory held: the live sketches and the serialised ones kept in memory (not the spill file)."""
        total = sum(day.nbytes() for day in self._days.live_values())
        total += sum(300 + b.visitors.get_updatable_serialization_bytes() for b in self._buckets.live_values())
        return total + self._days.cold_bytes_in_memory() + self._buckets.cold_bytes_in_memory()

    def spilled_bytes(self) -> int:
        """The size of the temporary files the serialised days and buckets went to past ``memory_bytes``."""
        return self._days.file_bytes() + self._buckets.file_bytes()

    # -- transport ------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        out = io.BytesIO()
        self.write_to(out)
        return out.getvalue()

    def write_to(self, stream: BinaryIO) -> int:
        """Write what :meth:`to_bytes` returns to ``stream`` a day at a time (memory of one day, not of
        the whole body: for a checkpoint that keeps large totals); returns the bytes written."""
        written = 0

        def put(out: BinaryWriter) -> None:
            nonlocal written
            body = out.getvalue()
            stream.write(body)
            written += len(body)

        out = BinaryWriter()
        out.raw(self.MAGIC + self.VERSION.to_bytes(2, "little"))
        c = self.config
        for value in (c.hll_lg_k, c.item_hll_lg_k, c.frequent_lg_max_map_size, c.tracked_items):
            out.u32(value)
        out.u32(len(self._days))
        put(out)
        for day in sorted(self._days):
            out = BinaryWriter()
            out.i64(day)
            out.blob(self._days.encoded(day))
            put(out)
        out = BinaryWriter()
        out.u32(len(self._buckets))
        for bucket in sorted(self._buckets):
            point = self._buckets[bucket]
            out.i64(bucket)
            out.i64(point.visits)
            out.blob(point.visitors.serialize_updatable())
        put(out)
        return written

    @classmethod
    def from_bytes(cls, body: bytes) -> ApproxStatistics:
        """The statistics that :meth:`to_bytes` wrote; each day stays serialised until it is used."""
        stream = io.BytesIO(body)
        stats = cls.read_from(stream)
        if stream.tell() != len(body):
            raise ValueError("statistics body has trailing bytes")
        return stats

    @classmethod
    def read_from(cls, stream: BinaryIO, *, magic: bytes | None = None) -> ApproxStatistics:
        """The statistics that :meth:`write_to` wrote to ``stream``, read a day at a time: each day stays
        serialised (kept within the spill store's memory budget, the rest in its file), so reading a
        large total costs the memory of one day, not of the body. ``magic``: the first bytes, when the
        caller already read them (to tell which statistics follow)."""
        reader = _StreamReader(stream, magic or b"")
        found = reader.raw(len(cls.MAGIC))
        if found != cls.MAGIC:
            raise ValueError(f"not approximate statistics: the body starts with {found!r}, not {cls.MAGIC!r}")
        version = reader.u16()
        if not 1 <= version <= cls.VERSION:  # version 1 bodies are still read (as in check_header)
            raise ValueError(
                f"approximate statistics of format version {version}; this Lifestats reads versions 1 to {cls.VERSION}"
            )
        try:
            config = SketchConfig(reader.u32(), reader.u32(), reader.u32(), reader.u32())
        except ValueError as exc:
            raise ValueError(f"approximate statistics with impossible sketch sizes: {exc}") from None
        stats = cls(config)
        for _ in range(reader.u32()):
            day = reader.i64()
            stats._days.put_encoded(day, reader.blob())
        for _ in range(reader.u32()):
            bucket = reader.i64()
            visits = reader.i64()
            stats._buckets.put_encoded(bucket, visits.to_bytes(8, "little", signed=True) + reader.blob())
        return stats


class _StreamReader:
    """The reads of :class:`~lifestats.statistics.BinaryReader` over a stream (ValueError when it ends early)."""

    def __init__(self, stream: BinaryIO, pushed_back: bytes = b"") -> None:
        self._stream = stream
        self._pushed_back = pushed_back

    def raw(self, n: int) -> bytes:
        head, self._pushed_back = self._pushed_back[:n], self._pushed_back[n:]
        data = head + self._stream.read(n - len(head)) if len(head) < n else head
        if len(data) != n:
            raise ValueError("statistics body is truncated")
        return data

    def u16(self) -> int:
        return int.from_bytes(self.raw(2), "little")

    def u32(self) -> int:
        return int.from_bytes(self.raw(4), "little")

    def i64(self) -> int:
        return int.from_bytes(self.raw(8), "little", signed=True)

    def blob(self) -> bytes:
        return self.raw(self.u32())


def _page_column(column: Any, array: npt.NDArray[np.int64] | None, days: int) -> list[Any] | npt.NDArray[np.object_]:
    """A key column ready for :func:`_day_keys`: nothing when it is an integer array, a list when the page
    is one day, an object array when it holds several (each day's records are picked in C, not one by one)."""
    if array is not None:
        return []
    return as_list(column) if days == 1 else _objects(as_list(column))


def _at(column: list[Any] | npt.NDArray[np.object_], where: npt.NDArray[np.intp] | None) -> list[Any]:
    """The records of a column at ``where`` (all when None; then the column is a list)."""
    return column if where is None else column[where].tolist()  # type: ignore[return-value]


def _day_keys(
    array: npt.NDArray[np.int64] | None,
    column: list[Any] | npt.NDArray[np.object_],
    where: npt.NDArray[np.intp] | None,
) -> _Keys | npt.NDArray[np.int64]:
    """One day's records of a key column: an integer array as it is, any other column factorised (the
    column is an object array when the page holds several days)."""
    if array is not None:
        return array if where is None else array[where]
    return _Keys(_at(column, where))


def _mend(sketch: ds.frequent_strings_sketch) -> None:
    """Keep a frequent-items sketch from reading as empty when a purge has removed all its counters (every
    counter equal, as with many items seen once): DataSketches then serialises it, and skips it in a
    merge, as a sketch that saw nothing, losing its total weight and the error its purges accumulated,
    so that the upper bounds of the items it saw fall below their counts (apache/datasketches-cpp#527,
    open). One visit of a key that no record can have makes it non-empty: the sketch then summarises a
    stream with that one visit more, whose bounds still hold for every real key; :func:`_ranked` and the
    rebalancing of tracked items skip it. Called after every change to a sketch that is kept."""
    if sketch.num_active_items == 0 and sketch.total_weight > 0:
        sketch.update(_PURGED, 1)


def _ranked(sketch: ds.frequent_strings_sketch, k: int) -> list[tuple[Key, str, Estimate]]:
    """The sketch's ``k`` leaders by estimate (ties per :func:`rank_key`), each with its visits bounds."""
    rows = []
    for code, estimate, lower, upper in sketch.get_frequent_items(_NO_FALSE_NEGATIVES):
        if code == _PURGED:
            continue
        rows.append((decode_key(code), code, Estimate(int(estimate), int(lower), int(upper))))
    return heapq.nsmallest(k, rows, key=lambda row: rank_key(row[0], row[2].value))


def _item_visitors(hll: Estimate, visits: Estimate, seen: int) -> Estimate:
    """Distinct visitors of an item from its tracked HLL, widened by the visits it was not tracked for."""
    most_visits = visits.upper if visits.upper is not None else visits.value
    unseen_most = max(0, most_visits - seen)
    unseen_guess = max(0, visits.value - seen)
    assert hll.lower is not None and hll.upper is not None
    lower = min(hll.lower, most_visits)
    upper = max(lower, min(most_visits, hll.upper + unseen_most))
    ratio = hll.value / seen if seen else 1.0  # the unseen visits' share of new visitors, as in the seen ones
    value = round(hll.value + ratio * unseen_guess)
    return Estimate(min(max(value, lower), upper), lower, upper)


if TYPE_CHECKING:  # both implementations keep to the protocol (checked by mypy, free at run time)
    _exact_fits: type[Statistics] = ExactStatistics
    _approx_fits: type[Statistics] = ApproxStatistics
