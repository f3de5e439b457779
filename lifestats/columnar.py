"""Counting a page column by column: the fast checks that spare most records the per-record path.

A page of records is read once into one list per field; every check is then made per page (the types
present in a column), per distinct value (a UTC offset, an ip, a user agent) or over numpy arrays (ids,
timestamps, day and bucket keys). Each fast check accepts a strict subset of what the per-record path
accepts and computes exactly what it computes for it (the same float instant, the same offset, the same
keys). A record that fails any of them is not decided here: it is handed back, and the caller sends it
down the per-record path (:meth:`lifestats.count.PageCounter._count`), so no verdict ever depends on
which path a record took.

Why: validating and converting each record in Python cost several microseconds per record, more than
fetching and parsing it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from .decode import UNSET, column_getter
from .statistics import FUTURE, NO_BUCKET, NO_TIME, Columns
from .timeline import END_INSTANT, FIRST_INSTANT, MICROS, Buckets, Clock

Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

_INT64_MIN: Final = -(2**63)
_INT64_END: Final = 2**63
_EXACT_FLOAT: Final = 2**53  # integers beyond this in magnitude are no timestamp (and would not fit int64 in µs)
_MS_THRESHOLD: Final = 10**11
_DAY: Final = 86_400


def column(records: Sequence[Any], name: str | None) -> list[Any]:
    """The values of one field (``records`` are all dicts, or all :class:`~lifestats.decode.Record`
    structs). Where a record lacks the field: None from a dict, ``UNSET`` from a struct, which every check
    here reads as None (its JSON type is None, and it is not a usable key)."""
    if not name:
        return [None] * len(records)
    getter = column_getter(records, name)
    if getter is None:
        return list(map(dict.get, records, itertools.repeat(name)))
    return list(map(getter, records))


def int_column(values: list[Any]) -> Ints | None:
    """The values as signed 64-bit integers when every one is a JSON integer in that range, else None."""
    if set(map(type, values)) != {int}:
        return None
    try:
        return np.array(values, dtype=np.int64)
    except OverflowError:
        return None


def usable_mask(values: list[Any]) -> Bools | None:
    """Which values are usable keys (a string, or an int that is not a bool, in the signed 64-bit range);
    None when all of them are (the common case, decided per page)."""
    types = set(map(type, values))
    fit = int not in types or _ints_fit(values, types)
    if types <= {int, str} and fit:
        return None
    codes = type_codes(values)
    mask = (codes == _INT) | (codes == _STR)
    if not fit:
        for i in np.flatnonzero(codes == _INT).tolist():
            mask[i] = _INT64_MIN <= values[i] < _INT64_END
    for i in np.flatnonzero(codes == _OTHER).tolist():  # bools, containers, and any subclass of int or str
        mask[i] = _usable(values[i])
    return mask


def _ints_fit(values: list[Any], types: set[type]) -> bool:
    """Whether the column's ints (it has some) are all in the signed 64-bit range."""
    ints = values if types == {int} else [v for v in values if type(v) is int]
    return bool(min(ints) >= _INT64_MIN and max(ints) < _INT64_END)


def _usable(value: Any) -> bool:
    if isinstance(value, str):
        return True
    return isinstance(value, int) and not isinstance(value, bool) and _INT64_MIN <= value < _INT64_END


def optional_keys(values: list[Any]) -> list[Any]:
    """An optional key column with None where a value is not a usable key (it leaves that statistic only)."""
    types = set(map(type, values))
    if types <= {int, str, type(None), type(UNSET)} and (int not in types or _ints_fit(values, types)):
        if type(UNSET) in types:  # fields the records lack (see column)
            return [None if value is UNSET else value for value in values]
        return values
    mask = usable_mask(values)
    assert mask is not None
    kept = list(values)
    for i in np.flatnonzero(~mask).tolist():
        kept[i] = None
    return kept


# -- timestamps ---------------------------------------------------------------------------------------

_NONE, _INT, _FLOAT, _STR, _OTHER = 0, 1, 2, 3, 4


class _TypeCodes(dict[type, int]):
    def __missing__(self, key: type) -> int:
        return _OTHER


_CODES: Final = _TypeCodes({type(None): _NONE, type(UNSET): _NONE, int: _INT, float: _FLOAT, str: _STR})


def type_codes(values: list[Any]) -> npt.NDArray[np.int8]:
    """Each value's JSON type as a small code (None, int, float, str, or anything else)."""
    return np.array(list(map(_CODES.__getitem__, map(type, values))), dtype=np.int8)


