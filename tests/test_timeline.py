"""UTC offsets looked up per day and per quarter hour, against the standard library instant by instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from lifestats.timeline import Clock

# Zones with odd histories: half-hour and 15-minute offsets, a 30-minute DST, a skipped calendar day,
# DST suspended for weeks, local mean time with seconds, double summer time, many changes in a few years.
ZONES = [
    ("Europe/Berlin", 1940),
    ("Europe/London", 1941),
    ("Europe/Moscow", 1919),
    ("Australia/Lord_Howe", 1985),
    ("Pacific/Apia", 2011),
    ("Africa/Casablanca", 2019),
    ("Asia/Kathmandu", 1985),
    ("America/St_Johns", 1988),
    ("Europe/Amsterdam", 1937),
    ("America/Sao_Paulo", 2018),
    ("UTC", 2025),
]


def truth(tz: ZoneInfo, instants: np.ndarray) -> list[int]:
    return [int(datetime.fromtimestamp(t, tz).utcoffset() // timedelta(seconds=1)) for t in instants.tolist()]


@pytest.mark.parametrize(("zone", "year"), ZONES)
def test_offsets_match_the_standard_library_at_every_instant_of_two_years(zone: str, year: int) -> None:
    tz = ZoneInfo(zone)
    start = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    # every 7.5 minutes plus a few seconds, so that instants fall on both sides of every change
    instants = np.arange(start, start + 2 * 366 * 86_400, 450, dtype=np.int64) + 7
    clock = Clock(tz)
    found = np.zeros(len(instants), dtype=np.int64)
    for at in range(0, len(instants), 1000):  # page by page, as counting asks
        part = instants[at : at + 1000]
        offsets, known = clock.offsets(part)
        exact = [clock.offset(int(t)) for t in part[~known].tolist()]
        offsets[~known] = exact
        found[at : at + 1000] = offsets
    assert found.tolist() == truth(tz, instants)


def test_offsets_asked_out_of_order_and_far_apart_match_the_standard_library() -> None:
    tz = ZoneInfo("Europe/Berlin")
    rng = np.random.default_rng(7)
    instants = rng.integers(-2_000_000_000, 4_000_000_000, size=5000, dtype=np.int64)
    clock = Clock(tz)
    offsets, known = clock.offsets(instants)
    offsets[~known] = [clock.offset(int(t)) for t in instants[~known].tolist()]
    assert offsets.tolist() == truth(tz, instants)


@pytest.mark.parametrize(
    ("moment", "unit", "start"),
    [
        ("3000-01-01T23:59:59.999999+00:00", "day", "3000-01-01T00:00:00+00:00"),
        ("3000-01-01T00:59:59.999999+00:00", "hour", "3000-01-01T00:00:00+00:00"),
        ("3000-01-01T00:00:59.999999+00:00", "minute", "3000-01-01T00:00:00+00:00"),
        ("3000-01-31T23:59:59.999999+00:00", "month", "3000-01-01T00:00:00+00:00"),
        ("1000-01-01T23:59:59.999999+00:00", "day", "1000-01-01T00:00:00+00:00"),
        ("9999-12-31T23:59:59.999999+00:00", "year", "9999-01-01T00:00:00+00:00"),
    ],
)
def test_the_bucket_of_a_moment_far_from_1970_is_the_one_that_holds_it(moment: str, unit: str, start: str) -> None:
    """``--as-of`` with microseconds far from 1970 was read as a float of epoch seconds, which rounds .999999
    up to the next second: the series ended one bucket past as_of (a zero point after it, and with
    ``series_max_points`` the first real bucket dropped; audit O)."""
    from lifestats.timeline import Buckets

    clock = Clock(ZoneInfo("UTC"))
    instant = datetime.fromisoformat(moment)
    assert clock.holds(instant)
    expected = (datetime.fromisoformat(start) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1)
    assert Buckets(unit, clock).key_of(instant) == expected


def test_as_of_reads_a_lower_case_z_as_utc_as_record_timestamps_do() -> None:
    """``--as-of 2026-03-15T12:00:00z`` was refused (exit 2) although records' timestamps read it (audit O)."""
    from lifestats.cli import _as_of

    assert _as_of("2026-03-15T12:00:00z") == datetime(2026, 3, 15, 12, tzinfo=UTC)
    assert _as_of("2026-03-15T12:00:00.5z") == datetime(2026, 3, 15, 12, 0, 0, 500_000, tzinfo=UTC)
