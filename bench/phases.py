"""Where a worker's CPU goes: one slice crawled alone, in this process, each phase timed on its own.

    PYTHONPATH=. python bench/phases.py [--records 300000] [--mode exact approx] [--rounds 2]
                                        [--batch-rows 0 32768]

The mock API runs in its own process (127.0.0.1, no latency, no limit). A slice is crawled the way a
worker crawls it (``task.crawl_slice``, flushes every 10 pages of 1,000 records, pages fetched on the
same thread so that every phase runs on it), after a first slice of 20,000 records that warms the
imports and caches. Each phase's CPU is the thread's CPU clock (``time.thread_time``) around a call of
the function named, per record crawled; nested phases are indented under the ones that call them, and
their time is included in their caller's. ``--batch-rows``: how many counted rows a counter holds back
before it adds them to the statistics (0: one add per page; a worker holds up to
``lifestats.count.BATCH_ROWS`` and settles before each flush). The rounds interleave the modes and
batch sizes, because this machine's speed drifts within minutes.
"""

from __future__ import annotations

import argparse
import collections
import functools
import itertools
import time
from typing import Any

from bench.cpu import AS_OF, settings_for
from lifestats import columnar, count, facts, fetch, sketch, stats
from lifestats.count import BATCH_ROWS, PageCounter
from lifestats.limiter import SharedRateLimiter
from lifestats.plan import Slice
from lifestats.task import Task, crawl_slice
from mocks.server import serve_in_subprocess

WARM = 20_000
SPENT: collections.defaultdict[str, float] = collections.defaultdict(float)
# (owner, attribute, label): the label's indent shows which phase calls it.
PHASES: tuple[tuple[Any, str, str], ...] = (
    (fetch.ApiClient, "get_page", "get_page (fetch and decode)"),
    (count.PageCounter, "count_page", "count_page"),
    (columnar.FastCounter, "count", "  fast checks"),
    (columnar, "instants", "    timestamps"),
    (columnar, "column", "    columns"),
    (count, "select_by_id", "  select_by_id"),
    (count.PageCounter, "_add_page", "  _add_page"),
    (count.PageCounter, "settle", "settle (held rows to the statistics)"),
    (facts, "facts_of", "    facts_of"),
    (sketch._Day, "add_keys", "    sketch add_keys"),
    (sketch.ApproxStatistics, "_add_buckets", "    sketch buckets"),
    (stats.Partial, "to_bytes", "to_bytes (the flush's body)"),
)


def _timed(function: Any, label: str) -> Any:
    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            SPENT[label] += time.thread_time() - start

    return timed


def _instrument() -> None:
    for owner, name, label in PHASES:
        setattr(owner, name, _timed(getattr(owner, name), label))


def one_run(url: str, records: int, mode: str, batch_rows: int) -> None:
    settings = settings_for(url, 1000, {"workers": 1, "slices": 1, "rate_limit": 100_000, "flush_every": 10}, mode)
    client = fetch.ApiClient(
        settings.api,
        settings.crawl,
        SharedRateLimiter(100_000),
        id_field=settings.fields.id,
        record_keys=settings.fields.record_keys(),
    )
    counter = PageCounter(settings, AS_OF, batch_rows=batch_rows)
    flushes: list[Any] = []
    crawl_slice(Task(Slice(0, 0, WARM), 1, 0, None, 0), client, counter, 10, flushes.append, prefetch=False)
    SPENT.clear()
    start = time.process_time()
    task = Task(Slice(0, WARM, None), 1, WARM, None, 0)
    crawl_slice(task, client, counter, 10, flushes.append, prefetch=False)
    crawled = records - WARM
    total = (time.process_time() - start) / crawled * 1e6
    client.close()
    print(f"{mode}, batch rows {batch_rows}: {total:.2f} µs per record in all")
    order = {label: i for i, (_, _, label) in enumerate(PHASES)}
    for label in sorted(SPENT, key=order.__getitem__):
        print(f"  {label:40s} {SPENT[label] / crawled * 1e6:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=float, default=300_000)
    parser.add_argument("--mode", nargs="+", default=["exact", "approx"], choices=["exact", "approx"])
    parser.add_argument("--batch-rows", nargs="+", type=int, default=[0, BATCH_ROWS])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    records = int(args.records)
    _instrument()
    url, stop = serve_in_subprocess(seed=1, records=records, max_page_size=1000)
    try:
        for _ in range(args.rounds):
            for mode, batch_rows in itertools.product(args.mode, args.batch_rows):
                one_run(url, records, mode, batch_rows)
    finally:
        stop()


if __name__ == "__main__":
    main()