# Fixed-width ISO 8601 forms: "YYYY-MM-DDTHH:MM:SS", an optional fraction of 3 or 6 digits, then "Z" or
# "+HH:MM". Every other form (a space for the T, other fraction widths, no offset) takes the slow path.
_BASE: Final = 19
_FORMS: Final = {_BASE + fraction + suffix: (fraction, suffix) for fraction in (0, 4, 7) for suffix in (1, 6)}
_WIDEST: Final = max(_FORMS) + 1
_FRACTION: Final = np.array([_FORMS.get(w, (-1, 0))[0] for w in range(_WIDEST + 1)], dtype=np.int64)
_SUFFIX: Final = np.array([_FORMS.get(w, (0, 0))[1] for w in range(_WIDEST + 1)], dtype=np.int64)
_BASE_AT: Final = np.arange(_BASE)
_FRACTION_AT: Final = np.arange(_BASE, _BASE + 7)
_PLACE: Final = np.array([100_000, 10_000, 1_000, 100, 10, 1], dtype=np.int64)
_TEMPLATE: Final = "dddd-dd-ddTdd:dd:dd"  # d: a digit
_TEMPLATE_LOW: Final = np.frombuffer(_TEMPLATE.replace("d", "0").encode(), dtype=np.uint8)
_TEMPLATE_SPAN: Final = np.array([9 if c == "d" else 0 for c in _TEMPLATE], dtype=np.uint8)
_FIELD_WEIGHTS: Final = np.zeros((_BASE, 6), dtype=np.float64)
for _field, _at in enumerate((0, 5, 8, 11, 14, 17)):
    _width = 4 if _field == 0 else 2
    for _k in range(_width):
        _FIELD_WEIGHTS[_at + _k, _field] = 10 ** (_width - 1 - _k)
_FIELD_LOW: Final = np.array([1, 1, 1, 0, 0, 0], dtype=np.int64)  # year, month, day, hour, minute, second
_FIELD_HIGH: Final = np.array([9999, 12, 31, 23, 59, 59], dtype=np.int64)
_SUFFIX_MASK: Final = np.uint64(0xFFFF_FFFF_FFFF_0000)  # little-endian: the last 6 of 8 bytes
_DAYS_IN_MONTH: Final = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


@dataclass
class Instants:
    """A column of timestamps read fast: per row, whether it has one, its epoch microseconds (exact, as
    the per-record path reads them) and whether the fast reading decided it (False: take the per-record
    path)."""

    present: Bools
    micros: Ints
    decided: Bools


def instants(values: list[Any], offset_of: Any) -> Instants:
    """Read a timestamp column. ``offset_of(suffix)`` gives the UTC offset (a timedelta, or None when the
    text is not a valid offset) of a ``+HH:MM`` suffix, as the per-record path reads it."""
    n = len(values)
    codes = type_codes(values)
    micros = np.zeros(n, dtype=np.int64)
    decided = codes == _NONE
    present = ~decided
    if not present.any():
        return Instants(present, micros, decided)
    objects = np.fromiter(values, dtype=object, count=n)
    at = np.flatnonzero(codes == _INT)
    if at.size:
        t, ok = _from_ints(objects[at].tolist())
        micros[at], decided[at] = t, ok
    at = np.flatnonzero(codes == _FLOAT)
    if at.size:
        t, ok = _from_floats(np.array(objects[at].tolist(), dtype=np.float64))
        micros[at], decided[at] = t, ok
    at = np.flatnonzero(codes == _STR)
    if at.size:
        t, ok = _from_texts(objects[at].tolist(), offset_of)
        micros[at], decided[at] = t, ok
    return Instants(present, micros, decided)


def _from_ints(values: list[int]) -> tuple[Ints, Bools]:
    """Epoch microseconds of integer timestamps (above 10^11: milliseconds), as the per-record path reads them."""
    if min(values) > -_EXACT_FLOAT and max(values) < _EXACT_FLOAT:
        raw = np.array(values, dtype=np.int64)
        fits = np.ones(len(values), dtype=np.bool_)
    else:
        fits = np.array([-_EXACT_FLOAT < v < _EXACT_FLOAT for v in values], dtype=np.bool_)
        raw = np.array([v if ok else 0 for v, ok in zip(values, fits.tolist(), strict=True)], dtype=np.int64)
    millis = raw > _MS_THRESHOLD
    ok = fits & np.where(millis, raw < END_INSTANT * 1000, raw >= FIRST_INSTANT)
    raw = np.where(ok, raw, 0)
    return np.where(millis, raw * 1000, raw * MICROS), ok


