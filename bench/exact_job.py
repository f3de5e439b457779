"""A whole exact-mode job at scale against the mock: the coordinator's peak RSS, disk, time, and the truth.

Starts the mock API in a child process with high-cardinality keys (by default 100,000 items and 10^6
visitors), runs the job in exact mode (this process is the coordinator; workers are child processes),
and prints the run figures from the report (coordinator and worker peak RSS, CPU seconds, records per
second), the state dir's size on disk, and, with ``--check``, whether every exact figure equals the
mock's own ground truth (computed after the run, so it does not count in the coordinator's peak).

    python bench/exact_job.py --records 1e6
    python bench/exact_job.py --records 1e7 --check
    python bench/exact_job.py --records 1.5e8 --check      # about 15 minutes for the job, 5 for the truth
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cpu import AS_OF, settings_for  # noqa: E402
from lifestats.run import run_job  # noqa: E402
from mocks.server import serve_in_subprocess  # noqa: E402


def _disk(state: Path) -> int:
    return sum(p.stat().st_size for p in state.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=float, default=1e6)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--visitors", type=int, default=1_000_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--flush-every", type=int, default=20)
    parser.add_argument("--check", action="store_true", help="compare the report with the mock's ground truth")
    args = parser.parse_args()
    records = int(args.records)
    spec = {"items": args.items, "visitors": args.visitors}
    url, stop = serve_in_subprocess(seed=1, records=records, max_page_size=args.page_size, **spec)
    try:
        crawl = {"workers": args.workers, "slices": args.slices, "rate_limit": 100_000, "flush_every": args.flush_every}
        settings = settings_for(url, args.page_size, crawl, "exact")
        with tempfile.TemporaryDirectory() as tmp:
            state = Path(tmp) / "state"
            t0 = time.monotonic()
            outcome = run_job(settings, env="bench", state_dir=state, as_of=AS_OF)
            wall = time.monotonic() - t0
            disk = _disk(state)
    finally:
        stop()
    if outcome.exit_code != 0:
        raise SystemExit(f"the job failed (exit {outcome.exit_code}): {outcome.message}")
    report = outcome.report
    run = report["run"]
    print(
        f"exact, {records:,} records ({args.items:,} items, {args.visitors:,} visitors), page {args.page_size}, "
        f"{args.workers} workers: wall {wall:.1f} s, {run['records_per_second']:,.0f} records/s, "
        f"CPU {run['cpu_seconds']:.1f} s, coordinator peak RSS {run['peak_rss_bytes'] / 2**20:.0f} MiB, "
        f"worker peak RSS {run['worker_peak_rss_bytes'] / 2**20:.0f} MiB, state dir {disk / 2**20:.1f} MiB",
        flush=True,
    )
    if args.check:
        from mocks.dataset import DatasetSpec, LazyDataset, ground_truth
        from tests.conftest import statistics

        t0 = time.process_time()
        # The records the mock served, drawn chunk by chunk (memory flat in the records, as the server's)
        truth = ground_truth(LazyDataset(DatasetSpec(seed=1, records=records, **spec)), as_of=AS_OF)
        print(f"the ground truth took {time.process_time() - t0:.1f} s of CPU", flush=True)
        same = statistics(report) == truth
        print(f"every exact figure equals the mock's ground truth: {same}")
        if not same:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
