"""A deterministic synthetic event dataset for the mock API, and its independent ground truth.

The records are cut into chunks of `DatasetSpec.chunk` records, each drawn as numpy columns from its own
seeded random streams, so any chunk can be drawn alone and the same spec always gives the same records,
whatever order they are asked in. `LazyDataset(spec)` draws chunks as pages need them (memory flat in the
number of records: what the mock server serves); `generate(spec)` draws them all into one in-memory
`Dataset` (the same records, for tests that want whole columns). `record` / `page` render records as the
API serves them (JSON-ready python values); a few malformed records are kept as ``(index, kind)``
overrides on top of the columns. `ground_truth` computes the report's ``records``, ``windows`` and
``series`` sections (docs/DATA_CONTRACT.md) vectorised, streaming over the chunks. It shares no code with
``lifestats/``: it is the oracle the crawler is tested against.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any, Final, overload
from zoneinfo import ZoneInfo

import numpy as np
import orjson

__all__ = [
    "BOT_IPS",
    "BOT_UA_PATTERNS",
    "FIELDS",
    "Dataset",
    "DatasetSpec",
    "LazyDataset",
    "generate",
    "ground_truth",
]

# The record keys, as a Lifestats `fields` config section that maps report names to them.
FIELDS: Final[dict[str, str]] = {
    name: name for name in ("id", "item", "category", "visitor", "timestamp", "ip", "user_agent")
}

BOT_IPS: Final[tuple[str, ...]] = ("203.0.113.7", "203.0.113.8", "198.51.100.23")
BOT_UA_PATTERNS: Final[tuple[str, ...]] = (r"(?i)examplebot", r"(?i)scrapy")

BROWSER_UAS: Final[tuple[str, ...]] = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.3 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.3 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/122.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/122.0.0.0 Safari/537.36 Edg/122.0.2365.66",
)
BOT_UAS: Final[tuple[str, ...]] = (
    "Mozilla/5.0 (compatible; ExampleBot/2.1; +https://bot.example.com/)",
    "Scrapy/2.11.1 (+https://scrapy.org)",
    "examplebot-lite/0.3",
)
# Normal addresses that a prefix or substring test would confuse with BOT_IPS.
_LOOKALIKE_IPS: Final = ("203.0.113.70", "203.0.113.78", "198.51.100.230", "10.203.0.113")

WINDOWS: Final = ("all", "yesterday", "last_7_days", "last_30_days", "this_year")
BUCKETS: Final = ("minute", "hour", "day", "week", "month", "year")

SPAN_DAYS: Final = 395  # ~13 months of timestamps before spec.end
ITEM_EXPONENT: Final = 1.1
VISITOR_EXPONENT: Final = 0.8
_DENSE_LIMIT: Final = 1 << 26  # largest groups x visitors bitmap for distinct counting
_MERGE_AT: Final = 1 << 22  # pair codes a sparse distinct count holds unmerged at least (32 MB)

# Timestamp renderings: ISO "+00:00", ISO "Z", ISO "+05:30", ISO "-08:00", epoch s int, epoch s float, ms.
FMT_ISO_UTC, FMT_ISO_Z, FMT_ISO_IST, FMT_ISO_PST, FMT_SECONDS, FMT_FLOAT, FMT_MILLIS = range(7)
_FMT_P: Final = (0.30, 0.15, 0.10, 0.10, 0.15, 0.10, 0.10)
_ISO_ZONES: Final[dict[int, tzinfo]] = {
    FMT_ISO_UTC: UTC,
    FMT_ISO_Z: UTC,
    FMT_ISO_IST: timezone(timedelta(hours=5, minutes=30)),
    FMT_ISO_PST: timezone(timedelta(hours=-8)),
}
# Optional-field states.
PRESENT, NULL, MISSING = 0, 1, 2

# Malformed record kinds: (field, replacement, outcome); _DROP removes the key. A _REJECTED kind makes the
# record rejected; a _MISSING kind only leaves the record out of what that field feeds (the record counts).
# No kind breaks the id: a record without a usable id has no place of its own in the id space, so which
# slice rejects it depends on how the crawl cut the pages, and no ground truth can say it in advance.
_DROP: Final = object()
_REJECTED, _MISSING = "rejected", "missing"
_MALFORMED: Final[tuple[tuple[str, Callable[[Any], Any], str], ...]] = (
    ("item", lambda v: _DROP, _REJECTED),
    ("item", lambda v: None, _REJECTED),
    ("item", lambda v: float(v) if isinstance(v, int) else 7.0, _REJECTED),
    ("item", lambda v: [v], _REJECTED),
    ("item", lambda v: True, _REJECTED),
    ("item", lambda v: False, _REJECTED),
    ("item", lambda v: {"id": v}, _REJECTED),
    ("item", lambda v: 2**63 + 7, _REJECTED),  # an integer outside the signed 64-bit range
    ("timestamp", lambda v: "not a date", _REJECTED),
    ("timestamp", lambda v: "2025-02-30T10:00:00+00:00", _REJECTED),
    ("timestamp", lambda v: "2025-03-01T10:00:00", _REJECTED),
    ("timestamp", lambda v: True, _REJECTED),
    ("timestamp", lambda v: [1], _REJECTED),
    ("timestamp", lambda v: "", _REJECTED),
    ("timestamp", lambda v: 10**15, _REJECTED),  # milliseconds in the year 33658
    ("timestamp", lambda v: -1e12, _REJECTED),  # seconds in the year -29719
    ("timestamp", lambda v: "9999-12-31T23:30:00-05:00", _REJECTED),  # the year 10000 in UTC
    ("timestamp", lambda v: "0001-01-01T00:30:00+01:00", _REJECTED),  # the year 0 in UTC
    ("timestamp", lambda v: "2026-03-14T10:00:00\x00+00:00", _REJECTED),  # a control character
    ("ip", lambda v: [v], _MISSING),  # unhashable: not a bot by ip
    ("ip", lambda v: {"v4": v}, _MISSING),
    ("user_agent", lambda v: [v], _MISSING),
    ("visitor", lambda v: [v], _MISSING),
    ("visitor", lambda v: 2**63 + 5, _MISSING),
    ("category", lambda v: {"id": v}, _MISSING),
)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE: Final = datetime(1970, 1, 1)
_US: Final = timedelta(microseconds=1)


def _rows(limit: int, start: int, n: int) -> tuple[int, int]:
    """The row range of a page of at most ``limit`` records from row ``start`` of ``n`` (empty: start >= stop)."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    return start, min(start + int(limit), n)


@dataclass(frozen=True)
class DatasetSpec:
    seed: int = 0
    records: int = 10_000
    items: int = 2_000
    categories: int = 40
    visitors: int = 3_000
    first_id: int = 4_294_967_000
    mean_gap: float = 1.5
    empty_share: float = 0.2
    stretches: int = 3
    end: str = "2026-03-15T12:00:00+00:00"
    bot_share: float = 0.03
    malformed_share: float = 0.005
    null_share: float = 0.01
    chunk: int = 1 << 16  # records drawn together (each chunk from its own seeded streams)

    def validate(self) -> None:
        checks = {
            "seed >= 0": self.seed >= 0,
            "records >= 1": self.records >= 1,
            "chunk >= 1": self.chunk >= 1,
            "items >= 1": self.items >= 1,
            "categories >= 1": self.categories >= 1,
            "visitors >= 1": self.visitors >= 1,
            "first_id >= 0": self.first_id >= 0,
            "mean_gap >= 1": self.mean_gap >= 1,
            "0 <= empty_share < 1": 0 <= self.empty_share < 1,
            "stretches >= 0": self.stretches >= 0,
            "shares in [0, 1]": all(0 <= s <= 1 for s in (self.bot_share, self.malformed_share)),
            "bot_share + malformed_share <= 1": self.bot_share + self.malformed_share <= 1,
            "0 <= null_share <= 0.5": 0 <= self.null_share <= 0.5,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"invalid DatasetSpec: {', '.join(failed)}")
        if datetime.fromisoformat(self.end).tzinfo is None:
            raise ValueError("DatasetSpec.end needs a UTC offset")


