"""Time in the report: ``as_of`` as records are placed against it, and series buckets, in the stats time zone.

Bucket keys are epoch seconds; a record's instant is exact epoch microseconds (an integer:
:func:`epoch_micros`), compared with ``as_of`` as :attr:`Windows.as_of_micros`. Every instant
the report deals with lies between the years 1 and 9999 both in UTC and in the stats time zone
(:class:`Clock` says which do); nothing here raises for one that does not.

Series buckets come in two kinds, and their integer keys say which:

- ``minute`` and ``hour`` buckets are real stretches of elapsed time. A bucket starts where the local clock
  shows a whole minute (hour), or where the zone's UTC offset changes, whichever comes later; so no start
  names a local time that did not exist, and after a fall-back ``02:00+02:00`` and ``02:00+01:00`` are two
  buckets. Their key is the start as an epoch second (UTC).
- ``day``, ``week``, ``month`` and ``year`` buckets follow the local calendar. Their key is the start as
  seconds since 1970-01-01 in local wall-clock time (naive local time, not UTC).

Either way keys sort, merge and serialise as plain integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

WINDOWS: Final = ("all", "yesterday", "last_7_days", "last_30_days", "this_year")
FIRST_INSTANT: Final = -62_135_596_800  # 0001-01-01T00:00:00Z
END_INSTANT: Final = 253_402_300_800  # 10000-01-01T00:00:00Z: the first instant past the year 9999
_EPOCH: Final = datetime(1970, 1, 1)
_EPOCH_UTC: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
MICROS: Final = 1_000_000  # microseconds in a second: a record's instant is exact in epoch microseconds


def epoch_micros(moment: datetime) -> int:
    """The exact epoch microseconds of an aware ``moment`` (a float of epoch seconds loses microseconds
    far from 1970: about 4 of them in the year 3000, 30 in the year 9999)."""
    return (moment - _EPOCH_UTC) // _MICROSECOND


_DAY: Final = 86_400
_GRAIN: Final = 900  # offsets are looked up once per quarter hour of UTC time (and checked at both ends)
_MAX_GRAINS: Final = 1 << 18
_ELAPSED: Final = {"minute": 60, "hour": 3600}
_LONGEST: Final = {"day": _DAY, "week": 7 * _DAY, "month": 31 * _DAY, "year": 366 * _DAY}
_UNKNOWN: Final = object()
_TABLE: Final = 1 << 20  # quarter hours (about 30 years) of offsets kept in an array by Clock.offsets
_NOT_LOOKED_UP: Final = -(2**62)  # table entries: no offset is this far from UTC
_CHANGES: Final = -(2**62) + 1


class Clock:
    """The UTC offsets of one zone, cached per quarter hour of UTC time.

    A quarter hour whose two ends share an offset is taken to have that offset throughout (no zone changes
    its offset twice within fifteen minutes); one whose ends differ (a change inside it, e.g. from a local
    mean time of ``+01:12:12``) is looked up per instant.
    """

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._grains: dict[int, int | None] = {}  # None: the offset changes inside that quarter hour
        self._table_base: int | None = None  # the quarter hour at self._table[0]
        self._table = np.zeros(0, dtype=np.int64)

    def exact(self, t: int) -> int | None:
        """The UTC offset (seconds) at the instant ``t``; None when its local time is outside years 1-9999."""
        if not FIRST_INSTANT <= t < END_INSTANT:
            return None
        try:
            offset = datetime.fromtimestamp(t, self.tz).utcoffset()
        except (OverflowError, ValueError, OSError):
            return None
        return offset // timedelta(seconds=1) if offset is not None else 0

    def offset(self, t: int) -> int | None:
        """Like :meth:`exact`, from the cache."""
        known = self._grain(t // _GRAIN)
        if known is None:
            return self.exact(t)
        return known

    def _grain(self, grain: int) -> int | None:
        """The offset throughout quarter hour ``grain``; None when it changes inside it (or is unknown)."""
        known = self._grains.get(grain, _UNKNOWN)
        if known is _UNKNOWN:
            first = self.exact(grain * _GRAIN)
            known = first if first is not None and first == self.exact(grain * _GRAIN + _GRAIN - 1) else None
            if len(self._grains) >= _MAX_GRAINS:
                self._grains.clear()
            self._grains[grain] = known
        return known  # type: ignore[return-value]

    def offsets(self, t: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """:meth:`offset` of many instants, looked up once per distinct quarter hour. The second array says
        where it is known that way; elsewhere (an offset that changes inside the quarter hour, a local time
        outside the years 1 to 9999) the first holds 0 and :meth:`offset` must be asked per instant.

        The quarter hours near the first ones asked for are kept in an array as well, so that a page's
        offsets are one gather once its quarter hours have been seen."""
        n = len(t)
        if n == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.bool_)
        grains = np.floor_divide(t, _GRAIN)
        if self._table_base is None:
            self._table_base = int(grains[0]) - _TABLE // 2
            self._table = np.full(_TABLE, _NOT_LOOKED_UP, dtype=np.int64)
        at = grains - self._table_base
        if bool(((at >= 0) & (at < _TABLE)).all()):
            found = self._table[at]
            missing = found == _NOT_LOOKED_UP
            if missing.any():
                self._fill(np.unique(grains[missing]).tolist())
                found = self._table[at]
            known_mask = found != _CHANGES
            return np.where(known_mask, found, 0), known_mask
        distinct, inverse = np.unique(grains, return_inverse=True)
        values = np.zeros(len(distinct), dtype=np.int64)
        known_mask = np.zeros(len(distinct), dtype=np.bool_)
        for k, grain in enumerate(distinct.tolist()):
            known = self._grain(grain)
            if known is not None:
                values[k], known_mask[k] = known, True
        inverse = inverse.ravel()
        return values[inverse], known_mask[inverse]

    def _fill(self, grains: list[int]) -> None:
        """Look up the table's quarter hours ``grains`` (sorted), a UTC day at a time where the day allows.

        A day whose first and last second share an offset has it throughout: no zone of the tz database
        changes its offset and back within a day (``tests/test_timeline.py`` checks zones with odd
        histories against the standard library instant by instant). Such a day costs two lookups instead
        of two per quarter hour; a day whose ends differ is looked up per quarter hour as before.
        """
        assert self._table_base is not None
        base, per_day = self._table_base, _DAY // _GRAIN
        filled: int | None = None  # the last day filled whole
        changing: int | None = None  # the last day whose ends differ
        for grain in grains:
            day = grain // per_day
            if day == filled:
                continue
            if day != changing:
                first = self.exact(day * _DAY)
                if first is not None and first == self.exact(day * _DAY + _DAY - 1):
                    lo, hi = max(day * per_day - base, 0), min((day + 1) * per_day - base, _TABLE)
                    self._table[lo:hi] = first
                    filled = day
                    continue
                changing = day
            known = self._grain(grain)
            self._table[grain - base] = _CHANGES if known is None else known

    def holds(self, moment: datetime) -> bool:
        """Whether ``moment`` (aware) lies between the years 1 and 9999 both in UTC and in this zone."""
        t = epoch_micros(moment) // MICROS  # exact: a float of epoch seconds rounds .999999 up far from 1970
        return self.exact(t) is not None


@dataclass(frozen=True)
class Windows:
    """What a record's instant is compared with to place it: ``as_of``, exactly. The windows' own bounds
    are local days, which :mod:`lifestats.statistics` derives from ``as_of`` at report time."""

    as_of_micros: int  # as_of in epoch microseconds

    @classmethod
    def around(cls, as_of: datetime, tz: ZoneInfo) -> Windows:
        if not Clock(tz).holds(as_of):
            raise ValueError(f"as_of {as_of.isoformat()} is outside the years 1 to 9999 in {tz.key}")
        return cls(as_of_micros=epoch_micros(as_of))


class Buckets:
    """Maps instants to series bucket keys, steps back from one bucket to the one before, and names them."""

    def __init__(self, unit: str, clock: Clock) -> None:
        self.unit = unit
        self.clock = clock
        self.tz = clock.tz
        self._step = _ELAPSED.get(unit)
        self._last_start, self._last_offset, self._last_key = FIRST_INSTANT - 1, 0, 0  # the last elapsed bucket

    def key(self, t: int, offset: int) -> int:
        """The bucket of the instant ``t`` (whole epoch seconds), whose UTC offset is ``offset``."""
        local = t + offset
        step = self._step
        if step is None:
            return self._calendar(local)
        into = local % step
        if into == 0:
            return t
        start = t - into
        if start == self._last_start and offset == self._last_offset:  # records come mostly in time order
            return self._last_key
        key = start
        if self.clock.offset(start) != offset:  # the offset changed since the last whole local unit
            key = self._change(start, t, offset)  # (at most one change in a unit: the same for any t)
        self._last_start, self._last_offset, self._last_key = start, offset, key
        return key

    def _change(self, before: int, at: int, offset: int) -> int:
        """The instant in ``(before, at]`` from which the offset is ``offset`` (it is not at ``before``)."""
        while at - before > 1:
            middle = (before + at) // 2
            if self.clock.offset(middle) == offset:
                at = middle
            else:
                before = middle
        return at

    def _calendar(self, local: int) -> int:
        day_start = local - local % _DAY
        unit = self.unit
        if unit == "day":
            return day_start
        days = day_start // _DAY
        if unit == "week":  # 1970-01-01 was a Thursday; weeks start on Monday
            return (days - (days + 3) % 7) * _DAY
        d = date.fromordinal(_EPOCH.toordinal() + days)
        start = date(d.year, d.month, 1) if unit == "month" else date(d.year, 1, 1)
        return (start.toordinal() - _EPOCH.toordinal()) * _DAY

    def key_of(self, moment: datetime) -> int:
        """The bucket of an aware datetime that :meth:`Clock.holds`."""
        t = epoch_micros(moment) // MICROS  # exact: a float of epoch seconds rounds .999999 up far from 1970
        offset = self.clock.offset(t)
        if offset is None:
            raise ValueError(f"{moment.isoformat()} is outside the years 1 to 9999 in {self.tz.key}")
        return self.key(t, offset)

    def before(self, key: int) -> int | None:
        """The bucket just before bucket ``key``; None before the year 1. A day the zone's calendar skipped
        (Pacific/Apia went from 29 to 31 December 2011) is no bucket: no instant lies in it."""
        if self._step is None:
            previous = self._calendar(key - 1) if key - 1 >= FIRST_INSTANT else None
            if previous is not None and self.unit == "day" and self._skipped(previous):
                return self.before(previous)
            return previous
        offset = self.clock.offset(key - 1)
        return None if offset is None else self.key(key - 1, offset)

    def floor(self, end: int, points: int) -> int | None:
        """A bucket at or before the first of the ``points`` buckets that end with bucket ``end``, and close to
        it (a bucket is never longer than its unit, a month than 31 days): records in earlier buckets can be
        dropped while counting. None when that reaches back before the year 1."""
        reach = points * (self._step or _LONGEST[self.unit])
        if self._step is None:
            return self._calendar(end - reach) if end - reach >= FIRST_INSTANT else None
        offset = self.clock.offset(end - reach)
        return None if offset is None else self.key(end - reach, offset)

    def run(self, end: int, earliest: int | None, floor: int | None, points: int) -> list[int]:
        """The keys of the series, oldest first: from the bucket ``earliest`` (None: as far as allowed) to
        ``end``, but at most ``points`` of them and none before ``floor``."""
        keys = [end]
        while len(keys) < points:
            last = keys[-1]
            if (earliest is not None and last <= earliest) or (floor is not None and last <= floor):
                break
            previous = self.before(last)
            if previous is None or (floor is not None and previous < floor):
                break
            keys.append(previous)
        keys.reverse()
        return keys

    def _skipped(self, day: int) -> bool:
        """Whether the local day ``day`` (a calendar key) never showed on a clock of the zone: it starts
        where the day after it starts."""
        wall = (_EPOCH + timedelta(seconds=day)).replace(tzinfo=self.tz)
        return calendar_start(wall) >= calendar_start(wall + timedelta(days=1))

    def start(self, key: int) -> str:
        """ISO 8601 start of a bucket, with the zone's offset at that time."""
        if self._step is not None:
            return datetime.fromtimestamp(key, self.tz).isoformat()
        return calendar_start((_EPOCH + timedelta(seconds=key)).replace(tzinfo=self.tz)).isoformat()


def calendar_start(wall: datetime) -> datetime:
    """A day, week, month or year that starts at local time ``wall`` (an aware datetime in the zone), as
    the instant it starts and the offset in force then: where the local calendar skips that time (a
    zone whose clocks jump at midnight, America/Santiago on 2025-09-07), the first local time the day
    has (01:00-03:00, not a 00:00-04:00 that never showed on a clock there)."""
    try:
        return wall.astimezone(UTC).astimezone(wall.tzinfo)
    except OverflowError:  # the first or last day datetime holds: no gap there to mend
        return wall
