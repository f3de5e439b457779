"""The job on a real Dask cluster on loopback: a ``dask scheduler`` and ``dask worker`` processes started
here, the API in its own process with its own rate limit and request log."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed")

from lifestats import cluster
from lifestats.cluster import (
    DaskExecutor,
    LifestatsScheduler,
    cluster_executor_factory,
    new_run_name,
    run_task,
)
from lifestats.executor import WorkerSetup
from lifestats.protocol import Task
from lifestats.run import Outcome, Snapshot
from mocks.dataset import DatasetSpec, generate, ground_truth
from mocks.server import MockServer, read_log, serve_in_subprocess

from .conftest import AS_OF, REPO, job_settings, main_command, peak_per_second, run, statistics
from .dask_cluster import DaskCluster, redis_server
from .test_faults import Switchable

SPEC = {"seed": 29, "records": 30_000}
DATA = generate(DatasetSpec(**SPEC))


@pytest.fixture(scope="module")
def dask(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """Three worker processes (one thread each), each under a nanny that restarts it when it dies."""
    with DaskCluster(tmp_path_factory.mktemp("dask"), 3) as started:
        yield started


@pytest.fixture(autouse=True)
def _cluster_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """A failed test shows the end of the cluster's logs (the scheduler's and each worker's), with the
    workers' thread stacks at its end and, for a test still running after 45 s (a job's stall is noticed
    after 60), at that moment too: where a task was stuck while it was."""
    cluster = request.getfixturevalue("dask") if "dask" in request.fixturenames else None
    timer = threading.Timer(45, cluster.dump_stacks) if cluster is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    yield
    if timer is not None:
        timer.cancel()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and cluster is not None:
        print(cluster.logs(tail=400))


def serve(tmp_path: Path, limit: float) -> tuple[str, Any, Path]:
    log_file = tmp_path / "requests.jsonl"
    url, stop = serve_in_subprocess(**SPEC, rate_limit=limit, log_file=log_file)
    return url, stop, log_file


def check_log(log_file: Path, limit: float, report: dict[str, Any], unreported: int = 0) -> int:
    """The server saw no more than ``limit`` requests in any second, refused none, and every request
    the report counts (a killed worker's requests since its last flush never reach the report)."""
    log = read_log(log_file)
    peak = peak_per_second(entry.t for entry in log)
    assert {entry.status for entry in log} == {200}  # the server's own limiter never had to refuse one
    assert peak <= limit
    assert report["run"]["requests"] <= len(log) <= report["run"]["requests"] + unreported
    return peak


def test_report_exact_and_one_rate_limit_for_the_whole_cluster(
    dask: DaskCluster, state_dir: Path, tmp_path: Path
) -> None:
    limit = 100
    url, stop, log_file = serve(tmp_path, limit)
    try:
        settings = job_settings(url, api={"page_size": 100}, crawl={"slices": 12, "workers": 3, "rate_limit": limit})
        outcome = run(settings, state_dir, executor_factory=cluster_executor_factory(dask.address))
    finally:
        stop()
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["partial"] is False
    assert statistics(outcome.report) == ground_truth(DATA, as_of=AS_OF)
    peak = check_log(log_file, limit, outcome.report)
    print(f"\ncluster rate: {outcome.report['run']['requests']} requests, peak {peak} in one second (limit {limit})")


def test_the_rate_limit_kept_in_redis(dask: DaskCluster, state_dir: Path, tmp_path: Path) -> None:
    limit = 100
    url, stop, log_file = serve(tmp_path, limit)
    try:
        with redis_server() as redis_url:
            settings = job_settings(url, api={"page_size": 150}, crawl={"slices": 9, "workers": 3, "rate_limit": limit})
            outcome = run(
                settings, state_dir, executor_factory=cluster_executor_factory(dask.address, limiter=redis_url)
            )
    finally:
        stop()
    assert outcome.exit_code == 0, outcome.message
    assert statistics(outcome.report) == ground_truth(DATA, as_of=AS_OF)
    peak = check_log(log_file, limit, outcome.report)
    print(f"\nredis limiter: {outcome.report['run']['requests']} requests, peak {peak} in one second (limit {limit})")


def signal_one_worker(dask: DaskCluster, state_dir: Path, tmp_path: Path, signum: int) -> tuple[Outcome, int]:
    """Run the job at 100 requests/s on the cluster, sending ``signum`` to the worker process of a running
    task once 60 pages are committed (SIGCONT to it after the run); the outcome and that process's id.
    Checks the API saw no more than the limit in any second."""
    limit = 100
    url, stop, log_file = serve(tmp_path, limit)
    executors: list[DaskExecutor] = []
    signalled: list[int] = []

    def factory(workers: int, setup: WorkerSetup) -> DaskExecutor:
        executors.append(DaskExecutor.connect(dask.address, workers, setup))
        return executors[-1]

    def signal_one(snapshot: Snapshot) -> None:
        busy = executors[0].pids() if executors else []
        if not signalled and snapshot.pages >= 60 and busy:
            os.kill(busy[0], signum)
            signalled.append(busy[0])

    try:
        settings = job_settings(
            url, api={"page_size": 100}, crawl={"slices": 6, "workers": 3, "rate_limit": limit, "flush_every": 4}
        )
        outcome = run(settings, state_dir, executor_factory=factory, on_progress=signal_one)
    finally:
        for pid in signalled:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        stop()
    assert signalled, "no worker was running a task when the job had 60 pages"
    peak = check_log(log_file, limit, outcome.report, unreported=settings.crawl.flush_every)
    print(f"\nworker {signalled[0]}: {outcome.report['run']['requests']} requests, peak {peak} (limit {limit})")
    return outcome, signalled[0]


def test_worker_killed_mid_run_its_slice_runs_again_exactly_once(
    dask: DaskCluster, state_dir: Path, tmp_path: Path
) -> None:
    outcome, _ = signal_one_worker(dask, state_dir, tmp_path, signal.SIGKILL)
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["run"]["workers_lost"] == 1
    assert statistics(outcome.report) == ground_truth(DATA, as_of=AS_OF)
    dask.wait_for_workers(3, timeout=60)  # the nanny restarted it: the next test has three again


def test_a_hung_worker_loses_its_slice_to_the_others(
    dask: DaskCluster, state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker process stopped mid-run (SIGSTOP: as a hung or swapping machine) sends no heartbeat to the
    scheduler, which for minutes still counts it as a worker: its slice goes to the others once it has
    been silent for HUNG_WORKER_SECONDS, and the report is exact (the stopped worker's attempt is fenced)."""
    monkeypatch.setattr(cluster, "HUNG_WORKER_SECONDS", 6.0)
    outcome, _ = signal_one_worker(dask, state_dir, tmp_path, signal.SIGSTOP)
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["run"]["workers_lost"] >= 1
    assert statistics(outcome.report) == ground_truth(DATA, as_of=AS_OF)
    dask.wait_for_workers(3, timeout=60)


COORDINATOR = """
import sys
from pathlib import Path
from lifestats.cluster import cluster_executor_factory
from tests.conftest import job_settings, run
settings = job_settings(sys.argv[1], api={"page_size": 100}, crawl={"slices": 9, "rate_limit": 150, "flush_every": 3})
run(settings, Path(sys.argv[2]), executor_factory=cluster_executor_factory(sys.argv[3]))
"""


def test_coordinator_killed_then_resumed_on_the_cluster_is_exact(dask: DaskCluster, state_dir: Path) -> None:
    with MockServer(DATA) as server:
        command, environ = main_command()
        command = [command[0], "-c", COORDINATOR, server.url, str(state_dir), dask.address]
        coordinator = subprocess.Popen(command, env=environ, cwd=REPO)
        try:
            assert server.request_log.wait_for(150, timeout=120)  # past discovery, with flushes committed
        finally:
            coordinator.send_signal(signal.SIGKILL)
            coordinator.wait(timeout=30)
        settings = job_settings(
            server.url, api={"page_size": 100}, crawl={"slices": 9, "rate_limit": 150, "flush_every": 3}
        )
        outcome = run(settings, state_dir, executor_factory=cluster_executor_factory(dask.address))
        requests = len(server.log)
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["run"]["resumed"] is True
    assert statistics(outcome.report) == ground_truth(DATA, as_of=AS_OF)
    print(f"\ncoordinator killed after 150 requests, then resumed: {requests} requests in all, 300 pages of data")


def test_a_second_run_of_a_task_sends_nothing(dask: DaskCluster) -> None:
    """Dask runs a task again when its worker dies: that run must not crawl the slice a second time
    under the same attempt. It asks the scheduler to claim the task, is refused, and returns at once."""
    from distributed import Queue

    from lifestats.cluster_limiter import LeasedRateLimiter, SchedulerSlots
    from lifestats.plan import Slice

    client = dask.client()
    client.register_plugin(LifestatsScheduler())
    name = new_run_name()
    events = Queue(f"{name}-events", client=client)
    with MockServer(DATA) as server:
        settings = job_settings(server.url, api={"page_size": 1000}, crawl={"flush_every": 1})
        limiter = LeasedRateLimiter(name, 1000, SchedulerSlots(name, 1000))
        setup = WorkerSetup(settings=settings, as_of=AS_OF, limiter=limiter, token=None)
        task = Task(
            Slice(0, DATA.first_id, None), attempt=1, position=DATA.first_id, high_water=DATA.first_id - 1, seq=0
        )
        key = f"{name}-s0-a1"
        first = client.submit(run_task, task, setup, name, key, key=key, pure=False).result()
        pages = len(server.log)
        again = client.submit(run_task, task, setup, name, key, key=key + "-again", pure=False).result()
        assert len(server.log) == pages  # not one request
    assert first["outcome"] == "finished" and first["events"] == 1 + pages  # started, then a flush per page
    assert again == {"token": again["token"], "events": 0, "outcome": "rerun"}
    events.close()
    client.close()


def test_a_straggling_slice_is_split_across_the_cluster(dask: DaskCluster, state_dir: Path) -> None:
    with MockServer(DATA) as server:
        settings = job_settings(server.url, crawl={"slices": 1, "workers": 3, "flush_every": 2, "rate_limit": 400})
        outcome = run(settings, state_dir, executor_factory=cluster_executor_factory(dask.address))
    assert outcome.exit_code == 0, outcome.message
    assert outcome.report["run"]["slices_split"] >= 2
    assert statistics(outcome.report) == ground_truth(DATA, as_of=AS_OF)


def test_an_api_failure_on_a_worker_ends_the_job_with_exit_3(dask: DaskCluster, state_dir: Path) -> None:
    source = Switchable(DATA, broken_from=int(DATA.ids[20_000]))
    with MockServer(source) as server:
        ids = {"first_id": DATA.first_id, "last_id": DATA.end_id}
        settings = job_settings(server.url, api=ids, crawl={"retries": 1})
        outcome = run(settings, state_dir, executor_factory=cluster_executor_factory(dask.address))
    assert outcome.exit_code == 3
    assert "after 2 attempts: HTTP 500" in (outcome.message or "")
    assert outcome.report["partial"] is True


def test_local_cluster(state_dir: Path) -> None:
    with MockServer(DATA) as server:
        settings = job_settings(server.url, crawl={"slices": 5, "workers": 2, "rate_limit": 1000})
        outcome = run(settings, state_dir, executor_factory=cluster_executor_factory("local"))
    assert outcome.exit_code == 0, outcome.message
    assert statistics(outcome.report) == ground_truth(DATA, as_of=AS_OF)


def refused_before_any_request(address: str, state_dir: Path) -> str:
    """The message of a run on the cluster at ``address`` that must stop with exit 2 before any request."""
    with MockServer(DATA) as server:
        outcome = run(job_settings(server.url), state_dir, executor_factory=cluster_executor_factory(address))
        assert len(server.log) == 0  # before any request
    assert outcome.exit_code == 2
    return outcome.message or ""


def test_an_unreachable_scheduler_is_one_clear_error(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "1s")
    message = refused_before_any_request("tcp://127.0.0.1:9", state_dir)
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in message
    # A scheduler that is not up yet answers later: the message says to run the same command again.
    assert "run the same command to resume" in message
    assert "will meet the same problem" not in message


def test_a_tls_scheduler_without_tls_settings_is_one_clear_error(state_dir: Path) -> None:
    assert "DASK_DISTRIBUTED__COMM__TLS__CA_FILE" in refused_before_any_request("tls://127.0.0.1:9", state_dir)


def test_a_worker_that_does_not_answer_at_the_end_does_not_hold_the_job(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Forgetting the run on the workers is the job's last call to them; one that never answers (here: a
    # forget that sleeps for ten minutes, shipped to the workers by value) must not keep the job from
    # returning its report: without a bound this test ran into its timeout.
    import time

    monkeypatch.setattr(cluster, "SHUTDOWN_TIMEOUT", 1.0)
    monkeypatch.setattr(cluster, "forget_run", lambda run: time.sleep(600))
    with MockServer(DATA) as server:
        settings = job_settings(server.url, crawl={"slices": 3, "workers": 1, "rate_limit": 1000})
        outcome = run(settings, state_dir, executor_factory=cluster_executor_factory("local"))
    assert outcome.exit_code == 0, outcome.message
    assert statistics(outcome.report) == ground_truth(DATA, as_of=AS_OF)


def test_ctrl_c_with_a_local_cluster_is_exit_130_and_one_line(tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches every process of the job, the LocalCluster's workers included: they
    leave it to the coordinator, which stops them and writes the partial report, with no traceback or
    log line from Dask."""
    from .test_cli import CONFIG

    with MockServer(DATA, latency=0.005) as server:
        (tmp_path / "config.yml").write_text(CONFIG.format(url=server.url))
        command, environ = main_command(
            "--env", "test", "--cluster", "local", "--no-progress", "--report-json", "r.json", "--rate-limit", "200"
        )
        job = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=environ,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        try:
            assert server.request_log.wait_for(60, timeout=120)  # the workers are crawling
        finally:
            os.killpg(job.pid, signal.SIGINT)
            _, err = job.communicate(timeout=120)
    assert job.returncode == 130, err
    assert err == "interrupted: run the same command to resume\n"
    assert json.loads((tmp_path / "r.json").read_text())["partial"] is True


def test_forgetting_a_run_while_a_task_makes_its_queue_does_not_deadlock_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``forget_run`` runs on a Dask worker's event loop; a task making its run's event queue waits for
    that loop. When the task held the run table's lock meanwhile, the loop waited for the lock and the
    task for the loop: the worker went silent for good (the scheduler stopped hearing from it, and the
    job moved its slices in every later run). Here the "loop" is this test's thread: a fake queue's
    constructor waits for it, as ``distributed.Queue`` waits for the worker's loop."""
    import threading

    import distributed

    making = threading.Event()
    loop_free = threading.Event()

    class QueueWaitingForTheLoop:
        def __init__(self, name: str, client: object) -> None:
            making.set()
            loop_free.wait()

        def close(self) -> None:
            pass

    monkeypatch.setattr(distributed, "Queue", QueueWaitingForTheLoop)
    monkeypatch.setattr(distributed, "get_client", lambda: None)
    run_name = new_run_name()
    task = threading.Thread(target=cluster._worker_run, args=(run_name,), daemon=True)
    task.start()
    assert making.wait(timeout=60)
    forgot = threading.Thread(target=cluster.forget_run, args=(run_name,), daemon=True)
    forgot.start()
    forgot.join(timeout=60)
    deadlocked = forgot.is_alive()
    loop_free.set()
    task.join(timeout=60)
    assert not deadlocked, "forget_run waited for the lock a task held while waiting for the event loop"
    cluster.forget_run(run_name)


def test_a_task_whose_result_is_read_before_its_started_event_still_finishes() -> None:
    """A quick task (a slice without records, as many of the default 100 slices over small data are) can
    finish before the coordinator reads its "started" event: that event was then not counted, the task
    never ended, and the stall watchdog stopped the run after 60 s with exit 3 (audit R)."""
    from lifestats.cluster import DaskExecutor, _Tracked
    from lifestats.plan import Slice
    from lifestats.protocol import Finished

    class Done:
        status = "finished"

        def result(self, timeout: float) -> dict[str, Any]:
            return {"outcome": "finished", "token": "run-1", "events": 1}  # "started", then nothing to flush

        def release(self) -> None:
            pass

    executor = DaskExecutor.__new__(DaskExecutor)
    executor._tracked = {"k": _Tracked(Task(Slice(3, 0, 10), 1, 0, None, 0), Done())}
    executor._workers = {"tcp://127.0.0.1:1": 1}
    out: list[Any] = []
    executor._done("k", out)
    assert out == []  # its event is still to be read
    started = {"key": "k", "kind": "started", "token": "run-1", "worker": "tcp://127.0.0.1:1", "pid": 7}
    executor._message(started, out)
    assert out == [Finished(3, 1)]
    executor._message({**started, "token": "run-2"}, out)  # another run of it: ignored
    assert out == [Finished(3, 1)]
