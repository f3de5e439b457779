"""Where the coordinator's CPU goes: the job run in this process, each checkpoint statement timed.

    PYTHONPATH=. python bench/coordinator.py [--records 1000000] [--mode exact] [--workers 4] [--flush-every 10]

The mock API runs in its own process (127.0.0.1, no latency, no limit); the job crawls it with 16 slices,
1,000-record pages and a flush every ``--flush-every`` pages, its coordinator in this process. Every statement the
checkpoint sends to DuckDB is timed on this process's CPU clock (DuckDB's own threads included) and
grouped by its first words (each flush's facts insert names a table of its own: they are one group).
Prints the coordinator's CPU against the whole job's, then the statements by CPU, with their count
and CPU per call, then how many flushes each read of the workers' events brought (how many flushes one
transaction could commit together, were a read's flushes committed at once).
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.cpu import AS_OF, settings_for
from lifestats import executor, store
from lifestats.protocol import Flushed
from lifestats.run import run_job
from mocks.server import serve_in_subprocess

SPENT: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
READS: collections.Counter[int] = collections.Counter()  # flushes in one read of the events -> reads


def _instrument() -> None:
    execute = store.Interruptible.execute

    def timed(self: store.Interruptible, sql: str, *args: Any) -> Any:
        start = time.process_time()
        try:
            return execute(self, sql, *args)
        finally:
            kind = " ".join(sql.split())
            entry = SPENT[kind[:24] if kind.startswith("INSERT INTO facts") else kind[:60]]
            entry[0] += 1
            entry[1] += time.process_time() - start

    store.Interruptible.execute = timed  # type: ignore[method-assign]
    events = executor.LocalExecutor.events

    def counted(self: executor.LocalExecutor, timeout: float) -> list[Any]:
        out = events(self, timeout)
        READS[sum(isinstance(event, Flushed) for event in out)] += 1
        return out

    executor.LocalExecutor.events = counted  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=float, default=1_000_000)
    parser.add_argument("--mode", default="exact", choices=["exact", "approx"])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--flush-every", type=int, default=10)
    args = parser.parse_args()
    records = int(args.records)
    _instrument()
    url, stop = serve_in_subprocess(seed=1, records=records, max_page_size=1000)
    try:
        crawl = {"workers": args.workers, "slices": 16, "rate_limit": 100_000, "flush_every": args.flush_every}
        settings = settings_for(url, 1000, crawl, args.mode)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.process_time()
            outcome = run_job(settings, env="bench", state_dir=Path(tmp) / "state", as_of=AS_OF)
            coordinator = time.process_time() - start
    finally:
        stop()
    if outcome.exit_code != 0:
        raise SystemExit(f"the job failed (exit {outcome.exit_code}): {outcome.message}")
    fetched = outcome.report["records"]["fetched"]
    whole = float(outcome.report["run"]["cpu_seconds"])
    statements = sum(cpu for _, cpu in SPENT.values())
    print(
        f"{args.mode}, {fetched:,} records: coordinator {coordinator:.2f} s CPU ({coordinator / fetched * 1e6:.2f} µs "
        f"per record) of the job's {whole:.2f} s; checkpoint statements {statements:.2f} s"
    )
    for kind, (calls, cpu) in sorted(SPENT.items(), key=lambda entry: -entry[1][1])[:15]:
        print(f"  {cpu:7.3f} s  {int(calls):5d} calls  {cpu / calls * 1e3:7.3f} ms each  {kind}")
    flushes = sum(n * reads for n, reads in READS.items())
    with_flushes = sum(reads for n, reads in READS.items() if n)
    spread = ", ".join(f"{n}: {reads}" for n, reads in sorted(READS.items()) if n)
    print(f"{flushes} flushes in {with_flushes} reads of the workers' events (flushes per read: reads; {spread})")


if __name__ == "__main__":
    main()
