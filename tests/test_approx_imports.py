"""Approx mode never loads pyarrow: exact facts need it (tens of MB of a process's memory), sketches do not.

The job runs in a process of its own (this one has pyarrow loaded by other tests), against the real mock
server, small enough to fold its checkpoint several times; then its modules are listed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from .conftest import REPO

_JOB = """
import json, sys
from pathlib import Path

from mocks.dataset import DatasetSpec, generate
from mocks.server import MockServer
from tests.conftest import job_settings, run

mode, state_dir = sys.argv[1], Path(sys.argv[2])
with MockServer(generate(DatasetSpec(seed=4, records=6_000))) as server:
    settings = job_settings(server.url, crawl={"flush_every": 1}, stats={"mode": mode})
    outcome = run(settings, state_dir)
heavy = sorted(name for name in sys.modules if name.split(".")[0] == "pyarrow" or name == "lifestats.facts")
print(json.dumps({"exit": outcome.exit_code, "fetched": outcome.report["records"]["fetched"], "heavy": heavy[:3]}))
"""


def _python(code: str, *args: str) -> str:
    """What ``code`` printed, run by a fresh interpreter in the repository (it must exit 0)."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _job(mode: str, state_dir: Path) -> dict[str, object]:
    result: dict[str, object] = json.loads(_python(textwrap.dedent(_JOB), mode, str(state_dir)).splitlines()[-1])
    return result


def test_an_approx_run_never_imports_pyarrow(tmp_path: Path) -> None:
    approx = _job("approx", tmp_path / "approx")
    assert approx["exit"] == 0 and approx["fetched"] == 6_000
    assert approx["heavy"] == []
    assert list((tmp_path / "approx").glob("total-*.bin"))  # the checkpoint folded its blobs on the way


def test_an_exact_run_loads_it_where_its_facts_need_it(tmp_path: Path) -> None:
    exact = _job("exact", tmp_path / "exact")
    assert exact["exit"] == 0 and exact["fetched"] == 6_000
    assert "lifestats.facts" in exact["heavy"] or "pyarrow" in exact["heavy"]


def test_a_worker_imports_nothing_of_the_checkpoint() -> None:
    # What the forkserver loads for every worker (lifestats.executor): the crawl, the counting and the
    # messages, not the checkpoint, its DuckDB or the coordinator.
    probe = "import sys, lifestats.executor; print(sorted({m.split('.')[0] for m in sys.modules} & {'duckdb'}), "
    probe += "sorted(m for m in sys.modules if m in ('lifestats.store', 'lifestats.merge', 'lifestats.run')))"
    assert _python(probe).split() == ["[]", "[]"]
