"""CPU per record of the whole job against a bare loop, and rate utilization with discovery included.

    python bench/cpu.py [--records 1000000] [--page-size 1000] [--workers 4] [--slices 16] [--flush-every N]
                        [--mode exact approx] [--repeat 3] [--skip-cpu] [--skip-utilization]

CPU: the mock API runs in its own process (127.0.0.1, no latency, no limit). The bare loop fetches the
same pages over one keep-alive connection (``http.client``) and parses them with ``orjson``, following
``next_offset`` from offset 0, and measures this process's CPU time. The job crawls the same mock with a
high rate limit; its CPU is the report's ``run.cpu_seconds`` (the coordinator, every worker and the
forkserver that starts them).
Both print microseconds per record; the ratio is job / bare loop. A mode the job refuses is skipped.
Each of ``--repeat`` rounds runs the job in each mode, each job between two runs of the bare loop (the
bare loop, the exact job, the bare loop, the approx job, the bare loop), and gives each job's ratio to
the mean of the two bare loops around it; the summary is their median and range. Why: this machine is
a shared host whose speed drifts by a third within minutes (the same pages cost the mock 2.5 s of CPU in
one run and 3.6 s in another), so one pair of runs made a minute apart can be off by that much; a job
and the bare loops around it run seconds apart.

The job runs with the settings a user's run has unless a flag says otherwise: ``crawl.flush_every`` is the
job's default (25 pages) unless ``--flush-every`` gives one (the figures of rounds before 2026-11-25 were
measured with 10).

Utilization: requests sent / (limit x time from the first request to the last), from the server's
request log, at 100 req/s with 20 ms answers and the id range discovered by the job (not configured):
1,000-record pages over ``--records`` records, and 100-record pages over 40,000 records; ``--repeat``
runs of each (every job in a fresh interpreter), with their median and range, and each run's mock CPU
seconds (the same pages every run: how fast the machine was at the time).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson

from lifestats.config import Settings, load_settings
from lifestats.errors import LifestatsError
from lifestats.limiter import SPACING_MARGIN
from lifestats.run import ExecutorFactory, local_executor, run_job
from lifestats.usage import process_cpu_seconds
from mocks.api import LoggedRequest
from mocks.dataset import BOT_IPS, BOT_UA_PATTERNS, FIELDS
from mocks.server import read_log, serve_in_subprocess

AS_OF = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
T = TypeVar("T")


def settings_for(url: str, page_size: int, crawl: dict[str, Any], mode: str) -> Settings:
    return load_settings(
        None,
        "bench",
        environ={},
        overrides={
            "api": {"url": url, "page_size": page_size},
            "fields": dict(FIELDS),
            "crawl": crawl,
            "stats": {"mode": mode},
            "bots": {"ips": list(BOT_IPS), "user_agents": list(BOT_UA_PATTERNS)},
        },
    )


def bare_loop(url: str, page_size: int) -> tuple[int, float, float]:
    """Records, CPU seconds and wall seconds of fetching every page over one keep-alive connection."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
    records = 0
    offset: int | None = 0
    cpu0, wall0 = time.process_time(), time.monotonic()
    while offset is not None:
        connection.request("GET", f"{parts.path}?offset={offset}&limit={page_size}")
        response = connection.getresponse()
        document = orjson.loads(response.read())
        records += len(document["response"])
        offset = document["meta"]["next_offset"]
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    connection.close()
    return records, cpu, wall


def job(settings: Settings, executor_factory: ExecutorFactory = local_executor) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        outcome = run_job(
            settings, env="bench", state_dir=Path(tmp) / "state", as_of=AS_OF, executor_factory=executor_factory
        )
    if outcome.exit_code != 0:
        raise SystemExit(f"the job failed (exit {outcome.exit_code}): {outcome.message}")
    return outcome.report


