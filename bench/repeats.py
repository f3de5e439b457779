"""The end-of-run check for ids that two slices of a positional crawl both took
(:meth:`lifestats.store.Checkpoint.repeated_across_slices`): its time at the coordinator.

A checkpoint gets ``--records`` integer ids (distinct, random over 10^12) committed as a positional crawl
commits them, ``--slices`` slices of flushes of 1,000 ids each, plus ``--repeats`` ids taken again by a
second slice; then the check runs once (wall and CPU seconds).

    PYTHONPATH=. python bench/repeats.py --records 1e6 --slices 100 --repeats 10
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from lifestats.plan import Slice
from lifestats.protocol import Flush
from lifestats.seen import encode_ids
from lifestats.store import Checkpoint

PER_FLUSH = 1_000


def measure(records: int, slices: int, repeats: int) -> dict[str, object]:
    ids = np.random.default_rng(7).choice(10**12, size=records, replace=False).astype(np.int64)
    shares = np.array_split(ids, slices)
    shares[-1] = np.concatenate([shares[-1], shares[0][:repeats]])  # taken by the first slice and the last
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Checkpoint(Path(tmp))
        checkpoint.claim({"bench": records})
        checkpoint.save_plan([Slice(k, k * 10, (k + 1) * 10) for k in range(slices)], {})
        for index, share in enumerate(shares):
            attempt = checkpoint.begin_attempt(index).attempt
            for seq, start in enumerate(range(0, len(share), PER_FLUSH), start=1):
                taken = encode_ids(share[start : start + PER_FLUSH].tolist())
                flush = Flush(index, attempt, seq, seq, None, 1, 1, 0, b"{}", taken=taken)
                assert checkpoint.apply(flush)
        wall, cpu = time.perf_counter(), time.process_time()
        found = checkpoint.repeated_across_slices()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        checkpoint.close()
    assert found == (repeats, repeats), found
    return {"records": records, "slices": slices, "repeats": found[0], "wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=float, default=1e6)
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(json.dumps(measure(int(args.records), args.slices, args.repeats)))


if __name__ == "__main__":
    main()
