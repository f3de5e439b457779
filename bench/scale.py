"""Memory, disk and resume at scale: the whole job over high-cardinality data, exact and approx mode.

    python bench/scale.py                                    # 10^6 and 10^7 records, both modes, resume
    python bench/scale.py --records 1e6 1e7 1e8 --modes approx exact
    python bench/scale.py --records 1e6 --modes approx --no-resume            # a quick run
    python bench/scale.py --records 1.5e8 --modes approx --no-resume --workers 2

For every size and mode it starts the mock API in its own process (127.0.0.1, no latency, no limit,
1,000-record pages; 100,000 items and 10^6 visitors by default, the dataset options of
``mocks.dataset.DatasetSpec``) and runs the job in a process of its own (its own session, so that it
can be killed whole), with a rate limit high enough not to hold it back. It reports:

- wall time, records per second, CPU seconds of the job (the report's ``run`` figures);
- peak RSS of the coordinator and of the largest worker: the high-water marks (``VmHWM``) of every
  process of the job's session, sampled every ``--sample`` seconds, and the report's own figures
  (``run.peak_rss_bytes``, ``run.worker_peak_rss_bytes``), whichever is higher;
- bytes on disk of the state dir at the end, per record and per distinct key (distinct visitors from
  the report's ``all`` window plus the distinct items the mock's dataset holds, counted here from its
  columns when ``--count-keys``);
- resume (``--resume``): the same job again, SIGKILLed (the whole session) at half the first run's wall
  time, then resumed: seconds from the start of the resumed process to the first request the API sees,
  the resumed run's total wall time, and whether its record counts equal the uninterrupted run's.

It runs against whatever checkpoint store the job has; the machine may be shared (the figures say
wall time and CPU time; peak RSS does not depend on the load).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

AS_OF = "2026-03-15T12:00:00+00:00"
PAGE = 1000


# -- the job, in a process of its own -------------------------------------------------------------------


def child(spec_json: str) -> None:
    """Run the job as ``spec`` says and write its report (the ``--child`` entry point)."""
    from datetime import datetime

    from lifestats.config import load_settings
    from lifestats.run import run_job
    from mocks.dataset import BOT_IPS, BOT_UA_PATTERNS, FIELDS

    spec = json.loads(spec_json)
    settings = load_settings(
        None,
        "bench",
        environ={},
        overrides={
            "api": {"url": spec["url"], "page_size": PAGE},
            "fields": dict(FIELDS),
            "crawl": {
                "workers": spec["workers"],
                "slices": spec["slices"],
                "rate_limit": 100_000,
                "flush_every": spec["flush_every"],
            },
            "stats": {"mode": spec["mode"]},
            "bots": {"ips": list(BOT_IPS), "user_agents": list(BOT_UA_PATTERNS)},
        },
    )
    outcome = run_job(settings, env="bench", state_dir=Path(spec["state_dir"]), as_of=datetime.fromisoformat(AS_OF))
    Path(spec["report"]).write_bytes(json.dumps(outcome.report or {}).encode())
    if outcome.message:
        print(f"job: {outcome.message}", file=sys.stderr)
    sys.exit(outcome.exit_code)


# -- measuring ------------------------------------------------------------------------------------------


def _status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return fields


def _session_members(sid: int) -> list[int]:
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        after = stat[stat.rindex(")") + 2 :].split()  # state ppid pgrp session ...
        if int(after[3]) == sid:
            members.append(int(entry.name))
    return members


@dataclass
class Peaks:
    """The high-water RSS of every process of a session, sampled until the session is gone."""

    sid: int
    interval: float
    by_pid: dict[int, int] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Peaks:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in _session_members(self.sid):
                try:
                    status = _status(pid)
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                hwm = int(status.get("VmHWM", "0 kB").split()[0]) * 1024
                self.by_pid[pid] = max(self.by_pid.get(pid, 0), hwm)
                self.names.setdefault(pid, cmdline)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()

    def coordinator(self) -> int:
        return self.by_pid.get(self.sid, 0)

    def largest_worker(self) -> int:
        """The largest of the other processes: workers (the forkserver and resource tracker are smaller)."""
        return max((rss for pid, rss in self.by_pid.items() if pid != self.sid), default=0)


def _disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class Mock:
    """The mock API in its own process: a fresh one per run, so its first request is that run's."""

    def __init__(self, records: int, seed: int, dataset: dict[str, Any], port: int) -> None:
        argv = [sys.executable, "-m", "mocks.server", "--seed", str(seed), "--records", str(records)]
        argv += ["--port", str(port)]  # the same URL for a resumed run (the checkpoint checks it)
        argv += ["--dataset-json", json.dumps(dataset), "--max-page-size", str(PAGE)]
        argv += ["--watch-stdin", "--announce-first-request"]
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().decode().strip()
        if not self.url.startswith("http"):
            raise SystemExit(f"the mock API did not start: {self.url!r}")
        self.first_request: float | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            word, _, value = line.decode().partition(" ")
            if word == "first-request":
                self.first_request = float(value)

    def peak_rss(self) -> int:
        return int(_status(self.process.pid)["VmHWM"].split()[0]) * 1024

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.terminate()
        self.process.wait(timeout=10)


