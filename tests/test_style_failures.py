"""Real APIs that Lifestats used to crawl wrongly with exit 0: each is now exact, or a clear refusal.

Every test runs the whole job against a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from mocks.dataset import DatasetSpec, generate, ground_truth
from mocks.faults import FaultSpec
from mocks.server import MockServer
from mocks.source import ListSource, ReplaySource
from mocks.styles import MockStyle

from .conftest import AS_OF, job_settings, run, statistics
from .json_api import JsonHandler, serving
from .test_styles import DATA, TRUTH, crawl

KEYSET = {"paginator": "keyset", "id_param": "id__gte", "records_path": "rows"}


def test_a_body_that_is_a_bare_json_array(state_dir: Path) -> None:
    style = MockStyle("offset", records_key="")
    api = {"paginator": "offset", "records_path": "", "total_header": "X-Total-Count"}
    outcome, _ = crawl("offset, bare array", style, api, state_dir, slices=5)
    assert outcome.exit_code == 0, outcome.message
    assert statistics(outcome.report) == TRUTH


def test_offsets_that_are_row_positions(state_dir: Path) -> None:
    api = {"paginator": "offset", "records_path": "results", "total_path": "count"}
    outcome, _ = crawl("offset, row positions", MockStyle("offset"), api, state_dir, slices=6)
    assert statistics(outcome.report) == TRUTH


def test_keyset_with_a_string_next_token_and_twenty_slices(state_dir: Path) -> None:
    outcome, _ = crawl("keyset, 20 slices", MockStyle("keyset", upper_param=None), KEYSET, state_dir, slices=20)
    assert outcome.report["run"]["slices"] == 20
    assert statistics(outcome.report) == TRUTH


def test_a_records_path_typo_fails_naming_the_url_the_path_and_the_keys(state_dir: Path) -> None:
    with MockServer(DATA) as server:
        settings = job_settings(
            server.url, api={"records_path": "respons"}, crawl={"retries": 2, "backoff": 0, "backoff_max": 0}
        )
        outcome = run(settings, state_dir)
    assert outcome.exit_code == 3
    message = outcome.message or ""
    assert server.url in message and "'respons'" in message
    assert "meta, response" in message  # the keys the body did have
    assert outcome.report["partial"] is True


def test_a_next_offset_path_typo_stops_naming_the_path(state_dir: Path) -> None:
    with MockServer(DATA) as server:
        settings = job_settings(server.url, api={"next_offset_path": "meta.next_ofset", "first_id": DATA.first_id})
        outcome = run(settings, state_dir)
    assert outcome.exit_code == 2
    assert "'meta.next_ofset'" in (outcome.message or "") and "api.next_offset_path" in (outcome.message or "")
    # A configuration mistake: running the same command again does not mend it, and the message says so.
    assert "run the same command to resume" not in (outcome.message or "")
    assert "fix it first" in (outcome.message or "")
    assert outcome.report["partial"] is True


def test_next_references_that_are_urls_cursors_or_page_numbers(state_dir: Path) -> None:
    cases = [
        ("next_url", {"paginator": "next_url", "records_path": "results", "next_url_path": "next"}),
        ("cursor", {"paginator": "cursor", "records_path": "data", "cursor_path": "next_cursor"}),
        ("page_number", {"paginator": "page_number", "records_path": "results", "total_path": "count"}),
    ]
    for name, api in cases:
        outcome, _ = crawl(f"{name} next reference", MockStyle(name), api, state_dir / name, slices=4)
        assert statistics(outcome.report) == TRUTH, name


def test_string_ids_are_read_as_integers_in_the_id_styles(state_dir: Path) -> None:
    outcome, _ = crawl("offset_id, string ids", MockStyle("offset_id", string_ids=True), {}, state_dir / "a", slices=6)
    assert statistics(outcome.report) == TRUTH
    style = MockStyle("keyset", string_ids=True, upper_param=None)
    outcome, _ = crawl("keyset, string ids", style, KEYSET, state_dir / "b", slices=6)
    assert statistics(outcome.report) == TRUTH


def test_records_in_any_order_inside_a_page(state_dir: Path) -> None:
    outcome, _ = crawl(
        "offset_id, unsorted pages", MockStyle("offset_id", unsorted=True), {}, state_dir / "a", slices=7
    )
    assert statistics(outcome.report) == TRUTH
    style = MockStyle("keyset", unsorted=True, upper_param=None)
    outcome, _ = crawl("keyset, unsorted pages", style, KEYSET, state_dir / "b", slices=7)
    assert statistics(outcome.report) == TRUTH


def test_a_200_answer_without_the_records_key_is_retried_not_read_as_the_end(state_dir: Path) -> None:
    faults = FaultSpec(seed=2, rate={"no-records": 0.3}, kinds=frozenset({"no-records"}))
    outcome, _ = crawl("offset_id, 200 without records", MockStyle("offset_id"), {}, state_dir, slices=5, faults=faults)
    assert outcome.report["run"]["retries"] > 0
    assert statistics(outcome.report) == TRUTH


def test_negative_ids_are_discovered_and_counted(state_dir: Path) -> None:
    shift = -(DATA.first_id + int(DATA.ids[len(DATA) // 2] - DATA.ids[0]))  # half of the ids below zero
    outcome, _ = crawl("offset_id, negative ids", MockStyle("offset_id", id_shift=shift), {}, state_dir / "a", slices=6)
    assert statistics(outcome.report) == TRUTH
    style = MockStyle("keyset", id_shift=shift)
    api = {**KEYSET, "upper_param": "id__lt"}
    outcome, _ = crawl("keyset, negative ids", style, api, state_dir / "b", slices=6)
    assert statistics(outcome.report) == TRUTH


def test_records_but_none_inside_the_slices_exits_4_with_a_warning(state_dir: Path) -> None:
    """The Lifesum API answers any offset below its first page with that page: ids far above the range."""
    with MockServer(ReplaySource()) as server:
        settings = job_settings(
            server.url, api={"first_id": 1, "last_id": 1000}, fields={"item": "food_id", "category": None}
        )
        outcome = run(settings, state_dir)
    assert outcome.exit_code == 4
    assert outcome.report["partial"] is False
    assert outcome.report["records"]["fetched"] == 0
    assert any("none lay inside" in w for w in outcome.report["warnings"])


def test_mostly_rejected_records_exit_4_with_a_warning(state_dir: Path) -> None:
    small = generate(DatasetSpec(seed=8, records=600))
    with MockServer(small) as server:
        settings = job_settings(server.url, fields={"item": "no_such_key"})
        outcome = run(settings, state_dir)
    assert outcome.exit_code == 4
    assert outcome.report["records"]["rejected"] == len(small)
    assert any("crawl.max_rejected_share" in w for w in outcome.report["warnings"])
    # The same data under a share that allows it: no warning.
    with MockServer(small) as server:
        settings = job_settings(server.url, fields={"item": "no_such_key"}, crawl={"max_rejected_share": 1.0})
        outcome = run(settings, state_dir.parent / "again")
    assert outcome.exit_code == 0 and outcome.report["warnings"] == []


def test_a_healthy_run_has_no_warnings(state_dir: Path) -> None:
    small = generate(DatasetSpec(seed=8, records=600))
    with MockServer(small) as server:
        outcome = run(job_settings(server.url), state_dir)
    assert outcome.exit_code == 0
    assert outcome.report["warnings"] == []
    assert statistics(outcome.report) == ground_truth(small, as_of=AS_OF)


def test_a_next_offset_path_typo_on_an_api_that_caps_its_pages_warns_with_exit_4(state_dir: Path) -> None:
    """Pages capped below api.page_size are never full, so an answer without the configured next path
    reads as the end of the data, slice after slice: the ids discovery saw on its probes show the loss."""
    with MockServer(DATA, max_page_size=40) as server:
        settings = job_settings(server.url, api={"next_offset_path": "meta.nextOffset"})
        outcome = run(settings, state_dir / "typo")
    assert outcome.exit_code == 4, outcome.message
    assert outcome.report["records"]["fetched"] < len(DATA)  # what the crawl missed
    (warning,) = outcome.report["warnings"]
    assert "api.next_offset_path ('meta.nextOffset')" in warning and "records are missing" in warning
    # The right path on the same capped API: every record, no warning.
    with MockServer(DATA, max_page_size=40) as server:
        outcome = run(job_settings(server.url), state_dir / "right")
    assert outcome.exit_code == 0 and outcome.report["warnings"] == []
    assert statistics(outcome.report) == TRUTH


MISNAMED = {"category": "cat", "visitor": "visitor_idx", "timestamp": "time_stamp", "ip": "ipaddr", "user_agent": "ua"}


@pytest.mark.parametrize("mode", ["exact", "approx"])
def test_optional_fields_that_no_record_has_exit_4_naming_each(state_dir: Path, mode: str) -> None:
    """A typo in an optional field's key used to give 0 distinct visitors, empty windows, no ranked
    category and no bot filtered, with exit 0."""
    small = generate(DatasetSpec(seed=8, records=600))
    with MockServer(small) as server:
        outcome = run(job_settings(server.url, fields=MISNAMED, stats={"mode": mode}), state_dir)
    assert outcome.exit_code == 4, outcome.message
    warnings = outcome.report["warnings"]
    assert len(warnings) == len(MISNAMED)
    for name, key in MISNAMED.items():
        assert sum(f"fields.{name} names the key {key!r}" in w for w in warnings) == 1, (name, warnings)
    # Every record had an item, none a bot field: all counted.
    assert outcome.report["records"]["counted"] == len(small) - outcome.report["records"]["rejected"]


def test_an_ip_key_no_record_has_is_not_judged_without_an_ip_rule(state_dir: Path) -> None:
    small = generate(DatasetSpec(seed=8, records=600))
    with MockServer(small) as server:
        settings = job_settings(server.url, fields={"ip": "ipaddr"}, bots={"ips": []})
        outcome = run(settings, state_dir)
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["warnings"] == []


def test_optional_fields_null_in_every_record_are_named_too(state_dir: Path) -> None:
    """The key is there, but never usable: a visitor that is always null or a list."""
    records = [
        {"id": i, "item": f"a{i % 7}", "visitor": None if i % 2 else [i], "category": None, "timestamp": None}
        for i in range(1, 301)
    ]
    with MockServer(ListSource(records)) as server:
        settings = job_settings(server.url, bots={"ips": [], "user_agents": []})
        outcome = run(settings, state_dir)
    assert outcome.exit_code == 4, outcome.message
    assert outcome.report["records"]["counted"] == 300
    named = sorted(w.split(" ")[0] for w in outcome.report["warnings"])
    assert named == ["fields.category", "fields.timestamp", "fields.visitor"]


@pytest.mark.parametrize("mode", ["exact", "approx"])
def test_bot_fields_of_another_type_in_every_record_are_named(state_dir: Path, mode: str) -> None:
    """An ip that is always a number or a list, a user agent that is always an object: no bot rule can
    read them (a bot rule reads strings). It used to end with exit 0, no bot and no warning."""
    records = [
        {"id": i, "item": f"a{i % 7}", "ip": [10, 0, 0, i % 5] if i % 2 else i, "user_agent": {"name": "bot"}}
        for i in range(1, 301)
    ]
    with MockServer(ListSource(records)) as server:
        settings = job_settings(
            server.url,
            fields={"category": None, "visitor": None, "timestamp": None},
            bots={"ips": ["10.0.0.1"], "user_agents": ["bot"]},
            stats={"mode": mode},
        )
        outcome = run(settings, state_dir)
    assert outcome.exit_code == 4, outcome.message
    assert (outcome.report["records"]["counted"], outcome.report["records"]["bots"]) == (300, 0)
    warnings = outcome.report["warnings"]
    assert sorted(w.split(" ")[0] for w in warnings) == ["fields.ip", "fields.user_agent"]
    assert all("as a string" in w for w in warnings)


_PLAIN = {"category": None, "timestamp": None, "ip": None, "user_agent": None}  # fields the records lack
_NO_BOTS = {"ips": [], "user_agents": []}
_THREE = {"slices": 3}


class _BeyondSixtyFourBits(JsonHandler):
    """Offset pages of 300 records whose visitors and categories are integers beyond 64 bits (the
    standard library's JSON writes them; the mock's encoder cannot)."""

    ROWS: ClassVar = [
        {"id": i, "item": i % 7, "visitor": 2**70 + i % 50, "category": -(2**64) - i % 3} for i in range(300)
    ]

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        offset, limit = int(query["offset"][0]), int(query["limit"][0])
        self.send_json(200, {"results": self.ROWS[offset : offset + limit], "count": len(self.ROWS)})


def test_keys_beyond_64_bits_in_every_record_are_named_as_such(state_dir: Path) -> None:
    """Visitors and categories that are integers beyond the signed 64-bit range count in no statistic
    (docs/DATA_CONTRACT.md); the warning used to say no record had them "as an integer"."""
    with serving(_BeyondSixtyFourBits) as base:
        api = {"url": f"{base}/events", "paginator": "offset", "records_path": "results", "total_path": "count"}
        settings = job_settings(
            base, api=api, fields={"timestamp": None, "ip": None, "user_agent": None}, bots=_NO_BOTS
        )
        outcome = run(settings, state_dir)
    assert outcome.exit_code == 4, outcome.message
    assert outcome.report["records"]["counted"] == 300
    warnings = outcome.report["warnings"]
    assert sorted(w.split(" ")[0] for w in warnings) == ["fields.category", "fields.visitor"]
    assert all("as a string or an integer in the signed 64-bit range" in w for w in warnings)


@pytest.mark.parametrize("paginator", ["cursor", "offset", "page_number", "next_url", "link_header"])
def test_an_id_field_that_records_share_exits_4_naming_it(state_dir: Path, paginator: str) -> None:
    """``fields.id: visitor`` (600 records of 40 visitors) used to count one record per visitor with exit 0:
    most records were duplicates, and nothing said so."""
    small = ListSource({"id": i, "item": i % 7, "visitor": f"v{i % 40}"} for i in range(1, 601))
    api = {
        "cursor": {"paginator": "cursor", "records_path": "data", "cursor_path": "next_cursor"},
        "offset": {"paginator": "offset", "records_path": "results", "total_path": "count"},
        "page_number": {"paginator": "page_number", "records_path": "results", "total_pages_path": "total_pages"},
        "next_url": {"paginator": "next_url", "records_path": "results", "next_url_path": "next"},
        "link_header": {"paginator": "link_header", "records_path": ""},
    }[paginator]
    with MockServer(small, style=MockStyle(paginator)) as server:
        settings = job_settings(server.url, api=api, fields=_PLAIN | {"id": "visitor"}, crawl=_THREE, bots=_NO_BOTS)
        outcome = run(settings, state_dir)
    records = outcome.report["records"]
    assert records["duplicates"] > records["fetched"] / 2
    assert outcome.exit_code == 4, outcome.message
    assert any("fields.id ('visitor') is unique to each record" in w for w in outcome.report["warnings"])
    # The same API with the records' own id: no warning.
    with MockServer(small, style=MockStyle(paginator)) as server:
        settings = job_settings(server.url, api=api, fields=_PLAIN, crawl=_THREE, bots=_NO_BOTS)
        outcome = run(settings, state_dir.parent / "own_id")
    assert outcome.exit_code == 0 and outcome.report["warnings"] == []
