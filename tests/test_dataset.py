"""mocks.dataset: pages, determinism, data shape, and ground_truth against a naive reference.

The reference below re-reads every rendered record (through a JSON round trip) and applies
docs/DATA_CONTRACT.md literally, one record at a time, with datetime / zoneinfo only.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mocks.dataset import (
    _MALFORMED,
    BOT_IPS,
    BOT_UA_PATTERNS,
    BROWSER_UAS,
    Dataset,
    DatasetSpec,
    LazyDataset,
    _OffsetTable,
    generate,
    ground_truth,
    render_timestamp,
    render_timestamps,
    render_visitors,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
REJECT = object()
END = datetime.fromisoformat(DatasetSpec().end)

# Small, dirty datasets: many malformed records, nulls and bots, few items so that ties abound.
SMALL = {"records": 2_500, "items": 150, "categories": 12, "visitors": 400}
DIRTY = {"malformed_share": 0.03, "null_share": 0.06, "bot_share": 0.06}


@cache
def dataset(**fields: Any) -> Dataset:
    return generate(DatasetSpec(**fields))


@cache
def rendered(ds: Dataset) -> tuple[dict[str, Any], ...]:
    return tuple(orjson.loads(orjson.dumps(ds.record(i))) for i in range(len(ds)))


# ------------------------------------------------------------------------------------------ naive reference


FIRST_SECOND = datetime(1, 1, 1, tzinfo=UTC)
LAST_SECOND = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def parse_timestamp(value: Any, tz: ZoneInfo) -> datetime | object | None:
    """An aware UTC datetime, None (no time) or REJECT: what cannot be read, or names no instant of the
    years 1 to 9999 in UTC and in `tz`."""
    if value is None:
        return None
    if isinstance(value, bool):
        return REJECT
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value) if value.isprintable() else None
        except ValueError:
            return REJECT
        if parsed is None or parsed.tzinfo is None:
            return REJECT
        try:
            when = parsed.astimezone(UTC)
        except OverflowError:
            return REJECT
    elif isinstance(value, int | float):
        try:
            when = EPOCH + (timedelta(milliseconds=value) if value > 10**11 else timedelta(seconds=value))
        except OverflowError:
            return REJECT
    else:
        return REJECT
    try:
        when.astimezone(tz)
    except OverflowError:
        return REJECT
    return when


def usable(value: Any) -> bool:
    return isinstance(value, str) or (type(value) is int and -(2**63) <= value < 2**63)


def ranked(counts: dict[Any, int], k: int) -> list[Any]:
    return sorted(counts, key=lambda v: (-counts[v], isinstance(v, str), v))[:k]


def calendar_floor(when: datetime, bucket: str, tz: ZoneInfo) -> datetime:
    wall = when.astimezone(tz).replace(tzinfo=None, fold=0)
    day = datetime(wall.year, wall.month, wall.day)
    if bucket == "day":
        return day
    if bucket == "week":
        return day - timedelta(days=day.weekday())
    return datetime(wall.year, wall.month if bucket == "month" else 1, 1)


def calendar_before(wall: datetime, bucket: str) -> datetime:
    if bucket == "day":
        return wall - timedelta(days=1)
    if bucket == "week":
        return wall - timedelta(weeks=1)
    if bucket == "month":
        return datetime(wall.year - (wall.month == 1), (wall.month - 2) % 12 + 1, 1)
    return datetime(wall.year - 1, 1, 1)


def offset_at(moment: datetime, tz: ZoneInfo) -> timedelta:
    return moment.astimezone(tz).utcoffset()  # type: ignore[return-value]


def elapsed_floor(when: datetime, unit: timedelta, tz: ZoneInfo) -> datetime:
    """The start (UTC) of the minute or hour of elapsed time that holds `when`: the last instant at or before
    it where the local clock showed a whole unit or the UTC offset changed."""
    offset = offset_at(when, tz)
    local = when + offset
    whole = local.replace(second=0, microsecond=0, minute=0 if unit == timedelta(hours=1) else local.minute)
    start = whole - offset
    if offset_at(start, tz) != offset:  # the offset changed in between: find the second it did
        a, b = start, when.replace(microsecond=0)
        while b - a > timedelta(seconds=1):
            middle = a + timedelta(seconds=int((b - a).total_seconds()) // 2)
            a, b = (a, middle) if offset_at(middle, tz) == offset else (middle, b)
        start = b
    return start


def window_bounds(as_of: datetime, tz: ZoneInfo) -> dict[str, tuple[datetime, datetime] | None]:
    day = as_of.astimezone(tz).date()

    def midnight(d: date) -> datetime:
        return datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(UTC)

    return {
        "all": None,
        "yesterday": (midnight(day - timedelta(days=1)), midnight(day)),
        "last_7_days": (midnight(day - timedelta(days=7)), midnight(day)),
        "last_30_days": (midnight(day - timedelta(days=30)), midnight(day)),
        "this_year": (midnight(date(day.year, 1, 1)), as_of.astimezone(UTC)),
    }


def window_report(rows: list[tuple[Any, Any, Any]], top_items: int, top_categories: int) -> dict[str, Any]:
    item_visits: Counter[Any] = Counter()
    item_visitors: defaultdict[Any, set[Any]] = defaultdict(set)
    category_visits: Counter[Any] = Counter()
    visitors: set[Any] = set()
    for item, category, visitor in rows:
        item_visits[item] += 1
        if usable(visitor):
            visitors.add((type(visitor), visitor))
            item_visitors[item].add((type(visitor), visitor))
        if usable(category):
            category_visits[category] += 1
    return {
        "visits": len(rows),
        "distinct_visitors": len(visitors),
        "top_items": [
            {"id": i, "visits": item_visits[i], "distinct_visitors": len(item_visitors[i])}
            for i in ranked(item_visits, top_items)
        ],
        "top_categories": [{"id": c, "visits": category_visits[c]} for c in ranked(category_visits, top_categories)],
    }


def reference(
    ds: Dataset,
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
    tz = ZoneInfo(timezone)
    ips, patterns = set(bot_ips), list(bot_user_agents)
    records = dict.fromkeys(("fetched", "counted", "rejected", "bots", "duplicates", "future"), 0)
    counted: list[tuple[Any, Any, Any, datetime | None]] = []
    for index, rec in enumerate(rendered(ds)):
        rid = int(ds.ids[index])  # where the record sits, even when its id field is broken
        if (begin is not None and rid < begin) or (end is not None and rid >= end):
            continue
        records["fetched"] += 1
        when = parse_timestamp(rec.get("timestamp"), tz)
        if not (type(rec.get("id")) is int and usable(rec["id"])) or not usable(rec.get("item")) or when is REJECT:
            records["rejected"] += 1
            continue
        ip, ua = rec.get("ip"), rec.get("user_agent")
        if (isinstance(ip, str) and ip in ips) or (isinstance(ua, str) and any(re.search(p, ua) for p in patterns)):
            records["bots"] += 1
            continue
        records["counted"] += 1
        records["future"] += when is not None and when > as_of  # type: ignore[operator]
        counted.append((rec["item"], rec.get("category"), rec.get("visitor"), when))  # type: ignore[arg-type]

    windows = {}
    for name, bounds in window_bounds(as_of, tz).items():
        rows = [
            (i, c, v)
            for i, c, v, t in counted
            if bounds is None or (t is not None and bounds[0] <= t < bounds[1])  # type: ignore[operator]
        ]
        windows[name] = window_report(rows, top_items, top_categories)
    return {"records": records, "windows": windows, "series": reference_series(counted, bucket, tz, as_of, max_points)}


def reference_series(
    counted: list[tuple[Any, Any, Any, datetime | None]], bucket: str, tz: ZoneInfo, as_of: datetime, max_points: int
) -> dict[str, Any]:
    units = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1)}

    def floor(when: datetime) -> datetime:
        if bucket in units:
            return elapsed_floor(when.astimezone(UTC), units[bucket], tz)
        return calendar_floor(when, bucket, tz)

    def before(start: datetime) -> datetime:
        if bucket in units:
            return elapsed_floor(start - timedelta(seconds=1), units[bucket], tz)
        return calendar_before(start, bucket)

    def name(start: datetime) -> str:
        if bucket in units:
            return start.astimezone(tz).isoformat()
        local = start.replace(tzinfo=tz)  # midnight; where the clocks skip it, the first time the day has
        with contextlib.suppress(OverflowError):
            local = local.astimezone(UTC).astimezone(tz)
        return local.isoformat()

    per_bucket: defaultdict[datetime, list[Any]] = defaultdict(list)
    for _, _, visitor, when in counted:
        if when is not None and when < as_of:
            per_bucket[floor(when)].append(visitor)
    if not per_bucket:
        return {"bucket": bucket, "points": []}
    earliest = min(per_bucket)
    starts = [floor(as_of)]
    while len(starts) < max_points and starts[-1] > earliest:
        starts.append(before(starts[-1]))
    starts.reverse()
    points = []
    for start in starts:
        seen = per_bucket.get(start, [])
        distinct = {(type(v), v) for v in seen if usable(v)}
        points.append({"start": name(start), "visits": len(seen), "distinct_visitors": len(distinct)})
    series: dict[str, Any] = {"bucket": bucket, "points": points}
    if earliest < starts[0]:
        series["truncated_before"] = points[0]["start"]
    return series


def assert_matches(ds: Dataset, **kwargs: Any) -> dict[str, Any]:
    truth = ground_truth(ds, **kwargs)
    expected = reference(ds, **kwargs)
    assert truth["records"] == expected["records"]
    for name, window in expected["windows"].items():
        assert truth["windows"][name] == window, name
    assert truth["series"] == expected["series"]
    assert truth == expected
    return truth


# ------------------------------------------------------------------------------------------ ground truth


AS_OFS = [
    END,  # the dataset's end: records at exact window bounds, one record exactly at as_of
    datetime(2026, 1, 1, tzinfo=UTC),  # exactly a UTC midnight, on 1 January
    datetime.fromisoformat("2025-10-26T01:30:00+00:00"),  # Stockholm DST end day: yesterday has 24 h, today 25
    datetime.fromisoformat("2025-03-31T03:15:00+05:30"),  # the day after Stockholm's 23-hour day
]


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("timezone", ["UTC", "Europe/Stockholm", "Asia/Kolkata"])
def test_ground_truth_matches_reference_across_buckets(seed: int, timezone: str) -> None:
    ds = dataset(seed=seed, **SMALL, **DIRTY)
    for bucket, as_of in zip(["hour", "day", "week", "month"], AS_OFS, strict=True):
        assert_matches(ds, as_of=as_of, bucket=bucket, timezone=timezone, top_items=20, top_categories=5)


def test_ground_truth_matches_reference_minutes_and_years() -> None:
    ds = dataset(seed=3, records=1_000, items=50, visitors=80, **DIRTY)
    assert_matches(ds, as_of=END, bucket="year", timezone="America/Los_Angeles")
    # minute buckets over an id range whose records span a few days
    windows = np.lib.stride_tricks.sliding_window_view(ds.ts_ms, 30)
    start = int(np.argmin(windows.max(axis=1) - windows.min(axis=1)))
    begin, end = int(ds.ids[start]), int(ds.ids[start + 30])
    truth = assert_matches(ds, as_of=END, bucket="minute", timezone="Asia/Kolkata", begin=begin, end=end)
    assert 30 < len(truth["series"]["points"]) < 15_000


def with_timestamps(ds: Dataset, instants: list[str]) -> Dataset:
    """`ds` with every timestamp moved onto one of `instants` (plus 0/250/500/750 ms)."""
    base = np.array([int(datetime.fromisoformat(t).timestamp() * 1000) for t in instants], dtype=np.int64)
    k = np.arange(len(ds))
    ts_ms = base[k % len(base)] + (k // len(base)) % 4 * 250
    fmt = np.where(ds.ts_format == 4, 6, ds.ts_format).astype(np.int8)  # no fractions in int seconds
    return replace(ds, ts_ms=ts_ms, ts_format=fmt)


@pytest.mark.parametrize(
    ("timezone", "instants"),
    [
        # Lord Howe Island moves from +10:30 to +11:00 at 15:30 UTC, halfway through a UTC hour
        ("Australia/Lord_Howe", ["2025-10-04T15:00:00Z", "2025-10-04T15:29:59Z", "2025-10-04T15:30:00Z"]),
        ("Australia/Lord_Howe", ["2025-10-04T13:29:00Z", "2025-10-04T15:59:59Z", "2025-10-04T16:10:00Z"]),
        # Stockholm falls back at 01:00 UTC: local 02:00-03:00 happens twice
        ("Europe/Stockholm", ["2025-10-25T23:59:59Z", "2025-10-26T00:30:00Z", "2025-10-26T01:15:00Z"]),
        # Stockholm springs forward at 01:00 UTC: local 02:00-03:00 never happens
        ("Europe/Stockholm", ["2025-03-30T00:59:59Z", "2025-03-30T01:00:00Z", "2025-03-30T01:45:00Z"]),
        # Santiago springs forward at midnight (04:00 UTC): 2025-09-07 has no 00:00, its day starts at 01:00
        ("America/Santiago", ["2025-09-07T03:59:59Z", "2025-09-07T04:00:00Z", "2025-09-07T05:30:00Z"]),
    ],
)
def test_offset_changes(timezone: str, instants: list[str]) -> None:
    moved = with_timestamps(dataset(seed=10, records=300, items=30, visitors=50, **DIRTY), instants)
    rendered.cache_clear()
    as_of = datetime.fromisoformat(instants[0]) + timedelta(days=1)
    for bucket in ("minute", "hour", "day"):
        assert_matches(moved, as_of=as_of, bucket=bucket, timezone=timezone)
    rendered.cache_clear()


def test_offset_table_handles_mid_hour_changes() -> None:
    first = int(datetime(2025, 10, 4, tzinfo=UTC).timestamp())
    table = _OffsetTable(ZoneInfo("Australia/Lord_Howe"), first, first + 86_400)
    assert table.mixed.size == 1
    sec = np.array([first + 15 * 3600 + 1799, first + 15 * 3600 + 1800])
    assert (table.local(sec) - sec).tolist() == [37_800, 39_600]


MIDNIGHT = datetime(2026, 3, 15, tzinfo=UTC)  # an anchor: records at it and 250 ms before it


@pytest.mark.parametrize("as_of", [*AS_OFS, MIDNIGHT - timedelta(microseconds=249_999)])  # 1 µs after a record
def test_ground_truth_matches_reference_as_of(as_of: datetime) -> None:
    ds = dataset(seed=2, **SMALL, **DIRTY)
    assert_matches(ds, as_of=as_of, timezone="Europe/Stockholm")
    just_before = int(MIDNIGHT.timestamp() * 1000) - 250
    assert np.count_nonzero((ds.ts_ms == just_before) & (ds.ts_state == 0)) > 0


def test_ground_truth_matches_reference_on_sub_ranges() -> None:
    ds = dataset(seed=4, **SMALL, **DIRTY)
    ids = ds.ids
    cuts = [
        (None, int(ids[1000])),
        (int(ids[1000]), None),
        (int(ids[700]) + 1, int(ids[1900])),  # begin just after a record
        (int(ids[5]), int(ids[5]) + 1),  # a single record
        (ds.end_id, None),  # past the end: nothing
        (0, 10),  # below the first id: nothing
        (int(ids[300]), int(ids[300])),  # empty range
    ]
    for begin, end in cuts:
        truth = assert_matches(ds, as_of=END, begin=begin, end=end, top_items=15, timezone="Asia/Kolkata")
        assert truth["records"]["fetched"] == sum(
            (begin is None or i >= begin) and (end is None or i < end) for i in ids.tolist()
        )


def test_sub_ranges_add_up() -> None:
    ds = dataset(seed=5, **SMALL, **DIRTY)
    cut = int(ds.ids[1234]) + 1
    whole = ground_truth(ds, as_of=END)["records"]
    left = ground_truth(ds, as_of=END, end=cut)["records"]
    right = ground_truth(ds, as_of=END, begin=cut)["records"]
    assert {k: left[k] + right[k] for k in whole} == whole


def test_ground_truth_matches_reference_with_other_bot_lists() -> None:
    ds = dataset(seed=6, **SMALL, **DIRTY)
    normal_ip = ds.ip_values[0]
    for ips, patterns in [
        ((), ()),  # nobody is a bot: by-construction bots are counted
        ((normal_ip, "203.0.113.7"), (r"Firefox/\d+",)),  # a browser and a normal address become bots
        (BOT_IPS, (r"(?i)EXAMPLEBOT",)),
        (["203.0.113.7"], [r"^Scrapy"]),  # lists, anchors; "203.0.113.70" must stay a visitor
    ]:
        truth = assert_matches(ds, as_of=END, bot_ips=ips, bot_user_agents=patterns, top_items=10)
        if not ips and not patterns:
            assert truth["records"]["bots"] == 0


def test_ground_truth_edges_of_top_lists() -> None:
    ds = dataset(seed=8, **SMALL, **DIRTY)
    for top_items, top_categories in [(0, 0), (1, 1), (500, 50)]:
        truth = assert_matches(ds, as_of=END, top_items=top_items, top_categories=top_categories)
        assert len(truth["windows"]["all"]["top_items"]) <= min(top_items, ds.spec.items)


def test_rankings_break_ties_by_typed_id() -> None:
    ds = dataset(seed=0)
    truth = ground_truth(ds, as_of=END, top_items=2_000)
    rows = truth["windows"]["all"]["top_items"]
    keys = [(-r["visits"], isinstance(r["id"], str), r["id"]) for r in rows]
    assert keys == sorted(keys)
    ties = Counter(r["visits"] for r in rows)
    assert max(ties.values()) > 20  # Zipf tail: many items share a visit count
    tied_types = defaultdict(set)
    for r in rows:
        tied_types[r["visits"]].add(type(r["id"]))
    assert any(len(types) == 2 for types in tied_types.values())  # an int and a str with equal visits


def test_ground_truth_is_plain_json() -> None:
    truth = ground_truth(dataset(seed=0), as_of=END, bucket="hour", timezone="Europe/Stockholm")

    def walk(node: Any) -> None:
        assert type(node) in (dict, list, str, int), type(node)
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            walk(child)

    walk(truth)
    assert orjson.loads(orjson.dumps(truth)) == truth
    assert list(truth["windows"]) == ["all", "yesterday", "last_7_days", "last_30_days", "this_year"]


def test_every_window_has_records_at_the_default_end() -> None:
    truth = ground_truth(dataset(seed=0), as_of=END)
    for name, window in truth["windows"].items():
        assert window["visits"] > 0, name
        assert window["top_items"] and window["top_categories"], name


def test_no_timestamps_gives_empty_series_and_windows() -> None:
    ds = dataset(seed=9, records=200, **DIRTY)
    far = datetime(2000, 6, 1, tzinfo=UTC)
    truth = assert_matches(ds, as_of=far)
    assert truth["windows"]["yesterday"] == {
        "visits": 0,
        "distinct_visitors": 0,
        "top_items": [],
        "top_categories": [],
    }
    only = ground_truth(ds, as_of=END, begin=ds.end_id)
    assert only["series"] == {"bucket": "day", "points": []}
    assert only["windows"]["all"]["visits"] == 0


def test_ground_truth_rejects_bad_arguments() -> None:
    ds = dataset(seed=0, records=10)
    with pytest.raises(ValueError):
        ground_truth(ds, as_of=datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        ground_truth(ds, as_of=END, bucket="fortnight")


def test_ground_truth_does_not_import_lifestats() -> None:
    code = "import sys, mocks.dataset; assert not any(m.startswith('lifestats') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    records=st.integers(1, 300),
    items=st.integers(1, 40),
    visitors=st.integers(1, 60),
    categories=st.integers(1, 15),
    malformed=st.sampled_from([0.0, 0.1, 0.5]),
    nulls=st.sampled_from([0.0, 0.1, 0.5]),
    bots=st.sampled_from([0.0, 0.2]),
    timezone=st.sampled_from(
        ["UTC", "Europe/Stockholm", "Asia/Kolkata", "America/Los_Angeles", "Australia/Lord_Howe", "America/Santiago"]
    ),
    bucket=st.sampled_from(["hour", "day", "week", "month", "year"]),
    as_of=st.datetimes(datetime(2025, 1, 1), datetime(2026, 4, 1), timezones=st.just(UTC)),
    top=st.integers(0, 8),
    chunk=st.sampled_from([1, 7, 64, 1 << 16]),
)
def test_ground_truth_property(
    seed: int,
    records: int,
    items: int,
    visitors: int,
    categories: int,
    malformed: float,
    nulls: float,
    bots: float,
    timezone: str,
    bucket: str,
    as_of: datetime,
    top: int,
    chunk: int,
) -> None:
    spec = DatasetSpec(
        chunk=chunk,
        seed=seed,
        records=records,
        items=items,
        visitors=visitors,
        categories=categories,
        malformed_share=malformed,
        null_share=nulls,
        bot_share=bots,
    )
    ds = generate(spec)
    rendered.cache_clear()
    kwargs = {"as_of": as_of, "timezone": timezone, "bucket": bucket, "top_items": top, "top_categories": top}
    truth = assert_matches(ds, **kwargs)
    assert ground_truth(LazyDataset(spec, cached_chunks=1), **kwargs) == truth


# ------------------------------------------------------------------------------------------ pages


def crawl(ds: Dataset, limit: int, offset: int | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    next_offset: int | None = ds.first_id if offset is None else offset
    while next_offset is not None:
        page, following = ds.page(next_offset, limit)
        assert all(r["id"] >= next_offset for r in page)
        assert len(page) <= limit
        if following is not None:
            assert len(page) == limit
            assert following == page[-1]["id"] + 1
        out += page
        next_offset = following
    return out


@pytest.mark.parametrize("limit", [1, 7, 100, 10_000])
def test_pages_yield_every_record_once_in_order(limit: int) -> None:
    ds = dataset(seed=1, records=1_500)
    records = crawl(ds, limit)
    assert [r["id"] for r in records] == ds.ids.tolist()
    assert records == [ds.record(i) for i in range(len(ds))]


def test_page_offsets() -> None:
    ds = dataset(seed=1, records=1_500)
    ids = ds.ids.tolist()
    assert ds.page(ds.end_id, 10) == ([], None)
    assert ds.page(2**70, 10) == ([], None)
    assert ds.page(0, 3)[0] == ds.page(ds.first_id, 3)[0]
    assert ds.page(-5, 1)[0][0]["id"] == ids[0]
    last, nothing_after = ds.page(ids[-1], 5)
    assert [r["id"] for r in last] == [ids[-1]] and nothing_after is None
    gap = next(k for k in range(1, len(ids)) if ids[k] - ids[k - 1] > 1)
    inside, following = ds.page(ids[gap - 1] + 1, 2)  # an offset inside a gap starts at the next record
    assert [r["id"] for r in inside] == ids[gap : gap + 2]
    assert following == ids[gap + 1] + 1
    exact, _ = ds.page(ids[-3], 3)  # exactly the last records: no next page
    assert ds.page(ids[-3], 3)[1] is None and len(exact) == 3
    with pytest.raises(ValueError):
        ds.page(ds.first_id, 0)
    with pytest.raises(IndexError):
        ds.record(len(ds))
    assert ds.record(-1) == ds.record(len(ds) - 1)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 1000), records=st.integers(1, 200), limit=st.integers(1, 50), data=st.data())
def test_pages_property(seed: int, records: int, limit: int, data: st.DataObject) -> None:
    ds = generate(DatasetSpec(seed=seed, records=records, mean_gap=3.0, empty_share=0.5))
    offset = data.draw(st.integers(ds.first_id - 5, ds.end_id + 5))
    ids = ds.ids.tolist()
    assert [r["id"] for r in crawl(ds, limit, offset)] == [i for i in ids if i >= offset]


def test_same_spec_same_bytes_other_seed_other_data() -> None:
    spec = DatasetSpec(seed=11, records=3_000)
    a, b = generate(spec), generate(spec)
    for offset in (a.first_id, int(a.ids[1234]), int(a.ids[-10])):
        assert orjson.dumps(a.page(offset, 500)) == orjson.dumps(b.page(offset, 500))
    assert ground_truth(a, as_of=END) == ground_truth(b, as_of=END)
    other = generate(DatasetSpec(seed=12, records=3_000))
    assert other.page(other.first_id, 50) != a.page(a.first_id, 50)


# ------------------------------------------------------------------------------------------ chunks, lazily


CHUNKED = {"records": 2_500, "items": 150, "categories": 12, "visitors": 400, "chunk": 300, **DIRTY}


@pytest.mark.parametrize("timezone", ["UTC", "Europe/Stockholm"])
def test_chunked_ground_truth_matches_reference(timezone: str) -> None:
    """Many small chunks (and a lazy dataset streamed part by part) give the naive reference's numbers."""
    ds = dataset(seed=5, **CHUNKED)
    lazy = LazyDataset(DatasetSpec(seed=5, **CHUNKED), cached_chunks=2)
    for bucket, as_of in zip(["hour", "day", "week", "month"], AS_OFS, strict=True):
        kwargs = {"as_of": as_of, "bucket": bucket, "timezone": timezone, "top_items": 20, "top_categories": 5}
        truth = assert_matches(ds, **kwargs)
        assert ground_truth(lazy, **kwargs) == truth
    begin, end = int(ds.ids[299]), int(ds.ids[1801])  # from the end of one chunk into the middle of another
    truth = assert_matches(ds, as_of=END, bucket="minute", begin=begin, end=end, max_points=3000)
    assert ground_truth(lazy, as_of=END, bucket="minute", begin=begin, end=end, max_points=3000) == truth


