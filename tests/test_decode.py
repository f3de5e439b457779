"""Pages decoded straight into records of the configured fields read exactly as orjson parses them."""

from __future__ import annotations

import collections
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st

from lifestats.columnar import column
from lifestats.config import load_settings
from lifestats.count import COLUMNAR_MIN, PageCounter, SliceCursor
from lifestats.decode import UNSET, NotDecoded, PageDecoder, Record
from lifestats.errors import ConfigError
from lifestats.fetch import ApiClient
from lifestats.report import build_report
from lifestats.stats import Partial
from tests.conftest import run
from tests.json_api import JsonHandler, serving
from tests.test_records_property import BOT_AGENTS, BOT_IPS, FIELDS, _json_safe, keys, timestamps

KEYS = ["id", "item", "ts", "who"]
URL = "https://api.example.test/events"

LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**30])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
JSON = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)
RECORDS = st.lists(st.dictionaries(st.sampled_from([*KEYS, "other", "x y"]), JSON, max_size=6), max_size=8)


def decoder() -> PageDecoder:
    found = PageDecoder.for_paths("data.events", ["meta.next", "meta.total"], KEYS)
    assert found is not None
    return found


@settings(max_examples=300, deadline=None)
@given(records=RECORDS, meta=st.dictionaries(st.sampled_from(["next", "total", "code"]), JSON, max_size=3))
def test_records_read_as_orjson_parses_them(records: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    body = json.dumps({"meta": meta, "data": {"events": records, "more": 1}, "extra": [1]}).encode()
    parsed = orjson.loads(body)  # the reference: what the job read before, and still reads when not decoded
    document = decoder().decode(body)
    assert document["meta"] == {key: value for key, value in parsed["meta"].items() if key in ("next", "total")}
    assert set(document) == {"meta", "data"} and set(document["data"]) == {"events"}
    decoded = document["data"]["events"]
    expected = parsed["data"]["events"]
    assert len(decoded) == len(expected)
    for record, original in zip(decoded, expected, strict=True):
        assert isinstance(record, Record)
        kept = {key: value for key, value in original.items() if key in KEYS}
        assert record.to_dict() == kept and list(record.to_dict()) == [k for k in KEYS if k in kept]
        for key in [*KEYS, "other"]:
            assert _same(record.get(key), original.get(key) if key in KEYS else None)
    for key in KEYS:  # a column: the values, UNSET where the record lacks the key (None from a dict)
        values = column(decoded, key)
        assert [v is UNSET for v in values] == [key not in r for r in expected]
        for value, record in zip(values, decoded, strict=True):
            if type(value) is int and not -(2**63) <= value < 2**64:
                assert record.get(key) == float(value)  # left an integer: no check takes it as a key
            elif type(value) in (list, dict):
                assert type(record.get(key)) is type(value)  # a container, whatever it holds: not a key
            else:
                assert _same(None if value is UNSET else value, record.get(key))


def _same(a: Any, b: Any) -> bool:
    """Equal, with the same types (1 and 1.0 and True are three values here)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def test_an_integer_beyond_64_bits_is_read_as_orjson_reads_it() -> None:
    body = (
        b'{"data": {"events": [{"id": 18446744073709551616, "item": [2, 18446744073709551616], "ts": 10'
        + b"0" * 400
        + b"}]}}"
    )
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)  # no double holds 10**401: orjson refuses the body
    (record,) = decoder().decode(body)["data"]["events"]
    assert record.get("id") == 2.0**64 and type(record.get("id")) is float  # orjson: a float
    assert record.get("ts") == 10**401  # no float holds it: the integer, which no check accepts
    assert record.get("item") == [2, 2.0**64] and type(record.get("item")[1]) is float
    assert record.to_dict()["id"] == 2.0**64 and record.to_dict()["ts"] == 10**401


@pytest.mark.parametrize(
    "body",
    [
        b"<html>busy</html>",
        b'{"meta": {}}',  # no records
        b'{"data": null}',
        b'{"data": {"events": null}}',
        b'{"data": {"events": {"id": 1}}}',
        b'{"data": {"events": [{"id": 1}, 7]}}',  # a record that is not an object
        b'{"data": {"events": []}, "meta": [1]}',  # a path through a list
        b'{"data": {"events": []}, "meta": null}',
        b'[{"id": 1}]',
        b'{"data": {"events": [{"id": 1,}]}}',
        b'{"data": {"events": [{"id": 1e400}]}}',  # a number no double holds: orjson refuses it too
    ],
)
def test_a_body_of_another_shape_is_left_to_the_whole_parse(body: bytes) -> None:
    with pytest.raises(NotDecoded):
        decoder().decode(body)


@pytest.mark.parametrize(
    ("records_path", "value_paths"),
    [
        ("data", ["data.next"]),  # a path inside the records
        ("data.events", ["data"]),  # a value that holds the records
        ("", ["next"]),  # a bare list has no other paths
        ("data", [""]),
    ],
)
def test_paths_that_cannot_be_one_shape_give_no_decoder(records_path: str, value_paths: list[str]) -> None:
    assert PageDecoder.for_paths(records_path, value_paths, KEYS) is None


@pytest.mark.parametrize("key", ['cat"egory', "cat\\egory", "cat\tegory"])
def test_keys_a_struct_cannot_name_leave_the_pages_to_the_plain_parser(key: str) -> None:
    """msgspec names no struct field after a key with a quote, a backslash or a control character (the
    run used to die at its workers' start-up, exit 1): such keys are read from plain parsed pages."""
    assert PageDecoder.for_paths("data", [], ["id", key]) is None
    assert PageDecoder.for_paths(f"data.{key}", [], ["id"]) is None


def test_a_bare_list_of_records_is_decoded() -> None:
    found = PageDecoder.for_paths("", [], ["id", "item"])
    assert found is not None
    records = found.decode(b'[{"id": 1, "item": "a", "ts": 5}, {"id": 2}]')
    assert [r.to_dict() for r in records] == [{"id": 1, "item": "a"}, {"id": 2}]


def client(**api: object) -> ApiClient:
    settings = load_settings(
        None, "test", environ={}, overrides={"api": {"url": URL, **api}, "crawl": {"retries": 0, "backoff": 0}}
    )

    class Limiter:
        def acquire(self, *, retry: bool = False) -> None: ...
        def left(self) -> None:
            return None

        def pause(self, seconds: float) -> None: ...

    return ApiClient(settings.api, settings.crawl, Limiter(), record_keys=["item"])


@respx.mock
def test_a_client_that_decodes_reads_the_configured_fields_and_the_next_offset() -> None:
    body = {"meta": {"next_offset": 8, "code": 200}, "response": [{"id": 5, "item": "a", "other": [1, 2]}]}
    respx.get(URL).mock(return_value=httpx.Response(200, content=orjson.dumps(body)))
    page = client().get_page(0)
    assert page.next == 8
    assert [record.to_dict() for record in page.records] == [{"id": 5, "item": "a"}]


@respx.mock
def test_a_client_that_decodes_names_the_whole_body_when_a_path_is_wrong() -> None:
    body = {"meta": {"total": "many"}, "response": [{"id": 5}], "paging": {"count": 3}}
    respx.get(URL).mock(return_value=httpx.Response(200, content=orjson.dumps(body)))
    with pytest.raises(ConfigError) as info:
        client(paginator="offset", total_path="meta.total").get_page(0)
    assert "api.total_path 'meta.total'" in str(info.value)
    assert "the body's top-level keys: meta, response, paging" in str(info.value)  # all of them, read whole


# -- the counter reads decoded records as it reads dicts -------------------------------------------------


@st.composite
def big_pages(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A page long enough for the column-wise checks (ids ascending, all integers), any JSON in any field."""
    as_of = datetime(2026, 3, 15, 12, tzinfo=UTC)
    records = []
    for rid in sorted(draw(st.sets(st.integers(0, 10_000), min_size=COLUMNAR_MIN, max_size=40))):
        strategies = {
            "item": keys(st.integers(0, 4) | st.sampled_from(["a", "b", "4"])),
            "category": keys(st.sampled_from(["c1", "c2", 1, 2])),
            "visitor": keys(st.integers(0, 3) | st.sampled_from(["0", "u1", "u2"])),
            "timestamp": timestamps(as_of),
            "ip": keys(st.sampled_from(["6.6.6.6", "1.2.3.4"])),
            "user_agent": keys(st.sampled_from(["Mozilla/5.0", "BadBot/1.0"])),
        }
        record: dict[str, Any] = {FIELDS["id"]: rid}
        for name, strategy in strategies.items():
            choice = draw(st.integers(0, 5))  # 0: left out, 1: null, else a value
            if choice:
                record[FIELDS[name]] = None if choice == 1 else draw(strategy)
        if draw(st.integers(0, 4)) == 0:
            record["extra"] = draw(JSON)
        records.append(record)
    return records


@settings(max_examples=300, deadline=None)
@given(page=big_pages(), mode=st.sampled_from(["exact", "approx"]))
def test_decoded_records_count_exactly_as_dicts_do(page: list[dict[str, Any]], mode: str) -> None:
    as_of = datetime(2026, 3, 15, 12, tzinfo=UTC)
    config = load_settings(
        None,
        "test",
        environ={},
        overrides={
            "fields": FIELDS,
            "bots": {"ips": BOT_IPS, "user_agents": BOT_AGENTS},
            "stats": {"mode": mode, "series": "day", "top_items": 3, "top_categories": 3},
        },
    )
    text = json.dumps({"response": _json_safe(page)}).encode()
    found = PageDecoder.for_paths("response", [], config.fields.record_keys())
    assert found is not None
    reports = []
    for records in (orjson.loads(text)["response"], found.decode(text)["response"]):
        partial = Partial()
        PageCounter(config, as_of).count_page(partial, records, 0, SliceCursor(0, None, -1))
        total = Partial()
        total.merge(Partial.from_bytes(partial.to_bytes()))
        reports.append((build_report(total, config, as_of, {}, partial=False), partial.rejects))
    assert isinstance(found.decode(text)["response"][0], Record)
    (report, rejects), (decoded_report, decoded_rejects) = reports
    assert decoded_report == report
    read = set(config.fields.record_keys())  # a sampled reject shows the fields the job reads
    expected = [{**r, "record": {k: v for k, v in r["record"].items() if k in read}} for r in rejects]
    assert decoded_rejects == expected


@respx.mock
def test_a_wrong_path_in_a_body_orjson_cannot_parse_still_names_the_path() -> None:
    """Decoded, a body may hold a number no double holds; when the paginator then refuses the page, the
    error is the paginator's, not a parse error of the whole body."""
    huge = b"1" + b"0" * 400
    body = b'{"meta": {"total": "many"}, "response": [{"id": 5, "item": ' + huge + b"}]}"
    respx.get(URL).mock(return_value=httpx.Response(200, content=body))
    with pytest.raises(ConfigError) as info:
        client(paginator="offset", total_path="meta.total").get_page(0)
    assert "api.total_path 'meta.total'" in str(info.value)


ODD_KEYS = {"item": 'it"em', "category": "cat\\egory", "visitor": "vis\titor"}
ODD_ROWS = [
    {"id": k, ODD_KEYS["item"]: k % 7, ODD_KEYS["category"]: f"c{k % 3}", ODD_KEYS["visitor"]: k % 40}
    for k in range(1, 301)
]


class _OddKeys(JsonHandler):
    """Offset ids over records whose keys hold a quote, a backslash and a tab."""

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        offset, limit = int(query["offset"][0]), int(query["limit"][0])
        rows = [row for row in ODD_ROWS if row["id"] >= offset][:limit]
        self.send_json(200, {"data": rows, "meta": {"next_offset": rows[-1]["id"] + 1 if rows else None}})


def test_a_job_counts_fields_whose_keys_hold_quotes_backslashes_and_tabs(state_dir: Path) -> None:
    with serving(_OddKeys) as base:
        overrides = {
            "api": {"url": f"{base}/events", "page_size": 50, "records_path": "data"},
            "fields": dict(ODD_KEYS),
            "crawl": {"slices": 3, "workers": 2},
        }
        outcome = run(load_settings(None, "test", environ={}, overrides=overrides), state_dir)
    assert outcome.exit_code == 0, outcome.message
    window = outcome.report["windows"]["all"]
    assert outcome.report["records"]["counted"] == len(ODD_ROWS)
    assert window["distinct_visitors"] == 40
    expected = collections.Counter(row[ODD_KEYS["item"]] for row in ODD_ROWS)
    assert {row["id"]: row["visits"] for row in window["top_items"]} == dict(expected)
    categories = collections.Counter(row[ODD_KEYS["category"]] for row in ODD_ROWS)
    assert {row["id"]: row["visits"] for row in window["top_categories"]} == dict(categories)
