"""Peak memory and cost of counting into the statistics implementations, at growing record counts.

Each measurement runs in a fresh process (so its peak RSS is its own): it generates synthetic counted
records page by page (1,000 a page; Zipf-distributed items over 100,000 ids, visitors uniform over 10^6,
20 categories, 400 local days in crawl order, 3% without a timestamp), adds them into the statistics,
asks them what a report asks (top 100 items and distinct visitors of all days and of the last 30, one
point per day), then serialises them whole. Reported: peak RSS after counting, after the reads (what a
coordinator holds), and after serialising everything (approx: streamed to a file with ``write_to``);
RSS before the first record (imports and generator); serialised size; what went to the spill file; and
CPU microseconds per record spent in ``add`` alone (CPU time, not wall time: the machine may be shared).

    python bench/sketch_memory.py                      # approx at 10^6 and 10^7, exact at 10^6
    python bench/sketch_memory.py --approx 1e6 1e7 1e8 --exact 1e6 1e7
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lifestats.statistics import ALL, NO_TIME, Columns, DayRange, ExactStatistics  # noqa: E402

PAGE = 1000
CHUNK = 100_000
ITEMS = 100_000
VISITORS = 1_000_000
DAYS = 400
FIRST_DAY = 20527 - DAYS + 1


def pages(n: int, seed: int = 1) -> Iterator[Columns]:
    """``n`` records in pages, generated a chunk at a time so the generator's memory stays flat."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, ITEMS + 1) ** 1.1
    cumulative = np.cumsum(weights / weights.sum())
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        items = np.searchsorted(cumulative, rng.random(size)).tolist()
        visitors = rng.integers(0, VISITORS, size).tolist()
        categories = rng.integers(0, 20, size).tolist()
        position = (start + np.arange(size)) / n  # crawl order follows time
        days = (FIRST_DAY + np.floor(position * DAYS)).astype(np.int64)
        days[rng.random(size) < 0.03] = NO_TIME
        for at in range(0, size, PAGE):
            yield Columns(
                items[at : at + PAGE], categories[at : at + PAGE], visitors[at : at + PAGE], days[at : at + PAGE]
            )


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure(mode: str, n: int) -> dict[str, object]:
    """Runs inside the child process."""
    from lifestats.sketch import ApproxStatistics

    stats = ApproxStatistics() if mode == "approx" else ExactStatistics()
    start_rss = _rss_now()
    adding = 0.0
    for columns in pages(n):
        t = time.process_time()  # CPU time: the machine is shared, wall time would measure the neighbours
        stats.add(columns)
        adding += time.process_time() - t
    counting_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.process_time()
    for days in (ALL, DayRange(FIRST_DAY + DAYS - 30, FIRST_DAY + DAYS - 1)):  # what the report asks
        stats.top_items(days, 100)
        stats.distinct_visitors(days)
    stats.day_points([DayRange(d, d) for d in range(FIRST_DAY, FIRST_DAY + DAYS)])
    reads = time.process_time() - t
    job_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.process_time()
    if mode == "approx":  # streamed to a file, as a checkpoint of large totals would keep them
        with tempfile.TemporaryFile() as sink:
            stats.write_to(sink)
            written = sink.tell()
    else:
        written = len(stats.to_bytes())
    serialise = time.process_time() - t
    return {
        "mode": mode,
        "records": n,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_counting_mb": round(counting_peak / 1024, 1),
        "peak_rss_reads_mb": round(job_peak / 1024, 1),  # counting and the report's reads, before one to_bytes
        "spilled_mb": round(getattr(stats, "spilled_bytes", lambda: 0)() / 2**20, 1),
        "reads_s": round(reads, 2),
        "rss_before_records_mb": round(start_rss / 2**20, 1),
        "serialised_mb": round(written / 2**20, 2),
        "nbytes_mb": round(stats.nbytes() / 2**20, 1),
        "us_per_record_add": round(adding / n * 1e6, 3),  # CPU microseconds
        "serialise_s": round(serialise, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--approx", nargs="*", type=float, default=[1e6, 1e7])
    parser.add_argument("--exact", nargs="*", type=float, default=[1e6])
    parser.add_argument("--child", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], int(float(args.child[1])))))
        return
    print(
        f"{'mode':<7} {'records':>12} {'counting':>10} {'+reads':>10} {'+serialise':>10} {'at start':>10} "
        f"{'serialised':>11} {'spilled':>9} {'CPU µs/record':>14}"
    )
    runs = [("approx", n) for n in args.approx] + [("exact", n) for n in args.exact]
    for mode, n in runs:
        out = subprocess.run(
            [sys.executable, __file__, "--child", mode, str(int(n))], capture_output=True, text=True, check=True
        )
        r = json.loads(out.stdout)
        print(
            f"{r['mode']:<7} {r['records']:>12,} {r['peak_rss_counting_mb']:>7} MB {r['peak_rss_reads_mb']:>7} MB "
            f"{r['peak_rss_mb']:>7} MB {r['rss_before_records_mb']:>7} MB "
            f"{r['serialised_mb']:>8} MB {r['spilled_mb']:>6} MB {r['us_per_record_add']:>14}",
            flush=True,
        )


if __name__ == "__main__":
    main()
