"""Memory per id of a slice's de-duplication set (``lifestats.seen.SeenIds``).

    PYTHONPATH=. python bench/seen_memory.py [--ids 2000000]

Adds ``--ids`` random 62-bit integer ids, then as many string ids ("r00000001", ...), 1,000 at a time as
pages would, and prints the bytes per id that ``tracemalloc`` sees the set hold (at the end and at the
peak, merges included). A string id's own object (49 bytes plus its text) is not in the figure: the
record held it anyway; the set keeps it alive.
"""

from __future__ import annotations

import argparse
import random
import tracemalloc

from lifestats.seen import SeenIds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=float, default=2_000_000)
    n = int(parser.parse_args().ids)
    for kind in ("integer", "string"):
        ids: list[int] | list[str] = (
            [random.getrandbits(62) for _ in range(n)] if kind == "integer" else [f"r{i:08d}" for i in range(n)]
        )
        tracemalloc.start()
        seen = SeenIds()
        for start in range(0, n, 1000):
            seen.remember(ids[start : start + 1000])
        held, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"{kind} ids: {n:,}, {held / n:.1f} bytes per id held, {peak / n:.1f} at the peak")


if __name__ == "__main__":
    main()
