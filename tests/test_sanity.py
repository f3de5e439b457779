"""The end-of-crawl check: which tallies make a warning, and which never do."""

from __future__ import annotations

from lifestats.sanity import FIELDS_CHECKED, data_warnings, having

KEYS = {"category": "cat", "visitor": "who", "timestamp": "at", "ip": "addr", "user_agent": None}


def test_a_field_no_counted_record_had_is_named_with_its_key() -> None:
    records = {"received": 50, "fetched": 50, "counted": 40, "bots": 10, FIELDS_CHECKED: 40}
    records |= {having("category"): 3, having("timestamp"): 40}
    warnings = data_warnings(records, 0.5, KEYS)
    assert [w.split(" ")[0] for w in warnings] == ["fields.visitor", "fields.ip"]
    assert "'who'" in warnings[0] and "40 counted records" in warnings[0]
    assert "'addr'" in warnings[1] and "50 records checked for bots" in warnings[1]  # counted and bots


def test_counts_from_a_checkpoint_that_predates_the_check_are_not_judged() -> None:
    # A resumed run whose earlier flushes carried no tallies: fewer records checked than counted.
    records = {"received": 50, "fetched": 50, "counted": 40, FIELDS_CHECKED: 25}
    assert data_warnings(records, 0.5, KEYS) == []


def test_nothing_counted_or_no_field_named_gives_no_field_warning() -> None:
    assert data_warnings({"received": 5, "fetched": 5, "rejected": 1, FIELDS_CHECKED: 0}, 0.5, KEYS) == []
    records = {"received": 5, "fetched": 5, "counted": 5, FIELDS_CHECKED: 5}
    assert data_warnings(records, 0.5, {}) == []
    assert data_warnings(records, 0.5) == []


def test_duplicates_are_judged_only_where_they_mean_a_shared_id() -> None:
    records = {"received": 100, "fetched": 100, "counted": 30, "duplicates": 70, FIELDS_CHECKED: 30}
    # By id, a duplicate is a page served again (the original Lifesum API serves whole pages): no warning.
    assert data_warnings(records, 0.5) == []
    (warning,) = data_warnings(records, 0.5, unique_id="visitor")
    assert "70 of 100 records (70%)" in warning and "fields.id ('visitor')" in warning
    assert data_warnings(records, 0.75, unique_id="visitor") == []


def test_every_record_a_bot_is_named() -> None:
    records = {"received": 60, "fetched": 60, "rejected": 10, "bots": 50, "counted": 0, FIELDS_CHECKED: 0}
    (warning,) = data_warnings(records, 0.5)
    assert warning.startswith("all 50 records that were not rejected were bots") and "bots.user_agents" in warning
    assert data_warnings(records | {"counted": 1, "bots": 49, FIELDS_CHECKED: 1}, 0.5) == []
