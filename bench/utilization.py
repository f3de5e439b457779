"""Rate utilization on uneven data: requests sent / (limit x duration).

    python bench/utilization.py [--rate 100] [--records 200000] [--latency 0.02] [--workers 4]

Serves a synthetic dataset whose id space is mostly empty (``--empty-share``, default 0.9) from the mock
API (its own process, on 127.0.0.1) with ``--latency`` seconds per answer and the limit enforced
server-side too, runs the whole job (100 slices by default) and prints, from the server's request log:

- utilization over the crawl: requests / (limit x (last arrival - first arrival));
- utilization over the job's wall time, startup and report included;
- the peak number of requests in any one-second window, and how many answers were 429.
"""

from __future__ import annotations

import argparse
import bisect
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from lifestats.config import load_settings
from lifestats.run import run_job
from mocks.dataset import BOT_IPS, BOT_UA_PATTERNS, FIELDS
from mocks.server import read_log, serve_in_subprocess


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
    args = parser.parse_args()

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
                    "api": {"url": url, "page_size": args.page_size},
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
            outcome = run_job(settings, env="bench", state_dir=Path(tmp), as_of=datetime(2026, 3, 15, tzinfo=UTC))
            wall = time.monotonic() - t0
        finally:
            stop()
        log = read_log(log_file)
    stamps = sorted(entry.t for entry in log)
    span = stamps[-1] - stamps[0]
    peak = max(bisect.bisect_left(stamps, t + 1.0) - i for i, t in enumerate(stamps))
    refused = sum(1 for entry in log if entry.status == 429)
    run = outcome.report["run"]
    print(
        f"records {outcome.report['records']['fetched']:,}  requests {len(log):,}  "
        f"slices {run['slices']} (+{run['slices_split']} split)  workers {args.workers}  "
        f"latency {args.latency * 1000:.0f} ms  limit {args.rate:g}/s"
    )
    print(f"utilization over the crawl     {len(log) / (args.rate * span):.1%}  ({len(log)} requests in {span:.2f} s)")
    print(f"utilization over the wall time {len(log) / (args.rate * wall):.1%}  ({wall:.2f} s)")
    print(f"peak requests in one second    {peak}  (limit {args.rate:g}); 429 answers: {refused}")
    per_second = [0] * (int(span) + 1)
    for t in stamps:
        per_second[int(t - stamps[0])] += 1
    print("requests per second over the crawl:", " ".join(str(n) for n in per_second))


if __name__ == "__main__":
    main()
