"""Any JSON value in any field of a record: counted, rejected or that field treated as missing, never an
exception, and the same counts as a small reference written here from SPEC section 2.

The reference decides each record on its own, with plain Python (datetime, zoneinfo, re): it shares no
code with Lifestats. Ids come sorted (duplicates only as repeats), since the order of ids is not the
subject here. ``LIFESTATS_PROPERTY_EXAMPLES`` raises the number of examples (500 by default).
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import math
import os
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifestats.config import load_settings
from lifestats.count import PageCounter, Rejected, SliceCursor, parse_timestamp
from lifestats.decode import NotDecoded, PageDecoder
from lifestats.report import build_report
from lifestats.stats import Partial

EXAMPLES = int(os.environ.get("LIFESTATS_PROPERTY_EXAMPLES", "500"))
FIELDS = {
    "id": "id",
    "item": "item",
    "category": "cat",
    "visitor": "who",
    "timestamp": "ts",
    "ip": "ip",
    "user_agent": "ua",
}
BOT_IPS = ["6.6.6.6"]
IP_WRITINGS = ["6.6.6.6", "1.2.3.4", "::ffff:6.6.6.6", " 6.6.6.6", "6.6.6.6\x00", "06.6.6.6", "::FFFF:606:606"]
BOT_AGENTS = ["(?i)badbot"]
ZONES = ["UTC", "Europe/Stockholm", "Asia/Kolkata", "America/New_York", "Pacific/Kiritimati", "Australia/Lord_Howe"]
MISSING = object()
TOP = 3

# ------------------------------------------------------------------------------------------ strategies

HUGE = st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**30, -(10**30), 10**400])


@st.composite
def iso_like(draw: st.DrawFn) -> str:
    """ISO 8601-looking text: any year from 0 to 10000, odd fields, any offset or none, stray characters."""
    year = draw(st.sampled_from([1, 2, 1969, 1970, 2025, 2026, 9998, 9999]) | st.integers(0, 10_000))
    month, day = draw(st.integers(0, 13)), draw(st.integers(0, 32))
    hour, minute, second = draw(st.integers(0, 25)), draw(st.integers(0, 60)), draw(st.integers(0, 60))
    text = f"{year:04d}-{month:02d}-{day:02d}{draw(st.sampled_from('T T'))}{hour:02d}:{minute:02d}:{second:02d}"
    if draw(st.booleans()):
        text += "." + str(draw(st.integers(0, 999_999))).zfill(draw(st.sampled_from([3, 6])))
    offset = draw(
        st.sampled_from(["", "Z", "+00:00", "-00:00", "+05:30", "-05:00", "+14:00", "+23:59", "+24:00", "+0100", "+01"])
        | st.builds(
            lambda s, h, m: f"{s}{h:02d}:{m:02d}", st.sampled_from("+-"), st.integers(0, 25), st.integers(0, 60)
        )
    )
    text += offset
    if draw(st.integers(0, 9)) == 0:  # a control character or other stray text somewhere
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["\x00", "\x1b[2J", "\n", " ", "x", "\u00a0"])) + text[at:]
    return text


LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | HUGE
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | iso_like()
)
JSON = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=4,
)
AS_OF = st.sampled_from(
    [datetime(2026, 3, 15, 12, tzinfo=UTC), datetime(2026, 10, 25, 1, 30, tzinfo=UTC), datetime(1, 1, 3, tzinfo=UTC)]
) | st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30), timezones=st.just(UTC))


@st.composite
def timestamps(draw: st.DrawFn, as_of: datetime) -> Any:
    """Mostly instants around as_of in every form the SPEC accepts; sometimes any JSON value."""
    if draw(st.integers(0, 3)) == 0:
        return draw(JSON)
    seconds = as_of.timestamp() + draw(st.integers(-40 * 86_400, 2 * 86_400))
    form = draw(st.integers(0, 4))
    if form == 0:
        return int(seconds)
    if form == 1:
        return int(seconds * 1000) + draw(st.integers(0, 999))
    if form == 2:
        return seconds + draw(st.sampled_from([0.0, 0.25, 0.5]))
    zone = draw(st.sampled_from([UTC, ZoneInfo("Asia/Kolkata"), ZoneInfo("America/New_York")]))
    try:
        return datetime.fromtimestamp(int(seconds), UTC).astimezone(zone).isoformat()
    except (OverflowError, ValueError):  # before the year 1 here: a number instead
        return int(seconds)


def keys(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return valid | valid | JSON


def not_a_decimal(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return True
    return False


# An id that is not an integer in the 64-bit range (a string of digits left out: it may be read as a number).
BAD_ID = (JSON | HUGE).filter(
    lambda v: not (type(v) is int and -(2**63) <= v < 2**63) and not (isinstance(v, str) and not not_a_decimal(v))
)


@st.composite
def pages(draw: st.DrawFn, as_of: datetime) -> list[list[Any]]:
    """One to three pages of records with ascending ids (some repeated), and some records without a
    usable id (never right after a repeated one), or that are not objects at all."""
    count = draw(st.integers(0, 12))
    ids = sorted(
        draw(st.lists(st.integers(-5, 40) | st.sampled_from([-(2**63), 2**63 - 1]), min_size=count, max_size=count))
    )
    records: list[Any] = []
    previous: Any = None
    for rid in ids:
        repeat = rid == previous
        previous = rid
        record: dict[str, Any] = {}
        fields = {
            "id": st.just(rid),
            "item": keys(st.integers(0, 4) | st.sampled_from(["a", "b", "4"])),
            "cat": keys(st.sampled_from(["c1", "c2", 1, 2])),
            "who": keys(st.integers(0, 3) | st.sampled_from(["0", "u1", "u2"])),
            "ts": timestamps(as_of),
            "ip": keys(st.sampled_from(IP_WRITINGS)),
            "ua": keys(st.sampled_from(["Mozilla/5.0", "BadBot/1.0", "badbot"])),
        }
        for name, strategy in fields.items():
            if name == "id" or draw(st.integers(0, 5)):
                record[name] = draw(strategy)
        records.append(record)
        if not repeat and draw(st.integers(0, 5)) == 0:
            bad = draw(st.one_of(st.just(MISSING), BAD_ID))
            records.append({"item": 1} if bad is MISSING else {"id": bad, "item": 1})
            if draw(st.integers(0, 3)) == 0:
                records.append(draw(JSON.filter(lambda v: not isinstance(v, dict))))
    cuts = sorted(draw(st.lists(st.integers(0, len(records)), max_size=2)))
    bounds = [0, *cuts, len(records)]
    return [records[a:b] for a, b in itertools.pairwise(bounds)]


# ------------------------------------------------------------------------------------------ reference


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def usable(value: Any) -> bool:
    """A key (item, category, visitor): a string, or a 64-bit integer that is not a boolean."""
    return isinstance(value, str) or (type(value) is int and -(2**63) <= value < 2**63)


def instant(value: Any, tz: ZoneInfo) -> datetime | None:
    """The instant, exact to the microsecond (a float of seconds read as ``datetime.fromtimestamp`` reads
    it); None for no time; raises ValueError for a timestamp that cannot be parsed."""
    if value is None:
        return None
    if isinstance(value, str):
        if not value.isprintable():
            raise ValueError("control characters")
        moment = datetime.fromisoformat(value)  # ValueError
        if moment.tzinfo is None:
            raise ValueError("no offset")
    elif type(value) is int:
        try:
            moment = EPOCH + (timedelta(milliseconds=value) if value > 10**11 else timedelta(seconds=value))
        except OverflowError:
            raise ValueError("no such year") from None
    elif type(value) is float and math.isfinite(value):
        try:
            moment = datetime.fromtimestamp(value / 1000 if value > 10**11 else value, UTC)
        except (OverflowError, ValueError, OSError):
            raise ValueError("no such year") from None
    else:
        raise ValueError("not a number")
    try:
        moment.astimezone(UTC).astimezone(tz)
    except OverflowError:
        raise ValueError("no such instant") from None
    return moment


def bot_ip(ip: Any) -> bool:
    """An ip in BOT_IPS as an address (Python's ipaddress, white space around it allowed, an IPv4 address
    written as IPv6 read as the IPv4 one), or as the text written there."""
    if not isinstance(ip, str):
        return False
    if ip in BOT_IPS:
        return True
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address == ipaddress.ip_address(entry) for entry in BOT_IPS)


def reference(pages: list[list[Any]], tz: ZoneInfo, as_of: datetime) -> dict[str, Any]:
    records = Counter({name: 0 for name in ("fetched", "counted", "rejected", "bots", "duplicates", "future")})
    counted: list[tuple[Any, Any, Any, float | None]] = []
    seen: set[int] = set()
    for page in pages:
        for record in page:
            rid = record.get("id") if isinstance(record, dict) else None
            if not (type(rid) is int and -(2**63) <= rid < 2**63):
                records["fetched"] += 1
                records["rejected"] += 1
                continue
            records["fetched"] += 1
            if rid in seen:
                records["duplicates"] += 1
                continue
            seen.add(rid)
            try:
                if not usable(record.get("item")):
                    raise ValueError("item")
                when = instant(record.get("ts"), tz)
            except ValueError:
                records["rejected"] += 1
                continue
            ip, ua = record.get("ip"), record.get("ua")
            if bot_ip(ip) or (isinstance(ua, str) and any(re.search(p, ua) for p in BOT_AGENTS)):
                records["bots"] += 1
                continue
            records["counted"] += 1
            records["future"] += when is not None and when > as_of
            category, visitor = record.get("cat"), record.get("who")
            counted.append(
                (record["item"], category if usable(category) else None, visitor if usable(visitor) else None, when)
            )

    windows = {"all": window([(i, c, v) for i, c, v, _ in counted])}
    for name, (lo, hi) in window_bounds(as_of, tz).items():
        windows[name] = window([(i, c, v) for i, c, v, t in counted if t is not None and lo <= t < hi])
    timed = sum(1 for *_, t in counted if t is not None and t < as_of)  # the series: before as_of
    return {"records": dict(records), "windows": windows, "timed": timed}


def window_bounds(as_of: datetime, tz: ZoneInfo) -> dict[str, tuple[datetime, datetime]]:
    """The dated windows' [start, end) per SPEC section 3, by datetime arithmetic (a start before the year
    1: the first instant there is)."""
    day = as_of.astimezone(tz).date()

    def midnight(days: int) -> datetime:
        try:
            return datetime.combine(day - timedelta(days=days), time(0), tzinfo=tz)
        except OverflowError:
            return datetime.min.replace(tzinfo=UTC)

    return {
        "yesterday": (midnight(1), midnight(0)),
        "last_7_days": (midnight(7), midnight(0)),
        "last_30_days": (midnight(30), midnight(0)),
        "this_year": (datetime(day.year, 1, 1, tzinfo=tz), as_of),
    }


def window(rows: list[tuple[Any, Any, Any]]) -> dict[str, Any]:
    def tag(v: Any) -> tuple[type, Any]:
        return (type(v), v)  # 1 and "1" are different ids

    items: Counter[tuple[type, Any]] = Counter(tag(i) for i, _, _ in rows)
    item_visitors: defaultdict[tuple[type, Any], set[tuple[type, Any]]] = defaultdict(set)
    for i, _, v in rows:
        if v is not None:
            item_visitors[tag(i)].add(tag(v))
    categories: Counter[tuple[type, Any]] = Counter(tag(c) for _, c, _ in rows if c is not None)

    def ranked(counts: Counter[tuple[type, Any]]) -> list[tuple[type, Any]]:
        return sorted(counts, key=lambda k: (-counts[k], k[0] is str, k[1]))[:TOP]

    return {
        "visits": len(rows),
        "distinct_visitors": len({tag(v) for _, _, v in rows if v is not None}),
        "top_items": [
            {"id": k[1], "visits": items[k], "distinct_visitors": len(item_visitors[k])} for k in ranked(items)
        ],
        "top_categories": [{"id": k[1], "visits": categories[k]} for k in ranked(categories)],
    }


# ------------------------------------------------------------------------------------------ the properties


def _json_safe(value: Any) -> Any:
    """The value with what JSON text cannot carry for orjson (NaN, infinities, numbers no double holds) as null."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if type(value) is int and abs(value) > 10**300:
        return None
    return value


