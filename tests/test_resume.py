"""Crashes and interruptions: nothing lost, nothing counted twice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from lifestats import store
from lifestats.errors import CheckpointMismatch
from lifestats.executor import LocalExecutor, WorkerSetup
from lifestats.merge import REJECTS_FILE, Aggregator, Checkpoint
from lifestats.plan import Slice
from lifestats.protocol import Flush, Split, Task
from lifestats.run import _Job
from lifestats.stats import Partial
from mocks.dataset import DatasetSpec, generate, ground_truth
from mocks.faults import FaultSpec
from mocks.server import MockServer
from mocks.source import ListSource

from .conftest import AS_OF, job_settings, main_command, run, statistics
from .test_faults import Switchable
from .test_merge import FullAfterFlush, Hooked, InterruptAfterCommit

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


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])  # SIGHUP: the terminal closed
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
    assert partial["partial"] is True and partial["warnings"] == []  # a list in every report
    assert 0 < partial["records"]["fetched"] < len(DATA)
    report = finish(path)
    assert report["partial"] is False
    assert statistics(report) == ground_truth(DATA, as_of=AS_OF)


def _run_killing_a_worker(server: MockServer, settings: Any, state_dir: Path, after: int) -> Any:
    """Run the job on one machine, SIGKILLing a busy worker once the API has seen ``after`` requests."""
    executors: list[LocalExecutor] = []

    def factory(workers: int, setup: WorkerSetup) -> LocalExecutor:
        executors.append(LocalExecutor(workers, setup))
        return executors[0]

    def killer() -> None:
        if server.request_log.wait_for(after, timeout=120):
            os.kill(executors[0].pids(busy_only=True)[0], signal.SIGKILL)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        return run(settings, state_dir, executor_factory=factory)
    finally:
        thread.join()


def test_worker_killed_mid_slice_is_replaced_and_its_slice_rerun(state_dir: Path) -> None:
    with MockServer(DATA, latency=0.002) as server:
        settings = job_settings(
            server.url, api={"page_size": 150}, crawl={"slices": 6, "workers": 2, "rate_limit": 400}
        )
        outcome = _run_killing_a_worker(server, settings, state_dir, after=40)
        seen = len(server.request_log)
    assert outcome.exit_code == 0
    assert outcome.report["run"]["workers_lost"] == 1
    assert statistics(outcome.report) == ground_truth(DATA, as_of=AS_OF)
    # Every request the API saw is in the report, the killed worker's unflushed ones too (one more if it
    # was killed between its turn at the limiter and the send).
    assert seen <= outcome.report["run"]["requests"] <= seen + 1


def test_a_killed_worker_s_retries_since_its_last_flush_are_in_the_report(state_dir: Path) -> None:
    """Every page's first request fails once (503), so every 503 the API sent is retried once, except at
    most one by the killed worker (its last request, or the wait before retrying it); the report's
    retries hold them all, the killed worker's unflushed ones too (flushes are rare here)."""
    faults = FaultSpec(seed=5, rate={"503": 1.0}, kinds=frozenset({"503"}), max_per_offset=1)
    with MockServer(DATA, latency=0.002, faults=faults) as server:
        settings = job_settings(
            server.url,
            api={"page_size": 150},
            crawl={"slices": 6, "workers": 2, "rate_limit": 400, "flush_every": 1000, "backoff": 0.001},
        )
        outcome = _run_killing_a_worker(server, settings, state_dir, after=60)
        failed = sum(1 for entry in server.log if entry.status == 503)
    assert outcome.exit_code == 0
    assert outcome.report["run"]["workers_lost"] == 1
    assert statistics(outcome.report) == ground_truth(DATA, as_of=AS_OF)
    assert failed > 0
    assert failed - 1 <= outcome.report["run"]["retries"] <= failed


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


# -- the fenced checkpoint, through the coordinator -------------------------------------------------


class Recorder:
    """An executor that only records what the coordinator submits."""

    def __init__(self) -> None:
        self.submitted: list[Task] = []

    def submit(self, task: Task) -> None:
        self.submitted.append(task)