def test_a_warmed_lazy_dataset_serves_the_same_pages() -> None:
    spec = DatasetSpec(seed=9, records=5_000, chunk=700, mean_gap=2.0)
    ds = generate(spec)
    warmed = LazyDataset(spec, cached_chunks=3)
    warmed.warm()  # the first three chunks drawn ahead; the others on demand
    ids = ds.ids.tolist()
    for offset in (ds.first_id, ids[699], ids[2100], ids[4999], ds.end_id):
        assert warmed.page(offset, 800) == ds.page(offset, 800)


def test_lazy_pages_equal_generated_pages_in_any_order() -> None:
    spec = DatasetSpec(seed=9, records=5_000, chunk=700, mean_gap=2.0)
    ds = generate(spec)
    lazy = LazyDataset(spec, cached_chunks=1)
    assert (lazy.first_id, lazy.end_id, len(lazy)) == (ds.first_id, ds.end_id, len(ds))
    ids = ds.ids.tolist()
    offsets = [ds.first_id - 3, *ids[::97], ids[699], ids[700] - 1, ids[-1], ds.end_id, 2**70]
    for offset in [*offsets[::-1], *offsets]:  # backwards, then forwards: the cache holds one chunk
        for limit in (1, 699, 1000):
            assert lazy.page(offset, limit) == ds.page(offset, limit)
    assert list(lazy.ids[690:710]) == ids[690:710] and lazy.ids[-1] == ids[-1] and len(lazy.ids) == len(ids)
    assert [lazy.record(i) for i in (0, 699, 700, -1)] == [ds.record(i) for i in (0, 699, 700, -1)]
    assert lazy.before(ids[701], 5) == [ds.record(i) for i in range(696, 701)]
    assert lazy.before(ds.first_id, 5) == []