@dataclass(eq=False)
class Dataset:
    """Column arrays of one generated dataset; records are rendered on demand."""

    spec: DatasetSpec
    ids: np.ndarray  # int64, strictly increasing
    item: np.ndarray  # int32 index into item_ids
    visitor: np.ndarray  # int32 code: 2 * visitor index + (1 if rendered as int)
    visitor_state: np.ndarray  # int8 PRESENT / NULL / MISSING
    category_state: np.ndarray  # int8
    ts_ms: np.ndarray  # int64 epoch milliseconds (multiples of 250)
    ts_format: np.ndarray  # int8 FMT_*
    ts_state: np.ndarray  # int8
    ip: np.ndarray  # int16 index into ip_values
    ua: np.ndarray  # int8 index into ua_values, -1 = key missing
    malformed_index: np.ndarray  # int64, sorted record indices
    malformed_kind: np.ndarray  # int8 index into _MALFORMED
    item_ids: tuple[int | str, ...]
    item_category: np.ndarray  # int32 category index per item
    category_ids: tuple[str, ...]
    ip_values: tuple[str, ...]
    ua_values: tuple[str, ...]
    json_box: _JsonBox | None = None  # JSON fragments, shared by the chunks of one dataset (built on first use)

    @property
    def first_id(self) -> int:
        return int(self.ids[0])

    @property
    def end_id(self) -> int:
        return int(self.ids[-1]) + 1

    def __len__(self) -> int:
        return len(self.ids)

    def record(self, i: int) -> dict[str, Any]:
        n = len(self)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"record {i} out of range for {n} records")
        return self._render(i % n, i % n + 1)[0]

    def page(self, offset: int, limit: int) -> tuple[list[dict[str, Any]], int | None]:
        """The first `limit` records with id >= offset, and the offset of the next page (None: no more)."""
        start, stop = _rows(limit, self._index_of(offset), len(self))
        if start >= stop:
            return [], None
        next_offset = int(self.ids[stop - 1]) + 1 if stop < len(self) else None
        return self._render(start, stop), next_offset

    def _index_of(self, offset: int | None) -> int:
        """Index of the first record with id >= offset (None: 0)."""
        if offset is None or offset <= self.first_id:
            return 0
        if offset >= self.end_id:
            return len(self)
        return int(np.searchsorted(self.ids, offset, side="left"))

    def _render(self, start: int, stop: int, rows: np.ndarray | None = None) -> list[dict[str, Any]]:
        """Records [start, stop) (or those at the sorted indices `rows`) as the API serves them; timestamps
        and visitors rendered column-wise."""
        sl: slice | np.ndarray = slice(start, stop) if rows is None else rows
        item = self.item[sl]
        item_ids = self.item_ids
        columns = zip(
            self.ids[sl].tolist(),
            [item_ids[j] for j in item.tolist()],
            self.category_state[sl].tolist(),
            self.item_category[item].tolist(),
            render_visitors(self.visitor[sl], _visitor_width(self.spec.visitors)),
            self.visitor_state[sl].tolist(),
            render_timestamps(self.ts_ms[sl], self.ts_format[sl]),
            self.ts_state[sl].tolist(),
            self.ip[sl].tolist(),
            self.ua[sl].tolist(),
            strict=True,
        )
        category_ids = self.category_ids
        out: list[dict[str, Any]] = []
        for rid, item_id, cat_state, cat, vis, vis_state, stamp, ts_state, ip, ua in columns:
            rec: dict[str, Any] = {"id": rid, "item": item_id}
            if cat_state != MISSING:
                rec["category"] = category_ids[cat] if cat_state == PRESENT else None
            if vis_state != MISSING:
                rec["visitor"] = vis if vis_state == PRESENT else None
            if ts_state != MISSING:
                rec["timestamp"] = stamp if ts_state == PRESENT else None
            rec["ip"] = self.ip_values[ip]
            if ua >= 0:
                rec["user_agent"] = self.ua_values[ua]
            out.append(rec)
        if rows is None:
            self._apply_malformed(start, stop, out)
        else:
            self._apply_malformed_rows(rows, out)
        return out

    def _apply_malformed_rows(self, rows: np.ndarray, out: list[dict[str, Any]]) -> None:
        at = np.searchsorted(self.malformed_index, rows)
        inside = at < len(self.malformed_index)
        hit = np.flatnonzero(inside & (self.malformed_index[np.minimum(at, len(self.malformed_index) - 1)] == rows))
        for j, kind in zip(hit.tolist(), self.malformed_kind[at[hit]].tolist(), strict=True):
            self._break(out[j], kind)

    def _apply_malformed(self, start: int, stop: int, out: list[dict[str, Any]]) -> None:
        lo, hi = np.searchsorted(self.malformed_index, [start, stop])
        for idx, kind in zip(self.malformed_index[lo:hi].tolist(), self.malformed_kind[lo:hi].tolist(), strict=True):
            self._break(out[idx - start], kind)

    @staticmethod
    def _break(rec: dict[str, Any], kind: int) -> None:
        field, breaker, _ = _MALFORMED[kind]
        value = breaker(rec.get(field) if field != "item" else rec["item"])
        if value is _DROP:
            rec.pop(field, None)
        else:
            rec[field] = value

    def page_json(self, offset: int, limit: int) -> tuple[bytes, int | None]:
        """`page` as the JSON text of its record list: the same records, rendered without dicts."""
        start, stop = _rows(limit, self._index_of(offset), len(self))
        if start >= stop:
            return b"[]", None
        next_offset = int(self.ids[stop - 1]) + 1 if stop < len(self) else None
        return b"[" + self._render_json(start, stop)[:-1] + b"]", next_offset

    def _tables(self) -> _JsonTables:
        if self.json_box is None:
            self.json_box = _JsonBox()
        if self.json_box.tables is None:
            self.json_box.tables = _JsonTables.of(self)
        return self.json_box.tables

    def _render_json(self, start: int, stop: int) -> bytes:
        """Records [start, stop) as JSON objects, each followed by a comma, rendered column by column in
        numpy (no Python work per record): every field is a fixed-width byte column, padded with spaces
        (JSON whitespace), so each record is a row of one byte matrix. Parsed, they equal what `_render`
        gives; the few malformed records are rendered by `_render` and spliced in."""
        tables = self._tables()
        sl = slice(start, stop)
        n = stop - start
        item = self.item[sl]
        category_state = self.category_state[sl]
        pick = np.where(category_state == PRESENT, self.item_category[item], len(tables.categories) - 2)
        pick[category_state == MISSING] = len(tables.categories) - 1
        ids = self.ids[sl]
        columns = [
            _constant(b'{"id":', n),
            _number(ids, _width(ids)) if ids[0] >= 0 else _bytes(np.strings.ljust(ids.astype(np.bytes_), 20)),
            _constant(b',"item":', n),
            _bytes(tables.items[item]),
            _bytes(tables.categories[pick]),
            _visitor_column(self.visitor[sl], self.visitor_state[sl], _visitor_width(self.spec.visitors)),
            _timestamp_column(self.ts_ms[sl], self.ts_format[sl], self.ts_state[sl]),
            _constant(b',"ip":', n),
            _bytes(tables.ips[self.ip[sl]]),
            _bytes(tables.uas[self.ua[sl] + 1]),
            _constant(b"},", n),
        ]
        matrix = np.concatenate(columns, axis=1)
        body = matrix.tobytes()
        lo, hi = np.searchsorted(self.malformed_index, [start, stop])
        if lo == hi:
            return body
        rows = self.malformed_index[lo:hi]
        width = matrix.shape[1]
        parts, done = [], 0
        for row, record in zip((rows - start).tolist(), self._render(0, 0, rows), strict=True):
            parts += [body[done * width : row * width], orjson.dumps(record), b","]
            done = row + 1
        parts.append(body[done * width :])
        return b"".join(parts)

    def parts(self, begin: int | None = None, end: int | None = None) -> Iterator[tuple[Dataset, int, int]]:
        """The records with begin <= id < end as (dataset, lo, hi) index ranges: here, one range of self."""
        lo = self._index_of(begin)
        hi = max(lo, self._index_of(end)) if end is not None else len(self)
        yield self, lo, hi


