"""The exact store at scale: coordinator memory, insert cost, disk, report queries and reopening.

One fresh process per size (its peak RSS is its own) plays both sides of exact mode's flushes: it
generates counted records a flush at a time (Zipf items over 100,000 ids, visitors uniform over 10^6,
20 categories, 400 local days in crawl order, 3% without a timestamp), turns them into facts and their
wire bytes as a worker does (:class:`lifestats.facts.FactsStatistics`), then applies each flush to a
DuckDB checkpoint as the coordinator does (decode, fenced insert, one transaction per flush). Then it
answers the report's reads (5 windows, a 400-day series) as SQL, closes, and reopens the checkpoint as
a resume would. Reported: peak RSS of the process, CPU µs per record for the worker side and for the
coordinator's insert, bytes on disk per fact row, query and reopen seconds (wall).

    python bench/store.py                 # 10^6 and 10^7 records
    python bench/store.py --records 1e7 --flush 50000
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

from lifestats.facts import FactsStatistics, decode_facts  # noqa: E402
from lifestats.plan import Slice  # noqa: E402
from lifestats.protocol import Flush  # noqa: E402
from lifestats.statistics import ALL, NO_TIME, Columns, DayRange  # noqa: E402
from lifestats.store import CHECKPOINT_FILE, Checkpoint  # noqa: E402

ITEMS = 100_000
VISITORS = 1_000_000
DAYS = 400
LAST_DAY = 20527
FIRST_DAY = LAST_DAY - DAYS + 1


def flushes(n: int, size: int, seed: int = 1) -> Iterator[Columns]:
    """``n`` records, ``size`` per flush, as integer numpy columns (the hot path's common case)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, ITEMS + 1) ** 1.1
    cumulative = np.cumsum(weights / weights.sum())
    for start in range(0, n, size):
        m = min(size, n - start)
        items = np.searchsorted(cumulative, rng.random(m)).astype(np.int64)
        visitors = rng.integers(0, VISITORS, m)
        categories = rng.integers(0, 20, m)
        days = (FIRST_DAY + np.floor((start + np.arange(m)) / n * DAYS)).astype(np.int64)
        days[rng.random(m) < 0.03] = NO_TIME
        yield Columns(items, categories, visitors, days)


def _disk(state: Path) -> int:
    return sum(p.stat().st_size for p in state.rglob("*") if p.is_file())


def measure(n: int, size: int) -> dict[str, object]:
    worker = coordinator = 0.0
    rows = 0
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        checkpoint = Checkpoint(state)
        checkpoint.claim({"bench": n})
        checkpoint.save_plan([Slice(0, 0, None)], {})
        attempt = checkpoint.begin_attempt(0).attempt
        for seq, columns in enumerate(flushes(n, size), start=1):
            t = time.process_time()
            facts = FactsStatistics()
            facts.add(columns)
            body = facts.to_bytes()
            worker += time.process_time() - t
            t = time.process_time()
            table = decode_facts(body)
            rows += table.num_rows
            flush = Flush(0, attempt, seq, seq, seq, 1, 1, 0, b"{}")
            assert checkpoint.apply(flush, facts=table)
            coordinator += time.process_time() - t
        ingest_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        stats = checkpoint.statistics()
        t = time.perf_counter()
        windows = [ALL, DayRange(LAST_DAY - 1, LAST_DAY - 1), DayRange(LAST_DAY - 7, LAST_DAY - 1)]
        windows += [DayRange(LAST_DAY - 30, LAST_DAY - 1), DayRange(LAST_DAY - 73, LAST_DAY)]
        answers = []
        for days in windows:
            answers.append(
                (
                    stats.visits(days).value,
                    stats.distinct_visitors(days).value,
                    [(r.id, r.visits.value, r.distinct_visitors.value) for r in stats.top_items(days, 10)],
                    stats.top_categories(days, 10)[0].visits.value,
                )
            )
        series = stats.day_points([DayRange(d, d) for d in range(FIRST_DAY, LAST_DAY + 1)])
        queries = time.perf_counter() - t
        checkpoint.close()
        disk = _disk(state)
        t = time.perf_counter()
        reopened = Checkpoint(state)
        list(reopened.partials())
        reopened.statistics().visits(ALL)
        reopen = time.perf_counter() - t
        reopened.close()
        assert answers[0][0] == n and sum(p.visits.value for p in series) + answers[0][0] > 0
    return {
        "records": n,
        "fact_rows": rows,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "ingest_peak_rss_mb": round(ingest_peak / 1024, 1),
        "worker_us_per_record": round(worker / n * 1e6, 3),
        "insert_us_per_record": round(coordinator / n * 1e6, 3),
        "disk_bytes_per_row": round(disk / rows, 2),
        "disk_mb": round(disk / 2**20, 1),
        "queries_s": round(queries, 2),
        "reopen_s": round(reopen, 3),
        "distinct_visitors_all": answers[0][1],
        "file": CHECKPOINT_FILE,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", nargs="*", type=float, default=[1e6, 1e7])
    parser.add_argument("--flush", type=int, default=50_000, help="records per flush")
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(int(args.child), args.flush)))
        return
    for n in args.records:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(int(n)), "--flush", str(args.flush)],
            capture_output=True,
            text=True,
            check=True,
        )
        print(out.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
