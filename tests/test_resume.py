"""Crashes and interruptions: nothing lost, nothing counted twice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from lifestats.errors import CheckpointMismatch
from lifestats.executor import LocalExecutor, WorkerSetup
from mocks.dataset import DatasetSpec, generate, ground_truth
from mocks.server import MockServer

from .conftest import AS_OF, job_settings, main_command, run, statistics
from .test_faults import Switchable

DATA = generate(DatasetSpec(seed=23, records=30_000))

CONFIG = """
test:
  api: {{url: {url}, page_size: 150}}
  fields: {{id: id, item: item, category: category, visitor: visitor, timestamp: timestamp, ip: ip,
           user_agent: user_agent}}
  crawl: {{slices: 24, workers: 3, rate_limit: 250, flush_every: 4}}
  bots: {{ips: ["203.0.113.7", "203.0.113.8", "198.51.100.23"], user_agents: ["(?i)examplebot", "(?i)scrapy"]}}
"""


def start(workdir: Path) -> subprocess.Popen[str]:
    command, environ = main_command(
        "--env", "test", "--no-progress", "--as-of", AS_OF.isoformat(), "--report-json", "report.json"
    )
    return subprocess.Popen(
        command, cwd=workdir, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.fixture
def workdir(tmp_path: Path):
    with MockServer(DATA, latency=0.002) as server:
        (tmp_path / "config.yml").write_text(CONFIG.format(url=server.url))
        yield tmp_path, server


def finish(workdir: Path) -> dict:
    process = start(workdir)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    return json.loads((workdir / "report.json").read_text())


def clean_requests(tmp_path: Path, server: MockServer) -> int:
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "config.yml").write_text((tmp_path / "config.yml").read_text())
    before = len(server.log)
    report = finish(clean)
    assert statistics(report) == ground_truth(DATA, as_of=AS_OF)
    return len(server.log) - before


def test_coordinator_killed_at_random_moments_then_resumed_is_exact(workdir: tuple[Path, MockServer]) -> None:
    path, server = workdir
    baseline = clean_requests(path, server)
    rng = random.Random(2026)
    log_start = len(server.log)
    # Moments to kill at, as requests into the job (the last one well before any run could finish).
    kills = sorted(rng.sample(range(3, baseline * 3 // 4), 4))
    killed_at = []
    for point in kills:
        process = start(path)
        assert server.request_log.wait_for(log_start + point, timeout=120)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        killed_at.append(len(server.log) - log_start)
        assert process.returncode == -signal.SIGKILL
    report = finish(path)
    total = len(server.log) - log_start
    redone = total - baseline
    print(f"\nclean run {baseline} requests; killed after {killed_at}; all runs {total}; redone {redone}")
    assert statistics(report) == ground_truth(DATA, as_of=AS_OF)
    assert report["run"]["resumed"] is True
    # Each kill costs at most: rediscovery, every worker's unflushed pages, one page each after the kill.
    assert redone <= len(kills) * (40 + 3 * (4 + 2))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_writes_a_partial_report_exits_130_and_resumes_exactly(
    workdir: tuple[Path, MockServer], signum: int
) -> None:
    path, server = workdir
    process = start(path)
    assert server.request_log.wait_for(100, timeout=120)  # past discovery, with flushes committed
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    partial = json.loads((path / "report.json").read_text())
    assert partial["partial"] is True
    assert 0 < partial["records"]["fetched"] < len(DATA)
    report = finish(path)
    assert report["partial"] is False
    assert statistics(report) == ground_truth(DATA, as_of=AS_OF)


def test_worker_killed_mid_slice_is_replaced_and_its_slice_rerun(state_dir: Path) -> None:
    executors: list[LocalExecutor] = []

    def factory(workers: int, setup: WorkerSetup) -> LocalExecutor:
        executors.append(LocalExecutor(workers, setup))
        return executors[0]

    with MockServer(DATA, latency=0.002) as server:
        settings = job_settings(
            server.url, api={"page_size": 150}, crawl={"slices": 6, "workers": 2, "rate_limit": 400}
        )

        def killer() -> None:
            if server.request_log.wait_for(40, timeout=120):
                os.kill(executors[0].pids(busy_only=True)[0], signal.SIGKILL)

        thread = threading.Thread(target=killer)
        thread.start()
        outcome = run(settings, state_dir, executor_factory=factory)
        thread.join()
    assert outcome.exit_code == 0
    assert outcome.report["run"]["workers_lost"] == 1
    assert statistics(outcome.report) == ground_truth(DATA, as_of=AS_OF)


def test_changed_settings_or_as_of_refuse_to_resume(state_dir: Path) -> None:
    source = Switchable(DATA, broken_from=int(DATA.ids[20_000]))
    with MockServer(source) as server:
        settings = job_settings(
            server.url, api={"first_id": DATA.first_id, "last_id": DATA.end_id}, crawl={"retries": 1}
        )
        assert run(settings, state_dir).exit_code == 3
        with pytest.raises(CheckpointMismatch, match=r"bots changed.*--fresh"):
            run(
                job_settings(server.url, api={"first_id": DATA.first_id, "last_id": DATA.end_id}, bots={"ips": []}),
                state_dir,
            )
        with pytest.raises(CheckpointMismatch, match="--as-of"):
            run(settings, state_dir, as_of=AS_OF.replace(day=1))
        source.broken = False
        fresh = run(settings, state_dir, fresh=True)
    assert fresh.report["run"]["resumed"] is False
    assert statistics(fresh.report) == ground_truth(DATA, as_of=AS_OF)