def test_column_rendering_equals_record_by_record_rendering() -> None:
    ds = dataset(seed=0, records=20_000, malformed_share=0.01, null_share=0.02)
    stamps = render_timestamps(ds.ts_ms, ds.ts_format)
    expected = [render_timestamp(ms, fmt) for ms, fmt in zip(ds.ts_ms.tolist(), ds.ts_format.tolist(), strict=True)]
    assert [(type(s), s) for s in stamps] == [(type(s), s) for s in expected]
    assert {type(s) for s in stamps} == {int, float, str}
    visitors = render_visitors(ds.visitor, 6)
    expected_visitors = [c // 2 if c % 2 else f"v{c // 2:06d}" for c in ds.visitor.tolist()]
    assert [(type(v), v) for v in visitors] == [(type(v), v) for v in expected_visitors]


def test_chunk_timestamps_follow_their_position() -> None:
    """Inside a chunk stamps are non-decreasing but for late arrivals, snaps and anchors; later chunks
    hold later stamps, so the whole still grows with the id."""
    ds = dataset(seed=0, records=20_000, chunk=2_000)
    ms = ds.ts_ms.reshape(10, 2_000)
    medians = np.median(ms, axis=1)
    assert bool(np.all(np.diff(medians) > 0))
    assert np.mean(np.diff(ms, axis=1) >= 0) > 0.9
    assert ms[0].max() - ms[0].min() > 86_400_000  # a chunk spans days, not a point


# ------------------------------------------------------------------------------------------ data shape


def test_ids_cross_2_32_with_long_empty_stretches() -> None:
    ds = dataset(seed=0)
    ids = ds.ids
    assert ids.dtype == np.int64 and bool(np.all(np.diff(ids) >= 1))
    assert ds.first_id == DatasetSpec().first_id < 2**32 < ds.end_id - 1
    assert ds.end_id == int(ids[-1]) + 1 and len(ds) == 10_000
    gaps = np.sort(np.diff(ids))[::-1]
    span = ds.end_id - ds.first_id
    assert abs(gaps[:3].sum() / span - 0.2) < 0.02
    assert gaps[2] > 20 * gaps[3]  # three long stretches, then ordinary gaps
    assert abs(np.diff(ids)[np.diff(ids) < gaps[2]].mean() - 1.5) < 0.1
    mostly_empty = generate(DatasetSpec(records=2_000, empty_share=0.9, stretches=5))
    gaps = np.sort(np.diff(mostly_empty.ids))[::-1]
    assert gaps[:5].sum() / (mostly_empty.end_id - mostly_empty.first_id) > 0.85


def test_records_cover_every_format_and_defect() -> None:
    ds = dataset(seed=0, records=20_000, malformed_share=0.01, null_share=0.02)
    recs = rendered(ds)
    stamps = [r["timestamp"] for r in recs if "timestamp" in r]
    strings = [s for s in stamps if isinstance(s, str)]
    for suffix in ("+00:00", "Z", "+05:30", "-08:00"):
        assert any(s.endswith(suffix) for s in strings), suffix
    assert any(type(s) is int and s < 10**11 for s in stamps)
    assert any(type(s) is int and s > 10**11 for s in stamps)
    assert {s % 1 for s in stamps if type(s) is float} == {0.0, 0.25, 0.5, 0.75}
    for bad in ("not a date", "2025-02-30T10:00:00+00:00", "2025-03-01T10:00:00", True, [1]):
        assert bad in stamps, bad
    items = [r.get("item", "<missing>") for r in recs]
    for kind in (type(None), float, list, bool, dict, int, str):
        assert any(type(i) is kind for i in items), kind
    assert "<missing>" in items
    for key in ("category", "visitor", "timestamp", "user_agent"):
        assert any(key not in r for r in recs), key
    for key in ("category", "visitor", "timestamp"):
        assert any(key in r and r[key] is None for r in recs), key
    visitors = {v for r in recs if isinstance(v := r.get("visitor"), int | str)}
    ints = {v for v in visitors if type(v) is int and v < 2**63}
    assert ints and any(f"v{v:06d}" in visitors for v in ints)  # int 5 and "v000005" both occur
    ips = {r["ip"] for r in recs if isinstance(r["ip"], str)}
    assert ips >= set(BOT_IPS) and "203.0.113.70" in ips
    # hostile values, each counted, rejected or treated as missing by the ground truth
    for bad in (10**15, -1e12, "9999-12-31T23:30:00-05:00", "0001-01-01T00:30:00+01:00"):
        assert bad in stamps, bad
    assert any(isinstance(s, str) and "\x00" in s for s in stamps)
    assert any(isinstance(r["ip"], list) for r in recs) and any(isinstance(r["ip"], dict) for r in recs)
    assert any(isinstance(r.get("user_agent"), list) for r in recs)
    assert any(isinstance(r.get("visitor"), list) for r in recs) and any(r.get("visitor") == 2**63 + 5 for r in recs)
    assert any(isinstance(r.get("category"), dict) for r in recs)
    assert 2**63 + 7 in items
    uas = {ua for r in recs if isinstance(ua := r.get("user_agent"), str)}
    assert set(BROWSER_UAS) <= uas
    assert all(not any(re.search(p, ua) for p in BOT_UA_PATTERNS) for ua in BROWSER_UAS)


def test_shares_and_midnights() -> None:
    spec = DatasetSpec(seed=0, records=50_000)
    ds = generate(spec)
    truth = ground_truth(ds, as_of=END)["records"]
    assert abs(truth["bots"] / len(ds) - spec.bot_share) < 0.005
    rejecting = sum(outcome == "rejected" for _, _, outcome in _MALFORMED) / len(_MALFORMED)
    assert abs(truth["rejected"] / len(ds) - spec.malformed_share * rejecting) < 0.001
    ms = ds.ts_ms[ds.ts_state == 0]
    assert ms.max() == int(END.timestamp() * 1000)
    assert ms.min() >= int(END.timestamp() * 1000) - 396 * 86_400_000
    assert np.count_nonzero(ms % 86_400_000 == 0) > 100  # exact UTC midnights
    assert np.count_nonzero(ms % 86_400_000 == 86_400_000 - 19_800_000) > 20  # exact Kolkata midnights
    assert np.count_nonzero((ms + 3_600_000) % 86_400_000 == 0) > 20  # Stockholm winter midnights
    assert len(np.unique(ms)) < len(ms)  # equal timestamps exist


def test_spec_validation() -> None:
    for bad in (
        {"records": 0},
        {"mean_gap": 0.5},
        {"empty_share": 1.0},
        {"bot_share": 0.8, "malformed_share": 0.3},
        {"end": "2026-03-15T12:00:00"},
    ):
        with pytest.raises(ValueError):
            generate(DatasetSpec(**bad))


def test_series_cut_at_max_points_and_future_records_left_out() -> None:
    ds = dataset(seed=3, records=1_000, items=50, visitors=80, **DIRTY)
    as_of = datetime(2025, 12, 1, 9, 30, tzinfo=UTC)  # inside the data: later records are future
    for bucket, limit in [("minute", 7), ("hour", 50), ("day", 10), ("week", 3), ("month", 2), ("month", 1)]:
        truth = assert_matches(ds, as_of=as_of, bucket=bucket, max_points=limit, timezone="Europe/Stockholm")
        series = truth["series"]
        assert len(series["points"]) == limit and series["truncated_before"] == series["points"][0]["start"]
        assert 0 < truth["records"]["future"] < truth["records"]["counted"]
    far = datetime(2036, 3, 15, 12, tzinfo=UTC)  # ten years after the data, minute buckets
    truth = assert_matches(ds, as_of=far, bucket="minute")
    assert len(truth["series"]["points"]) == 5000 and truth["records"]["future"] == 0
    assert truth["series"]["points"][-1]["start"] == "2036-03-15T12:00:00+00:00"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    records=st.integers(1, 3000),
    malformed=st.sampled_from([0.0, 0.005, 0.2]),
    nulls=st.sampled_from([0.0, 0.01, 0.3]),
    visitors=st.sampled_from([3, 3000, 1_000_000]),
    limit=st.sampled_from([1, 7, 250, 1000]),
    chunk=st.sampled_from([64, 1 << 16]),
)
def test_pages_rendered_as_json_text_parse_to_the_records(
    seed: int, records: int, malformed: float, nulls: float, visitors: int, limit: int, chunk: int
) -> None:
    """The mock's fast rendering (byte columns, no dicts) serves what the record dicts say, page by page."""
    spec = DatasetSpec(
        seed=seed, records=records, malformed_share=malformed, null_share=nulls, visitors=visitors, chunk=chunk
    )
    for data in (LazyDataset(spec), generate(spec)):
        offset: int | None = data.first_id - 3
        pages = 0
        while offset is not None and pages < 40:
            expected, following = data.page(offset, limit)
            body, next_offset = data.page_json(offset, limit)
            assert orjson.loads(body) == expected
            assert next_offset == following
            offset, pages = following, pages + 1
    assert LazyDataset(spec).page_json(2**62, 10) == (b"[]", None)