def test_a_late_split_never_reopens_a_counted_range(state_dir: Path) -> None:
    settings = job_settings("http://127.0.0.1:9/events")
    checkpoint = Checkpoint(state_dir)
    checkpoint.claim({"job": 1})
    checkpoint.save_plan([Slice(0, 0, 100), Slice(1, 100, 200)], {"planned_slices": 2})
    job = _Job(settings, "test", checkpoint, state_dir, AS_OF, None, AS_OF, False)
    executor = Recorder()
    dead = checkpoint.begin_attempt(0).attempt
    job.aggregator.apply(Flush(0, dead, 1, 40, 39, 1, 1, 0, Partial().to_bytes()))
    rerun = checkpoint.begin_attempt(0).attempt  # the worker died; the slice ran again, to its end
    job.aggregator.apply(Flush(0, rerun, 2, None, 99, 1, 1, 0, Partial().to_bytes()))
    # The dead worker's answer to a proposal arrives late: it had accepted to stop at 70.
    job._handle(Split(0, dead, 70, True), executor)  # type: ignore[arg-type]
    assert [(s.slice.begin, s.slice.end) for s in checkpoint.states()] == [(0, 100), (100, 200)]
    assert executor.submitted == []
    # The current attempt of a live slice is split; one that no longer fits is crawled again whole.
    live = checkpoint.begin_attempt(1).attempt
    job._handle(Split(1, live, 150, True), executor)  # type: ignore[arg-type]
    assert [(t.slice.begin, t.slice.end) for t in executor.submitted] == [(150, 200)]
    job._handle(Split(1, live, 170, True), executor)  # beyond its new end: it restarts from its commit
    assert [(t.slice.index, t.slice.end, t.position) for t in executor.submitted[1:]] == [(1, 150, 100)]
    checkpoint.close()


class Dropping(LocalExecutor):
    """An executor with a bug: it loses the first task of one slice and goes idle as if all were done."""

    def __init__(self, workers: int, setup: WorkerSetup, drop: int) -> None:
        super().__init__(workers, setup)
        self.drop = drop

    def submit(self, task: Task) -> None:
        if task.slice.index == self.drop:
            self.drop = -1
            return
        super().submit(task)


def test_the_run_is_finished_only_when_every_slice_is_done(state_dir: Path) -> None:
    with MockServer(DATA) as server:
        settings = job_settings(server.url, api={"page_size": 150}, crawl={"slices": 6, "workers": 2})
        broken = run(settings, state_dir, executor_factory=lambda w, s: Dropping(w, s, drop=2))
        assert broken.exit_code == 1 and "1 slice(s)" in (broken.message or "")
        assert broken.report["partial"] is True
        assert 0 < broken.report["records"]["fetched"] < len(DATA)
        again = run(settings, state_dir)
    assert again.exit_code == 0 and again.report["run"]["resumed"] is True
    assert statistics(again.report) == ground_truth(DATA, as_of=AS_OF)


def _patch_checkpoint_connection(monkeypatch: pytest.MonkeyPatch, hooked: type[Hooked]) -> None:
    connect = store.connect

    def patched(path: Path, temp_dir: Path) -> Any:
        return hooked(connect(path, temp_dir))

    monkeypatch.setattr("lifestats.store.connect", patched)


class InterruptAfterFifthFlush(InterruptAfterCommit):
    after = 5


