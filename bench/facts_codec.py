"""CPU of writing and reading one flush's exact facts as Arrow IPC, by compression.

    python bench/facts_codec.py [--rows 10000]

Facts of high-cardinality keys (100,000 items, 10^6 visitors, half of them strings, 5 days), summed as a
worker sums them before a flush; each codec writes and reads them 30 times.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from lifestats import facts
from lifestats.statistics import Columns


def per_call_ms(work: Callable[[], object], repeats: int = 30) -> float:
    work()
    cpu0 = time.process_time()
    for _ in range(repeats):
        work()
    return (time.process_time() - cpu0) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    n = args.rows
    visitors = [int(v) if v % 2 else f"v{v}" for v in rng.integers(0, 10**6, n).tolist()]
    columns = Columns(rng.integers(0, 100_000, n), rng.integers(0, 50, n), visitors, rng.integers(20_000, 20_005, n))
    table = facts.summed(facts.facts_of(columns))
    for compression in (None, "lz4", "zstd"):
        options = pa.ipc.IpcWriteOptions(compression=compression)

        def write(options: pa.ipc.IpcWriteOptions = options) -> bytes:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, facts.FACT_SCHEMA, options=options) as writer:
                writer.write_table(table)
            return bytes(sink.getvalue().to_pybytes())

        body = write()
        read_ms = per_call_ms(lambda body=body: pa.ipc.open_stream(pa.py_buffer(body)).read_all())
        print(
            f"{compression or 'none':>5}: write {per_call_ms(write):.2f} ms, read {read_ms:.2f} ms, "
            f"{len(body):,} bytes for {table.num_rows:,} facts"
        )


if __name__ == "__main__":
    main()