def measure_cpu(args: argparse.Namespace) -> None:
    """``--repeat`` rounds of the job in each mode, each job between two runs of the bare loop, on one
    mock: each ratio divides the job's CPU per record by the mean of the bare loops just before and just
    after it, so a machine that changes speed (a shared host does) moves both sides of a ratio together;
    the summary gives the median and the range."""
    url, stop = serve_in_subprocess(seed=args.seed, records=args.records, max_page_size=args.page_size)
    ratios: dict[str, list[float]] = {mode: [] for mode in args.mode}
    try:
        print(
            f"records {args.records:,}  page {args.page_size:,}  workers {args.workers}  slices {args.slices}  "
            f"flush every {args.flush_every or 'crawl.flush_every (the default)'}"
        )
        crawl = {"workers": args.workers, "slices": args.slices, "rate_limit": 100_000, **_flushes(args)}
        settings: dict[str, Settings] = {}
        for mode in args.mode:
            try:
                settings[mode] = settings_for(url, args.page_size, crawl, mode)
            except LifestatsError as exc:
                print(f"  job, {mode} mode: skipped: {str(exc).splitlines()[-1].strip()}")
        for round_ in range(1, args.repeat + 1):
            print(f" round {round_}:")
            before = bare_per_record(url, args.page_size)
            for mode, chosen in settings.items():
                per_record = one_shot(job_cpu, chosen, mode)
                after = bare_per_record(url, args.page_size)
                ratios[mode].append(per_record / ((before + after) / 2))
                before = after
    finally:
        stop()
    for mode, values in ratios.items():
        if values:
            print(
                f"ratio, {mode} mode, over {len(values)} rounds: median {statistics.median(values):.2f}x  "
                f"(range {min(values):.2f}x to {max(values):.2f}x)"
            )


def bare_per_record(url: str, page_size: int) -> float:
    """Run the bare loop once, print its figures, and return its CPU microseconds per record."""
    records, cpu, _ = bare_loop(url, page_size)
    bare = cpu / records * 1e6
    print(f"  bare loop (http.client + orjson): {bare:6.2f} us/record  ({cpu:.2f} s CPU)")
    return bare


