"""CPU per record of counting (``PageCounter.count_page``), exact against approx, on one page stream.

The pages are rendered once from the synthetic dataset (parsed JSON, as a worker holds them) and
counted in each mode in turn, flushing every ``--flush-every`` pages as a worker does (the partial is
serialised, then dropped). Only counting and serialising are timed (process CPU time), not fetching.

Then approx mode's sketches alone, phase by phase, as the job runs them: the pages split into
``--slices`` slices dealt to ``--workers`` workers, each flushing every ``--flush-every`` pages;
``add`` is :meth:`ApproxStatistics.add` (the worker's sketch counting, its columns built beforehand),
``flush`` the workers' ``Partial.to_bytes``, ``merge`` the coordinator reading and merging every
flush in the order the workers' flushes interleave, ``report`` the reads of the JSON report's windows.

    python -m bench.count_modes --records 300000 --page-size 1000
"""

from __future__ import annotations

import argparse
import gc
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from lifestats.config import load_settings
from lifestats.count import PageCounter, SliceCursor
from lifestats.sketch import ApproxStatistics
from lifestats.statistics import Columns, window_days
from lifestats.stats import Partial
from mocks.dataset import DatasetSpec, generate

AS_OF = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
FIELDS = {
    "id": "id",
    "item": "item",
    "category": "category",
    "visitor": "visitor",
    "timestamp": "timestamp",
    "ip": "ip",
    "user_agent": "user_agent",
}


def count(pages: list[tuple[int, list[dict[str, Any]]]], mode: str, flush_every: int, first: int) -> tuple[float, int]:
    """Seconds of CPU to count (and serialise every ``flush_every`` pages) the pages; and the bytes flushed."""
    settings = load_settings(
        None,
        "bench",
        environ={},
        overrides={"api": {"url": "http://127.0.0.1:1"}, "fields": FIELDS, "stats": {"mode": mode}},
    )
    counter = PageCounter(settings, AS_OF)
    cursor = SliceCursor(first, None, first - 1)
    partial, flushed, since = Partial(), 0, 0
    gc.collect()
    start = time.process_time()
    for offset, records in pages:
        counter.count_page(partial, records, offset, cursor)
        since += 1
        if since == flush_every:
            flushed += len(partial.to_bytes())
            partial, since = Partial(), 0
    flushed += len(partial.to_bytes())
    return time.process_time() - start, flushed


def sketch_phases(pages: list[tuple[int, list[dict[str, Any]]]], args: argparse.Namespace, n: int) -> None:
    """Approx mode's sketch work per record, phase by phase (see the module's docstring)."""
    settings = load_settings(
        None,
        "bench",
        environ={},
        overrides={"api": {"url": "http://127.0.0.1:1"}, "fields": FIELDS, "stats": {"mode": "approx"}},
    )
    slices = [pages[i * len(pages) // args.slices : (i + 1) * len(pages) // args.slices] for i in range(args.slices)]
    flushes: list[list[list[Columns]]] = []  # per worker, per flush: the columns its pages handed to add
    captured: list[Columns] = []
    real_add = ApproxStatistics.add
    ApproxStatistics.add = lambda self, columns: captured.append(columns)  # type: ignore[method-assign]
    try:
        for worker in range(args.workers):
            mine: list[list[Columns]] = []
            for part in slices[worker :: args.workers]:
                counter = PageCounter(settings, AS_OF)
                cursor = SliceCursor(part[0][0], None, part[0][0] - 1)
                for i, (offset, records) in enumerate(part):
                    counter.count_page(Partial(), records, offset, cursor)
                    if i % args.flush_every == 0:
                        mine.append([])
                    mine[-1].extend(captured)
                    captured.clear()
            flushes.append(mine)
    finally:
        ApproxStatistics.add = real_add  # type: ignore[method-assign]
    config = ApproxStatistics().config
    for _ in range(2):
        gc.collect()
        add = flush = merge = report = 0.0
        bodies: list[list[bytes]] = []
        for mine in flushes:
            bodies.append([])
            for group in mine:
                t0 = time.process_time()
                stats = ApproxStatistics(config)
                for columns in group:
                    stats.add(columns)
                t1 = time.process_time()
                bodies[-1].append(Partial(stats=stats).to_bytes())
                t2 = time.process_time()
                add, flush = add + t1 - t0, flush + t2 - t1
        arrival = [body for turn in range(max(map(len, bodies))) for mine in bodies for body in mine[turn : turn + 1]]
        t0 = time.process_time()
        total = Partial()
        for body in arrival:
            total.merge(Partial.from_bytes(body), keep_rejects=0)
        t1 = time.process_time()
        assert isinstance(total.stats, ApproxStatistics)
        for days in window_days(AS_OF, ZoneInfo("UTC")).values():
            total.stats.visits(days)
            total.stats.distinct_visitors(days)
            total.stats.top_items(days, 10)
            total.stats.top_categories(days, 10)
        merge, report = t1 - t0, time.process_time() - t1
        size = sum(map(len, arrival))
        print(
            f"approx sketches ({args.workers} workers, {args.slices} slices, {len(arrival)} flushes): "
            f"add {add / n * 1e6:.2f}  flush {flush / n * 1e6:.2f}  merge {merge / n * 1e6:.2f}  "
            f"report {report / n * 1e6:.2f} us/record;  {size / n:.1f} flushed bytes/record"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--flush-every", type=int, default=20)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--visitors", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--skip-modes", action="store_true", help="only the approx sketch phases")
    args = parser.parse_args()
    data = generate(DatasetSpec(seed=1, records=args.records, items=args.items, visitors=args.visitors))
    pages, offset = [], data.first_id
    while offset is not None:
        records, following = data.page(offset, args.page_size)
        pages.append((offset, records))
        offset = following
    n = len(data)
    print(f"{n} records, {len(pages)} pages of {args.page_size}, flush every {args.flush_every} pages")
    for mode in () if args.skip_modes else ("exact", "approx", "exact", "approx"):
        seconds, flushed = count(pages, mode, args.flush_every, data.first_id)
        print(f"{mode:6}  {seconds / n * 1e6:6.2f} us/record  {flushed / n:7.1f} flushed bytes/record")
    sketch_phases(pages, args, n)


if __name__ == "__main__":
    main()
