"""Command line: flags -> settings -> run -> report files -> terminal. ``python main.py`` and ``lifestats`` are this.

``lifestats [flags]`` runs (or resumes) the job; ``lifestats report REPORT.json [--html PATH] [--csv DIR]``
renders a saved JSON report again without crawling. Report files are checked before the first request
and written before anything is printed, and the checkpoint is marked finished only once they are on
disk; a partial report (Ctrl-C, SIGTERM, the API failing) is written with further signals ignored, so
pressing Ctrl-C twice still leaves it behind.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from ._signals import SIGNALS
from .config import TOKEN_VARIABLE, Settings, choose_env, load_settings
from .errors import ConfigError, LifestatsError
from .merge import REJECTS_FILE
from .outputs import SMALLEST_CSV, SMALLEST_JSON, STDOUT, check_dir, check_file, check_room, report_json, write_atomic
from .report_check import KeyGivenTwice, parse_json, report_problem
from .report_csv import FILES as CSV_FILES
from .report_csv import write_csv
from .report_html import render_html, smallest_html
from .run import EXIT_INTERRUPTED, ExecutorFactory, Outcome, Snapshot, local_executor, run_job
from .terminal import DEFAULT_ROWS, render, visible

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_API = 3
EXIT_DATA = 4
# The configuration that applies when no file is named and the working directory has no config.yml:
# the repository's own config.yml, shipped inside the package (its development environment is the default).
BUILT_IN_CONFIG = Path(__file__).with_name("config.yml")
LOCAL_CONFIG = "config.yml"
# Why a report is partial, by exit code, as written into the report for every renderer to show.
PARTIAL_REASONS = {
    EXIT_INTERRUPTED: "interrupted (Ctrl-C, SIGTERM or SIGHUP)",
    EXIT_API: "the API failed",
    EXIT_DATA: "the data does not look right",
    1: "the run failed",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message}")


def _rows(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="lifestats",
        description="Crawl a paginated, rate-limited events API and report usage statistics. "
        "'lifestats report REPORT.json' renders a saved report again.",
    )
    p.add_argument("--config", help="config file (default ./config.yml, else the built-in defaults)")
    p.add_argument("--env", help="environment in the config file (default: $LIFESTATS_ENV, $ENV, development)")
    p.add_argument("--as-of", dest="as_of", help="reference time for the windows, ISO 8601 (default now)")
    p.add_argument("--report-json", dest="report_json", help="write the JSON report to this path ('-': stdout)")
    p.add_argument("--report-html", dest="report_html", help="write the HTML report (one self-contained file)")
    p.add_argument("--report-csv", dest="report_csv", help="write CSV files into this directory")
    p.add_argument("--state-dir", dest="state_dir", default=".lifestats", help="checkpoint directory")
    p.add_argument("--fresh", action="store_true", help="ignore an earlier checkpoint and start over")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument(
        "--cluster", help="run the workers on the Dask cluster whose scheduler is at ADDRESS ('local': start one here)"
    )
    p.add_argument("--workers", type=int, help="worker processes (crawl.workers)")
    p.add_argument("--slices", type=int, help="slices of the id space (crawl.slices)")
    p.add_argument("--rate-limit", dest="rate_limit", type=float, help="requests per second (crawl.rate_limit)")
    p.add_argument("--url", help="API URL (api.url), or 'embedded'")
    p.add_argument("--rows", type=_rows, default=DEFAULT_ROWS, help=f"ranking rows to print (default {DEFAULT_ROWS})")
    return p


def report_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lifestats report", description="Render a saved JSON report again, without crawling.")
    p.add_argument("report", help="a JSON report written by --report-json")
    p.add_argument("--html", help="write the HTML report here")
    p.add_argument("--csv", help="write the CSV files into this directory")
    p.add_argument("--rows", type=_rows, default=DEFAULT_ROWS, help=f"ranking rows to print (default {DEFAULT_ROWS})")
    return p


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for section, key, value in (
        ("crawl", "workers", args.workers),
        ("crawl", "slices", args.slices),
        ("crawl", "rate_limit", args.rate_limit),
        ("api", "url", args.url),
        ("crawl", "cluster", args.cluster),
    ):
        if value is not None:
            out.setdefault(section, {})[key] = value
    return out


def config_path(flag: str | None) -> Path:
    """``--config``, else ``./config.yml``, else the built-in defaults (so the job runs from any directory)."""
    if flag is not None:
        return Path(flag)
    local = Path(LOCAL_CONFIG)
    return local if local.exists() else BUILT_IN_CONFIG


def _as_of(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        # A lower-case "z" is UTC as in the records' timestamps (Python 3.11 reads the upper-case one only).
        moment = datetime.fromisoformat(text[:-1] + "Z" if text.endswith("z") else text)
    except ValueError:
        raise ConfigError(f"--as-of {text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        example = moment.isoformat() + "+00:00"  # a date alone becomes its midnight: "2025-06-12T00:00:00+00:00"
        raise ConfigError(f"--as-of {text!r} needs a UTC offset, e.g. {example}")
    return moment


class _ProgressBar:
    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]crawl"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("{task.fields[detail]}", markup=False),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task: TaskID = self.progress.add_task("crawl", total=1.0, detail="starting")

    def __call__(self, s: Snapshot) -> None:
        self.progress.update(self.task, completed=s.fraction, detail=progress_detail(s))


def progress_detail(s: Snapshot) -> str:
    """The figures beside the bar; while the API holds the whole job back, that is what it says."""
    waiting = getattr(s, "waiting", 0.0) or 0.0
    if waiting > 0:
        return f"waiting {waiting:,.0f} s: the API asked for a pause · {s.slices_done}/{s.slices} slices"
    rate = s.requests / s.elapsed if s.elapsed > 0 else 0.0
    return f"{s.pages:,} pages · {s.records:,} records · {rate:,.1f} req/s · {s.slices_done}/{s.slices} slices"


class _Signals:
    """SIGINT, SIGTERM and SIGHUP: the first one stops the run (as KeyboardInterrupt), later ones do not
    interrupt it.

    The run answers the first signal by winding its workers down and returning a partial report, which is
    then written; a second Ctrl-C pressed in impatience cuts the wind-down short (the run holds signals
    then, see :meth:`lifestats.run._Job._stop`) but must not abort the report, or it is lost.
    While ``quiet`` (the report files being written) even the first signal only stops what comes after.
    """

    def __init__(self) -> None:
        self.received = 0
        self.quiet = False

    def install(self) -> None:
        for number in SIGNALS:  # Ctrl-C, a scheduler stopping the job, a terminal that closes: the same
            signal.signal(number, self)

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.received += 1
        if self.received == 1 and not self.quiet:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Signals received inside this block do not interrupt it."""
        before, self.quiet = self.quiet, True
        try:
            yield
        finally:
            self.quiet = before


