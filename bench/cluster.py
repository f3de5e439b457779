"""Lifestats on a Dask cluster on this machine: the cluster-wide rate limit and scaling.

    python bench/cluster.py [--only limiter|scaling|kill|fast] [--seconds 4]

Starts a real ``dask scheduler`` and ``dask worker`` processes (one thread each) on loopback and the mock
API in its own process with its own rate limit and request log, then prints:

- limiter: requests sent back to back by 4 worker processes through each shared-state design (the
  slot book in the scheduler, in a Dask actor on one worker, in Redis; "none" is no limit at all, what
  the machine can send), at 100 and 1,000 requests per second.
- scaling: the whole job with 1, 2 and 4 worker processes against heavy pages (1,000 records) from an
  API that takes 100 ms per answer, under a rate limit of 20 requests per second: throughput rises with
  workers until the limit binds.
- kill: 3 workers at 100 requests per second, one SIGKILLed mid-run: is the report exact, and the peak.
- fast: the whole job at 1,000 requests per second (light pages).

Rates are read from the server's request log: the "typical second" is the median count of the whole
seconds of a run (its start and end do not weigh), "peak" the most requests in any one-second window.

All of it shares the machine's cores with the scheduler, the API and the coordinator, so CPU-bound
figures (scaling) flatten at the cores' worth of workers, not at the cluster's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from statistics import median as statistics_median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lifestats.cluster import DaskExecutor, LifestatsScheduler, cluster_executor_factory, new_run_name
from lifestats.cluster_limiter import ActorBook, ActorSlots, Lease, LeasedRateLimiter, RedisSlots, SchedulerSlots
from lifestats.executor import WorkerSetup
from lifestats.run import Snapshot, run_job
from mocks.dataset import DatasetSpec, generate, ground_truth
from mocks.server import read_log, serve_in_subprocess
from tests.conftest import AS_OF, job_settings, peak_per_second, statistics
from tests.dask_cluster import DaskCluster, redis_server


class Unlimited:
    """No limit at all (slots now and never stale): what the machine can send, for comparison."""

    def lease(self, count: int, spacing: float) -> Lease:
        return Lease([0.0] * 32, 0.0)

    def pause(self, seconds: float) -> None:
        pass


def send_for(limiter: LeasedRateLimiter, url: str, seconds: float) -> tuple[int, int, int]:
    """On a worker: request the smallest page back to back for ``seconds``, each through the limiter."""
    import httpx

    sent = 0
    with httpx.Client() as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            limiter.acquire()
            http.get(url, params={"offset": 0, "limit": 1})
            sent += 1
    return sent, limiter.leases, limiter.wasted


def served(log_file: Path) -> tuple[int, float, int, int]:
    """From the server's log: requests, the typical second (the median of whole seconds' counts, so the
    start and the end of a run do not count), the busiest one-second window, and 429 answers."""
    log = read_log(log_file)
    stamps = sorted(entry.t for entry in log)
    refused = sum(1 for entry in log if entry.status == 429)
    if len(stamps) < 2:
        return len(log), float(len(log)), len(log), refused
    seconds = [0] * (int(stamps[-1] - stamps[0]) + 1)
    for t in stamps:
        seconds[int(t - stamps[0])] += 1
    whole = seconds[:-1] or seconds  # the last second is cut short
    return len(log), float(statistics_median(whole)), peak_per_second(stamps), refused


def bench_limiter(work: Path, args: argparse.Namespace) -> None:
    print(f"\n== the cluster-wide limiter: 4 worker processes sending back to back, median of {args.repeat} ==")
    header = f"{'design':<10} {'limit':>6} {'requests':>9} {'typical s':>9} {'share':>7} {'peak/s':>7} {'429':>4}"
    print(header + f" {'leases':>7} {'wasted':>7}   (peak: the highest of the runs)")
    with DaskCluster(work / "limiter-cluster", 4) as cluster, redis_server() as redis_url:
        client = cluster.client()
        client.register_plugin(LifestatsScheduler())
        for rate in args.rates:
            runs: dict[str, list[tuple[int, float, int, int, int, int]]] = {}
            for _ in range(args.repeat):  # the designs take turns, so that the machine's load hits each alike
                for design in ("none", "scheduler", "actor", "redis"):
                    runs.setdefault(design, []).append(limiter_run(client, design, rate, redis_url, work, args))
            for design, results in runs.items():
                count, achieved, _, refused, leases, wasted = sorted(results, key=lambda r: r[1])[len(results) // 2]
                peak = max(r[2] for r in results)
                print(
                    f"{design:<10} {rate:>6g} {count:>9} {achieved:>9.1f} {achieved / rate:>7.1%} {peak:>7} "
                    f"{refused:>4} {leases:>7} {wasted:>7}"
                )
        client.close()


def limiter_run(
    client: Any, design: str, rate: float, redis_url: str, work: Path, args: argparse.Namespace
) -> tuple[int, float, int, int, int, int]:
    name = new_run_name()
    if design == "none":
        source: Any = Unlimited()
    elif design == "scheduler":
        source = SchedulerSlots(name, rate)
    elif design == "actor":
        source = ActorSlots(client.submit(ActorBook, rate, actor=True).result())
    else:
        source = RedisSlots(redis_url, name, rate)
    limiter = LeasedRateLimiter(name, rate, source)
    log_file = work / f"limiter-{name}.jsonl"
    url, stop = serve_in_subprocess(records=1000, rate_limit=rate, log_file=log_file)
    try:
        futures = [client.submit(send_for, limiter, url, args.seconds, pure=False) for _ in range(4)]
        results = client.gather(futures)
    finally:
        stop()
    count, achieved, peak, refused = served(log_file)
    return count, achieved, peak, refused, sum(r[1] for r in results), sum(r[2] for r in results)


def job(url: str, cluster: DaskCluster, state: Path, *, records_per_page: int, rate: float, slices: int) -> Any:
    settings = job_settings(url, api={"page_size": records_per_page}, crawl={"slices": slices, "rate_limit": rate})
    return run_job(
        settings, env="bench", state_dir=state, as_of=AS_OF, executor_factory=cluster_executor_factory(cluster.address)
    )


def bench_scaling(work: Path, args: argparse.Namespace) -> None:
    rate = args.scaling_rate
    records = args.scaling_records
    latency = args.scaling_latency
    print(
        f"\n== scaling: {records:,} records in 1,000-record pages, the API answering in {latency * 1000:.0f} ms "
        f"plus its work, limit {rate:g} requests/s =="
    )
    print(f"{'workers':>7} {'seconds':>8} {'pages/s':>8} {'typical s':>10} {'peak/s':>7} {'exact':>6}")
    truth = ground_truth(generate(DatasetSpec(seed=5, records=records)), as_of=AS_OF)
    for workers in (1, 2, 4):
        log_file = work / f"scaling-{workers}.jsonl"
        url, stop = serve_in_subprocess(seed=5, records=records, rate_limit=rate, latency=latency, log_file=log_file)
        try:
            with DaskCluster(work / f"scaling-{workers}", workers) as cluster:
                started = time.monotonic()
                outcome = job(url, cluster, work / f"state-{workers}", records_per_page=1000, rate=rate, slices=16)
                seconds = time.monotonic() - started
        finally:
            stop()
        count, typical, peak, _ = served(log_file)
        exact = statistics(outcome.report) == truth
        print(f"{workers:>7} {seconds:>8.1f} {count / seconds:>8.1f} {typical:>10.0f} {peak:>7} {exact!s:>6}")


def bench_kill(work: Path, args: argparse.Namespace) -> None:
    rate = 100.0
    print(f"\n== 3 workers, one SIGKILLed mid-run, limit {rate:g} requests/s ==")
    data = generate(DatasetSpec(seed=9, records=60_000))
    log_file = work / "kill.jsonl"
    url, stop = serve_in_subprocess(seed=9, records=60_000, rate_limit=rate, log_file=log_file)
    executors: list[DaskExecutor] = []
    killed: list[int] = []
    try:
        with DaskCluster(work / "kill-cluster", 3) as cluster:

            def factory(workers: int, setup: WorkerSetup) -> DaskExecutor:
                executors.append(DaskExecutor.connect(cluster.address, workers, setup))
                return executors[-1]

            def kill_one(snapshot: Snapshot) -> None:
                busy = executors[0].pids() if executors else []
                if not killed and snapshot.pages >= 150 and busy:
                    os.kill(busy[0], signal.SIGKILL)
                    killed.append(busy[0])

            settings = job_settings(url, api={"page_size": 100}, crawl={"slices": 12, "rate_limit": rate})
            started = time.monotonic()
            outcome = run_job(
                settings,
                env="bench",
                state_dir=work / "kill-state",
                as_of=AS_OF,
                executor_factory=factory,
                on_progress=kill_one,
            )
            seconds = time.monotonic() - started
    finally:
        stop()
    count, achieved, peak, refused = served(log_file)
    exact = statistics(outcome.report) == ground_truth(data, as_of=AS_OF)
    run = outcome.report["run"]
    print(
        f"killed {len(killed)} worker(s), workers_lost {run['workers_lost']}, exit {outcome.exit_code}, report exact: "
        f"{exact}; {count} requests in {seconds:.1f} s, typical second {achieved:.0f}, peak {peak} in one second, "
        f"{refused} refused (429)"
    )


def bench_fast(work: Path, args: argparse.Namespace) -> None:
    rate = 1000.0
    print(f"\n== the whole job at {rate:g} requests/s, 4 workers, 10-record pages ==")
    data = generate(DatasetSpec(seed=13, records=40_000))
    log_file = work / "fast.jsonl"
    url, stop = serve_in_subprocess(seed=13, records=40_000, rate_limit=rate, log_file=log_file)
    try:
        with DaskCluster(work / "fast-cluster", 4) as cluster:
            outcome = job(url, cluster, work / "fast-state", records_per_page=10, rate=rate, slices=32)
    finally:
        stop()
    count, achieved, peak, refused = served(log_file)
    exact = statistics(outcome.report) == ground_truth(data, as_of=AS_OF)
    print(
        f"{count} requests, typical second {achieved:.0f} ({achieved / rate:.1%}), peak {peak} in one second, "
        f"{refused} refused (429), report exact: {exact}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["limiter", "scaling", "kill", "fast"], action="append")
    parser.add_argument("--seconds", type=float, default=4.0, help="limiter: seconds of sending per design")
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 1000.0])
    parser.add_argument("--repeat", type=int, default=3, help="limiter: runs of each design (median shown)")
    parser.add_argument("--scaling-rate", type=float, default=20.0)
    parser.add_argument("--scaling-records", type=int, default=150_000)
    parser.add_argument("--scaling-latency", type=float, default=0.1, help="seconds the API takes per answer")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores on this machine (shared with everything else running)")
    work = Path(tempfile.mkdtemp(prefix="lifestats-bench-cluster-"))
    try:
        for name, bench in (
            ("limiter", bench_limiter),
            ("scaling", bench_scaling),
            ("kill", bench_kill),
            ("fast", bench_fast),
        ):
            if args.only is None or name in args.only:
                bench(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