@dataclass
class Run:
    wall: float
    exit_code: int
    report: dict[str, Any]
    coordinator_rss: int
    worker_rss: int
    first_request_s: float | None
    mock_rss: int


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_job(
    args: argparse.Namespace, mode: str, records: int, state_dir: Path, kill_after: float | None, port: int
) -> Run:
    mock = Mock(records, args.seed, {"items": args.items, "visitors": args.visitors, "end": AS_OF}, port)
    report_path = state_dir.parent / f"report-{mode}-{records}.json"
    report_path.unlink(missing_ok=True)
    spec = {
        "url": mock.url,
        "mode": mode,
        "workers": args.workers,
        "slices": args.slices,
        "flush_every": args.flush_every,
        "state_dir": str(state_dir),
        "report": str(report_path),
    }
    try:
        t0 = time.monotonic()
        job = subprocess.Popen(
            [sys.executable, __file__, "--child", json.dumps(spec)], cwd=ROOT, start_new_session=True
        )
        peaks = Peaks(job.pid, args.sample).start()
        try:
            code = job.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)  # the coordinator and every process it started, at once
            code = job.wait()
        wall = time.monotonic() - t0
        peaks.stop()
        # The session's other processes (workers) die with the killed group; after a normal end they are gone.
        report = json.loads(report_path.read_bytes()) if report_path.exists() else {}
        run = report.get("run", {})
        first = None if mock.first_request is None else mock.first_request - t0
        return Run(
            wall=wall,
            exit_code=code,
            report=report,
            coordinator_rss=max(peaks.coordinator(), run.get("peak_rss_bytes", 0)),
            worker_rss=max(peaks.largest_worker(), run.get("worker_peak_rss_bytes", 0)),
            first_request_s=first,
            mock_rss=mock.peak_rss(),
        )
    finally:
        mock.stop()


def distinct_items(records: int, seed: int, items: int, visitors: int) -> int:
    """Distinct item ids among the dataset's records, from its columns (independent of the job)."""
    import numpy as np

    from mocks.dataset import DatasetSpec, LazyDataset

    data = LazyDataset(DatasetSpec(seed=seed, records=records, items=items, visitors=visitors, end=AS_OF))
    seen = np.zeros(items, dtype=bool)
    for part, lo, hi in data.parts():
        seen[part.item[lo:hi]] = True
    return int(seen.sum())


def _mb(n: int) -> str:
    return f"{n / 2**20:7.1f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", nargs="+", type=float, default=[1e6, 1e7])
    parser.add_argument("--modes", nargs="+", choices=("exact", "approx"), default=["approx", "exact"])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--visitors", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--flush-every", type=int, default=10)
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--count-keys", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--sample", type=float, default=0.2, help="seconds between two RSS samples")
    parser.add_argument("--work-dir", help="where the state dirs go (default: a temporary directory)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    print(
        f"items {args.items:,}, visitors {args.visitors:,}, page {PAGE:,}, workers {args.workers}, "
        f"slices {args.slices}, flush every {args.flush_every} pages; load average "
        f"{os.getloadavg()[0]:.2f} at start",
        flush=True,
    )
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        for n in (int(r) for r in args.records):
            keys_items = distinct_items(n, args.seed, args.items, args.visitors) if args.count_keys else None
            for mode in args.modes:
                state = Path(tmp) / f"state-{mode}-{n}"
                full = run_job(args, mode, n, state, None, free_port())
                run = full.report.get("run", {})
                records = full.report.get("records", {})
                disk = _disk_bytes(state)
                visitors = (full.report.get("windows", {}).get("all") or {}).get("distinct_visitors") or 0
                line = (
                    f"{mode:<6} {n:>13,} records: exit {full.exit_code}, {full.wall:7.1f} s wall, "
                    f"{records.get('fetched', 0) / full.wall:9,.0f} records/s, "
                    f"CPU {run.get('cpu_seconds', 0):7.1f} s; peak RSS coordinator {_mb(full.coordinator_rss)}, "
                    f"worker {_mb(full.worker_rss)} (mock {_mb(full.mock_rss)}); state dir {_mb(disk)}, "
                    f"{disk / max(n, 1):.1f} B/record"
                )
                if keys_items is not None:
                    line += f", {disk / max(visitors + keys_items, 1):.1f} B per distinct key"
                    line += f" ({visitors:,} visitors + {keys_items:,} items)"
                print(line, flush=True)
                if args.resume and full.exit_code == 0:
                    resume(args, mode, n, Path(tmp), full)
                _remove(state)


def resume(args: argparse.Namespace, mode: str, n: int, tmp: Path, full: Run) -> None:
    state = tmp / f"resume-{mode}-{n}"
    port = free_port()
    killed = run_job(args, mode, n, state, full.wall / 2, port)
    if killed.exit_code == 0:
        print(f"{'':<6} resume: the run ended before the kill at {full.wall / 2:.1f} s; nothing to resume")
        return
    again = run_job(args, mode, n, state, None, port)
    same = again.report.get("records") == full.report.get("records")
    first = "never" if again.first_request_s is None else f"{again.first_request_s:.2f} s"
    print(
        f"{'':<6} resume after SIGKILL at {full.wall / 2:.1f} s: first new request after {first}, "
        f"{again.wall:.1f} s in all (exit {again.exit_code}); peak RSS coordinator "
        f"{_mb(again.coordinator_rss)}, worker {_mb(again.worker_rss)}; record counts equal to the "
        f"uninterrupted run's: {'yes' if same else 'NO'}",
        flush=True,
    )
    _remove(state)


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
