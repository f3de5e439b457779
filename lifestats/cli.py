"""Command line: flags -> settings -> run -> report. ``python main.py`` and ``lifestats`` are this."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .config import TOKEN_VARIABLE, choose_env, load_settings
from .errors import ConfigError, LifestatsError
from .report import render, write_json
from .run import EXIT_INTERRUPTED, Snapshot, run_job

EXIT_OK = 0
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message}")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="lifestats",
        description="Crawl a paginated, rate-limited events API and report usage statistics.",
    )
    p.add_argument("--config", default="config.yml", help="config file (default ./config.yml)")
    p.add_argument("--env", help="environment in the config file (default: $LIFESTATS_ENV, $ENV, development)")
    p.add_argument("--as-of", dest="as_of", help="reference time for the windows, ISO 8601 (default now)")
    p.add_argument("--report-json", dest="report_json", help="write the JSON report to this path")
    p.add_argument("--state-dir", dest="state_dir", default=".lifestats", help="checkpoint directory")
    p.add_argument("--fresh", action="store_true", help="ignore an earlier checkpoint and start over")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--cluster", help="Dask scheduler address (not available in this version)")
    p.add_argument("--report-html", dest="report_html", help="HTML report (not available in this version)")
    p.add_argument("--workers", type=int, help="worker processes (crawl.workers)")
    p.add_argument("--slices", type=int, help="slices of the id space (crawl.slices)")
    p.add_argument("--rate-limit", dest="rate_limit", type=float, help="requests per second (crawl.rate_limit)")
    p.add_argument("--url", help="API URL (api.url), or 'embedded'")
    p.add_argument("--rows", type=int, help="ranking rows to print (default: all)")
    return p


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for section, key, value in (
        ("crawl", "workers", args.workers),
        ("crawl", "slices", args.slices),
        ("crawl", "rate_limit", args.rate_limit),
        ("api", "url", args.url),
    ):
        if value is not None:
            out.setdefault(section, {})[key] = value
    return out


def _as_of(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--as-of {text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ConfigError(f"--as-of {text!r} needs a UTC offset, e.g. {text}+00:00")
    return moment


class _ProgressBar:
    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]crawl"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task: TaskID = self.progress.add_task("crawl", total=1.0, detail="starting")

    def __call__(self, s: Snapshot) -> None:
        rate = s.requests / s.elapsed if s.elapsed > 0 else 0.0
        detail = f"{s.pages:,} pages · {s.records:,} records · {rate:,.1f} req/s · {s.slices_done}/{s.slices} slices"
        self.progress.update(self.task, completed=s.fraction, detail=detail)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # a scheduler stopping the job: same as Ctrl-C
    console = Console(stderr=False)
    errors = Console(stderr=True)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = parser().parse_args(argv)
        if args.cluster or args.report_html:
            raise ConfigError("--cluster and --report-html are not available in this version")
        env = choose_env(args.env, os.environ)
        config_path = Path(args.config)
        settings = load_settings(config_path, env, overrides=_overrides(args))
        as_of = _as_of(args.as_of)
        token = os.environ.get(TOKEN_VARIABLE) or None
        bar = _ProgressBar(errors) if args.progress else None
        if bar:
            bar.progress.start()
        try:
            outcome = run_job(
                settings,
                env=env,
                state_dir=Path(args.state_dir),
                as_of=as_of,
                fresh=args.fresh,
                token=token,
                on_progress=bar,
            )
        finally:
            if bar:
                bar.progress.stop()
    except KeyboardInterrupt:
        errors.print("interrupted before the crawl started")
        return EXIT_INTERRUPTED
    except LifestatsError as exc:
        errors.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return exc.exit_code
    if args.report_json:
        write_json(outcome.report, args.report_json)
    render(outcome.report, console, rows=args.rows)
    if outcome.message:
        errors.print(f"[red]error:[/red] {escape(outcome.message)}", highlight=False)
    return outcome.exit_code


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