@dataclass(frozen=True)
class Targets:
    """Where the report files go; each None when not asked for."""

    json: str | None = None
    html: str | None = None
    csv: str | None = None

    def check(self, *, json_flag: str, html_flag: str, csv_flag: str, state_dir: Path | None = None) -> None:
        """Refuse (exit 2) any path that cannot be written, before the first request: also two reports on
        one path (one would overwrite the other), or one inside the state dir (the run's own files)."""
        files = [
            (flag, Path(path).absolute())
            for flag, path in ((json_flag, self.json), (html_flag, self.html))
            if path is not None and path != STDOUT
        ]
        # The CSV directory's own files, and the directory itself.
        csv = Path(self.csv).absolute() if self.csv is not None else None
        written = [(csv_flag, csv / name) for name in CSV_FILES] + [(csv_flag, csv)] if csv is not None else []
        named = files + ([(csv_flag, csv)] if csv is not None else [])
        for i, (flag, path) in enumerate(files):
            for other_flag, other in files[i + 1 :] + written:
                if path == other:
                    raise ConfigError(f"{flag} and {other_flag} name the same file ({path}): give each its own")
        for flag, path in named:
            if state_dir is not None:
                state = state_dir.absolute()
                if path == state or state in path.parents:
                    raise ConfigError(
                        f"{flag} {path}: is inside --state-dir {state_dir}, which holds the run's own files"
                    )
        if self.json is not None and self.json != STDOUT:
            check_file(self.json, json_flag)
        if self.html is not None:
            check_file(self.html, html_flag)
        if self.csv is not None:
            check_dir(self.csv, csv_flag)
        needs = [
            (flag, path, least, files)
            for flag, path, least, files in (
                (json_flag, self.json, SMALLEST_JSON, 1),
                (html_flag, self.html, smallest_html(), 1),
                (csv_flag, self.csv, SMALLEST_CSV, len(CSV_FILES)),
            )
            if path is not None and path != STDOUT
        ]
        check_room(needs)

    def write(self, report: dict[str, Any]) -> None:
        """JSON first (the record of the run), then the renderings of it; a failed write is one clear line."""
        path = ""
        try:
            if self.json == STDOUT:
                path = "standard output"
                sys.stdout.buffer.write(report_json(report))
                sys.stdout.flush()
            elif self.json is not None:
                path = self.json
                write_atomic(self.json, report_json(report))
            if self.html is not None:
                path = self.html
                write_atomic(self.html, render_html(report).encode("utf-8"))
            if self.csv is not None:
                path = self.csv
                write_csv(report, self.csv)
        except OSError as exc:
            raise ReportNotWritten(f"cannot write the report to {path}: {exc.strerror or exc}") from None


