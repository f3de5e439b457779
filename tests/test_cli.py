"""The command line: exit codes, the JSON report, and bad config stopping before any request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mocks.dataset import DatasetSpec, generate, ground_truth
from mocks.server import MockServer

from .conftest import AS_OF, run_main, statistics

DATA = generate(DatasetSpec(seed=21, records=5_000))

CONFIG = """
base: &base
  api: &api
    url: {url}
    page_size: 150
  fields: {{id: id, item: item, category: category, visitor: visitor, timestamp: timestamp, ip: ip,
           user_agent: user_agent}}
  crawl: &crawl {{slices: 9, workers: 2, rate_limit: 5000}}
  bots: {{ips: ["203.0.113.7", "203.0.113.8", "198.51.100.23"], user_agents: ["(?i)examplebot", "(?i)scrapy"]}}
test:
  <<: *base
broken:
  <<: *base
  crawl:
    <<: *crawl
    workers: -3
"""


@pytest.fixture
def server():
    with MockServer(DATA) as running:
        yield running


def test_main_writes_the_report_and_prints_rankings(tmp_path: Path, server: MockServer) -> None:
    (tmp_path / "config.yml").write_text(CONFIG.format(url=server.url))
    result = run_main(
        "--env",
        "test",
        "--as-of",
        AS_OF.isoformat(),
        "--report-json",
        "out/report.json",
        "--no-progress",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["schema"] == "lifestats.report/1"
    assert report["run"]["env"] == "test"
    assert report["run"]["as_of"] == "2026-03-15T12:00:00+00:00"
    assert statistics(report) == ground_truth(DATA, as_of=AS_OF)
    top = report["windows"]["all"]["top_items"][0]
    assert "Top 20 of 100 items" in result.stdout and str(top["id"]) in result.stdout
    assert (tmp_path / ".lifestats" / "checkpoint.sqlite").exists()


def test_env_variable_selects_environment_and_overrides_keys(tmp_path: Path, server: MockServer) -> None:
    (tmp_path / "config.yml").write_text(CONFIG.format(url=server.url))
    result = run_main(
        "--as-of",
        AS_OF.isoformat(),
        "--report-json",
        "r.json",
        "--no-progress",
        cwd=tmp_path,
        env={"LIFESTATS_ENV": "test", "LIFESTATS_STATS_TOP_ITEMS": "3"},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["windows"]["all"]["top_items"]) == 3


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--env", "broken"], {}, "crawl.workers"),
        (["--env", "nowhere"], {}, "no environment 'nowhere'"),
        (["--env", "test", "--as-of", "yesterday"], {}, "--as-of 'yesterday'"),
        (["--env", "test", "--bogus"], {}, "unrecognized arguments: --bogus"),
        (["--env", "test"], {"LIFESTATS_CRAWL_RATE_LIMIT": "fast"}, "crawl.rate_limit"),
        (["--env", "test"], {"LIFESTATS_STATS_MODE": "approx"}, "approx mode"),
    ],
)
def test_bad_usage_exits_2_before_any_request(
    tmp_path: Path, server: MockServer, args: list[str], env: dict[str, str], message: str
) -> None:
    (tmp_path / "config.yml").write_text(CONFIG.format(url=server.url))
    result = run_main(*args, "--no-progress", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert message in result.stderr
    assert server.log == []
