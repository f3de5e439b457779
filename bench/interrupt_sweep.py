"""Ctrl-C at every moment of a run's first seconds: exit code 130, one line and a partial report, never a
traceback.

    python bench/interrupt_sweep.py [--from 0.05] [--to 2.0] [--step 0.05] [--repeat 1]

For each delay, starts ``python main.py --no-progress`` (the embedded mock API) in a fresh directory, in a
session of its own, and sends SIGINT to its whole process group after that many seconds, as a terminal's
Ctrl-C does (the program, its forkserver and workers, the mock API's process). Prints the exit code, the
lines on standard error and the report the run wrote (``--report-json``); exits 1 if any run ended
otherwise than with 130, one line and a report marked partial (or 0, no line and a complete report,
when the run was done before the signal). Timing-dependent by nature, so it lives here and not in the tests,
which pin the same moments with hooks instead (``tests/test_cli.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _one(delay: float) -> tuple[int, list[str], bool | None]:
    """Exit code, lines on standard error, and whether the report written is partial (None: none)."""
    with tempfile.TemporaryDirectory(prefix="lifestats-sigint-") as where:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("LIFESTATS_")}
        process = subprocess.Popen(
            [sys.executable, str(REPO / "main.py"), "--no-progress", "--report-json", "report.json"],
            cwd=where,
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        time.sleep(delay)
        with contextlib.suppress(ProcessLookupError):  # done already
            os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=120)
        report = Path(where) / "report.json"
        partial = bool(json.loads(report.read_bytes())["partial"]) if report.exists() else None
        return process.returncode, err.splitlines(), partial


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="start", type=float, default=0.05)
    parser.add_argument("--to", dest="stop", type=float, default=2.0)
    parser.add_argument("--step", type=float, default=0.05)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    bad = 0
    steps = round((args.stop - args.start) / args.step) + 1
    for _ in range(args.repeat):
        for i in range(steps):
            delay = args.start + i * args.step
            code, lines, partial = _one(delay)
            fine = (code == 130 and len(lines) == 1 and partial is True) or (
                code == 0 and not lines and partial is False
            )
            bad += not fine
            shown = lines[0] if len(lines) == 1 else f"{len(lines)} lines: " + " | ".join(lines[:3])
            written = {None: "no report", True: "partial report", False: "complete report"}[partial]
            print(f"{delay:5.2f} s  exit {code:3d}  {'ok ' if fine else 'BAD'}  {written:15}  {shown}", flush=True)
    print(f"{bad} bad of {steps * args.repeat}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