class ReportNotWritten(LifestatsError):
    """A report file could not be written after the crawl (disk full, removed directory): the run is not
    marked finished, so the same command writes it again from the checkpoint without crawling."""


def _error(console: Console, message: str) -> None:
    console.print(Text("error: ", style="red") + Text(visible_lines(message)), highlight=False, soft_wrap=True)


def visible_lines(message: str) -> str:
    """A message for the terminal: its own line breaks kept, every other control character made visible."""
    return "\n".join(visible(line) for line in message.split("\n"))


def main(argv: Sequence[str] | None = None, pending: Sequence[int] = ()) -> int:
    """The program. Called without ``argv`` it is the process itself: once its work is done, further
    Ctrl-C, SIGTERM and SIGHUP are ignored, so that one arriving while Python shuts down cannot turn exit
    code 130 (the partial report written) into death by signal. Called with ``argv`` the caller's handlers come back.
    ``pending``: signals received before this was called (:mod:`lifestats._entry`), which it answers.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if argv is None:  # a terminal or pipe that cannot show a character gets a "?", not a traceback
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, io.TextIOWrapper):
                stream.reconfigure(errors="replace")
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    signals = _Signals()
    signals.install()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if arguments[:1] == ["report"]:
            if pending:
                Console(stderr=True).print("interrupted while starting: nothing was written")
                return EXIT_INTERRUPTED
            return report_command(arguments[1:])
        return run_command(arguments, signals, interrupted=bool(pending))
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_IGN if argv is None else handler)


def _executor_factory(settings: Settings) -> ExecutorFactory:
    """The local process pool, or the Dask cluster of ``crawl.cluster`` (imported only then)."""
    if not settings.crawl.cluster:
        return local_executor
    from .cluster import cluster_executor_factory

    return cluster_executor_factory(settings.crawl.cluster, limiter=settings.crawl.cluster_limiter)


def run_command(arguments: list[str], signals: _Signals, *, interrupted: bool = False) -> int:
    """The job. ``interrupted``: a signal came before this was called; one that comes while the command
    line and the config are read waits too: either is answered by the job, before its first request, with
    a partial report (exit 130)."""
    errors = Console(stderr=True)
    try:
        before = signals.received
        with signals.held():
            args = parser().parse_args(arguments)
            env = choose_env(args.env, os.environ)
            settings = load_settings(config_path(args.config), env, overrides=_overrides(args))
            as_of = _as_of(args.as_of)
            targets = Targets(args.report_json, args.report_html, args.report_csv)
            if not args.state_dir.strip():
                raise ConfigError("--state-dir is empty: give the directory for the run's checkpoint")
            targets.check(
                json_flag="--report-json",
                html_flag="--report-html",
                csv_flag="--report-csv",
                state_dir=Path(args.state_dir),
            )
            executor_factory = _executor_factory(settings)  # a cluster's modules take a second to load
        interrupted = interrupted or signals.received > before
        # With the JSON report on standard output, everything meant for people goes to standard error.
        console = errors if targets.json == STDOUT else Console()
        token = os.environ.get(TOKEN_VARIABLE, "").strip() or None  # a token read from a file keeps its CR LF
        state_dir = Path(args.state_dir)
        delivery = _Delivery(targets, signals)
        bar = _ProgressBar(errors) if args.progress else None
        if bar:
            bar.progress.start()
        try:
            outcome = run_job(
                settings,
                env=env,
                state_dir=state_dir,
                as_of=as_of,
                fresh=args.fresh,
                token=token,
                on_progress=bar,
                deliver=delivery,
                executor_factory=executor_factory,
                interrupted=interrupted,
            )
        finally:
            if bar:
                bar.progress.stop()
    except KeyboardInterrupt:
        errors.print("interrupted: run the same command to resume")
        return EXIT_INTERRUPTED
    except LifestatsError as exc:
        _error(errors, str(exc))
        return exc.exit_code
    report = outcome.report
    if report.get("partial"):
        report = partial_report(outcome)
    exit_code = outcome.exit_code
    if not delivery.done:  # a partial report (the run never hands those over) is written here
        try:
            with signals.held():
                targets.write(report)
        except LifestatsError as exc:
            _error(errors, str(exc))
            exit_code = exit_code or exc.exit_code
    rejects = state_dir / REJECTS_FILE
    try:
        render(report, console, rows=args.rows, rejects_file=rejects if rejects.exists() else None)
        _show_outcome(errors, outcome)
    except KeyboardInterrupt:  # the run is over and its report written: only the tables are cut short
        errors.print("interrupted while showing the tables: the report files are complete")
    return exit_code


class _Delivery:
    """Writes the final report's files for the run (before it marks itself finished), and remembers it did."""

    def __init__(self, targets: Targets, signals: _Signals) -> None:
        self.targets = targets
        self.signals = signals
        self.done = False

    def __call__(self, report: dict[str, Any]) -> None:
        with self.signals.held():
            self.targets.write(report)
        self.done = True


