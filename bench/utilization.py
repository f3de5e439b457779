"""Rate utilization on uneven data, side by side: requests sent / (limit x duration).

    python bench/utilization.py [--rate 100] [--records 200000] [--latency 0.02] [--workers 4]
                                [--design lifestats original]

Serves a synthetic dataset whose id space is mostly empty (``--empty-share``, default 0.9) from the mock
API (its own process, on 127.0.0.1) with ``--latency`` seconds per answer and the limit enforced
server-side too, and crawls it with each design:

- ``lifestats``: the job as shipped (one shared limit, slices handed out dynamically, stragglers split);
- ``original``: a port of the original design, the same slices dealt out in fixed contiguous blocks, one
  per worker process, each process with its own limiter at ``rate / workers``.

For each it prints, from the server's request log: utilization over the crawl (first to last arrival)
and over the wall time, the peak requests in any one-second window, the 429 answers, and requests per
second over the crawl. The crawl's id range is configured, so neither design spends requests discovering it.
"""

from __future__ import annotations

import argparse
import bisect
import math
import multiprocessing as mp
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pyrate_limiter import Duration, InMemoryBucket, Limiter, Rate

from lifestats.config import Settings, load_settings
from lifestats.count import PageCounter
from lifestats.fetch import ApiClient
from lifestats.plan import Bounds, Slice, plan_slices
from lifestats.protocol import Task
from lifestats.run import run_job
from lifestats.task import crawl_slice
from mocks.dataset import BOT_IPS, BOT_UA_PATTERNS, FIELDS, DatasetSpec, generate
from mocks.server import read_log, serve_in_subprocess

AS_OF = datetime(2026, 3, 15, tzinfo=UTC)


def run_lifestats(settings: Settings, state_dir: Path) -> None:
    outcome = run_job(settings, env="bench", state_dir=state_dir, as_of=AS_OF)
    assert outcome.exit_code == 0, outcome.message


class ProcessShare:
    """The original design's limiter: pyrate-limiter in one process, at that process's share of the limit."""

    def __init__(self, per_second: float) -> None:
        self.limiter = Limiter(InMemoryBucket([Rate(max(1, int(per_second)), Duration.SECOND)]), buffer_ms=1)

    def acquire(self, *, retry: bool = False) -> None:
        self.limiter.try_acquire("api")

    def left(self) -> None:
        return None

    def pause(self, seconds: float) -> None:
        time.sleep(seconds)


def _original_worker(block: list[Slice], settings: Settings) -> None:
    """One process of the original design: its own block of slices at its own share of the limit."""
    limiter = ProcessShare(settings.crawl.rate_limit / settings.crawl.workers)
    counter = PageCounter(settings, AS_OF)
    with ApiClient(settings.api, settings.crawl, limiter) as client:
        for piece in block:
            crawl_slice(Task(piece, 1, piece.begin, piece.begin - 1, 0), client, counter, 10**9, lambda _: None)


def run_original(settings: Settings, state_dir: Path) -> None:
    api = settings.api
    assert api.first_id is not None and api.last_id is not None
    slices = plan_slices(Bounds(api.first_id, api.last_id, api.last_id), settings.crawl.slices)
    workers = settings.crawl.workers
    size = math.ceil(len(slices) / workers)
    blocks = [slices[i : i + size] for i in range(0, len(slices), size)]
    with mp.get_context("forkserver").Pool(workers) as pool:
        pool.starmap(_original_worker, [(block, settings) for block in blocks])


DESIGNS: dict[str, Callable[[Settings, Path], None]] = {"lifestats": run_lifestats, "original": run_original}


def measure(design: str, args: argparse.Namespace) -> None:
    data = generate(DatasetSpec(seed=args.seed, records=args.records, empty_share=args.empty_share, stretches=8))
    with tempfile.TemporaryDirectory() as tmp:
        log_file = Path(tmp) / "requests.jsonl"
        # The API runs in its own process, as a real one would, so it does not share the job's CPU time slices.
        url, stop = serve_in_subprocess(
            seed=args.seed,
            records=args.records,
            latency=args.latency,
            rate_limit=args.rate,
            log_file=log_file,
            empty_share=args.empty_share,
            stretches=8,
        )
        try:
            settings = load_settings(
                None,
                "bench",
                environ={},
                overrides={
                    "api": {"url": url, "page_size": args.page_size, "first_id": data.first_id, "last_id": data.end_id},
                    "fields": dict(FIELDS),
                    "crawl": {
                        "slices": args.slices,
                        "workers": args.workers,
                        "rate_limit": args.rate,
                        "flush_every": args.flush_every,
                    },
                    "bots": {"ips": list(BOT_IPS), "user_agents": list(BOT_UA_PATTERNS)},
                },
            )
            t0 = time.monotonic()
            DESIGNS[design](settings, Path(tmp))
            wall = time.monotonic() - t0
        finally:
            stop()
        log = read_log(log_file)
    stamps = sorted(entry.t for entry in log)
    span = stamps[-1] - stamps[0]
    peak = max(bisect.bisect_left(stamps, t + 1.0) - i for i, t in enumerate(stamps))
    refused = sum(1 for entry in log if entry.status == 429)
    print(
        f"[{design}] records {len(data):,}  requests {len(log):,}  slices {args.slices}  workers {args.workers}  "
        f"latency {args.latency * 1000:.0f} ms  limit {args.rate:g}/s"
    )
    print(
        f"  utilization over the crawl     {len(log) / (args.rate * span):.1%}  ({len(log)} requests in {span:.2f} s)"
    )
    print(f"  utilization over the wall time {len(log) / (args.rate * wall):.1%}  ({wall:.2f} s)")
    print(f"  peak requests in one second    {peak}  (limit {args.rate:g}); 429 answers: {refused}")
    per_second = [0] * (int(span) + 1)
    for t in stamps:
        per_second[int(t - stamps[0])] += 1
    print("  requests per second:", " ".join(str(n) for n in per_second))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--empty-share", type=float, default=0.9)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--flush-every", type=int, default=10)
    parser.add_argument("--design", nargs="+", choices=sorted(DESIGNS), default=["lifestats", "original"])
    args = parser.parse_args()
    for design in args.design:
        measure(design, args)


if __name__ == "__main__":
    main()
