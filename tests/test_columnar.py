"""The fast column-by-column checks against the per-record path, record by record, on hostile pages.

For every record the fast checks decide, the verdict (bot, or counted with the same item, category,
visitor, day and series bucket, and the same future and series-cut flags) must be the one the per-record
path gives it alone; a record they leave undecided goes down the per-record path anyway. Clean pages of
the mock must be decided entirely by the fast checks, or the comparison would prove nothing.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifestats.columnar import FastCounter, civil_from_days, days_from_civil
from lifestats.config import load_settings
from lifestats.count import PageCounter, Rejected
from lifestats.stats import Partial
from mocks.dataset import BOT_IPS, BOT_UA_PATTERNS, FIELDS, DatasetSpec, LazyDataset
from tests.test_records_property import AS_OF, JSON, ZONES, iso_like, timestamps

EXAMPLES = int(os.environ.get("LIFESTATS_PROPERTY_EXAMPLES", "300"))


def counter_for(timezone: str, series: str, as_of: datetime, max_points: int = 5000) -> PageCounter:
    settings = load_settings(
        None,
        "test",
        environ={},
        overrides={
            "api": {"url": "http://127.0.0.1:9/events"},
            "fields": dict(FIELDS),
            "stats": {"mode": "approx", "timezone": timezone, "series": series, "series_max_points": max_points},
            "bots": {"ips": list(BOT_IPS), "user_agents": list(BOT_UA_PATTERNS)},
        },
    )
    return PageCounter(settings, as_of)


def slow_verdict(counter: PageCounter, record: dict[str, Any]) -> tuple[Any, ...]:
    """The per-record path's verdict on one record, alone."""
    partial = Partial()
    counter._page = type(counter._page)()
    try:
        counter._count(partial, record)
    except Rejected:
        return ("rejected",)
    if partial.records["bots"]:
        return ("bot",)
    page = counter._page
    assert len(page.items) == 1
    return (
        "counted",
        page.items[0],
        page.categories[0],
        page.visitors[0],
        int(page.days[0]),
        int(page.buckets[0]),
        partial.records["future"],
        partial.series_cut,
    )


def fast_verdicts(counter: PageCounter, records: list[dict[str, Any]]) -> dict[int, tuple[Any, ...]]:
    """The fast checks' verdicts, by position (undecided positions left out)."""
    page = FastCounter.for_counter(counter).count(records)
    verdicts: dict[int, tuple[Any, ...]] = {}
    for k, row in enumerate(page.rows):
        verdicts[row] = ("counted", page.items[k], page.categories[k], page.visitors[k])
        verdicts[row] += (int(page.days[k]), int(page.buckets[k]))
    undecided = set(page.slow)
    for row in range(len(records)):
        if row not in undecided and row not in verdicts:
            verdicts[row] = ("bot",)
    assert page.bots == sum(1 for v in verdicts.values() if v[0] == "bot")
    return verdicts


def assert_same(counter: PageCounter, records: list[dict[str, Any]]) -> int:
    """Every decided record's verdict equals the per-record one; returns how many were decided."""
    fast = fast_verdicts(counter, records)
    page = FastCounter.for_counter(counter).count(records)
    futures = cuts = 0
    for row, verdict in fast.items():
        slow = slow_verdict(counter, records[row])
        assert verdict == slow[:6], (records[row], verdict, slow)
        if verdict[0] == "counted":  # 5 and "5" differ, and so do 1 and True
            assert [type(v) for v in verdict[1:4]] == [type(v) for v in slow[1:4]]
        if slow[0] == "counted":
            futures += slow[6]
            cuts += slow[7]
    assert (page.future, page.series_cut) == (futures, cuts)
    return len(fast)


