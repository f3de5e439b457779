"""The original Lifesum foodstats pages, replayed as the original server answered them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from lifestats.config import load_settings
from mocks.server import MockServer
from mocks.source import ReplaySource

from .conftest import run

PAGES = Path(__file__).resolve().parent.parent / "mocks" / "lifesum"


def expected_rankings() -> tuple[list[dict], list[dict]]:
    """Top 100 foods and top 10 categories, counted straight from the page files."""
    records = [r for n in range(1, 21) for r in json.loads((PAGES / f"{n}.json").read_text())["response"]]
    assert len({r["id"] for r in records}) == 2000
    foods = Counter(r["food_id"] for r in records)
    categories = Counter(r["food__category_id"] for r in records)
    top_foods = sorted(foods.items(), key=lambda kv: (-kv[1], kv[0]))[:100]
    top_categories = sorted(categories.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    return (
        [{"id": food, "visits": n, "distinct_visitors": None} for food, n in top_foods],
        [{"id": category, "visits": n} for category, n in top_categories],
    )


@pytest.mark.parametrize(("slices", "workers"), [(1, 1), (13, 4)])
def test_lifesum_top_foods_and_categories(tmp_path: Path, slices: int, workers: int) -> None:
    with MockServer(ReplaySource()) as server:
        settings = load_settings(
            None,
            "lifesum",
            environ={},
            overrides={
                "api": {"url": server.url, "first_id": 658330693},
                "fields": {"item": "food_id", "category": "food__category_id"},
                "crawl": {"slices": slices, "workers": workers, "rate_limit": 10_000},
            },
        )
        outcome = run(settings, tmp_path / "state")
    report = outcome.report
    foods, categories = expected_rankings()
    assert report["records"] == {
        "fetched": 2000,
        "counted": 2000,
        "rejected": 0,
        "bots": 0,
        "duplicates": 0,
        "future": 0,
    }
    assert list(report["windows"]) == ["all"]
    assert report["windows"]["all"]["visits"] == 2000
    assert report["windows"]["all"]["top_items"] == foods
    assert report["windows"]["all"]["top_categories"] == categories
    assert foods[0] == {"id": 12274029, "visits": 13, "distinct_visitors": None}
    assert categories[0] == {"id": 8, "visits": 107}