def typed(value: Any) -> Any:
    """A report's rows with their ids' types made visible (1 == 1.0 == True in Python)."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value).__name__, value)


@settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(
    data=st.data(),
    timezone=st.sampled_from(ZONES),
    bucket=st.sampled_from(["minute", "hour", "day", "week", "month", "year"]),
    max_points=st.integers(1, 60),
    as_of=AS_OF,
)
def test_any_json_in_any_field_counts_like_the_reference(
    data: st.DataObject, timezone: str, bucket: str, max_points: int, as_of: datetime
) -> None:
    tz = ZoneInfo(timezone)
    try:
        as_of.astimezone(tz)
    except OverflowError:
        return  # not a moment of this zone: refused before any count (the config's concern)
    crawl = data.draw(pages(as_of))
    # Half the runs read each page as a worker does: its JSON text decoded into records of the configured
    # fields (lifestats.decode), or parsed whole where it has another shape (a record that is not an object).
    decoded = data.draw(st.booleans())
    if decoded:
        texts = [json.dumps(_json_safe(page)) for page in crawl]
        crawl = [orjson.loads(text) for text in texts]  # the reference's pages: as orjson reads the text
        decoder = PageDecoder.for_paths("response", [], list(FIELDS.values()))
        assert decoder is not None
    config = load_settings(
        None,
        "test",
        environ={},
        overrides={
            "fields": FIELDS,
            "bots": {"ips": BOT_IPS, "user_agents": BOT_AGENTS},
            "stats": {
                "timezone": timezone,
                "series": bucket,
                "series_max_points": max_points,
                "top_items": TOP,
                "top_categories": TOP,
            },
        },
    )
    counter = PageCounter(config, as_of)
    cursor = SliceCursor(-(2**63), None, -(2**63) - 1)
    total = Partial()
    for number, page in enumerate(crawl):
        records = page
        if decoded:
            with contextlib.suppress(NotDecoded):  # parsed whole, as a worker would
                records = decoder.decode(f'{{"response": {texts[number]}}}'.encode())["response"]
        partial = Partial()
        counter.count_page(partial, records, max(cursor.high_water + 1, cursor.begin), cursor)
        total.merge(Partial.from_bytes(partial.to_bytes()))
    report = build_report(total, config, as_of, {}, partial=False)

    expected = reference(crawl, tz, as_of)
    records = report["records"]
    assert records["fetched"] == records["counted"] + records["rejected"] + records["bots"] + records["duplicates"]
    assert records == expected["records"]
    assert typed(report["windows"]) == typed(expected["windows"])
    points = report["series"]["points"]
    assert len(points) <= max_points
    shown = sum(p["visits"] for p in points)
    if "truncated_before" in report["series"]:
        assert shown <= expected["timed"] and points[0]["start"] == report["series"]["truncated_before"]
    else:
        assert shown == expected["timed"]


@settings(max_examples=EXAMPLES, deadline=None)
@given(text=iso_like() | st.text(max_size=40))
def test_iso_timestamps_read_exactly_as_datetime_reads_them(text: str) -> None:
    """The per-offset shortcut gives datetime.fromisoformat's instant, and rejects just what it cannot read."""
    try:
        moment = datetime.fromisoformat(text) if text.isprintable() else None
        in_range = moment is not None and moment.tzinfo is not None and bool(moment.astimezone(UTC))
    except (ValueError, OverflowError):
        moment, in_range = None, False
    if in_range:
        assert moment is not None
        assert parse_timestamp(text) == (moment - EPOCH) // timedelta(microseconds=1)
    else:
        try:
            parse_timestamp(text)
        except Rejected:
            return
        raise AssertionError(f"{text!r} was read")
