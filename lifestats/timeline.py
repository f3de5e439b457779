"""Time in the report: window bounds around ``as_of`` and series buckets, both in the stats time zone.

Bucket keys are integers: the bucket's start as seconds since 1970-01-01 in local wall-clock time
(naive local time, not UTC), so that they sort, merge and serialise as plain numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

WINDOWS: Final = ("all", "yesterday", "last_7_days", "last_30_days", "this_year")
_EPOCH: Final = datetime(1970, 1, 1)
_DAY: Final = 86_400
_OFFSET_GRAIN: Final = 900  # every real UTC offset change happens on a quarter hour


@dataclass(frozen=True)
class Windows:
    """Epoch-second bounds of the dated windows; ``all`` has none."""

    as_of: float
    today: float  # D: start of the local day that contains as_of
    yesterday: float
    week: float
    month: float
    year: float

    @classmethod
    def around(cls, as_of: datetime, tz: ZoneInfo) -> Windows:
        local = as_of.astimezone(tz)
        day = local.date()

        def midnight(d: date) -> float:
            return datetime(d.year, d.month, d.day, tzinfo=tz).timestamp()

        return cls(
            as_of=as_of.timestamp(),
            today=midnight(day),
            yesterday=midnight(day - timedelta(days=1)),
            week=midnight(day - timedelta(days=7)),
            month=midnight(day - timedelta(days=30)),
            year=midnight(date(day.year, 1, 1)),
        )

    def of(self, t: float) -> tuple[str, ...]:
        """The dated windows that contain the instant ``t`` (epoch seconds)."""
        names: list[str] = []
        if self.year <= t < self.as_of:
            names.append("this_year")
        if self.month <= t < self.today:
            names.append("last_30_days")
            if t >= self.week:
                names.append("last_7_days")
                if t >= self.yesterday:
                    names.append("yesterday")
        return tuple(names)


class Buckets:
    """Maps instants to series buckets (local wall-clock floors) and renders them back."""

    def __init__(self, unit: str, tz: ZoneInfo) -> None:
        self.unit = unit
        self.tz = tz
        self._offsets: dict[int, int] = {}

    def _local_seconds(self, t: float) -> int:
        grain = int(t // _OFFSET_GRAIN)
        offset = self._offsets.get(grain)
        if offset is None:
            utcoffset = datetime.fromtimestamp(grain * _OFFSET_GRAIN, self.tz).utcoffset()
            offset = int(utcoffset.total_seconds()) if utcoffset else 0
            self._offsets[grain] = offset
        return int(t // 1) + offset

    def key(self, t: float) -> int:
        """The bucket of the instant ``t`` (epoch seconds)."""
        local = self._local_seconds(t)
        unit = self.unit
        if unit == "minute":
            return local - local % 60
        if unit == "hour":
            return local - local % 3600
        day_start = local - local % _DAY
        if unit == "day":
            return day_start
        days = day_start // _DAY
        if unit == "week":  # 1970-01-01 was a Thursday; weeks start on Monday
            return (days - (days + 3) % 7) * _DAY
        d = date.fromordinal(_EPOCH.toordinal() + days)
        start = date(d.year, d.month, 1) if unit == "month" else date(d.year, 1, 1)
        return (start.toordinal() - _EPOCH.toordinal()) * _DAY

    def start(self, key: int) -> str:
        """ISO 8601 start of a bucket, with the zone's offset at that wall-clock time."""
        return (_EPOCH + timedelta(seconds=key)).replace(tzinfo=self.tz).isoformat()

    def span(self, first: int, last: int) -> Iterator[int]:
        """Every bucket key from ``first`` to ``last`` inclusive."""
        key = first
        while key <= last:
            yield key
            key = self._next(key)

    def _next(self, key: int) -> int:
        step = {"minute": 60, "hour": 3600, "day": _DAY, "week": 7 * _DAY}.get(self.unit)
        if step is not None:
            return key + step
        d = (_EPOCH + timedelta(seconds=key)).date()
        nxt = date(d.year + 1, 1, 1) if self.unit == "year" or d.month == 12 else date(d.year, d.month + 1, 1)
        return (nxt.toordinal() - _EPOCH.toordinal()) * _DAY