@pytest.mark.parametrize(
    ("timezone", "series"), [("UTC", "day"), ("Asia/Kolkata", "month"), ("America/New_York", "hour")]
)
def test_clean_mock_pages_are_decided_by_the_fast_checks_as_record_by_record(timezone: str, series: str) -> None:
    dataset = LazyDataset(DatasetSpec(seed=3, records=3000, malformed_share=0.0, null_share=0.05))
    counter = counter_for(timezone, series, datetime(2026, 3, 15, 12, tzinfo=UTC))
    records, _ = dataset.page(dataset.first_id, 3000)
    decided = assert_same(counter, records)
    assert decided == len(records)


def test_malformed_mock_records_are_decided_as_record_by_record() -> None:
    dataset = LazyDataset(DatasetSpec(seed=5, records=4000, malformed_share=0.2, null_share=0.1))
    counter = counter_for("Europe/Stockholm", "week", datetime(2026, 3, 15, 12, tzinfo=UTC))
    records, _ = dataset.page(dataset.first_id, 4000)
    assert assert_same(counter, records) > len(records) // 2


VALUES = JSON | iso_like() | st.sampled_from(["2026-03-14T10:00:00.123Z", "2026-03-14T10:00:00.123+01:00", None])


def edges(as_of: datetime) -> st.SearchStrategy[Any]:
    """``as_of`` itself and its neighbours, in every form: the ends of windows and of the series."""
    seconds = as_of.timestamp()
    return st.sampled_from(
        [
            as_of.isoformat(),
            as_of.isoformat().replace("+00:00", "Z"),
            (as_of - timedelta(microseconds=1)).isoformat(),
            (as_of + timedelta(microseconds=1)).isoformat(),
            seconds,
            int(seconds),
            int(seconds * 1000),
            int(seconds) - 1,
            int(seconds * 1000) + 1,
        ]
    )


@st.composite
def hostile_records(draw: st.DrawFn, as_of: datetime) -> dict[str, Any]:
    """Mostly plausible records (so that most reach the later checks), with any JSON value anywhere."""
    record: dict[str, Any] = {"id": 1}
    for name in ("item", "category", "visitor", "timestamp", "ip", "user_agent"):
        kind = draw(st.integers(0, 5))
        if kind == 0:
            continue  # missing
        if name == "timestamp":
            record[name] = draw(timestamps(as_of) if kind < 3 else iso_like() if kind < 4 else VALUES | edges(as_of))
        elif name in ("ip", "user_agent") and kind < 4:
            record[name] = draw(st.sampled_from([*BOT_IPS, "192.0.2.1", "ExampleBot/1.0", "Mozilla/5.0", "scrapy"]))
        elif kind < 4:
            record[name] = draw(st.integers(-(2**64), 2**64) | st.text(max_size=3))
        else:
            record[name] = draw(VALUES)
    return record


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    data=st.data(),
    timezone=st.sampled_from(ZONES),
    series=st.sampled_from(["minute", "hour", "day", "week", "month", "year"]),
    as_of=AS_OF,
    max_points=st.sampled_from([3, 5000]),
)
def test_hostile_pages_are_decided_as_record_by_record(
    data: st.DataObject, timezone: str, series: str, as_of: datetime, max_points: int
) -> None:
    counter = counter_for(timezone, series, as_of, max_points)
    records = data.draw(st.lists(hostile_records(as_of), min_size=1, max_size=30))
    assert_same(counter, records)


def test_civil_day_arithmetic_matches_the_calendar() -> None:
    import numpy as np

    days = np.arange(-719_162, 2_932_897, 997, dtype=np.int64)  # 0001-01-01 .. 9999-12-31
    year, month = civil_from_days(days)
    for d, y, m in zip(days.tolist()[::50], year.tolist()[::50], month.tolist()[::50], strict=True):
        moment = datetime.fromordinal(d + datetime(1970, 1, 1).toordinal())
        assert (moment.year, moment.month) == (y, m)
    back = days_from_civil(year, month, np.ones_like(month))
    for d, b in zip(days.tolist()[::50], back.tolist()[::50], strict=True):
        moment = datetime.fromordinal(d + datetime(1970, 1, 1).toordinal())
        assert datetime.fromordinal(b + datetime(1970, 1, 1).toordinal()) == moment.replace(day=1)