def partial_report(outcome: Outcome) -> dict[str, Any]:
    """The partial report with the reason it is partial, so that every rendering of it can say why."""
    reason = PARTIAL_REASONS.get(outcome.exit_code, "the run stopped early")
    return {**outcome.report, "partial_reason": reason}


def _show_outcome(errors: Console, outcome: Outcome) -> None:
    """The run's own message, as it is: the run knows whether running again can help."""
    if not outcome.message:
        return
    if outcome.exit_code == EXIT_INTERRUPTED:
        errors.print(Text(visible_lines(outcome.message)), highlight=False, soft_wrap=True)
    elif outcome.exit_code == EXIT_DATA:
        text = Text("warning: ", style="yellow") + Text(visible_lines(outcome.message))
        errors.print(text, highlight=False, soft_wrap=True)
    else:
        _error(errors, outcome.message)


def report_command(arguments: list[str]) -> int:
    """``lifestats report REPORT.json``: the terminal tables, or the HTML and CSV files, of a saved report."""
    errors = Console(stderr=True)
    try:
        args = report_parser().parse_args(arguments)
        targets = Targets(html=args.html, csv=args.csv)
        targets.check(json_flag="", html_flag="--html", csv_flag="--csv")
        report = load_report(args.report)
        if targets.html is None and targets.csv is None:
            render(report, Console(), rows=args.rows)
        else:
            targets.write(report)
    except KeyboardInterrupt:
        errors.print("interrupted")
        return EXIT_INTERRUPTED
    except LifestatsError as exc:
        _error(errors, str(exc))
        return exc.exit_code
    return EXIT_OK


def load_report(path: str) -> dict[str, Any]:
    """A saved JSON report, or a one-line refusal naming what is wrong with the file."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"report not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the report {path}: {exc.strerror or exc}") from None
    try:
        report = parse_json(data)
    except KeyGivenTwice as exc:
        raise ConfigError(f"{path} is not a Lifestats JSON report: {exc}") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError among them
        raise ConfigError(f"{path} is not JSON: {exc}") from None
    problem = report_problem(report)
    if problem is not None:
        raise ConfigError(f"{path} is not a Lifestats JSON report: {problem}")
    return report


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