class LazyDataset:
    """The dataset of `spec`, drawn chunk by chunk when a page needs it: memory holds the per-chunk first ids
    and the `cached_chunks` most recently used chunks (about 2 MB each at the default 2^16 records, ~20 ms to
    draw), whatever the number of records: enough for as many workers crawling different places at once.
    Serves the same records as `generate(spec)` (`Dataset`), and `ground_truth` streams over its chunks."""

    def __init__(self, spec: DatasetSpec, *, cached_chunks: int = 16) -> None:
        self.spec = spec
        self._plan = _Plan.of(spec)
        self._cache: OrderedDict[int, Dataset] = OrderedDict()
        self._cached = max(1, cached_chunks)
        self._lock = threading.Lock()
        plan = self._plan
        self.item_ids, self.item_category, self.category_ids = plan.item_ids, plan.item_category, plan.category_ids
        self.ip_values, self.ua_values = plan.ip_values, plan.ua_values

    @property
    def first_id(self) -> int:
        return int(self._plan.chunk_first[0])

    @property
    def end_id(self) -> int:
        return self._plan.end_id

    def __len__(self) -> int:
        return self.spec.records

    @property
    def ids(self) -> _LazyIds:
        """The ids in row order, read one at a time (row positions of the positional mock styles)."""
        return _LazyIds(self)

    def warm(self) -> None:
        """Draw now the chunks the cache holds, from the first: a benchmark's first requests then wait no
        longer than the others (each chunk drawn on demand delays its page by about 20 ms)."""
        for c in range(min(self._cached, len(self._plan.chunk_first))):
            self.chunk(c)

    def chunk(self, c: int) -> Dataset:
        """Chunk c's records (drawn, or from the small cache of recent chunks)."""
        with self._lock:
            found = self._cache.get(c)
            if found is not None:
                self._cache.move_to_end(c)
                return found
        drawn = self._plan.draw(c)  # outside the lock: two threads may draw the same chunk, both get equal data
        with self._lock:
            self._cache[c] = drawn
            self._cache.move_to_end(c)
            while len(self._cache) > self._cached:
                self._cache.popitem(last=False)
        return drawn

    def id_at(self, i: int) -> int:
        c, local = divmod(int(i), self.spec.chunk)
        return int(self.chunk(c).ids[local])

    def record(self, i: int) -> dict[str, Any]:
        n = len(self)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"record {i} out of range for {n} records")
        c, local = divmod(i % n, self.spec.chunk)
        return self.chunk(c).record(local)

    def _index_of(self, offset: int | None) -> int:
        """Index of the first record with id >= offset (None: 0)."""
        if offset is None or offset <= self.first_id:
            return 0
        if offset >= self.end_id:
            return len(self)
        c = int(np.searchsorted(self._plan.chunk_first, offset, side="right")) - 1
        part = self.chunk(c)
        return c * self.spec.chunk + part._index_of(offset)  # len(part) when past its last id: the next chunk

    def page(self, offset: int, limit: int) -> tuple[list[dict[str, Any]], int | None]:
        """The first `limit` records with id >= offset, and the offset of the next page (None: no more)."""
        start, stop = _rows(limit, self._index_of(offset), len(self))
        if start >= stop:
            return [], None
        out: list[dict[str, Any]] = []
        size = self.spec.chunk
        for c in range(start // size, (stop - 1) // size + 1):
            part = self.chunk(c)
            out += part._render(max(start - c * size, 0), min(stop - c * size, len(part)))
        next_offset = self.id_at(stop - 1) + 1 if stop < len(self) else None
        return out, next_offset

    def page_json(self, offset: int, limit: int) -> tuple[bytes, int | None]:
        """`page` as the JSON text of its record list, rendered without dicts (the mock's fast path)."""
        start, stop = _rows(limit, self._index_of(offset), len(self))
        if start >= stop:
            return b"[]", None
        out: list[bytes] = []
        size = self.spec.chunk
        for c in range(start // size, (stop - 1) // size + 1):
            part = self.chunk(c)
            out.append(part._render_json(max(start - c * size, 0), min(stop - c * size, len(part))))
        next_offset = self.id_at(stop - 1) + 1 if stop < len(self) else None
        return b"[" + b"".join(out)[:-1] + b"]", next_offset

    def before(self, offset: int, n: int) -> list[dict[str, Any]]:
        """The last `n` records with id < offset."""
        end = self._index_of(offset)
        start = max(0, end - n)
        return self.page(self.id_at(start), end - start)[0] if end > start else []

    def parts(self, begin: int | None = None, end: int | None = None) -> Iterator[tuple[Dataset, int, int]]:
        """The records with begin <= id < end chunk by chunk, as (chunk, lo, hi) local index ranges."""
        lo = self._index_of(begin)
        hi = max(lo, self._index_of(end)) if end is not None else len(self)
        size = self.spec.chunk
        for c in range(lo // size, -(-hi // size)):
            part = self._plan.draw(c) if c not in self._cache else self.chunk(c)
            yield part, max(lo - c * size, 0), min(hi - c * size, len(part))


class _LazyIds(Sequence[int]):
    """A LazyDataset's ids as a read-only sequence (one chunk drawn per lookup outside the cache)."""

    def __init__(self, ds: LazyDataset) -> None:
        self._ds = ds

    def __len__(self) -> int:
        return len(self._ds)

    @overload
    def __getitem__(self, i: int) -> int: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[int]: ...
    def __getitem__(self, i: int | slice) -> int | Sequence[int]:
        if isinstance(i, slice):
            return [self._ds.id_at(j) for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"row {i} out of range for {n} records")
        return self._ds.id_at(i % n)


def render_timestamp(ms: int, fmt: int) -> int | float | str:
    """The API rendering of an instant (epoch milliseconds) in format `fmt`."""
    if fmt == FMT_SECONDS:
        return ms // 1000
    if fmt == FMT_FLOAT:
        return ms / 1000  # exact: ms is a multiple of 250
    if fmt == FMT_MILLIS:
        return ms
    when = datetime.fromtimestamp(ms // 1000, _ISO_ZONES[fmt]).replace(microsecond=ms % 1000 * 1000)
    text = when.isoformat()
    return text[:-6] + "Z" if fmt == FMT_ISO_Z else text


def render_timestamps(ms: np.ndarray, fmt: np.ndarray) -> list[int | float | str]:
    """`render_timestamp` over columns, vectorised (numpy's ISO rendering of shifted wall-clock seconds)."""
    out = np.empty(len(ms), dtype=object)
    sec, frac = np.divmod(ms, 1000)
    for code, as_values in ((FMT_SECONDS, sec), (FMT_FLOAT, ms / 1000), (FMT_MILLIS, ms)):
        at = fmt == code
        out[at] = as_values[at]
    for code, zone in _ISO_ZONES.items():
        at = np.flatnonzero(fmt == code)
        if not at.size:
            continue
        offset = zone.utcoffset(None)
        assert offset is not None
        shift = int(offset.total_seconds())
        text = np.datetime_as_string((sec[at] + shift).astype("datetime64[s]"), unit="s")
        part = frac[at]
        fraction = np.char.add(".", np.char.zfill((part * 1000).astype("U"), 6))  # isoformat's microseconds
        text = np.where(part != 0, np.char.add(text, fraction), text)
        out[at] = np.char.add(text, "Z" if code == FMT_ISO_Z else _offset_text(shift))
    return out.tolist()  # type: ignore[no-any-return]


def _offset_text(shift: int) -> str:
    sign, shift = ("+" if shift >= 0 else "-"), abs(shift)
    return f"{sign}{shift // 3600:02d}:{shift % 3600 // 60:02d}"


def render_visitors(code: np.ndarray, width: int) -> list[int | str]:
    """`_render_visitor` over a column of visitor codes."""
    index, as_int = np.divmod(code, 2)
    out = np.char.add("v", np.char.zfill(index.astype("U"), width)).astype(object)
    at = as_int == 1
    out[at] = index[at].astype(np.int64)
    return out.tolist()  # type: ignore[no-any-return]


def _visitor_width(visitors: int) -> int:
    return max(6, len(str(visitors - 1)))


def _render_visitor(code: int, width: int) -> int | str:
    index, as_int = divmod(code, 2)
    return index if as_int else f"v{index:0{width}d}"


class _JsonBox:
    """Where the chunks of one dataset find their shared `_JsonTables` once one of them built it."""

    tables: _JsonTables | None = None


@dataclass(frozen=True)
class _JsonTables:
    """JSON fragments (fixed-width bytes) of the values that come from small tables."""

    items: np.ndarray  # one per item
    categories: np.ndarray  # one per category id, then null, then missing (empty)
    ips: np.ndarray
    uas: np.ndarray  # missing (empty) first, then one per user agent

    @classmethod
    def of(cls, ds: Dataset) -> _JsonTables:
        def fragments(texts: list[bytes]) -> np.ndarray:
            width = max(map(len, texts))
            return np.array([t.ljust(width) for t in texts], dtype=np.bytes_)  # padded with JSON whitespace

        return cls(
            items=fragments([_json_value(v) for v in ds.item_ids]),
            categories=fragments(
                [b',"category":' + orjson.dumps(c) for c in ds.category_ids] + [b',"category":null', b""]
            ),
            ips=fragments([orjson.dumps(v) for v in ds.ip_values]),
            uas=fragments([b""] + [b',"user_agent":' + orjson.dumps(v) for v in ds.ua_values]),
        )


def _json_value(value: int | str) -> bytes:
    """A small value as JSON. (Not orjson.dumps alone: each bytes object it returns may keep a buffer of
    several kilobytes, which a table of 100,000 items would multiply into hundreds of megabytes.)"""
    return str(value).encode() if type(value) is int else bytes(bytearray(orjson.dumps(value)))


def _constant(text: bytes, n: int) -> np.ndarray:
    """`text` in every row: an (n, len(text)) byte matrix."""
    return np.broadcast_to(np.frombuffer(text, dtype=np.uint8), (n, len(text)))


def _bytes(texts: np.ndarray) -> np.ndarray:
    """A fixed-width bytes array as an (n, width) byte matrix (NUL padded)."""
    return texts.view(np.uint8).reshape(len(texts), texts.dtype.itemsize)


_ZERO, _SPACE = ord("0"), ord(" ")
_POWERS: Final = 10 ** np.arange(18, -1, -1, dtype=np.int64)


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers as `width` decimal digits each, zero-padded: an (n, width) byte matrix."""
    return (values[:, None] // _POWERS[-width:] % 10 + _ZERO).astype(np.uint8)


def _number(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers right-aligned in `width` bytes, leading zeros as spaces (JSON whitespace)."""
    out = _digits(values, width)
    if width > 1:
        lead = np.cumsum(out[:, :-1] != _ZERO, axis=1) == 0  # zeros before the first other digit
        out[:, :-1][lead] = _SPACE
    return out


def _width(values: np.ndarray) -> int:
    return len(str(int(values.max()))) if len(values) else 1


def _put(out: np.ndarray, rows: np.ndarray, at: int, piece: np.ndarray | bytes) -> int:
    """Write `piece` (bytes for every row, or a matrix with one row per row) at column `at` of `rows`."""
    if isinstance(piece, bytes):
        piece = np.frombuffer(piece, dtype=np.uint8)
    width = piece.shape[-1]
    out[rows, at : at + width] = piece
    return at + width


def _visitor_column(code: np.ndarray, state: np.ndarray, width: int) -> np.ndarray:
    """`,"visitor":<value>` (or null, or nothing when missing) per record, as `_render_visitor` renders it."""
    n = len(code)
    index, as_int = np.divmod(code.astype(np.int64), 2)
    digits = max(width, _width(index))
    out = np.full((n, 13 + digits + 1), _SPACE, dtype=np.uint8)
    present = state == PRESENT
    rows = np.flatnonzero(present & (as_int == 0))
    at = _put(out, rows, 0, b',"visitor":"v')
    at = _put(out, rows, at, _digits(index[rows], digits))
    _put(out, rows, at, b'"')
    rows = np.flatnonzero(present & (as_int == 1))
    at = _put(out, rows, 0, b',"visitor":')
    _put(out, rows, at, _number(index[rows], digits))
    _put(out, np.flatnonzero(state == NULL), 0, b',"visitor":null')
    return out


_FLOAT_FRACTIONS: Final = np.array([b".0 ", b".25", b".5 ", b".75"])  # ms are multiples of 250; spaces pad
_NOT_ISO: Final = -(2**40)


def _iso_tables() -> tuple[np.ndarray, np.ndarray]:
    """Per format code: its UTC offset in seconds (`_NOT_ISO` when not an ISO format); per (quarter second,
    format code): what follows the seconds (isoformat's microseconds, the offset or Z, the closing quote)."""
    codes = max(*_ISO_ZONES, FMT_SECONDS, FMT_FLOAT, FMT_MILLIS) + 1
    shifts = np.full(codes, _NOT_ISO, dtype=np.int64)
    tails = [b""] * (4 * codes)
    for code, zone in _ISO_ZONES.items():
        offset = zone.utcoffset(None)
        assert offset is not None
        shifts[code] = int(offset.total_seconds())
        suffix = b"Z" if code == FMT_ISO_Z else _offset_text(int(shifts[code])).encode()
        for quarter, fraction in enumerate((b"", b".250000", b".500000", b".750000")):
            tails[quarter * codes + code] = fraction + suffix + b'"'
    width = max(map(len, tails))
    return shifts, np.array([t.ljust(width) for t in tails])


_ISO_SHIFT, _ISO_TAILS = _iso_tables()
_ISO_DIGIT_COLUMNS: Final = 14 + np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])  # in ',"timestamp":"'


def _timestamp_column(ms: np.ndarray, fmt: np.ndarray, state: np.ndarray) -> np.ndarray:
    """`,"timestamp":<value>` (or null, or nothing when missing) per record, as `render_timestamp` renders it."""
    n = len(ms)
    sec, frac = np.divmod(ms, 1000)
    present = state == PRESENT
    out = np.full((n, 13 + max(_width(ms), 35)), _SPACE, dtype=np.uint8)
    _put(out, np.flatnonzero(state == NULL), 0, b',"timestamp":null')
    for code, values in ((FMT_SECONDS, sec), (FMT_MILLIS, ms)):
        rows = np.flatnonzero(present & (fmt == code))
        at = _put(out, rows, 0, b',"timestamp":')
        _put(out, rows, at, _number(values[rows], _width(values[rows])))
    rows = np.flatnonzero(present & (fmt == FMT_FLOAT))
    at = _put(out, rows, 0, b',"timestamp":')
    at = _put(out, rows, at, _number(sec[rows], _width(sec[rows])))
    _put(out, rows, at, _bytes(_FLOAT_FRACTIONS[frac[rows] // 250]))
    rows = np.flatnonzero(present & (_ISO_SHIFT[np.minimum(fmt, len(_ISO_SHIFT) - 1)] != _NOT_ISO))
    if rows.size:
        codes = fmt[rows]
        wall = sec[rows] + _ISO_SHIFT[codes]
        days, clock = np.divmod(wall, 86_400)
        day = days.astype("datetime64[D]")
        month = day.astype("datetime64[M]")
        year = month.astype("datetime64[Y]")
        months = month.astype(np.int64) - year.astype("datetime64[M]").astype(np.int64) + 1
        mday = (day - month.astype("datetime64[D]")).astype(np.int64) + 1
        stamp = (year.astype(np.int64) + 1970) * 10**10 + months * 10**8 + mday * 10**6
        stamp += clock // 3600 * 10**4 + clock // 60 % 60 * 100 + clock % 60
        _put(out, rows, 0, b',"timestamp":"YYYY-MM-DDThh:mm:ss')
        out[np.ix_(rows, _ISO_DIGIT_COLUMNS)] = _digits(stamp, 14)
        _put(out, rows, 33, _bytes(_ISO_TAILS[frac[rows] // 250 * len(_ISO_SHIFT) + codes]))  # space-padded
    return out


# ---------------------------------------------------------------------------------------------- generation
#
# The records are cut into chunks of `spec.chunk` records. Chunk c is drawn from its own random streams
# (`default_rng([seed, 0, c])` for its fields, `[seed, 1, c]` for its id gaps), so any chunk can be drawn
# alone, in any order, and always gives the same records. What crosses chunks is kept small: the first id of
# each chunk (one streaming pass over the gaps at start), the positions of the long empty stretches and of
# the window-bound anchors, the item table and the address pool.

_FIELDS_STREAM, _GAPS_STREAM, _GLOBAL_STREAM = 0, 1, 2


def _rng(spec: DatasetSpec, *key: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, *key])


@dataclass(frozen=True, eq=False)
class _Plan:
    """What every chunk needs to know about the whole dataset: O(chunks + items + visitors) numbers."""

    spec: DatasetSpec
    chunks: int
    chunk_base: np.ndarray  # int64 per chunk: first_id + every gap before the chunk's first record
    chunk_first: np.ndarray  # int64 per chunk: the id of its first record
    end_id: int
    stretch_at: np.ndarray  # int64 sorted record indices whose gap is a long empty stretch
    stretch_len: np.ndarray  # int64 the extra gap there
    anchor_at: np.ndarray  # int64 record indices that carry a window-bound anchor
    anchor_ms: np.ndarray  # int64 the anchor instants
    item_ids: tuple[int | str, ...]
    item_category: np.ndarray
    item_cdf: np.ndarray
    visitor_cdf: np.ndarray
    category_ids: tuple[str, ...]
    ip_values: tuple[str, ...]
    ua_values: tuple[str, ...]
    normal_ips: int
    json_box: _JsonBox = field(default_factory=lambda: _JsonBox())

    @classmethod
    def of(cls, spec: DatasetSpec) -> _Plan:
        spec.validate()
        n, size = spec.records, spec.chunk
        chunks = -(-n // size)
        glob = _rng(spec, _GLOBAL_STREAM)
        item_ids, item_category = _draw_items(glob, spec)
        ip_values = _ip_pool(glob)
        stretches = min(spec.stretches, n - 1)
        stretch_at = np.zeros(0, dtype=np.int64)
        if stretches > 0 and spec.empty_share > 0:
            stretch_at = glob.choice(n - 1, size=stretches, replace=False).astype(np.int64) + 1
            weights = glob.random(stretches) + 0.5
        gap_sums = np.zeros(chunks, dtype=np.int64)
        first_gaps = np.zeros(chunks, dtype=np.int64)
        for c in range(chunks):  # the one streaming pass: O(chunks) numbers kept
            gaps = _chunk_gaps(spec, c)
            gap_sums[c], first_gaps[c] = int(gaps.sum()), gaps[0]
        stretch_len = np.zeros(len(stretch_at), dtype=np.int64)
        if len(stretch_at):
            base = int(gap_sums.sum()) + 1
            empty = round(base * spec.empty_share / (1 - spec.empty_share))
            stretch_len = np.floor(empty * weights / weights.sum()).astype(np.int64)
            stretch_len[-1] += empty - int(stretch_len.sum())
            order = np.argsort(stretch_at)
            stretch_at, stretch_len = stretch_at[order], stretch_len[order]
            np.add.at(gap_sums, stretch_at // size, stretch_len)
        chunk_base = spec.first_id + np.concatenate(([0], np.cumsum(gap_sums)[:-1])).astype(np.int64)
        first_gaps += _stretch_gaps(stretch_at, stretch_len, np.arange(chunks, dtype=np.int64) * size)
        anchors = _anchors(datetime.fromisoformat(spec.end))[: n // 20]
        anchor_at = glob.choice(n, size=len(anchors), replace=False).astype(np.int64)
        width = max(2, len(str(spec.categories - 1)))
        return cls(
            spec=spec,
            chunks=chunks,
            chunk_base=chunk_base,
            chunk_first=chunk_base + first_gaps,
            end_id=spec.first_id + int(gap_sums.sum()) + 1,
            stretch_at=stretch_at,
            stretch_len=stretch_len,
            anchor_at=anchor_at,
            anchor_ms=anchors,
            item_ids=item_ids,
            item_category=item_category,
            item_cdf=_zipf_cdf(spec.items, ITEM_EXPONENT),
            visitor_cdf=_zipf_cdf(spec.visitors, VISITOR_EXPONENT),
            category_ids=tuple(f"c{c:0{width}d}" for c in range(spec.categories)),
            ip_values=(*ip_values, *BOT_IPS),
            ua_values=(*BROWSER_UAS, *BOT_UAS),
            normal_ips=len(ip_values),
        )

    def chunk_range(self, c: int) -> tuple[int, int]:
        start = c * self.spec.chunk
        return start, min(start + self.spec.chunk, self.spec.records)

    def draw(self, c: int) -> Dataset:
        """Chunk c's records as a Dataset of their own (indices local to the chunk)."""
        spec = self.spec
        start, stop = self.chunk_range(c)
        m = stop - start
        gaps = _chunk_gaps(spec, c)
        gaps += _stretch_gaps(self.stretch_at, self.stretch_len, np.arange(start, stop, dtype=np.int64))
        ids = np.cumsum(gaps) + self.chunk_base[c]
        rng = _rng(spec, _FIELDS_STREAM, c)
        item = _draw_zipf(rng, self.item_cdf, m)
        visitor = _draw_zipf(rng, self.visitor_cdf, m)
        visitor = visitor * 2 + ((visitor % 17 == 5) & (rng.random(m, dtype=np.float32) < 0.5))
        ts_ms = _draw_timestamps(rng, spec, start, stop)
        inside = (self.anchor_at >= start) & (self.anchor_at < stop)
        ts_ms[self.anchor_at[inside] - start] = self.anchor_ms[inside]
        ts_format = _draw_formats(rng, ts_ms)
        states = [_draw_states(rng, m, spec.null_share) for _ in range(3)]
        roles = _draw_roles(rng, spec, m)
        ip, ua = _draw_network(rng, spec, roles, self.normal_ips)
        malformed_index = np.flatnonzero(roles == _ROLE_MALFORMED).astype(np.int64)
        malformed_kind = rng.integers(0, len(_MALFORMED), size=len(malformed_index), dtype=np.int8)
        return Dataset(
            spec=spec,
            ids=ids,
            item=item,
            visitor=visitor.astype(np.int32),
            visitor_state=states[0],
            category_state=states[1],
            ts_ms=ts_ms,
            ts_format=ts_format,
            ts_state=states[2],
            ip=ip,
            ua=ua,
            malformed_index=malformed_index,
            malformed_kind=malformed_kind,
            item_ids=self.item_ids,
            item_category=self.item_category,
            category_ids=self.category_ids,
            ip_values=self.ip_values,
            ua_values=self.ua_values,
            json_box=self.json_box,
        )


def generate(spec: DatasetSpec) -> Dataset:
    """The dataset of `spec`, every record in memory: the same spec always gives the same records, the
    same as `LazyDataset(spec)` serves."""
    plan = _Plan.of(spec)
    parts = [plan.draw(c) for c in range(plan.chunks)]
    if len(parts) == 1:
        return parts[0]
    starts = [plan.chunk_range(c)[0] for c in range(plan.chunks)]
    columns: dict[str, Any] = {
        name: np.concatenate([getattr(p, name) for p in parts])
        for name in (
            "ids",
            "item",
            "visitor",
            "visitor_state",
            "category_state",
            "ts_ms",
            "ts_format",
            "ts_state",
            "ip",
            "ua",
            "malformed_kind",
        )
    }
    malformed_index = np.concatenate([p.malformed_index + s for p, s in zip(parts, starts, strict=True)])
    return replace(parts[0], malformed_index=malformed_index, **columns)


def _chunk_gaps(spec: DatasetSpec, c: int) -> np.ndarray:
    """The id gaps before each record of chunk c (the first of all records has none), without stretches."""
    start = c * spec.chunk
    m = min(spec.chunk, spec.records - start)
    gaps = _rng(spec, _GAPS_STREAM, c).geometric(1.0 / spec.mean_gap, size=m).astype(np.int64, copy=False)
    if c == 0:
        gaps[0] = 0
    return gaps


def _stretch_gaps(stretch_at: np.ndarray, stretch_len: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The long empty stretches' extra gaps at record indices `positions`."""
    out = np.zeros(len(positions), dtype=np.int64)
    if len(stretch_at) and len(positions):
        where = np.searchsorted(stretch_at, positions)
        where = np.minimum(where, len(stretch_at) - 1)
        hit = stretch_at[where] == positions
        out[hit] = stretch_len[where[hit]]
    return out


def _draw_items(rng: np.random.Generator, spec: DatasetSpec) -> tuple[tuple[int | str, ...], np.ndarray]:
    """Item ids by popularity rank: random ints < 10**7, with a few strs mixed in (ranking puts ints
    first); rank 13 is the str twin of rank 7's int id; rank 23 is non-ASCII."""
    population = max(10**7, 10 * spec.items)
    values: list[int | str] = rng.choice(population, size=spec.items, replace=False).tolist()
    for rank in range(3, spec.items, 50):
        values[rank] = f"sku-{rank}"
    if spec.items > 13:
        values[13] = str(values[7])
    if spec.items > 23:
        values[23] = "Äpple-23"
    category = rng.integers(0, spec.categories, size=spec.items).astype(np.int32)
    return tuple(values), category


def _zipf_cdf(k: int, exponent: float) -> np.ndarray:
    cdf = np.cumsum(np.arange(1, k + 1, dtype=np.float64) ** -exponent)
    cdf /= cdf[-1]
    return cdf


def _draw_zipf(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
    """n draws of ranks 0..k-1 with P(rank) proportional to (rank + 1) ** -exponent (`cdf` from _zipf_cdf)."""
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(cdf) - 1).astype(np.int32)


def _draw_timestamps(rng: np.random.Generator, spec: DatasetSpec, start: int, stop: int) -> np.ndarray:
    """Epoch ms of records [start, stop) over SPAN_DAYS before spec.end: growing traffic with a daily cycle,
    non-decreasing inside the chunk and increasing with the chunk's position (the chunk draws its share of the
    whole span's quantiles), some late arrivals and records snapped to local midnights / whole hours."""
    n, m = spec.records, stop - start
    end = datetime.fromisoformat(spec.end)
    end_s = int(end.timestamp())
    first_day = (end_s - SPAN_DAYS * 86_400) // 86_400
    hours = np.arange(24)
    hour_p = 1 + 0.7 * np.cos(2 * np.pi * (hours - 19) / 24)
    hour_p /= hour_p.sum()
    u = (start + rng.random(m) * m) / n  # this chunk's slice of the quantiles
    day = np.floor(u**0.75 * SPAN_DAYS).astype(np.int64) + first_day
    hour = rng.choice(24, size=m, p=hour_p)
    sec = day * 86_400 + hour * 3600 + rng.integers(0, 3600, size=m)
    sec = np.where(sec > end_s, sec - 86_400, sec)
    sec.sort()
    late = np.flatnonzero(rng.random(m, dtype=np.float32) < 0.03)
    sec[late] = np.minimum(sec[late] + rng.integers(-6 * 3600, 6 * 3600, size=len(late)), end_s)
    snapped = _snap(rng, sec)
    frac = rng.integers(0, 4, size=m, dtype=np.int16) * np.int16(250)
    frac[snapped] = 0
    return sec * 1000 + frac


def _snap(rng: np.random.Generator, sec: np.ndarray) -> np.ndarray:
    """Snap ~4% of `sec` in place to local midnights (UTC, CET, CEST, IST, PST), whole hours, half hours
    or whole minutes; return the snapped indices."""
    idx = np.flatnonzero(rng.random(len(sec), dtype=np.float32) < 0.04)
    mode = rng.integers(0, 4, size=len(idx))
    t = sec[idx]
    offsets = np.array([0, -3600, -7200, -19_800, 28_800])[rng.integers(0, 5, size=len(idx))]
    midnight = (t - offsets) // 86_400 * 86_400 + offsets
    grains = np.array([1, 3600, 1800, 60])[mode]
    sec[idx] = np.where(mode == 0, midnight, t // grains * grains)
    return idx


def _anchors(end: datetime) -> np.ndarray:
    """Epoch ms of the window bounds around `end` in a few zones, each also 250 ms earlier, plus `end`."""
    points = [int(end.timestamp() * 1000)]
    for name in ("UTC", "Europe/Stockholm", "Asia/Kolkata", "America/Los_Angeles"):
        tz = ZoneInfo(name)
        day = end.astimezone(tz).date()
        bounds = [day - timedelta(days=k) for k in (0, 1, 7, 30)] + [date(day.year, 1, 1)]
        for d in bounds:
            ms = _to_us(datetime(d.year, d.month, d.day, tzinfo=tz)) // 1000
            points += [ms, ms - 250]
    return np.array(points, dtype=np.int64)


def _draw_formats(rng: np.random.Generator, ts_ms: np.ndarray) -> np.ndarray:
    fmt = rng.choice(len(_FMT_P), size=len(ts_ms), p=_FMT_P).astype(np.int8)
    fmt[(fmt == FMT_SECONDS) & (ts_ms % 1000 != 0)] = FMT_FLOAT  # int seconds cannot carry a fraction
    return fmt


def _draw_states(rng: np.random.Generator, n: int, null_share: float) -> np.ndarray:
    """PRESENT, or NULL / MISSING (half each) with probability null_share."""
    u = rng.random(n, dtype=np.float32)
    return np.where(u < null_share / 2, NULL, np.where(u < null_share, MISSING, PRESENT)).astype(np.int8)


_ROLE_NORMAL, _ROLE_MALFORMED, _ROLE_BOT_IP, _ROLE_BOT_UA = range(4)


def _draw_roles(rng: np.random.Generator, spec: DatasetSpec, n: int) -> np.ndarray:
    m, b = spec.malformed_share, spec.bot_share
    u = rng.random(n)
    return np.select([u < m, u < m + b / 2, u < m + b], [_ROLE_MALFORMED, _ROLE_BOT_IP, _ROLE_BOT_UA]).astype(np.int8)


def _ip_pool(rng: np.random.Generator, size: int = 60) -> tuple[str, ...]:
    """Private / documentation addresses, none in BOT_IPS, some that look like them."""
    prefixes = ("10.{}.{}.{}", "192.168.{}.{}", "172.{}.{}.{}", "192.0.2.{}", "198.51.100.{}", "203.0.113.{}")
    pool = list(_LOOKALIKE_IPS)
    while len(pool) < size:
        template = prefixes[int(rng.integers(0, len(prefixes)))]
        octets = rng.integers(1, 255, size=3).tolist()
        if template.startswith("172."):
            octets[0] = 16 + octets[0] % 16
        ip = template.format(*octets[: template.count("{}")])
        if ip not in BOT_IPS and ip not in pool:
            pool.append(ip)
    return tuple(pool)


def _draw_network(
    rng: np.random.Generator, spec: DatasetSpec, roles: np.ndarray, normal_ips: int
) -> tuple[np.ndarray, np.ndarray]:
    """ip / user agent codes: browsers from normal addresses; bots by ip or by user agent; a few records
    without a user agent (never a bot-by-ua record)."""
    n = len(roles)
    ip = rng.integers(0, normal_ips, size=n).astype(np.int16)
    ua = rng.integers(0, len(BROWSER_UAS), size=n).astype(np.int8)
    by_ip = np.flatnonzero(roles == _ROLE_BOT_IP)
    ip[by_ip] = normal_ips + rng.integers(0, len(BOT_IPS), size=len(by_ip))
    by_ua = np.flatnonzero(roles == _ROLE_BOT_UA)
    ua[by_ua] = len(BROWSER_UAS) + rng.integers(0, len(BOT_UAS), size=len(by_ua))
    no_ua = (rng.random(n, dtype=np.float32) < spec.null_share / 2) & (roles != _ROLE_BOT_UA)
    ua[no_ua] = -1
    return ip, ua


# ---------------------------------------------------------------------------------------------- ground truth


def ground_truth(
    ds: Dataset | LazyDataset,
    *,
    as_of: datetime,
    top_items: int = 100,
    top_categories: int = 10,
    bucket: str = "day",
    timezone: str = "UTC",
    bot_ips: Iterable[str] = BOT_IPS,
    bot_user_agents: Iterable[str] = BOT_UA_PATTERNS,
    begin: int | None = None,
    end: int | None = None,
    max_points: int = 5000,
) -> dict[str, Any]:
    """The report sections ``records``, ``windows`` and ``series`` for the records with begin <= id < end.

    Streams over the dataset's parts (a LazyDataset's chunks): memory grows with the items, categories and
    visitors (and the distinct item-visitor and bucket-visitor pairs), not with the records. A second pass
    counts the distinct visitors of the top items, once the ranking is known."""
    if as_of.tzinfo is None or as_of.utcoffset() is None:
        raise ValueError("as_of must be timezone-aware")
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {BUCKETS}, got {bucket!r}")
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    tz = ZoneInfo(timezone)
    bounds = _window_bounds(as_of, tz)
    ips, patterns = set(bot_ips), tuple(bot_user_agents)
    ip_bot = np.array([v in ips for v in ds.ip_values], dtype=bool)
    ua_bot = np.array([any(re.search(p, v) for p in patterns) for v in ds.ua_values] + [False], dtype=bool)
    n_visitors = 2 * ds.spec.visitors
    records = dict.fromkeys(("fetched", "counted", "rejected", "bots", "duplicates", "future"), 0)
    windows = {name: _WindowTotals(len(ds.item_ids), len(ds.category_ids), n_visitors) for name in WINDOWS}
    series = _SeriesTotals(bucket, tz, as_of, max_points, n_visitors)

    def counted_parts() -> Iterator[tuple[_Counted, dict[str, np.ndarray | None]]]:
        for part, lo, hi in ds.parts(begin, end):
            cols, counts = _count_part(part, lo, hi, ip_bot, ua_bot, as_of)
            for key, value in counts.items():
                records[key] += value
            yield cols, _window_masks(cols, bounds)

    for cols, masks in counted_parts():
        for name, mask in masks.items():
            windows[name].add(cols, mask)
        series.add(cols)
    records_once = dict(records)
    tie_order = _id_order(ds.item_ids)
    for totals in windows.values():
        totals.rank(tie_order, top_items)
    for cols, masks in counted_parts():  # second pass: distinct visitors of the top items
        for name, mask in masks.items():
            windows[name].add_top(cols, mask)
    category_order = _id_order(ds.category_ids)
    return {
        "records": records_once,
        "windows": {
            name: totals.stats(ds.item_ids, ds.category_ids, category_order, top_categories)
            for name, totals in windows.items()
        },
        "series": series.result(),
    }


def _count_part(
    ds: Dataset, lo: int, hi: int, ip_bot: np.ndarray, ua_bot: np.ndarray, as_of: datetime
) -> tuple[_Counted, dict[str, int]]:
    """The counted records of ds[lo:hi] as columns, and the records section's counts for them."""
    sl = slice(lo, hi)
    broken = _broken_fields(ds, lo, hi)
    rejected = broken.pop(_REJECTED)
    bot = ((ip_bot[ds.ip[sl]] & ~broken["ip"]) | (ua_bot[ds.ua[sl]] & ~broken["user_agent"])) & ~rejected
    counted = ~(rejected | bot)
    cols = _Counted.of(ds, sl, counted, broken, as_of)
    counts = {
        "fetched": hi - lo,
        "counted": int(np.count_nonzero(counted)),
        "rejected": int(np.count_nonzero(rejected)),
        "bots": int(np.count_nonzero(bot)),
        "duplicates": 0,
        "future": int(np.count_nonzero(cols.future)),
    }
    return cols, counts


def _broken_fields(ds: Dataset, lo: int, hi: int) -> dict[str, np.ndarray]:
    """Per field, which records of [lo, hi) carry a value of the wrong kind there (the record counts without
    it); under _REJECTED, which records are rejected."""
    masks = {name: np.zeros(hi - lo, dtype=bool) for name in (_REJECTED, "ip", "user_agent", "visitor", "category")}
    m_lo, m_hi = np.searchsorted(ds.malformed_index, [lo, hi])
    for at, kind in zip(
        (ds.malformed_index[m_lo:m_hi] - lo).tolist(), ds.malformed_kind[m_lo:m_hi].tolist(), strict=True
    ):
        field, _, outcome = _MALFORMED[kind]
        masks[_REJECTED if outcome == _REJECTED else field][at] = True
    return masks


@dataclass
class _Counted:
    """Columns of the counted records: codes, with -1 where the field is unusable."""

    item: np.ndarray
    visitor: np.ndarray
    category: np.ndarray
    has_ts: np.ndarray
    ts_ms: np.ndarray
    future: np.ndarray  # stamped after as_of
    dated: np.ndarray  # stamped before as_of: in the series

    @classmethod
    def of(
        cls, ds: Dataset, sl: slice, counted: np.ndarray, broken: dict[str, np.ndarray], as_of: datetime
    ) -> _Counted:
        item = ds.item[sl][counted]
        present = ds.visitor_state[sl][counted] == PRESENT
        visitor = np.where(present & ~broken["visitor"][counted], ds.visitor[sl][counted], -1)
        present = ds.category_state[sl][counted] == PRESENT
        category = np.where(present & ~broken["category"][counted], ds.item_category[item], -1)
        has_ts = ds.ts_state[sl][counted] == PRESENT
        ts_ms = ds.ts_ms[sl][counted]
        future = has_ts & (ts_ms * 1000 > _to_us(as_of))
        dated = has_ts & (ts_ms * 1000 < _to_us(as_of))
        return cls(item, visitor, category, has_ts, ts_ms, future, dated)


def _first_local(wall: datetime, tz: ZoneInfo) -> str:
    """A calendar bucket's start named as its first instant: local ``wall`` in ``tz``, or, where the clocks
    skip that time (a jump at midnight), the first local time after it, with the offset then in force."""
    aware = wall.replace(tzinfo=tz)
    try:
        return aware.astimezone(UTC).astimezone(tz).isoformat()
    except OverflowError:  # the first or last day datetime holds
        return aware.isoformat()


def _to_us(when: datetime) -> int:
    return (when - _EPOCH) // _US


def _ceil_ms(us: int) -> int:
    return -(-us // 1000)


def _window_bounds(as_of: datetime, tz: ZoneInfo) -> dict[str, tuple[int, int]]:
    """[lo, hi) in epoch ms of the dated windows (ms values t with lo <= t < hi lie in the window)."""
    day = as_of.astimezone(tz).date()

    def midnight(d: date) -> int:
        return _ceil_ms(_to_us(datetime(d.year, d.month, d.day, tzinfo=tz)))

    today = midnight(day)
    return {
        "yesterday": (midnight(day - timedelta(days=1)), today),
        "last_7_days": (midnight(day - timedelta(days=7)), today),
        "last_30_days": (midnight(day - timedelta(days=30)), today),
        "this_year": (midnight(date(day.year, 1, 1)), _ceil_ms(_to_us(as_of))),
    }


def _window_masks(cols: _Counted, bounds: dict[str, tuple[int, int]]) -> dict[str, np.ndarray | None]:
    masks: dict[str, np.ndarray | None] = {"all": None}
    for name, (lo, hi) in bounds.items():
        masks[name] = cols.has_ts & (cols.ts_ms >= lo) & (cols.ts_ms < hi)
    return masks


class _GroupDistinct:
    """Distinct visitor codes (>= 0) per group 0..groups-1, added part by part: a bitmap when groups x visitors
    is small, else the sorted distinct (group, visitor) pair codes seen so far. The parts' codes wait in a
    list and are merged into the sorted ones when they weigh as much (at least _MERGE_AT codes): merging at
    every part re-sorted everything seen so far each time (62.8 s of CPU for the truth of 10^7 records)."""

    def __init__(self, groups: int, visitors: int) -> None:
        self.groups, self.visitors = groups, visitors
        self.dense = groups * visitors <= _DENSE_LIMIT
        self.seen = np.zeros(groups * visitors if self.dense else 0, dtype=bool)
        self.codes = np.zeros(0, dtype=np.int64)
        self._pending: list[np.ndarray] = []
        self._pending_size = 0

    def add(self, group: np.ndarray, visitor: np.ndarray) -> None:
        keep = (group >= 0) & (visitor >= 0)
        code = group[keep].astype(np.int64) * self.visitors + visitor[keep]
        if self.dense:
            self.seen[code] = True
        elif code.size:
            part = _unique(code)
            self._pending.append(part)
            self._pending_size += part.size
            if self._pending_size >= max(self.codes.size, _MERGE_AT):
                self._merge()

    def _merge(self) -> None:
        if self._pending:
            self.codes = _unique(np.concatenate((self.codes, *self._pending)))
            self._pending, self._pending_size = [], 0

    def counts(self) -> np.ndarray:
        if self.dense:
            return self.seen.reshape(self.groups, self.visitors).sum(axis=1)
        self._merge()
        return np.bincount(self.codes // self.visitors, minlength=self.groups)


class _WindowTotals:
    """One window's counts, added part by part; `rank` then `add_top` for the top items' distinct visitors."""

    def __init__(self, items: int, categories: int, visitors: int) -> None:
        self.visits = 0
        self.seen = np.zeros(visitors, dtype=bool)
        self.item_visits = np.zeros(items, dtype=np.int64)
        self.category_visits = np.zeros(categories, dtype=np.int64)
        self.visitors = visitors
        self.top = np.zeros(0, dtype=np.int64)
        self.row = np.zeros(0, dtype=np.int32)
        self.top_distinct = _GroupDistinct(0, visitors)

    @staticmethod
    def _select(cols: _Counted, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if mask is None:
            return cols.item, cols.visitor, cols.category
        return cols.item[mask], cols.visitor[mask], cols.category[mask]

    def add(self, cols: _Counted, mask: np.ndarray | None) -> None:
        item, visitor, category = self._select(cols, mask)
        self.visits += len(item)
        self.seen[visitor[visitor >= 0]] = True
        self.item_visits += np.bincount(item, minlength=len(self.item_visits))
        self.category_visits += np.bincount(category[category >= 0], minlength=len(self.category_visits))

    def rank(self, tie_order: np.ndarray, k: int) -> None:
        self.top = _rank(self.item_visits, tie_order, k)
        self.row = np.full(len(self.item_visits), -1, dtype=np.int32)
        self.row[self.top] = np.arange(len(self.top))
        self.top_distinct = _GroupDistinct(len(self.top), self.visitors)

    def add_top(self, cols: _Counted, mask: np.ndarray | None) -> None:
        item, visitor, _ = self._select(cols, mask)
        self.top_distinct.add(self.row[item], visitor)

    def stats(
        self,
        item_ids: tuple[int | str, ...],
        category_ids: tuple[str, ...],
        category_order: np.ndarray,
        top_categories: int,
    ) -> dict[str, Any]:
        top_cats = _rank(self.category_visits, category_order, top_categories)
        return {
            "visits": self.visits,
            "distinct_visitors": int(np.count_nonzero(self.seen)),
            "top_items": [
                {"id": item_ids[j], "visits": int(self.item_visits[j]), "distinct_visitors": int(d)}
                for j, d in zip(self.top.tolist(), self.top_distinct.counts().tolist(), strict=True)
            ],
            "top_categories": [
                {"id": category_ids[c], "visits": int(self.category_visits[c])} for c in top_cats.tolist()
            ],
        }


def _id_order(ids: tuple[int | str, ...]) -> np.ndarray:
    """Position of each id in ranking-tie order: ints numerically first, then strs by code point."""
    order = sorted(range(len(ids)), key=lambda j: (isinstance(ids[j], str), ids[j]))
    position = np.empty(len(ids), dtype=np.int64)
    position[order] = np.arange(len(ids))
    return position


def _rank(visits: np.ndarray, tie_order: np.ndarray, k: int) -> np.ndarray:
    """Indices of the top k (visits > 0): visits descending, then tie_order ascending."""
    seen = np.flatnonzero(visits > 0)
    order = np.lexsort((tie_order[seen], -visits[seen]))
    return seen[order[: max(k, 0)]]


def _unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort-based: numpy's hash-based np.unique is slow on large int64 arrays)."""
    values = np.sort(values)
    return values[np.concatenate(([True], values[1:] != values[:-1]))] if values.size else values


class _SeriesTotals:
    """The series, added part by part: points from the earliest timed record's bucket (records at or after
    as_of left out) to the bucket that holds as_of, at most max_points of them (the older ones cut, with
    truncated_before). Bucket numbers are fixed by as_of alone, so parts need nothing from each other."""

    def __init__(self, bucket: str, tz: ZoneInfo, as_of: datetime, max_points: int, visitors: int) -> None:
        self.bucket, self.tz = bucket, tz
        end_sec = _to_us(as_of) // 1_000_000
        if bucket in ("minute", "hour"):
            self.starts = _elapsed_starts(tz, 60 if bucket == "minute" else 3600, end_sec, max_points)
            self.offset, self.count = 0, len(self.starts)
        else:
            last = int(_bucket_keys(np.array([end_sec + _utc_offset(tz, end_sec)]), bucket)[0])
            self.offset, self.count = last - max_points + 1, max_points  # bucket number of the first point allowed
        self.first: int | None = None
        self.visits = np.zeros(self.count, dtype=np.int64)
        self.distinct = _GroupDistinct(self.count, visitors)

    def add(self, cols: _Counted) -> None:
        timed = cols.dated
        if not np.any(timed):
            return
        sec = cols.ts_ms[timed] // 1000
        if self.bucket in ("minute", "hour"):
            index = np.searchsorted(self.starts, sec, side="right") - 1  # -1: before every start listed (cut)
        else:
            local = _OffsetTable(self.tz, int(sec.min()), int(sec.max())).local(sec)
            index = _bucket_keys(local, self.bucket) - self.offset
        low = int(index.min())
        self.first = low if self.first is None else min(self.first, low)
        group = np.where(index >= 0, index, -1)
        self.visits += np.bincount(group[group >= 0], minlength=self.count)
        self.distinct.add(group, cols.visitor[timed])

    def result(self) -> dict[str, Any]:
        bucket, tz = self.bucket, self.tz
        if self.first is None:
            return {"bucket": bucket, "points": []}
        cut = self.first < 0
        first = max(self.first, 0)
        visits = self.visits[first:].tolist()
        distinct = self.distinct.counts()[first:].tolist()
        if bucket in ("minute", "hour"):
            names = [datetime.fromtimestamp(s, tz).isoformat() for s in self.starts[first:].tolist()]
        else:
            names = [_first_local(_bucket_wall(self.offset + j, bucket), tz) for j in range(first, self.count)]
        points = [
            {"start": name, "visits": v, "distinct_visitors": d}
            for name, v, d in zip(names, visits, distinct, strict=True)
        ]
        series: dict[str, Any] = {"bucket": bucket, "points": points}
        if cut:
            series["truncated_before"] = points[0]["start"]
        return series


def _elapsed_starts(tz: ZoneInfo, unit: int, end_sec: int, count: int) -> np.ndarray:
    """The last `count` starts (epoch seconds) of minute or hour buckets up to the one that holds end_sec.

    Buckets of elapsed time start at each instant whose local time is a whole unit, and at each change of
    the UTC offset: between two changes the starts are an arithmetic progression."""
    lo = end_sec - (count + 1) * unit  # at least count + 1 starts lie in [lo, end_sec]
    changes = _offset_changes(tz, lo, end_sec)
    starts: list[np.ndarray] = []
    for seg_start, seg_end in zip([lo, *changes], [*changes, end_sec + 1], strict=True):
        offset = _utc_offset(tz, seg_start)
        aligned = seg_start + (-(seg_start + offset)) % unit
        if seg_start != lo and aligned != seg_start:
            starts.append(np.array([seg_start], dtype=np.int64))
        starts.append(np.arange(aligned, seg_end, unit, dtype=np.int64))
    every = np.concatenate(starts)
    return every[-count:]


def _offset_changes(tz: ZoneInfo, lo: int, hi: int) -> list[int]:
    """Instants in (lo, hi] at which the zone's UTC offset changes (at most one per hour), to the second."""
    changes = []
    before, before_offset = lo, _utc_offset(tz, lo)
    for probe in range(lo + 3600, hi + 3600, 3600):
        probe = min(probe, hi)
        offset = _utc_offset(tz, probe)
        if offset != before_offset:
            a, b = before, probe  # offset(a) == before_offset != offset(b)
            while b - a > 1:
                mid = (a + b) // 2
                a, b = (mid, b) if _utc_offset(tz, mid) == before_offset else (a, mid)
            changes.append(b)
        before, before_offset = probe, offset
        if probe == hi:
            break
    return changes


def _utc_offset(tz: ZoneInfo, sec: int) -> int:
    offset = datetime.fromtimestamp(sec, tz).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


class _OffsetTable:
    """UTC offsets of a zone over a range of epoch seconds: one zoneinfo lookup per UTC hour, and an exact
    lookup per record in the rare hours that contain an offset change (e.g. Australia/Lord_Howe's)."""

    def __init__(self, tz: ZoneInfo, first_sec: int, last_sec: int) -> None:
        self.tz = tz
        self.first_hour = first_sec // 3600
        hours = range(self.first_hour, last_sec // 3600 + 2)
        at = [_utc_offset(tz, h * 3600) for h in hours]
        self.at_start = np.array(at[:-1], dtype=np.int64)
        self.mixed = np.array(
            [j for j in range(len(at) - 1) if at[j] != at[j + 1] and _utc_offset(tz, hours[j] * 3600 + 3599) != at[j]],
            dtype=np.int64,
        )

    def local(self, sec: np.ndarray) -> np.ndarray:
        """Local wall-clock seconds since 1970-01-01 of epoch seconds `sec`."""
        rel = sec // 3600 - self.first_hour
        offset = self.at_start[rel]
        if self.mixed.size:
            inside = np.flatnonzero(np.isin(rel, self.mixed))
            offset[inside] = [_utc_offset(self.tz, s) for s in sec[inside].tolist()]
        return sec + offset


def _bucket_keys(local: np.ndarray, bucket: str) -> np.ndarray:
    """Consecutive integer numbers of the calendar buckets (day, week, month, year) of local wall-clock seconds."""
    days = local // 86_400
    if bucket == "day":
        return days
    if bucket == "week":  # 1970-01-01 was a Thursday; week k starts on Monday, day 7k - 3
        return (days + 3) // 7
    unit = "M" if bucket == "month" else "Y"
    return days.astype("datetime64[D]").astype(f"datetime64[{unit}]").astype(np.int64)


def _bucket_wall(key: int, bucket: str) -> datetime:
    """Naive local wall-clock start of calendar bucket number `key`."""
    if bucket == "day":
        return _EPOCH_NAIVE + timedelta(days=key)
    if bucket == "week":
        return _EPOCH_NAIVE + timedelta(days=7 * key - 3)
    if bucket == "month":
        return datetime(1970 + key // 12, key % 12 + 1, 1)
    return datetime(1970 + key, 1, 1)