def _from_floats(values: npt.NDArray[np.float64]) -> tuple[Ints, Bools]:
    """Epoch microseconds of float timestamps, to the nearest microsecond (halves to even), as the
    per-record path (and ``datetime.fromtimestamp``) reads them."""
    with np.errstate(invalid="ignore"):
        t = np.where(values > _MS_THRESHOLD, values / 1000, values)
        ok = np.isfinite(values) & (t >= FIRST_INSTANT) & (t < END_INSTANT)
    fraction, whole = np.modf(np.where(ok, t, 0.0))
    micros = whole.astype(np.int64) * MICROS + np.rint(fraction * 1e6).astype(np.int64)
    ok &= micros < END_INSTANT * MICROS
    return np.where(ok, micros, 0), ok


def _from_texts(texts: list[str], offset_of: Any) -> tuple[Ints, Bools]:
    """Epoch microseconds of ISO texts in the fixed-width forms (:data:`_FORMS`), all read as one byte buffer:
    each text's date and time, fraction and offset are gathered into byte matrices by their positions."""
    n = len(texts)
    lengths = np.array(list(map(len, texts)), dtype=np.int64)
    try:
        buffer = np.frombuffer("".join(texts).encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:  # a character beyond ASCII somewhere: only the ASCII texts are read here
        ascii_ = np.array(list(map(str.isascii, texts)), dtype=np.bool_)
        t, ok = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.bool_)
        at = np.flatnonzero(ascii_)
        if at.size:
            t[at], ok[at] = _from_texts([texts[i] for i in at.tolist()], offset_of)
        return t, ok
    if len(buffer) == 0:  # only empty texts
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.bool_)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    width = np.minimum(lengths, _WIDEST)
    fraction = _FRACTION[width]  # -1: not one of the forms
    ok = fraction >= 0
    fraction = np.maximum(fraction, 0)
    top = len(buffer) - 1
    base = buffer[np.minimum(starts[:, None] + _BASE_AT, top)]
    ok &= ((base - _TEMPLATE_LOW) <= _TEMPLATE_SPAN).all(axis=1)  # digits where digits go, then - - T : :
    # year, month, day, hour, minute, second: a float product is exact here, and far faster than an integer one
    fields = ((base - np.uint8(ord("0"))).astype(np.float64) @ _FIELD_WEIGHTS).astype(np.int64)
    ok &= ((fields >= _FIELD_LOW) & (fields <= _FIELD_HIGH)).all(axis=1)
    year, month, day = fields[:, 0], np.minimum(np.maximum(fields[:, 1], 1), 12), fields[:, 2]
    clock = fields[:, 3] * 3600 + fields[:, 4] * 60 + fields[:, 5]
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    ok &= day <= _DAYS_IN_MONTH[month] + ((month == 2) & leap)
    micro = np.zeros(n, dtype=np.int64)
    fractional = np.flatnonzero(fraction > 0)
    if fractional.size:
        part = buffer[np.minimum(starts[fractional, None] + _FRACTION_AT, top)]
        places = fraction[fractional] - 1  # 3 or 6 digits
        fdigits = (part[:, 1:] - np.uint8(ord("0"))).astype(np.int64)
        used = np.arange(6) < places[:, None]
        ok[fractional] &= (part[:, 0] == ord(".")) & ((fdigits <= 9) | ~used).all(axis=1)
        micro[fractional] = (np.where(used, fdigits, 0) * _PLACE).sum(axis=1)
    # The UTC offset: "Z", or "+HH:MM" read once per distinct text.
    offsets = np.zeros(n, dtype=np.int64)
    zulu = np.flatnonzero(_SUFFIX[width] == 1)
    ok[zulu] &= buffer[ends[zulu] - 1] == ord("Z")
    signed = np.flatnonzero(_SUFFIX[width] == 6)
    if signed.size:
        # The 6 suffix bytes as one integer (the 8 bytes that end the text, the first 2 masked out).
        tails = np.ascontiguousarray(buffer[ends[signed, None] - 8 + np.arange(8)]).view("<u8").ravel()
        distinct, inverse = np.unique(tails & _SUFFIX_MASK, return_inverse=True)
        values = np.zeros(len(distinct), dtype=np.int64)
        valid = np.zeros(len(distinct), dtype=np.bool_)
        for k, tail in enumerate(distinct.tolist()):
            text = int(tail).to_bytes(8, "little")[2:].decode("ascii")
            offset = offset_of(text) if text[0] in "+-" and text[3] == ":" else None
            if offset is not None and offset.microseconds == 0:
                values[k], valid[k] = offset.days * _DAY + offset.seconds, True
        inverse = inverse.ravel()
        offsets[signed] = values[inverse]
        ok[signed] &= valid[inverse]
    days = days_from_civil(year, month, np.minimum(np.maximum(day, 1), 31))
    micros = (days * _DAY + clock - offsets) * MICROS + micro
    ok &= (micros >= FIRST_INSTANT * MICROS) & (micros < END_INSTANT * MICROS)
    return np.where(ok, micros, 0), ok


