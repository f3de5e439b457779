"""CPU per record of counting (``PageCounter.count_page``), exact against approx, on one page stream.

The pages are rendered once from the synthetic dataset (parsed JSON, as a worker holds them) and
counted in each mode in turn, flushing every ``--flush-every`` pages as a worker does (the partial is
serialised, then dropped). Only counting and serialising are timed (process CPU time), not fetching.

    python -m bench.count_modes --records 300000 --page-size 1000
"""

from __future__ import annotations

import argparse
import gc
import time
from datetime import UTC, datetime
from typing import Any

from lifestats.config import load_settings
from lifestats.count import PageCounter, SliceCursor
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--flush-every", type=int, default=20)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--visitors", type=int, default=1_000_000)
    args = parser.parse_args()
    data = generate(DatasetSpec(seed=1, records=args.records, items=args.items, visitors=args.visitors))
    pages, offset = [], data.first_id
    while offset is not None:
        records, following = data.page(offset, args.page_size)
        pages.append((offset, records))
        offset = following
    n = len(data)
    print(f"{n} records, {len(pages)} pages of {args.page_size}, flush every {args.flush_every} pages")
    for mode in ("exact", "approx", "exact", "approx"):
        seconds, flushed = count(pages, mode, args.flush_every, data.first_id)
        print(f"{mode:6}  {seconds / n * 1e6:6.2f} us/record  {flushed / n:7.1f} flushed bytes/record")


if __name__ == "__main__":
    main()
