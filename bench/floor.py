"""Where the job's CPU per record goes beyond the bare loop: start-up, counting, and what is left.

    PYTHONPATH=. python bench/floor.py [--records 1000000] [--mode exact approx] [--repeat 1]

Three variants of the job of ``bench/cpu.py`` (the same mock, settings and CPU figure, each in a fresh
interpreter, each between two runs of the bare loop) per mode:

- ``as run``: the job as a user runs it, its workers forked by a forkserver that imports their code (the
  server's imports and warm-up count, as in ``bench/cpu.py``);
- ``forked``: its workers forked from the coordinator, which has imported everything already: the
  difference to ``as run`` is what the forkserver costs;
- ``no counting``: forked, and a page's records are neither counted nor added to the statistics (the
  page is fetched, decoded, its ids selected, its tallies kept and flushed): the difference to ``forked`` is
  what counting, settling, the flushes' bodies and the coordinator's merges cost; what is left is the
  floor that any counting sits on (transport, limiter, protocol, checkpoint, start-up and report).

``forked`` and ``no counting`` are measurements only: the product never forks from its coordinator (it
runs threads), and a job that counts nothing reports nothing.
"""

from __future__ import annotations

import argparse
import statistics

from bench.cpu import bare_per_record, job_cpu, one_shot, settings_for
from lifestats.config import Settings
from lifestats.count import PageCounter
from lifestats.executor import Executor, LocalExecutor, WorkerSetup
from lifestats.run import local_executor
from mocks.server import serve_in_subprocess

VARIANTS = ("as run", "forked", "no counting")


def forked_executor(workers: int, setup: WorkerSetup) -> Executor:
    """Workers forked from the coordinator (measurement only: see the module's docstring)."""
    return LocalExecutor(workers, setup, context="fork")


def _variant_cpu(settings: Settings, mode: str, variant: str) -> float:
    """CPU microseconds per record of one job of ``variant`` (run in a fresh interpreter by the caller)."""
    if variant == "no counting":
        PageCounter._count_all = lambda self, partial, records: None  # type: ignore[method-assign]
        PageCounter._add_page = lambda self, partial: None  # type: ignore[method-assign]
    factory = local_executor if variant == "as run" else forked_executor
    return job_cpu(settings, f"{mode}, {variant}", factory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mode", nargs="+", choices=["exact", "approx"], default=["exact", "approx"])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    url, stop = serve_in_subprocess(seed=args.seed, records=args.records, max_page_size=1000)
    ratios: dict[tuple[str, str], list[float]] = {}
    try:
        crawl = {"workers": 4, "slices": 16, "rate_limit": 100_000}
        for round_ in range(1, args.repeat + 1):
            print(f" round {round_}:")
            before = bare_per_record(url, 1000)
            for mode in args.mode:
                settings = settings_for(url, 1000, crawl, mode)
                for variant in VARIANTS:
                    per_record = one_shot(_variant_cpu, settings, mode, variant)
                    after = bare_per_record(url, 1000)
                    ratios.setdefault((mode, variant), []).append(per_record / ((before + after) / 2))
                    before = after
    finally:
        stop()
    for (mode, variant), values in ratios.items():
        print(f"ratio, {mode} mode, {variant}: median {statistics.median(values):.2f}x over {len(values)} rounds")


if __name__ == "__main__":
    main()