def days_from_civil(year: Ints, month: Ints, day: Ints) -> Ints:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm, vectorised)."""
    y = year - (month <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * np.where(month > 2, month - 3, month + 9) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468  # type: ignore[no-any-return]


def civil_from_days(days: Ints) -> tuple[Ints, Ints]:
    """Year and month of day numbers (since 1970-01-01), vectorised."""
    z = days + 719_468
    era = np.floor_divide(z, 146_097)
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    return year, month


def bucket_keys(buckets: Buckets, whole: Ints, offsets: Ints, clock: Clock) -> Ints:
    """:meth:`Buckets.key` of every instant, vectorised for calendar units (and for elapsed units where
    the offset did not change since the last whole local unit; the other rows ask ``buckets.key``)."""
    local = whole + offsets
    unit = buckets.unit
    if unit in ("minute", "hour"):
        step = 60 if unit == "minute" else 3600
        into = np.mod(local, step)
        start = whole - into
        before, known = clock.offsets(start)
        keys = np.where(into == 0, whole, start)
        odd = np.flatnonzero((into != 0) & ~(known & (before == offsets)))
        for i in odd.tolist():
            keys[i] = buckets.key(int(whole[i]), int(offsets[i]))
        return keys  # type: ignore[no-any-return]
    day_start = local - np.mod(local, _DAY)
    if unit == "day":
        return day_start  # type: ignore[no-any-return]
    days = day_start // _DAY
    if unit == "week":  # 1970-01-01 was a Thursday; weeks start on Monday
        return (days - np.mod(days + 3, 7)) * _DAY  # type: ignore[no-any-return]
    year, month = civil_from_days(days)
    first_month = month if unit == "month" else np.ones_like(month)
    return days_from_civil(year, first_month, np.ones_like(month)) * _DAY


# -- a page ---------------------------------------------------------------------------------------------


@dataclass
class FastPage:
    """What the fast checks decided about a page's records (given in the order they are counted in).

    ``slow``: the positions of the records they left undecided, in order, for the per-record path. Of the
    others, ``bots`` were bots and the rest were counted: their columns follow (days and buckets as the
    per-record path gives them), with ``future`` and ``series_cut`` among them.
    """

    slow: list[int] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # the positions of the counted records, in order
    bots: int = 0
    future: int = 0
    series_cut: int = 0
    ips_present: int = 0  # of the records counted or bots, those with an ip string (when asked, see FastCounter.count)
    agents_present: int = 0  # and with a user agent string
    items: list[Any] = field(default_factory=list)
    categories: list[Any] = field(default_factory=list)
    visitors: list[Any] = field(default_factory=list)
    days: Ints = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    buckets: Ints = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def counted(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class FieldNames:
    """The record keys of the report's fields (``fields`` in the config); None: the field is not used."""

    item: str
    category: str | None
    visitor: str | None
    timestamp: str | None
    ip: str | None
    user_agent: str | None


