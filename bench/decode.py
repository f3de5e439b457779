"""CPU per record of reading pages and counting them: bodies parsed whole into dicts against decoded records.

    PYTHONPATH=. python bench/decode.py [--records 200000] [--page-size 1000] [--rounds 5] [--mode exact]

The mock API's pages (its own process, 127.0.0.1) are fetched once and kept as bytes; each round then
reads and counts all of them in this process twice, interleaved: once parsed by ``orjson`` into dicts
(how a body of another shape is read), once decoded into records of the configured fields
(``lifestats.decode``, how a worker reads the mock's pages). Per round and way: reading alone, reading
and the 7 fields' columns, and reading and counting (``PageCounter.count_page`` and a flush's encoding
every 10 pages). The summary is the median of the rounds; rounds run back to back because this
machine's speed drifts within minutes.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench.cpu import settings_for
from lifestats.columnar import column
from lifestats.count import PageCounter, SliceCursor
from lifestats.decode import PageDecoder
from lifestats.stats import Partial
from mocks.server import serve_in_subprocess

AS_OF = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


def fetch_bodies(url: str, page_size: int) -> list[bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
    bodies: list[bytes] = []
    offset: int | None = 0
    while offset is not None:
        connection.request("GET", f"{parts.path}?offset={offset}&limit={page_size}")
        body = connection.getresponse().read()
        bodies.append(body)
        offset = orjson.loads(body)["meta"]["next_offset"]
    connection.close()
    return bodies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mode", choices=["exact", "approx"], default="exact")
    args = parser.parse_args()
    url, stop = serve_in_subprocess(seed=1, records=args.records, max_page_size=max(args.page_size, 1000))
    try:
        bodies = fetch_bodies(url, args.page_size)
    finally:
        stop()
    settings = settings_for(url, args.page_size, {"workers": 1, "slices": 1, "flush_every": 10}, args.mode)
    keys = settings.fields.record_keys()
    decoder = PageDecoder.for_paths(settings.api.records_path, ["meta.next_offset"], keys)
    assert decoder is not None
    records = sum(len(orjson.loads(body)["response"]) for body in bodies)
    ways: dict[str, Callable[[bytes], Any]] = {
        "orjson, dicts": orjson.loads,
        "decoded records": decoder.decode,
    }

    def read(parse: Callable[[bytes], Any]) -> None:
        for body in bodies:
            parse(body)

    def columns(parse: Callable[[bytes], Any]) -> None:
        for body in bodies:
            page = parse(body)["response"]
            for key in keys:
                column(page, key)

    def count(parse: Callable[[bytes], Any]) -> None:
        counter, cursor, partial = PageCounter(settings, AS_OF), SliceCursor(0, None, -1), Partial()
        for number, body in enumerate(bodies, 1):
            counter.count_page(partial, parse(body)["response"], 0, cursor)
            if number % 10 == 0:
                partial.to_bytes()
                partial = Partial()

    phases = {"read": read, "read + 7 columns": columns, "read + count": count}
    results: dict[tuple[str, str], list[float]] = {(p, w): [] for p in phases for w in ways}
    for _ in range(args.rounds):
        for phase, run in phases.items():
            for way, parse in ways.items():
                cpu0 = time.process_time()
                run(parse)
                results[phase, way].append((time.process_time() - cpu0) / records * 1e6)
    print(f"{records:,} records in {len(bodies):,} pages of {args.page_size:,}, {args.mode} mode, {args.rounds} rounds")
    for phase in phases:
        cells = [f"{way} {statistics.median(results[phase, way]):.2f}" for way in ways]
        print(f"  {phase:18s} µs per record (median): " + ", ".join(cells))


if __name__ == "__main__":
    main()