def test_ctrl_c_just_after_a_commit_exits_130_with_a_partial_report(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with MockServer(DATA) as server:
        settings = job_settings(server.url, api={"page_size": 150}, crawl={"slices": 6, "flush_every": 2})
        _patch_checkpoint_connection(monkeypatch, InterruptAfterFifthFlush)
        outcome = run(settings, state_dir)
        monkeypatch.undo()
        assert outcome.exit_code == 130, outcome.message
        assert outcome.report["partial"] is True
        fetched = outcome.report["records"]["fetched"]
        committed = Checkpoint(state_dir)
        assert fetched == Aggregator(committed, state_dir / REJECTS_FILE).total.records["fetched"] > 0
        committed.close()
        again = run(settings, state_dir)
    assert statistics(again.report) == ground_truth(DATA, as_of=AS_OF)


class FullAfterFifthFlush(FullAfterFlush):
    after = 5


def test_a_full_state_dir_mid_run_is_one_line_and_resumes_exactly(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with MockServer(DATA) as server:
        settings = job_settings(server.url, api={"page_size": 150}, crawl={"slices": 6, "flush_every": 2})
        _patch_checkpoint_connection(monkeypatch, FullAfterFifthFlush)
        outcome = run(settings, state_dir)
        monkeypatch.undo()
        print(f"\nfull state dir: exit {outcome.exit_code}: {outcome.message}")
        assert outcome.exit_code == 1
        assert "No space left on device" in (outcome.message or "") and "\n" not in (outcome.message or "")
        assert outcome.report["partial"] is True
        again = run(settings, state_dir)
    assert again.exit_code == 0 and again.report["run"]["resumed"] is True
    assert statistics(again.report) == ground_truth(DATA, as_of=AS_OF)


class Idle(Recorder):
    """An executor with one running task and a worker to spare; it records split proposals."""

    def __init__(self, running: list[Task]) -> None:
        super().__init__()
        self._running = running
        self.proposals: list[tuple[int, int]] = []

    def idle(self) -> int:
        return 1

    def running(self) -> list[Task]:
        return self._running

    def propose_split(self, task: Task, until: int) -> None:
        self.proposals.append((task.slice.index, until))


def test_negative_id_ranges_are_planned_split_and_shown_like_any_other(state_dir: Path) -> None:
    settings = job_settings("http://127.0.0.1:9/events", crawl={"flush_every": 1})
    checkpoint = Checkpoint(state_dir)
    checkpoint.claim({"job": 1})
    checkpoint.save_plan([Slice(0, -(2**63), -1000), Slice(1, -1000, 2**63)], {"planned_slices": 2})
    job = _Job(settings, "test", checkpoint, state_dir, AS_OF, None, AS_OF, False)
    a = checkpoint.begin_attempt(1).attempt
    job.aggregator.apply(Flush(1, a, 1, -900, -901, 4, 4, 0, Partial().to_bytes()))
    state = checkpoint.state(1)
    executor = Idle([job._task(state)])
    job._maybe_split(executor)  # type: ignore[arg-type]
    assert executor.proposals == [(1, 2**63)]  # half of the way to the slice's end, as the worker sees it
    middle = -900 + (2**63 + 900) // 2  # where the worker, at -900, would cut
    job._handle(Split(1, a, middle, True), executor)  # type: ignore[arg-type]
    assert [(t.slice.begin, t.slice.end) for t in executor.submitted] == [(middle, 2**63)]
    snapshots: list[Any] = []
    job._notify(snapshots.append)
    assert 0 < snapshots[0].fraction < 1e-9  # 100 ids of a range of 2**64
    checkpoint.close()


def test_a_run_stopped_before_its_first_flush_takes_changed_settings(state_dir: Path) -> None:
    """The API failed on every first page, so the run committed no flush: a second run with other settings
    (here other bots) has nothing of it to mix in, and starts anew instead of being refused with
    "run again with --fresh" (changes-between-runs audit). One that did count is still refused (above)."""
    source = Switchable(DATA, broken_from=DATA.first_id)
    known = {"first_id": DATA.first_id, "last_id": DATA.end_id}
    with MockServer(source) as server:
        failed = run(job_settings(server.url, api=known, crawl={"retries": 0, "slices": 10}), state_dir)
        assert failed.exit_code == 3 and failed.report["records"]["fetched"] == 0
        source.broken = False
        other = run(job_settings(server.url, api=known, crawl={"slices": 7}, bots={"ips": []}), state_dir)
    assert other.exit_code == 0, other.message
    assert other.report["run"]["resumed"] is False and other.report["run"]["slices"] == 7
    assert statistics(other.report) == ground_truth(DATA, as_of=AS_OF, bot_ips=())


def test_a_resume_with_the_same_bot_ips_spelled_otherwise_goes_on(state_dir: Path) -> None:
    """``bots.ips`` compares addresses, so ``::ffff:203.0.113.7`` is ``203.0.113.7``: written the other way
    on the resume it marks the same records as bots, and the resume was refused as a changed setting. Another
    address still refuses it."""
    from mocks.dataset import BOT_IPS

    source = Switchable(DATA, broken_from=int(DATA.ids[20_000]))
    known = {"first_id": DATA.first_id, "last_id": DATA.end_id}
    respelled = [f"::ffff:{ip}" for ip in BOT_IPS]
    with MockServer(source) as server:
        failed = run(job_settings(server.url, api=known, crawl={"retries": 0}), state_dir)
        assert failed.exit_code == 3 and failed.report["records"]["counted"] > 0
        source.broken = False
        with pytest.raises(CheckpointMismatch, match=r"bots\.ips"):
            run(job_settings(server.url, api=known, bots={"ips": [*respelled[1:], "192.0.2.1"]}), state_dir)
        resumed = run(job_settings(server.url, api=known, bots={"ips": respelled}), state_dir)
    assert resumed.exit_code == 0, resumed.message
    assert resumed.report["run"]["resumed"] is True
    assert statistics(resumed.report) == ground_truth(DATA, as_of=AS_OF)


def test_a_resume_with_other_slices_or_mock_pace_keeps_the_checkpoint_s_slices(state_dir: Path) -> None:
    """Settings that change no count do not refuse a resume (changes-between-runs audit): the slicing (the
    resume crawls the checkpoint's own slices) and the embedded API's latency. A checkpoint written before
    they left the settings compared (its fingerprint holds them) resumes too."""
    source = Switchable(DATA, broken_from=int(DATA.ids[20_000]))
    known = {"first_id": DATA.first_id, "last_id": DATA.end_id}
    with MockServer(source) as server:
        failed = run(job_settings(server.url, api=known, crawl={"retries": 0, "slices": 10}), state_dir)
        assert failed.exit_code == 3 and failed.report["records"]["counted"] > 0
        source.broken = False
        resumed = run(job_settings(server.url, api=known, crawl={"slices": 7}), state_dir)
    assert resumed.exit_code == 0, resumed.message
    assert resumed.report["run"]["resumed"] is True and resumed.report["run"]["slices"] == 10
    assert statistics(resumed.report) == ground_truth(DATA, as_of=AS_OF)

    from lifestats.config import fingerprint, load_settings

    def embedded(latency: float, **mock: Any) -> dict[str, Any]:
        return fingerprint(
            load_settings(
                None, "test", environ={}, overrides={"api": {"url": "embedded"}, "mock": {"latency": latency, **mock}}
            )
        )

    checkpoint = Checkpoint(state_dir / "embedded")
    assert (
        checkpoint.claim({**embedded(0.0), "slices": 100, "mock": {**embedded(0.0)["mock"], "latency": 0.0}}) is False
    )
    assert checkpoint.claim(embedded(0.05)) is True  # stored with slices and latency, as earlier versions did
    with pytest.raises(CheckpointMismatch, match=r"mock\.records: 20000 in the checkpoint, 500 now"):
        checkpoint.claim(embedded(0.05, records=500))


def test_a_second_ctrl_c_stops_waiting_for_the_workers_wind_down(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After Ctrl-C the run waits for its workers to flush (a worker still waiting on the API is stopped
    when the wait ends); a second Ctrl-C now ends that wait at once, where it was ignored until the wait ran
    out. The wait is made far longer than the test may take, so only the second Ctrl-C can end it; the
    resume is still exact."""
    from urllib.parse import parse_qs, urlsplit

    from lifestats import run as run_module

    from .json_api import JsonHandler, serving

    monkeypatch.setattr(run_module, "WIND_DOWN_SECONDS", 3600.0)
    hanging, released, winding = threading.Event(), threading.Event(), threading.Event()
    ids = range(1000)

    class Api(JsonHandler):  # offset_id pages of 10; the second half of the ids hangs until released
        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            offset, limit = int(query["offset"][0]), int(query["limit"][0])
            if offset >= 500 and not released.is_set():
                hanging.set()
                released.wait()
            page = [i for i in ids if i >= offset][:limit]
            following = page[-1] + 1 if page and page[-1] + 1 < len(ids) else None
            records = [{"id": i, "item": i % 7} for i in page]
            self.send_json(200, {"response": records, "meta": {"next_offset": following}})

    class Executor(LocalExecutor):
        def wind_down(self, *args: Any, **kwargs: Any) -> list[Any]:
            winding.set()
            return super().wind_down(*args, **kwargs)

    def interrupter() -> None:
        for event in (hanging, winding):
            if not event.wait(timeout=120):
                released.set()  # the run did not get that far: let it end, and the assertions below say so
                return
            os.kill(os.getpid(), signal.SIGINT)

    # Ctrl-C as the program meets it (another test in this process may have left another handler).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    with serving(Api) as base:
        overrides = {
            "api": {"url": f"{base}/events", "page_size": 10, "first_id": 0, "last_id": 1000, "timeout": 3600},
            "fields": {"id": "id", "item": "item"},
            "crawl": {"slices": 2, "workers": 2},
        }
        from lifestats.config import load_settings

        settings = load_settings(None, "test", environ={}, overrides=overrides)
        thread = threading.Thread(target=interrupter)
        thread.start()
        try:
            stopped = run(settings, state_dir, executor_factory=lambda n, setup: Executor(n, setup))
        finally:
            released.set()
            thread.join()
            signal.signal(signal.SIGINT, previous)
        assert winding.is_set() and stopped.exit_code == 130, stopped.message
        assert stopped.report["partial"] is True
        resumed = run(settings, state_dir)
    assert resumed.exit_code == 0, resumed.message
    counted = resumed.report["windows"]["all"]
    assert resumed.report["records"]["counted"] == 1000 and counted["visits"] == 1000
    assert sorted((row["id"], row["visits"]) for row in counted["top_items"]) == [
        (item, sum(1 for i in ids if i % 7 == item)) for item in range(7)
    ]


def test_a_checkpoint_whose_bot_network_matched_nothing_then_is_not_resumed_under_its_new_meaning(
    state_dir: Path,
) -> None:
    """An IPv4 network written as IPv6 (``::ffff:10.0.0.0/104``) matched no address before this version and
    matches 10.0.0.0/8 now: a checkpoint that stored it as written counted with the other rule, so resuming
    it would mix two counts (75 counted and 25 bots where the truth is 50 and 50). It is refused; one this
    version wrote resumes."""
    from lifestats.config import fingerprint

    def settings(ips: list[str]) -> Any:
        return job_settings("http://127.0.0.1:9/events", bots={"ips": ips})

    mapped = ["::ffff:10.0.0.0/104"]
    earlier = {**fingerprint(settings(mapped)), "bots": {**fingerprint(settings(mapped))["bots"], "ips": mapped}}
    assert Checkpoint(state_dir / "earlier").claim(earlier) is False
    with pytest.raises(CheckpointMismatch, match=r"bots\.ips"):
        Checkpoint(state_dir / "earlier").claim(fingerprint(settings(mapped)))
    assert Checkpoint(state_dir / "now").claim(fingerprint(settings(mapped))) is False
    assert Checkpoint(state_dir / "now").claim(fingerprint(settings(["10.0.0.0/8"]))) is True


def test_a_checkpoint_whose_ipv6_network_matched_no_ipv4_address_then_is_not_resumed_under_its_new_meaning(
    state_dir: Path,
) -> None:
    """``::/0`` matched no IPv4 address before this version and matches every one now: a checkpoint an
    earlier version wrote with it is refused (it counted IPv4 records that are bots now); one this version
    wrote resumes."""
    from lifestats.config import fingerprint

    def settings(ips: list[str]) -> Any:
        return job_settings("http://127.0.0.1:9/events", bots={"ips": ips})

    everything = ["::/0"]
    earlier = {
        **fingerprint(settings(everything)),
        "bots": {**fingerprint(settings(everything))["bots"], "ips": everything},
    }
    assert Checkpoint(state_dir / "earlier").claim(earlier) is False
    with pytest.raises(CheckpointMismatch, match=r"bots\.ips"):
        Checkpoint(state_dir / "earlier").claim(fingerprint(settings(everything)))
    assert Checkpoint(state_dir / "now").claim(fingerprint(settings(everything))) is False
    assert Checkpoint(state_dir / "now").claim(fingerprint(settings(["0:0::0/0"]))) is True  # another spelling


def _ids_of(rows: list[dict[str, Any]]) -> dict[Any, int]:
    return {row["id"]: row["visits"] for row in rows}


@pytest.mark.parametrize("mode", ["exact", "approx"])
def test_interrupts_just_after_commits_with_folds_in_the_wind_down_lose_nothing(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """A Ctrl-C held during a commit is raised just after it, before the flush is merged into the running
    total; a wind-down flush that then folded the total wrote it without that flush and deleted its blob.
    Interrupted after every 7th commit until done: approx counted 19,836 of 20,000 visits (item visits
    outside their bounds), exact 19,636 records fetched, both with exit 0 (audit P)."""
    from collections import Counter
    from datetime import timedelta

    records = [
        {
            "id": 3 * i + 1,
            "item": i % 7 if i % 3 else str(i % 7),
            "visitor": i % 101,
            "timestamp": (AS_OF - timedelta(seconds=(i * 7919) % (20 * 86_400))).isoformat(),
        }
        for i in range(20_000)
    ]
    truth = Counter(record["item"] for record in records)
    with MockServer(ListSource(records)) as server:
        settings = job_settings(
            server.url,
            fields={"category": None, "ip": None, "user_agent": None},
            crawl={"slices": 10, "workers": 2, "flush_every": 1},
            stats={"mode": mode, "top_items": 30},
            bots={"ips": [], "user_agents": []},
        )
        runs, outcome = 0, None
        while runs < 80 and (outcome is None or outcome.exit_code == 130):
            runs += 1
            _patch_checkpoint_connection(monkeypatch, type("Interrupt", (InterruptAfterCommit,), {"after": 7}))
            outcome = run(settings, state_dir)
            monkeypatch.undo()
    assert outcome is not None
    assert outcome.exit_code == 0 and runs > 2, (runs, outcome.message)
    report = outcome.report
    assert report["records"]["fetched"] == report["records"]["counted"] == len(records)
    assert report["windows"]["all"]["visits"] == len(records)
    assert _ids_of(report["windows"]["all"]["top_items"]) == dict(truth)
