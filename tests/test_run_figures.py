"""The run figures of the report: records per second, CPU of the whole job, peak memory."""

from __future__ import annotations

import io
import resource
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from lifestats.count import PageCounter
from lifestats.fetch import ApiClient
from lifestats.plan import Slice
from lifestats.protocol import Flush, Split, Task
from lifestats.stats import Partial
from lifestats.task import crawl_slice
from lifestats.terminal import render
from mocks.dataset import DatasetSpec, generate
from mocks.routes import mock_api
from mocks.server import serve_in_subprocess

from .conftest import AS_OF, job_settings, run

URL = "https://api.example.test/events"

RECORDS = 20_000


def test_run_figures_cover_the_coordinator_and_every_worker(state_dir: Path) -> None:
    # The API in its own process, so that this process's CPU time is the coordinator's alone.
    url, stop = serve_in_subprocess(seed=3, records=RECORDS)
    try:
        settings = job_settings(url, api={"page_size": 200}, crawl={"slices": 8, "workers": 2})
        before = time.process_time()
        outcome = run(settings, state_dir)
        coordinator_cpu = time.process_time() - before
        peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    finally:
        stop()
    assert outcome.exit_code == 0
    figures = outcome.report["run"]
    fetched = outcome.report["records"]["fetched"]
    assert fetched == RECORDS
    assert figures["records_per_second"] > 0
    # The workers' CPU is added to the coordinator's: the whole job spent more than this process did.
    assert figures["cpu_seconds"] > coordinator_cpu > 0
    assert 0 < figures["peak_rss_bytes"] <= peak_after
    assert figures["worker_peak_rss_bytes"] > 0

    out = io.StringIO()
    render(outcome.report, Console(file=out, width=80, color_system=None, force_terminal=False))
    assert f"CPU {figures['cpu_seconds']:,.1f} s" in out.getvalue()
    assert "MiB peak (largest worker)" in out.getvalue()


class _Acquisitions:
    """A limiter that lets every request through and tells how many it let through."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = threading.Condition()

    def acquire(self, *, retry: bool = False) -> None:
        with self.changed:
            self.count += 1
            self.changed.notify_all()

    def left(self) -> None:
        return None

    def pause(self, seconds: float) -> None:
        return None

    def reached(self, count: int, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.count >= count, timeout)


def test_next_page_is_requested_while_the_last_one_is_counted() -> None:
    data = generate(DatasetSpec(seed=7, records=2_000))
    settings = job_settings(URL, api={"page_size": 300})
    limiter = _Acquisitions()
    counter = PageCounter(settings, AS_OF)
    pages = -(-len(data) // 300)
    overlapped: list[bool] = []
    count_page = counter.count_page

    def counting(*args: Any, **kwargs: Any) -> None:
        # While page k is counted, the request for page k + 1 has already gone through the limiter
        # (the last page has no next one).
        page = len(overlapped) + 1
        overlapped.append(page == pages or limiter.reached(page + 1, timeout=10))
        count_page(*args, **kwargs)

    counter.count_page = counting  # type: ignore[method-assign]
    flushes: list[Flush | Split] = []
    with mock_api(data, URL), ApiClient(settings.api, settings.crawl, limiter) as client:
        piece = Slice(0, data.first_id, None)
        crawl_slice(Task(piece, 1, piece.begin, piece.begin - 1, 0), client, counter, 2, flushes.append)
    assert overlapped == [True] * pages
    assert limiter.count == pages == sum(f.pages for f in flushes if isinstance(f, Flush))
    assert sum(f.requests for f in flushes if isinstance(f, Flush)) == pages
    total = Partial()
    for flush in flushes:
        assert isinstance(flush, Flush)
        total.merge(Partial.from_bytes(flush.partial))
    assert total.records["fetched"] == len(data)


def test_the_cpu_of_another_process_is_read_as_it_counts_it_itself() -> None:
    # The run figures add the CPU of the server that forks the workers, read from outside the process.
    import subprocess
    import sys

    from lifestats.usage import process_cpu_seconds

    spin = (
        "import sys, time\n"
        "while time.process_time() < 0.5: pass\n"
        "print(time.process_time(), flush=True)\n"
        "sys.stdin.read()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", spin], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        own = float(child.stdout.readline())  # the child's own count, once it has spun
        seen = process_cpu_seconds(child.pid)
    finally:
        child.communicate("")
    assert seen is not None
    assert abs(seen - own) <= 0.1  # clock ticks of 10 ms, and the interpreter's start before the loop
    assert process_cpu_seconds(child.pid) is None  # gone: nothing to read
