"""The rate limit on a loaded machine: the peak second the server saw, with busy processes beside the job.

    python bench/load.py [--rates 50 100] [--runs 3] [--busy 6] [--seconds 25] [--workers 4] [--page-size 100]

For each rate, ``--runs`` times: starts ``--busy`` processes that only spin on the CPU, serves a synthetic
dataset sized for about ``--seconds`` of crawling from the mock API (its own process, on 127.0.0.1, with
``--latency`` seconds per answer and the limit enforced server-side too), runs the whole job against it,
and reads the server's request log: the most requests that arrived in any one-second window, the 429
answers, and the utilization over the crawl (requests / (limit x first-to-last arrival)). Then the same
once with no busy processes, at the highest rate, for the unloaded utilization. Smaller pages cost less
CPU per request, so that a crowded machine still lets the job reach the limit. The machine's other load
shows in the figures: rerun when they look polluted.
"""

from __future__ import annotations

import argparse
import bisect
import multiprocessing as mp
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lifestats.config import load_settings
from lifestats.run import run_job
from mocks.dataset import BOT_IPS, BOT_UA_PATTERNS, FIELDS, DatasetSpec, generate
from mocks.server import read_log, serve_in_subprocess

AS_OF = datetime(2026, 3, 15, tzinfo=UTC)
EMPTY_SHARE = 0.9
STRETCHES = 8
FULL_PAGES = 0.98  # measured: 600,000 records of this shape take about 6,100 requests of 100


@dataclass
class Result:
    rate: float
    run: str
    requests: int
    peak: int
    refused: int
    utilization: float
    exit_code: int


def _spin(ready: Any) -> None:
    ready.release()
    while True:
        pass


def start_busy(count: int) -> list[mp.process.BaseProcess]:
    """``count`` processes that keep a CPU busy until killed, running when this returns."""
    ctx = mp.get_context("spawn")
    ready = ctx.Semaphore(0)
    spinners = [ctx.Process(target=_spin, args=(ready,), daemon=True, name=f"busy-{i}") for i in range(count)]
    for spinner in spinners:
        spinner.start()
    for _ in spinners:
        ready.acquire()
    return spinners


def stop_busy(spinners: list[mp.process.BaseProcess]) -> None:
    for spinner in spinners:
        spinner.kill()
    for spinner in spinners:
        spinner.join()


def peak_per_second(stamps: list[float]) -> int:
    """The most arrivals in any one-second window [t, t + 1)."""
    return max((bisect.bisect_left(stamps, t + 1.0) - i for i, t in enumerate(stamps)), default=0)


def one_run(rate: float, busy: int, label: str, args: argparse.Namespace, seed: int) -> Result:
    records = int(rate * args.seconds * args.page_size * FULL_PAGES)
    spec = DatasetSpec(seed=seed, records=records, empty_share=EMPTY_SHARE, stretches=STRETCHES)
    data = generate(spec)
    with tempfile.TemporaryDirectory() as tmp:
        log_file = Path(tmp) / "requests.jsonl"
        url, stop = serve_in_subprocess(
            seed=seed,
            records=records,
            latency=args.latency,
            rate_limit=rate,
            log_file=log_file,
            empty_share=EMPTY_SHARE,
            stretches=STRETCHES,
        )
        spinners = start_busy(busy)
        try:
            settings = load_settings(
                None,
                "bench",
                environ={},
                overrides={
                    "api": {"url": url, "page_size": args.page_size, "first_id": data.first_id, "last_id": data.end_id},
                    "fields": dict(FIELDS),
                    "crawl": {"slices": args.slices, "workers": args.workers, "rate_limit": rate},
                    "bots": {"ips": list(BOT_IPS), "user_agents": list(BOT_UA_PATTERNS)},
                },
            )
            outcome = run_job(settings, env="bench", state_dir=Path(tmp) / "state", as_of=AS_OF)
        finally:
            stop_busy(spinners)
            stop()
        log = read_log(log_file)
    stamps = sorted(entry.t for entry in log)
    span = max(stamps[-1] - stamps[0], 1e-9)
    fetched = outcome.report["records"]["fetched"]
    code = outcome.exit_code if fetched == len(data) else -1
    return Result(
        rate=rate,
        run=label,
        requests=len(log),
        peak=peak_per_second(stamps),
        refused=sum(1 for entry in log if entry.status == 429),
        utilization=len(log) / (rate * span),
        exit_code=code,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[50.0, 100.0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--busy", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=25.0, help="about this long per run")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--page-size", type=int, default=100, help="smaller pages: less CPU per request")
    parser.add_argument("--no-unloaded", action="store_true", help="skip the run without busy processes")
    args = parser.parse_args()
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
        f"{args.workers} workers, {args.latency * 1000:.0f} ms answers, pages of {args.page_size}, "
        f"about {args.seconds:g} s per run"
    )
    print(f"{'limit/s':>7} {'run':>12} {'requests':>8} {'peak 1 s':>8} {'429s':>5} {'utilization':>11} {'exit':>4}")
    plan = [(rate, args.busy, f"{i + 1} ({args.busy} busy)") for rate in args.rates for i in range(args.runs)]
    if not args.no_unloaded:
        plan.append((max(args.rates), 0, "unloaded"))
    for number, (rate, busy, label) in enumerate(plan):
        started = time.monotonic()
        r = one_run(rate, busy, label, args, seed=number + 1)
        print(
            f"{r.rate:>7g} {r.run:>12} {r.requests:>8} {r.peak:>8} {r.refused:>5} {r.utilization:>11.1%} "
            f"{r.exit_code:>4}   ({time.monotonic() - started:.0f} s, load {os.getloadavg()[0]:.2f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