def one_shot(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a fresh interpreter: a second job in the same process would find its
    modules imported and its forkserver started, and start faster and cheaper than the one-shot job a
    user runs."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh:
        return fresh.submit(function, *args).result()


def job_cpu(settings: Settings, mode: str, executor_factory: ExecutorFactory = local_executor) -> float:
    """Run the job once, print its figures, and return its CPU microseconds per record."""
    t0, own0 = time.monotonic(), time.process_time()
    report = job(settings, executor_factory)
    wall, own = time.monotonic() - t0, time.process_time() - own0
    run = report["run"]
    fetched = report["records"]["fetched"]
    per_record = float(run["cpu_seconds"]) / fetched * 1e6
    coordinator = own / fetched * 1e6  # this process ran the coordinator (the workers are others)
    print(
        f"  job, {mode} mode: {per_record:6.2f} us/record  (coordinator {coordinator:.2f}, "
        f"workers and their forkserver {per_record - coordinator:.2f}; "
        f"{run['cpu_seconds']:.2f} s CPU, {wall:.2f} s wall, "
        f"{run['records_per_second']:,.0f} records/s)  "
        f"peak RSS coordinator {run['peak_rss_bytes'] / 2**20:.0f} MiB, "
        f"worker {run['worker_peak_rss_bytes'] / 2**20:.0f} MiB"
    )
    return per_record


def measure_utilization(args: argparse.Namespace, records: int, page_size: int) -> None:
    """``--repeat`` runs of one scenario, each on a fresh mock and in a fresh interpreter (:func:`one_shot`);
    the summary gives the median and the range.

    Each run also prints the mock's own CPU seconds: it serves the same pages in every run, so the
    figure shows how fast the machine was at the time (on a shared host it varies by a third)."""
    rate, latency = 100.0, 0.02
    print(
        f"utilization, {page_size:,}-record pages over {records:,} records, {rate:g} req/s, "
        f"{latency * 1000:.0f} ms answers, {args.workers} workers, discovery included:"
    )
    shares = []
    for round_ in range(1, args.repeat + 1):
        with tempfile.TemporaryDirectory() as tmp:
            log_file = Path(tmp) / "requests.jsonl"
            url, stop = serve_in_subprocess(
                seed=args.seed,
                records=records,
                latency=latency,
                rate_limit=rate,
                log_file=log_file,
                max_page_size=max(page_size, 1000),
            )
            mock = getattr(stop, "process", None)
            mock_cpu0 = process_cpu_seconds(mock.pid) if mock is not None else None
            try:
                crawl = {"workers": args.workers, "slices": args.slices, "rate_limit": rate, **_flushes(args)}
                report = one_shot(job, settings_for(url, page_size, crawl, "exact"))
                mock_cpu1 = process_cpu_seconds(mock.pid) if mock is not None else None
            finally:
                stop()
            log = read_log(log_file)
        stamps = sorted(entry.t for entry in log)
        span = stamps[-1] - stamps[0]
        refused = sum(1 for entry in log if entry.status == 429)
        share = len(log) / (rate * span)
        shares.append(share)
        mock_cpu = "?" if mock_cpu0 is None or mock_cpu1 is None else f"{mock_cpu1 - mock_cpu0:.2f}"
        print(
            f"  run {round_}: {share:.1%}  ({len(log)} requests in {span:.2f} s; 429 answers {refused}; "
            f"job CPU {report['run'].get('cpu_seconds', '?')} s; mock CPU {mock_cpu} s)"
        )
        start = discovery_figures(log)
        if start is not None:
            probes, until, first = start
            print(
                f"    discovery: {probes} probes in {until * 1000:.0f} ms ({until / max(probes - 1, 1) * 1000:.1f} ms "
                f"apart, {SPACING_MARGIN / rate * 1000:.1f} at the limit); the crawl's first request "
                f"{(first - until) * 1000:.0f} ms after the last probe"
            )
        intervals = connection_intervals(log)
        if intervals:
            ordered = sorted(intervals)
            print(
                f"    a worker's connection sent a request every {statistics.median(ordered) * 1000:.1f} ms "
                f"(median; 90th percentile {ordered[int(len(ordered) * 0.9)] * 1000:.1f} ms); holding the "
                f"limit takes one every {args.workers * SPACING_MARGIN / rate * 1000:.1f} ms from each of "
                f"{args.workers} workers"
            )
    print(
        f"  median {statistics.median(shares):.1%} over {len(shares)} runs "
        f"(range {min(shares):.1%} to {max(shares):.1%})"
    )


def discovery_figures(log: list[LoggedRequest], least: int = 20) -> tuple[int, float, float] | None:
    """How many requests went out before the crawl, when the last of them arrived and when the crawl's
    first did (seconds after the first request). Probes come from the coordinator's own connections,
    which send a few requests each; a worker's connection sends at least ``least``."""
    counts: dict[int | None, int] = {}
    for entry in log:
        counts[entry.client] = counts.get(entry.client, 0) + 1
    ordered = sorted(log, key=lambda entry: entry.t)
    crawl = [entry.t for entry in ordered if entry.client is not None and counts[entry.client] >= least]
    if not crawl or not ordered:
        return None
    t0 = ordered[0].t
    probes = [entry.t for entry in ordered if entry.t < crawl[0]]
    if not probes:
        return None
    return len(probes), probes[-1] - t0, crawl[0] - t0


def connection_intervals(log: list[LoggedRequest], least: int = 20) -> list[float]:
    """The times between consecutive requests on each client connection (the mock logs the port each
    came from) that sent at least ``least`` requests: a worker's crawl (discovery's probes use
    connections of their own, with a few requests each)."""
    by_client: dict[int, list[float]] = {}
    for entry in log:
        if entry.client is not None:
            by_client.setdefault(entry.client, []).append(entry.t)
    gaps: list[float] = []
    for stamps in by_client.values():
        if len(stamps) >= least:
            stamps.sort()
            gaps += [b - a for a, b in itertools.pairwise(stamps)]
    return gaps


def _flushes(args: argparse.Namespace) -> dict[str, int]:
    """``crawl.flush_every`` when ``--flush-every`` sets it; the job's default otherwise."""
    return {} if args.flush_every is None else {"flush_every": args.flush_every}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument(
        "--flush-every", type=int, default=None, help="pages between a worker's flushes (default: crawl.flush_every)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mode", nargs="+", choices=["exact", "approx"], default=["exact", "approx"])
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each measurement (default 3)")
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--skip-utilization", action="store_true")
    args = parser.parse_args()
    if not args.skip_cpu:
        measure_cpu(args)
    if not args.skip_utilization:
        measure_utilization(args, args.records, 1000)
        measure_utilization(args, 40_000, 100)


if __name__ == "__main__":
    main()