class BotCheck:
    """:meth:`BotFilter.is_bot <lifestats.bots.BotFilter.is_bot>` over columns, once per distinct ip and
    user agent (the filter keeps its own verdict cache)."""

    def __init__(self, bots: Any) -> None:
        self._bots = bots

    def mask(self, ips: list[Any], agents: list[Any]) -> Bools | None:
        """Which rows are bots; None when none is."""
        bots = self._bots
        flagged: Bools | None = None
        if bots.ips:
            flagged = self._by_value(ips, lambda ip: bots.is_bot(ip, None), bots.ips.hits)
        if bots.patterns or bots.known_crawlers:

            def agent_hits(distinct: set[Any]) -> set[Any]:
                return {agent for agent in distinct if agent is not None and bots.is_bot(None, agent)}

            by_agent = self._by_value(agents, lambda agent: bots.is_bot(None, agent), agent_hits)
            if by_agent is not None:
                flagged = by_agent if flagged is None else flagged | by_agent
        return flagged

    @staticmethod
    def _by_value(values: list[Any], one: Any, hits_of: Any) -> Bools | None:
        """Per distinct string (``hits_of(distinct) -> the bot ones``); a value of another type is asked
        about alone (``one(value)``): a list or an object is no evidence, a subclass of str may be."""
        types = set(map(type, values))
        odd: list[tuple[int, Any]] = []
        if not types <= {str, type(None), type(UNSET)}:  # UNSET: a field a record lacks, no evidence
            codes = type_codes(values)
            odd = [(i, values[i]) for i in np.flatnonzero((codes != _STR) & (codes != _NONE)).tolist()]
            values = list(values)
            for i, _ in odd:
                values[i] = None
        hits = hits_of(set(values))
        flagged = np.array(list(map(hits.__contains__, values)), dtype=np.bool_) if hits else None
        for i, value in odd:
            if one(value):
                if flagged is None:
                    flagged = np.zeros(len(values), dtype=np.bool_)
                flagged[i] = True
        return flagged


class FastCounter:
    """The fast checks of a page (see the module's docstring), for one run's fields, clock and bots."""

    def __init__(
        self,
        names: FieldNames,
        clock: Clock,
        as_of: int,
        buckets: Buckets,
        series_floor: int | None,
        bots: Any,
        offset_of: Any,
    ) -> None:
        self.names = names
        self.clock = clock
        self.as_of = as_of  # epoch microseconds
        self.buckets = buckets
        self.series_floor = series_floor
        self.bots = bots
        self._bot_check = BotCheck(bots)
        self.offset_of = offset_of

    @classmethod
    def for_counter(cls, counter: Any) -> FastCounter:
        """The fast checks of a :class:`~lifestats.count.PageCounter`'s run."""
        names = FieldNames(
            counter.item_field,
            counter.category_field,
            counter.visitor_field,
            counter.timestamp_field,
            counter.ip_field,
            counter.ua_field,
        )
        return cls(
            names,
            counter.clock,
            counter.windows.as_of_micros,
            counter.buckets,
            counter.series_floor,
            counter.bots,
            _cached_offset,
        )

    def count(self, records: Sequence[Any], *, presence: bool = False) -> FastPage:
        """Decide what the fast checks can of ``records`` (all dicts or all records, in the order they are
        counted in). ``presence``: also tally the records they decided that have an ip or a user agent
        (with the bot rules on)."""
        n = len(records)
        page = FastPage()
        if n == 0:
            return page
        names = self.names
        items = column(records, names.item)
        usable = usable_mask(items)
        slow = np.zeros(n, dtype=np.bool_) if usable is None else ~usable
        whole = np.zeros(n, dtype=np.int64)
        offsets = np.zeros(n, dtype=np.int64)
        present = np.zeros(n, dtype=np.bool_)
        micros = np.zeros(n, dtype=np.int64)
        if names.timestamp:
            read = instants(column(records, names.timestamp), self.offset_of)
            slow |= ~read.decided
            present = read.present & read.decided
            micros = read.micros
            at = np.flatnonzero(present)
            if at.size:
                whole_at = micros[at] // MICROS
                found, known = self.clock.offsets(whole_at)
                whole[at], offsets[at] = whole_at, found
                slow[at[~known]] = True
                present[at[~known]] = False
        fast = ~slow
        if self.bots.active:
            ips, agents = column(records, names.ip), column(records, names.user_agent)
            if presence:
                undecided = np.flatnonzero(slow).tolist()
                page.ips_present, page.agents_present = _strings(ips, undecided), _strings(agents, undecided)
            flagged = self._bot_check.mask(ips, agents)
            if flagged is not None:
                page.bots = int((flagged & fast).sum())
                fast &= ~flagged
        page.slow = np.flatnonzero(slow).tolist()
        every = bool(fast.all())
        chosen = np.flatnonzero(fast)
        picks = page.rows = chosen.tolist()

        def pick(values: list[Any]) -> list[Any]:
            return values if every else [values[i] for i in picks]

        page.items = pick(items)
        page.categories = pick(optional_keys(column(records, names.category)))
        page.visitors = pick(optional_keys(column(records, names.visitor)))
        days = np.full(len(chosen), NO_TIME, dtype=np.int64)
        buckets = np.full(len(chosen), NO_BUCKET, dtype=np.int64)
        timed = np.flatnonzero(present[chosen])
        if timed.size:
            rows = chosen[timed]
            t, w, o = micros[rows], whole[rows], offsets[rows]
            future = t > self.as_of
            page.future = int(future.sum())
            days[timed] = np.where(t < self.as_of, np.floor_divide(w + o, _DAY), FUTURE)
            dated = np.flatnonzero(t < self.as_of)  # the series: before as_of (one exactly at it: `all` only)
            if dated.size:
                keys = bucket_keys(self.buckets, w[dated], o[dated], self.clock)
                if self.series_floor is not None:
                    cut = keys < self.series_floor
                    page.series_cut = int(cut.sum())
                    keys = np.where(cut, NO_BUCKET, keys)
                buckets[timed[dated]] = keys
        page.days, page.buckets = days, buckets
        return page


