"""Every pagination style, crawled by the whole job from a real HTTP server on 127.0.0.1, exactly.

Each test prints one row of the table ``style | server | slices | requests | exact | seconds``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from lifestats.run import Outcome
from mocks.dataset import DatasetSpec, generate, ground_truth
from mocks.faults import FaultSpec
from mocks.server import MockServer
from mocks.styles import MockStyle

from .conftest import AS_OF, job_settings, run, statistics

DATA = generate(DatasetSpec(seed=41, records=4_000, empty_share=0.3))
TRUTH = ground_truth(DATA, as_of=AS_OF)
PAGE = 50

# style name -> (the mock's way of paging, the api section that reads it)
STYLES: dict[str, tuple[MockStyle, dict[str, Any]]] = {
    "offset_id": (MockStyle("offset_id"), {}),
    "keyset": (
        MockStyle("keyset", upper_param=None),
        {"paginator": "keyset", "id_param": "id__gte", "records_path": "rows"},
    ),
    "keyset+upper": (
        MockStyle("keyset"),
        {"paginator": "keyset", "id_param": "id__gte", "upper_param": "id__lt", "records_path": "rows"},
    ),
    "offset": (
        MockStyle("offset"),
        {"paginator": "offset", "records_path": "results", "total_header": "X-Total-Count"},
    ),
    "offset+total_path": (
        MockStyle("offset", total_header=None),
        {"paginator": "offset", "records_path": "results", "total_path": "count"},
    ),
    "page_number": (
        MockStyle("page_number"),
        {"paginator": "page_number", "records_path": "results", "total_pages_path": "total_pages"},
    ),
    "cursor": (MockStyle("cursor"), {"paginator": "cursor", "records_path": "data", "cursor_path": "next_cursor"}),
    "next_url": (MockStyle("next_url"), {"paginator": "next_url", "records_path": "results", "next_url_path": "next"}),
    "next_url+absolute": (
        MockStyle("next_url", absolute_next=True),
        {"paginator": "next_url", "records_path": "results", "next_url_path": "next"},
    ),
    "link_header": (MockStyle("link_header"), {"paginator": "link_header", "records_path": ""}),
}


def crawl(
    name: str,
    style: MockStyle,
    api: dict[str, Any],
    state_dir: Path,
    *,
    slices: int,
    workers: int = 3,
    faults: FaultSpec | None = None,
    crawl_settings: dict[str, Any] | None = None,
    data: Any = DATA,
) -> tuple[Outcome, int]:
    """Run the job against the mock in ``style``; print the table row; the outcome and the server's request count."""
    with MockServer(data, style=style, faults=faults) as server:
        settings = job_settings(
            server.url,
            api={"page_size": PAGE, **api},
            crawl={"slices": slices, "workers": workers, **(crawl_settings or {})},
        )
        started = time.monotonic()
        outcome = run(settings, state_dir)
        seconds = time.monotonic() - started
        requests = len(server.log)
    exact = outcome.exit_code == 0 and statistics(outcome.report) == ground_truth(data, as_of=AS_OF)
    planned = outcome.report["run"]["slices"]
    split = outcome.report["run"].get("slices_split", 0)
    print(
        f"\nSTYLE | {name} | mock ({style.name}) | {planned} planned, {split} split | {requests} requests | "
        f"exact {'yes' if exact else 'no'} | {seconds:.2f} s"
    )
    return outcome, requests


@pytest.mark.parametrize("name", list(STYLES))
def test_every_style_is_crawled_exactly(name: str, state_dir: Path) -> None:
    style, api = STYLES[name]
    outcome, requests = crawl(name, style, api, state_dir, slices=8)
    assert outcome.exit_code == 0, outcome.message
    assert statistics(outcome.report) == TRUTH
    assert outcome.report["run"]["requests"] == requests
    sequential = name.startswith(("cursor", "next_url", "link_header"))
    assert outcome.report["run"]["slices"] == (1 if sequential else 8)
    assert "warnings" not in outcome.report or outcome.report["warnings"] == []


@pytest.mark.parametrize("name", ["keyset+upper", "offset", "page_number"])
def test_a_straggling_slice_is_split_in_every_sliceable_style(name: str, state_dir: Path) -> None:
    style, api = STYLES[name]
    outcome, _ = crawl(
        f"{name} (1 slice, splits)",
        style,
        api,
        state_dir,
        slices=1,
        workers=3,
        crawl_settings={"flush_every": 2, "rate_limit": 300},
    )
    assert outcome.report["run"]["slices_split"] >= 1
    assert statistics(outcome.report) == TRUTH


@pytest.mark.parametrize("name", ["offset", "page_number"])
def test_positional_styles_without_a_total_crawl_one_sequential_slice(name: str, state_dir: Path) -> None:
    style, api = STYLES[name]
    api = {k: v for k, v in api.items() if not k.startswith("total")}
    outcome, _ = crawl(f"{name} (no total)", style, api, state_dir, slices=8)
    assert outcome.report["run"]["slices"] == 1
    assert statistics(outcome.report) == TRUTH


@pytest.mark.parametrize("name", list(STYLES))
def test_every_style_survives_faults_including_200s_without_records(name: str, state_dir: Path) -> None:
    """500s, resets, truncated and HTML bodies, next references that do not move, and 200 answers with an
    error body instead of the records: each is retried, none is read as the end of the data."""
    style, api = STYLES[name]
    rates = {"500": 0.05, "reset": 0.03, "truncated": 0.03, "html": 0.03, "no-records": 0.1, "stuck": 0.05}
    faults = FaultSpec(seed=5, rate=rates, kinds=frozenset(rates))
    outcome, _ = crawl(f"{name} (faults)", style, api, state_dir, slices=4, faults=faults)
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["run"]["retries"] > 0
    assert statistics(outcome.report) == TRUTH
