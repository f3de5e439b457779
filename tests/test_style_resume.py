"""A sequential (cursor) crawl and a positional (offset) crawl, the command line SIGKILLed in the middle
and run again: the resumed run continues from the stored cursor or row offset and is exact."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
from pathlib import Path

import duckdb
import pytest

from lifestats.store import CHECKPOINT_FILE
from mocks.server import MockServer
from mocks.styles import MockStyle

from .conftest import AS_OF, main_command, statistics
from .test_styles import DATA, TRUTH

CONFIG = """
test:
  api: {{url: "{url}", page_size: 50, {api}}}
  fields: {{id: id, item: item, category: category, visitor: visitor, timestamp: timestamp, ip: ip,
           user_agent: user_agent}}
  crawl: {{slices: {slices}, workers: 2, rate_limit: 1000, flush_every: 4}}
  bots: {{ips: ["203.0.113.7", "203.0.113.8", "198.51.100.23"], user_agents: ["(?i)examplebot", "(?i)scrapy"]}}
"""

CASES = {
    "cursor": (MockStyle("cursor"), "paginator: cursor, records_path: data, cursor_path: next_cursor", 1),
    "offset": (MockStyle("offset"), "paginator: offset, records_path: results, total_header: X-Total-Count", 4),
}


def start(workdir: Path) -> subprocess.Popen[str]:
    command, environ = main_command(
        "--env", "test", "--no-progress", "--as-of", AS_OF.isoformat(), "--report-json", "report.json"
    )
    return subprocess.Popen(
        command, cwd=workdir, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(workdir: Path) -> dict:
    process = start(workdir)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    return json.loads((workdir / "report.json").read_text())


@pytest.mark.parametrize("name", list(CASES))
def test_a_crawl_killed_in_the_middle_resumes_from_its_position_exactly(name: str, tmp_path: Path) -> None:
    style, api, slices = CASES[name]
    with MockServer(DATA, style=style, latency=0.01) as server:
        config = CONFIG.format(url=server.url, api=api, slices=slices)
        clean, killed = tmp_path / "clean", tmp_path / "killed"
        for folder in (clean, killed):
            folder.mkdir()
            (folder / "config.yml").write_text(config)
        report = finish(clean)
        baseline = len(server.log)
        assert statistics(report) == TRUTH

        process = start(killed)
        kill_at = baseline + baseline // 2
        assert server.request_log.wait_for(kill_at, timeout=120)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        assert process.returncode == -signal.SIGKILL
        before = len(server.log) - baseline
        with contextlib.closing(duckdb.connect(str(killed / ".lifestats" / CHECKPOINT_FILE), read_only=True)) as db:
            state = [json.loads(row[0]) for row in db.execute("SELECT position FROM slices ORDER BY idx").fetchall()]
        report = finish(killed)
        after = len(server.log) - baseline - before
    print(
        f"\nRESUME | {name} | clean run {baseline} requests | killed after {before} | "
        f"resumed run {after} | together {before + after} (redone {before + after - baseline}) | "
        f"stored positions at the kill: {state}"
    )
    assert statistics(report) == TRUTH
    assert report["run"]["resumed"] is True
    # It went on from the stored positions: what is fetched again is at most what each of the 2 workers
    # had crawled past its slice's last committed flush: its unflushed pages (flush_every = 4) and the
    # one prefetched, plus one more flush's worth when the coordinator had not yet committed a flush the
    # worker had already sent (it commits asynchronously; a loaded machine makes it lag). A crawl that
    # started over would fetch the whole baseline again.
    assert before + after <= baseline + 2 * (2 * 4 + 1) + 1


def test_ctrl_c_keeps_what_a_sequential_crawl_counted_and_the_resume_starts_right_after_it(tmp_path: Path) -> None:
    """Ctrl-C stopped the workers at once: the pages a worker had counted since its last flush were left
    out of the partial report and fetched again on the resume (a cursor crawl stopped at page 38 showed
    250 of the 380 records received and resumed at page 25; SPEC audit). Now each worker flushes them
    before it stops: here no periodic flush comes at all (flush_every 1000)."""
    style, api, slices = CASES["cursor"]
    with MockServer(DATA, style=style, latency=0.01) as server:
        config = CONFIG.format(url=server.url, api=api, slices=slices).replace("flush_every: 4", "flush_every: 1000")
        clean, stopped = tmp_path / "clean", tmp_path / "stopped"
        for folder in (clean, stopped):
            folder.mkdir()
            (folder / "config.yml").write_text(config)
        assert statistics(finish(clean)) == TRUTH
        baseline = len(server.log)

        process = start(stopped)
        assert server.request_log.wait_for(baseline + baseline // 2, timeout=120)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130, stderr
        before = len(server.log) - baseline
        partial = json.loads((stopped / "report.json").read_text())
        report = finish(stopped)
        after = len(server.log) - baseline - before
    print(f"\nCTRL-C | clean run {baseline} requests | stopped after {before} | resumed run {after}")
    assert partial["partial"] is True
    # Every page the stopped run took is in its report: all but the one asked for ahead, at most.
    assert partial["records"]["fetched"] >= 50 * (before - 1) - 50
    assert statistics(report) == TRUTH
    # The resume starts at the first page not counted: the one asked for ahead is the only one asked twice.
    assert before + after <= baseline + 1
