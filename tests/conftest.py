"""Shared helpers: settings for a job against a test server, and running it in-process."""

from __future__ import annotations

import bisect
import os
import subprocess
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import respx.mocks

from lifestats.config import Settings, load_settings
from lifestats.report_check import report_problem
from lifestats.run import Outcome, run_job
from mocks.dataset import BOT_IPS, BOT_UA_PATTERNS, FIELDS

# respx intercepts requests where the httpx client picks its transport (not inside httpcore), so that it
# mocks the API whichever transport the client uses: Lifestats' own plain HTTP/1.1 one, or httpx's.
respx.mocks.DEFAULT_MOCKER = "httpx"

REPO = Path(__file__).resolve().parent.parent
AS_OF = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)  # the synthetic datasets end here by default


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keeps each phase's report on the test (``item.rep_call``), for fixtures that show more on failure."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def job_settings(url: str, **sections: dict[str, Any]) -> Settings:
    """Settings for the synthetic dataset at ``url``; ``sections`` override per section."""
    overrides: dict[str, dict[str, Any]] = {
        "api": {"url": url, "page_size": 100},
        "fields": dict(FIELDS),
        "crawl": {"slices": 10, "workers": 2, "rate_limit": 100_000, "backoff": 0.01, "backoff_max": 0.2},
        "bots": {"ips": list(BOT_IPS), "user_agents": list(BOT_UA_PATTERNS)},
    }
    for section, values in sections.items():
        overrides.setdefault(section, {}).update(values)
    return load_settings(None, "test", environ={}, overrides=overrides)


def run(settings: Settings, state_dir: Path, as_of: datetime = AS_OF, **kwargs: Any) -> Outcome:
    outcome = run_job(settings, env="test", state_dir=state_dir, as_of=as_of, **kwargs)
    # Every report a run writes, partial ones included, is one that `lifestats report` renders again.
    problem = report_problem(orjson.loads(orjson.dumps(outcome.report)))
    assert problem is None, problem
    return outcome


def main_command(*args: str, env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """``python main.py ARGS`` and an environment free of the caller's LIFESTATS_* settings."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LIFESTATS_")}
    environ["PYTHONPATH"] = str(REPO)
    environ.update(env or {})
    return [sys.executable, str(REPO / "main.py"), *args], environ


def run_main(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command line to completion and capture its output."""
    command, environ = main_command(*args, env=env)
    return subprocess.run(command, cwd=cwd, env=environ, capture_output=True, text=True, timeout=300, check=False)


def statistics(report: dict[str, Any]) -> dict[str, Any]:
    """The sections of a report that the ground truth predicts."""
    return {key: report[key] for key in ("records", "windows", "series")}


def peak_per_second(times: Iterable[float]) -> int:
    """The most events in any one-second window [t, t + 1)."""
    stamps = sorted(times)
    return max((bisect.bisect_left(stamps, t + 1.0) - i for i, t in enumerate(stamps)), default=0)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"