def _strings(values: list[Any], but: list[int]) -> int:
    """How many ``values`` are strings (the only ip or user agent a bot rule reads), leaving out the rows
    ``but``."""
    return sum(map(str.__instancecheck__, values)) - sum(1 for i in but if isinstance(values[i], str))


def _cached_offset(suffix: str) -> Any:
    """The per-record path's reading of a ``+HH:MM`` suffix, through its cache."""
    from . import count

    known = count._offsets.get(suffix, count._UNKNOWN_OFFSET)
    return count._offset_of(suffix) if known is count._UNKNOWN_OFFSET else known


@dataclass(frozen=True)
class IdSelection:
    """Which records of a page an id slice counts: positions in ascending id order (ties by position)."""

    positions: list[int]
    fetched: int  # records inside the slice
    duplicates: int  # of those, ids at or below the high-water mark or repeated in the page
    high_water: int  # the highest id counted so far, this page included


def select_by_id(ids: list[Any], begin: int, end: int | None, high_water: int) -> IdSelection | None:
    """The slice's records of a page whose ids are all JSON integers in the signed 64-bit range (None
    otherwise: the per-record path places the others). Same rule as
    :meth:`~lifestats.count.PageCounter.count_page`: a record counts when ``begin <= id < end`` and its id
    is above the high-water mark, once per id."""
    column_ = int_column(ids)
    if column_ is None:
        return None
    order = np.argsort(column_, kind="stable")
    ordered = column_[order]
    inside = ordered >= begin
    if end is not None:
        inside &= ordered < end
    kept, where = ordered[inside], order[inside]
    fresh = kept > high_water
    fresh[1:] &= kept[1:] != kept[:-1]
    counted = kept[fresh]
    top = int(counted[-1]) if len(counted) else high_water
    return IdSelection(where[fresh].tolist(), len(kept), len(kept) - len(counted), top)


def key_column(values: list[Any]) -> list[Any] | Ints:
    """A key column as the statistics take it: an int64 array when every value is an int (the common
    case for ids; the checks above have kept them in the signed 64-bit range), else the list itself."""
    if values and set(map(type, values)) == {int}:
        return np.array(values, dtype=np.int64)
    return values


def joined(
    fast: Sequence[FastPage],
    items: list[Any],
    categories: list[Any],
    visitors: list[Any],
    days: list[int],
    buckets: list[int],
) -> Columns:
    """One page's columns: the records the fast checks counted, then those the per-record path counted."""
    if not fast:
        all_items, all_categories, all_visitors = items, categories, visitors
        all_days, all_buckets = np.array(days, dtype=np.int64), np.array(buckets, dtype=np.int64)
    else:
        all_items = [v for page in fast for v in page.items] + items if len(fast) > 1 or items else fast[0].items
        all_categories = (
            [v for page in fast for v in page.categories] + categories if len(fast) > 1 or items else fast[0].categories
        )
        all_visitors = (
            [v for page in fast for v in page.visitors] + visitors if len(fast) > 1 or items else fast[0].visitors
        )
        all_days = np.concatenate([*(page.days for page in fast), np.array(days, dtype=np.int64)])
        all_buckets = np.concatenate([*(page.buckets for page in fast), np.array(buckets, dtype=np.int64)])
    return Columns(key_column(all_items), key_column(all_categories), key_column(all_visitors), all_days, all_buckets)