@pytest.mark.parametrize("merge_at", [1, 7, 1 << 22])
def test_distinct_visitors_per_group_as_a_set_counts_them_bitmap_or_sorted_codes(
    monkeypatch: pytest.MonkeyPatch, merge_at: int
) -> None:
    """The ground truth's distinct count per group (a bitmap for few groups x visitors, else sorted pair
    codes merged in batches) against Python sets, over parts that repeat pairs within and across parts."""
    from mocks import dataset

    monkeypatch.setattr(dataset, "_MERGE_AT", merge_at)
    rng = np.random.default_rng(merge_at)
    parts = [(rng.integers(-1, 5, size=n), rng.integers(-1, 40, size=n)) for n in (0, 1, 30, 200, 3, 500)]
    pairs = {
        (g, v)
        for group, visitor in parts
        for g, v in zip(group.tolist(), visitor.tolist(), strict=True)
        if g >= 0 and v >= 0
    }
    expected = [sum(1 for g, _ in pairs if g == k) for k in range(5)]
    for dense in (True, False):
        monkeypatch.setattr(dataset, "_DENSE_LIMIT", 1 << 26 if dense else 0)
        distinct = dataset._GroupDistinct(5, 40)
        assert distinct.dense is dense
        for group, visitor in parts:
            distinct.add(group, visitor)
        assert distinct.counts().tolist() == expected
