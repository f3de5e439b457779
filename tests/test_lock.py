"""One run per state dir: a second run is refused at once, and a dead run never blocks the next."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lifestats.lock import LOCK_FILE, StateDirBusy, StateLock
from mocks.dataset import DatasetSpec, generate, ground_truth
from mocks.server import MockServer

from .conftest import AS_OF, main_command, run_main, statistics

DATA = generate(DatasetSpec(seed=31, records=20_000))

CONFIG = """
test:
  api: {{url: {url}, page_size: 100}}
  fields: {{id: id, item: item, category: category, visitor: visitor, timestamp: timestamp, ip: ip,
           user_agent: user_agent}}
  crawl: {{slices: 12, workers: 2, rate_limit: 25, flush_every: 4}}
  bots: {{ips: ["203.0.113.7", "203.0.113.8", "198.51.100.23"], user_agents: ["(?i)examplebot", "(?i)scrapy"]}}
"""

HOLD = """
import sys, time
from pathlib import Path
from lifestats.lock import StateLock
lock = StateLock(Path(sys.argv[1]))
lock.acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_a_second_lock_on_the_same_dir_is_refused_and_names_the_holder(tmp_path: Path) -> None:
    first = StateLock(tmp_path / "state")
    first.acquire()
    try:
        t0 = time.perf_counter()
        with pytest.raises(StateDirBusy) as info:
            StateLock(tmp_path / "state").acquire()
        print(f"\nin-process refusal: {(time.perf_counter() - t0) * 1e6:.0f} µs")
        assert info.value.exit_code == 2
        assert f"pid {os.getpid()}" in str(info.value)
        assert str(tmp_path / "state") in str(info.value)
    finally:
        first.release()
    again = StateLock(tmp_path / "state")
    again.acquire()  # released: the next run may go
    again.release()


def test_the_kernel_releases_the_lock_of_a_killed_run(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _, environ = main_command()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(state)], env=environ, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(StateDirBusy, match=f"pid {holder.pid}"):
            StateLock(state).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    lock = StateLock(state)
    lock.acquire()  # no stale lock file to clean up: the lock died with its process
    lock.release()


def test_an_unusable_state_dir_is_one_line_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    from lifestats.errors import StateDirError

    with pytest.raises(StateDirError) as info:
        StateLock(blocker / "state").acquire()
    assert info.value.exit_code == 2
    assert "--state-dir" in str(info.value) and "\n" not in str(info.value)


def test_two_overlapping_runs_the_second_refuses_at_once_the_first_is_exact(tmp_path: Path) -> None:
    with MockServer(DATA, latency=0.002) as server:
        (tmp_path / "config.yml").write_text(CONFIG.format(url=server.url))
        args = ("--env", "test", "--no-progress", "--as-of", AS_OF.isoformat(), "--state-dir", "state")
        command, environ = main_command(*args, "--report-json", "first.json")
        first = subprocess.Popen(
            command, cwd=tmp_path, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            # The first run holds the lock once it makes requests (discovery comes after the lock).
            assert server.request_log.wait_for(20, timeout=120)
            holder = (tmp_path / "state" / LOCK_FILE).read_text().strip()
            before = len(server.log)
            t0 = time.monotonic()
            second = run_main(*args, "--report-json", "second.json", cwd=tmp_path)
            refused_in = time.monotonic() - t0
            fresh = run_main(*args, "--fresh", cwd=tmp_path)
            during = len(server.log) - before
            overlapped = first.poll() is None  # both refusals came while the first run was live
            _, stderr = first.communicate(timeout=300)
            t0 = time.monotonic()
            run_main("--help", cwd=tmp_path)
            bare_start = time.monotonic() - t0
        finally:
            if first.poll() is None:
                first.kill()
    message = " ".join(second.stderr.split())  # as one line, whatever the terminal's width
    print(
        f"\nsecond run refused in {refused_in:.2f} s (a bare `main.py --help` takes {bare_start:.2f} s here); "
        f"the first run made {during} requests meanwhile. {message}"
    )
    assert second.returncode == 2, second.stderr
    assert overlapped
    assert first.returncode == 0, stderr
    assert str(tmp_path / "state") in "".join(second.stderr.split())
    assert f"pid {first.pid}" in message and holder == str(first.pid)
    assert "Traceback" not in second.stderr
    assert not (tmp_path / "second.json").exists()
    assert fresh.returncode == 2 and f"pid {first.pid}" in " ".join(fresh.stderr.split())  # --fresh deleted nothing
    report = json.loads((tmp_path / "first.json").read_text())
    assert report["partial"] is False
    assert statistics(report) == ground_truth(DATA, as_of=AS_OF)
