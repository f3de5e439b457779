"""The command line: exit codes, the JSON report, and bad config stopping before any request."""

from __future__ import annotations

import contextlib
import csv
import json
import re
import signal
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lifestats.cli import load_report, progress_detail
from lifestats.errors import ConfigError
from lifestats.outputs import report_json
from mocks.dataset import FIELDS, DatasetSpec, generate, ground_truth
from mocks.server import MockServer
from mocks.source import ListSource

from .conftest import AS_OF, REPO, job_settings, main_command, run, run_main, statistics

DATA = generate(DatasetSpec(seed=21, records=5_000))

CONFIG = """
base: &base
  api: &api
    url: {url}
    page_size: 150
  fields: {{id: id, item: item, category: category, visitor: visitor, timestamp: timestamp, ip: ip,
           user_agent: user_agent}}
  crawl: &crawl {{slices: 9, workers: 2, rate_limit: 5000}}
  bots: {{ips: ["203.0.113.7", "203.0.113.8", "198.51.100.23"], user_agents: ["(?i)examplebot", "(?i)scrapy"]}}
test:
  <<: *base
broken:
  <<: *base
  crawl:
    <<: *crawl
    workers: -3
"""


@pytest.fixture
def server():
    with MockServer(DATA) as running:
        yield running


def test_main_writes_the_report_and_prints_rankings(tmp_path: Path, server: MockServer) -> None:
    (tmp_path / "config.yml").write_text(CONFIG.format(url=server.url))
    result = run_main(
        "--env",
        "test",
        "--as-of",
        AS_OF.isoformat(),
        "--report-json",
        "out/report.json",
        "--no-progress",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["schema"] == "lifestats.report/1"
    assert report["run"]["env"] == "test"
    assert report["run"]["as_of"] == "2026-03-15T12:00:00+00:00"
    assert statistics(report) == ground_truth(DATA, as_of=AS_OF)
    top = report["windows"]["all"]["top_items"][0]
    assert "Top 20 of 100 items" in result.stdout and str(top["id"]) in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80  # nothing wraps on an 80-column terminal
    assert (tmp_path / ".lifestats" / "checkpoint.duckdb").exists()


def test_env_variable_selects_environment_and_overrides_keys(tmp_path: Path, server: MockServer) -> None:
    (tmp_path / "config.yml").write_text(CONFIG.format(url=server.url))
    result = run_main(
        "--as-of",
        AS_OF.isoformat(),
        "--report-json",
        "r.json",
        "--no-progress",
        cwd=tmp_path,
        env={"LIFESTATS_ENV": "test", "LIFESTATS_STATS_TOP_ITEMS": "3"},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["windows"]["all"]["top_items"]) == 3


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--env", "broken"], {}, "crawl.workers"),
        (["--env", "nowhere"], {}, "no environment 'nowhere'"),
        (["--env", "test", "--as-of", "yesterday"], {}, "--as-of 'yesterday'"),
        (["--env", "test", "--as-of", "2025-06-12"], {}, "e.g. 2025-06-12T00:00:00+00:00"),  # an example that works
        (["--env", "test", "--bogus"], {}, "unrecognized arguments: --bogus"),
        (["--env", "test"], {"LIFESTATS_CRAWL_RATE_LIMIT": "fast"}, "crawl.rate_limit"),
        (["--env", "test"], {"LIFESTATS_STATS_MODE": "approx", "LIFESTATS_STATS_HLL_LG_K": "30"}, "stats.hll_lg_k"),
    ],
)
def test_bad_usage_exits_2_before_any_request(
    tmp_path: Path, server: MockServer, args: list[str], env: dict[str, str], message: str
) -> None:
    (tmp_path / "config.yml").write_text(CONFIG.format(url=server.url))
    result = run_main(*args, "--no-progress", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert message in result.stderr
    assert server.log == []


def _ls(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(
    ("flag", "target", "message"),
    [
        ("--report-json", "adir", "is a directory"),
        ("--report-html", "afile/report.html", "not a directory"),
        ("--report-csv", "afile", "is a file"),
        ("--report-json", "afile/deeper/r.json", "not a directory"),
    ],
)
def test_a_report_path_that_cannot_be_written_exits_2_before_any_request(
    tmp_path: Path, server: MockServer, flag: str, target: str, message: str
) -> None:
    (tmp_path / "config.yml").write_text(CONFIG.format(url=server.url))
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("not a directory\n")
    before = _ls(tmp_path)
    result = run_main("--env", "test", flag, target, "--no-progress", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"{flag} {target}" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr
    assert server.log == []
    assert _ls(tmp_path) == before  # no stray file, no state dir


def test_report_json_dash_writes_the_report_to_stdout_and_the_tables_to_stderr(
    tmp_path: Path, server: MockServer
) -> None:
    (tmp_path / "config.yml").write_text(CONFIG.format(url=server.url))
    result = run_main(
        "--env", "test", "--as-of", AS_OF.isoformat(), "--report-json", "-", "--no-progress", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert statistics(report) == ground_truth(DATA, as_of=AS_OF)
    assert "Top 20 of 100 items (all time)" in result.stderr
    assert not (tmp_path / "-").exists()


def test_lifestats_report_renders_what_the_run_wrote(tmp_path: Path, server: MockServer) -> None:
    (tmp_path / "config.yml").write_text(CONFIG.format(url=server.url))
    run = run_main(
        "--env",
        "test",
        "--as-of",
        AS_OF.isoformat(),
        "--report-json",
        "r.json",
        "--report-html",
        "html/run.html",
        "--report-csv",
        "run-csv",
        "--no-progress",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    again = run_main("report", "r.json", "--html", "again.html", "--csv", "again-csv", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again.html").read_bytes() == (tmp_path / "html" / "run.html").read_bytes()
    names = sorted(p.name for p in (tmp_path / "run-csv").iterdir())
    assert names == ["series.csv", "summary.csv", "top_categories.csv", "top_items.csv", "windows.csv"]
    for name in names:
        assert (tmp_path / "again-csv" / name).read_bytes() == (tmp_path / "run-csv" / name).read_bytes()
    tables = run_main("report", "r.json", cwd=tmp_path)
    assert tables.returncode == 0, tables.stderr
    shown_by_run = [line for line in run.stdout.splitlines() if "a sample is in" not in line]
    assert tables.stdout.splitlines() == shown_by_run
    # A terminal that cannot show every character gets a "?" for it, not a traceback.
    plain = run_main("report", "r.json", cwd=tmp_path, env={"PYTHONIOENCODING": "ascii"})
    assert plain.returncode == 0 and "Traceback" not in plain.stderr, plain.stderr
    assert len(plain.stdout.splitlines()) == len(shown_by_run) and plain.stdout.isascii()
    # The CSV's top items are the ground truth's, ids with their JSON type.
    truth = ground_truth(DATA, as_of=AS_OF)["windows"]["all"]["top_items"]
    with (tmp_path / "run-csv" / "top_items.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["window"] == "all"]
    assert [r["id"] for r in rows] == [str(t["id"]) for t in truth]
    assert [r["id_type"] for r in rows] == ["int" if isinstance(t["id"], int) else "string" for t in truth]
    assert [int(r["visits"]) for r in rows] == [t["visits"] for t in truth]


def test_lifestats_report_refuses_what_is_not_a_report(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"hello": 1}')
    (tmp_path / "bad.json").write_text("{")
    for name, message in (
        ("x.json", "not a Lifestats JSON report"),
        ("bad.json", "is not JSON"),
        ("no.json", "not found"),
    ):
        result = run_main("report", name, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


HOSTILE = ["[/bold]", "[bold red]x[/bold red]", "\x1b[2J", "<script>alert(1)</script>", 123, "123", "a\rb"]


def test_hostile_names_from_the_api_are_shown_as_text(tmp_path: Path) -> None:
    records = [
        {
            "id": 1000 + i,
            "item": HOSTILE[i % len(HOSTILE)],
            "category": HOSTILE[(i + 1) % len(HOSTILE)],
            "visitor": f"v{i % 5}",
            "timestamp": f"2026-03-{1 + i % 14:02d}T10:00:00+00:00",
            "ip": "192.0.2.1",
            "user_agent": "Mozilla/5.0",
        }
        for i in range(70)
    ]
    with MockServer(ListSource(records)) as hostile:
        (tmp_path / "config.yml").write_text(CONFIG.format(url=hostile.url))
        result = run_main(
            "--env", "test", "--as-of", AS_OF.isoformat(), "--report-json", "r.json", "--no-progress", cwd=tmp_path
        )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "[/bold]" in out and "[bold red]x[/bold red]" in out and "\\x1b[2J" in out and "a\\x0db" in out
    assert "\x1b" not in out and "\r" not in out
    assert '"123"' in out and " 123 " in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert {row["id"] for row in report["windows"]["all"]["top_items"]} == set(HOSTILE)


def test_without_a_config_file_the_built_in_development_defaults_apply(tmp_path: Path, server: MockServer) -> None:
    result = run_main(
        "--url", server.url, "--as-of", AS_OF.isoformat(), "--report-json", "r.json", "--no-progress", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["run"]["env"] == "development"
    assert statistics(report) == ground_truth(DATA, as_of=AS_OF)  # the field names and bot lists of the defaults
    missing = run_main("--config", "nowhere.yml", "--no-progress", cwd=tmp_path)
    assert missing.returncode == 2 and "nowhere.yml" in missing.stderr


def test_the_built_in_defaults_are_the_development_environment_of_config_yml() -> None:
    from lifestats.cli import BUILT_IN_CONFIG
    from lifestats.config import load_settings

    assert BUILT_IN_CONFIG.read_bytes() == (REPO / "config.yml").read_bytes()
    settings = load_settings(BUILT_IN_CONFIG, "development", environ={})
    assert settings.api.url == "embedded"
    assert settings.fields.model_dump() == {name: name for name in FIELDS}


def test_the_api_failing_says_so_not_interrupted(tmp_path: Path) -> None:
    with MockServer(ListSource([{"id": 1, "item": 1}]), token="right-token") as locked:
        (tmp_path / "config.yml").write_text(CONFIG.format(url=locked.url))
        result = run_main(
            "--env", "test", "--report-json", "r.json", "--no-progress", cwd=tmp_path,
            env={"LIFESTATS_API_TOKEN": "wrong-token"},
        )  # fmt: skip
    assert result.returncode == 3, result.stderr
    header = result.stdout.splitlines()[0]
    assert "PARTIAL: the API failed" in header and "interrupted" not in result.stdout
    assert "error:" in result.stderr and "wrong-token" not in result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["partial"] is True and report["partial_reason"] == "the API failed"


def test_ctrl_c_pressed_again_and_again_still_writes_the_partial_report(tmp_path: Path) -> None:
    with MockServer(DATA, latency=0.02) as slow:
        (tmp_path / "config.yml").write_text(CONFIG.format(url=slow.url))
        command, environ = main_command(
            "--env", "test", "--as-of", AS_OF.isoformat(), "--report-json", "r.json", "--rate-limit", "40",
            "--no-progress",
        )  # fmt: skip
        process = subprocess.Popen(command, cwd=tmp_path, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert slow.api.log.wait_for(40, timeout=60), process.stderr  # the crawl is under way
            # An impatient user: Ctrl-C again and again until the job has exited.
            while process.poll() is None:
                process.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.01)
            out, err = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 130, err.decode()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["partial"] is True and report["records"]["fetched"] < len(DATA)
    assert report["partial_reason"].startswith("interrupted")
    assert "PARTIAL: interrupted" in out.decode()


def test_the_progress_line_says_when_the_api_asked_for_a_pause() -> None:
    figures = {"fraction": 0.5, "pages": 10, "records": 1000, "requests": 12, "elapsed": 2.0}
    running = SimpleNamespace(**figures, slices_done=1, slices=4, waiting=0.0)
    assert progress_detail(running) == "10 pages · 1,000 records · 6.0 req/s · 1/4 slices"  # type: ignore[arg-type]
    held = SimpleNamespace(**figures, slices_done=1, slices=4, waiting=42.2)
    assert progress_detail(held).startswith("waiting 42 s: the API asked for a pause")  # type: ignore[arg-type]


def test_cluster_local_runs_the_same_job_on_a_dask_cluster(tmp_path: Path, server: MockServer) -> None:
    (tmp_path / "config.yml").write_text(CONFIG.format(url=server.url))
    result = run_main(
        "--env", "test", "--as-of", AS_OF.isoformat(), "--cluster", "local",
        "--report-json", "report.json", "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert statistics(report) == ground_truth(DATA, as_of=AS_OF)
    assert "INFO" not in result.stderr  # the local cluster's own logging stays out of the job's output


def test_a_bad_cluster_limiter_stops_before_any_request(tmp_path: Path, server: MockServer) -> None:
    (tmp_path / "config.yml").write_text(CONFIG.format(url=server.url))
    result = run_main(
        "--env", "test", "--cluster", "local", "--no-progress", cwd=tmp_path,
        env={"LIFESTATS_CRAWL_CLUSTER_LIMITER": "memcached://x"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "crawl.cluster_limiter" in result.stderr
    assert server.log == []


def _python(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -c script`` with the repository importable and no LIFESTATS_* setting of the caller's."""
    command, environ = main_command()
    return subprocess.run([command[0], "-c", script], cwd=cwd, env=environ, capture_output=True, text=True, timeout=240)


def test_a_ctrl_c_while_the_forkserver_imports_the_workers_code_is_no_traceback(tmp_path: Path) -> None:
    """The forkserver gets SIGINT in the middle of its imports (a module it preloads sends it): the server
    must not die with a KeyboardInterrupt traceback; the interrupt is the coordinator's to act on, and
    here the coordinator got none, so the job runs to its end."""
    script = (
        "import multiprocessing.context as context, sys\n"
        "preload = context.ForkServerContext.set_forkserver_preload\n"
        "context.ForkServerContext.set_forkserver_preload = (\n"
        "    lambda self, names: preload(self, [*names, 'tests.interrupt_at_import'])\n"
        ")\n"
        "from lifestats._entry import main\n"
        "sys.argv = ['lifestats', '--no-progress', '--report-json', 'report.json', '--fresh']\n"
        "raise SystemExit(main())\n"
    )
    result = _python(script, tmp_path)
    assert "KeyboardInterrupt" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "report.json").read_text())["partial"] is False


def test_a_ctrl_c_while_the_tables_print_after_a_finished_run_is_one_line_and_its_exit_code(tmp_path: Path) -> None:
    """The run is over and its report written when the tables print: an interrupt then cuts only them."""
    script = (
        "import os, signal, sys\n"
        "import lifestats.cli as cli\n"
        "shown = cli.render\n"
        "def render(*args, **kwargs):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    return shown(*args, **kwargs)\n"
        "cli.render = render\n"
        "from lifestats._entry import main\n"
        "sys.argv = ['lifestats', '--no-progress', '--report-json', 'report.json']\n"
        "raise SystemExit(main())\n"
    )
    result = _python(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "interrupted while showing the tables: the report files are complete\n"
    assert json.loads((tmp_path / "report.json").read_text())["partial"] is False


# Where an interrupt lands before the crawl begins: each hook sends SIGINT to the program itself at that
# moment (only on the first run: AGAIN is set for the second).
EARLY_INTERRUPTS = {
    "while the modules load": (
        "class Interrupt:\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'lifestats.cli' and not os.environ.get('AGAIN'):\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "sys.meta_path.insert(0, Interrupt())\n"
    ),
    "while the config is read": (
        "import lifestats.cli as cli\n"
        "reading = cli.load_settings\n"
        "def load_settings(*args, **kwargs):\n"
        "    if not os.environ.get('AGAIN'):\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return reading(*args, **kwargs)\n"
        "cli.load_settings = load_settings\n"
    ),
    "while the checkpoint opens": (
        "from lifestats.store import Checkpoint\n"
        "opening = Checkpoint.__init__\n"
        "def __init__(self, *args, **kwargs):\n"
        "    if not os.environ.get('AGAIN'):\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    opening(self, *args, **kwargs)\n"
        "Checkpoint.__init__ = __init__\n"
    ),
    "as the bundled mock API starts": (
        "import lifestats.run as run\n"
        "starting = run.api_url\n"
        "@contextlib.contextmanager\n"
        "def api_url(*args, **kwargs):\n"
        "    if not os.environ.get('AGAIN'):\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    with starting(*args, **kwargs) as url:\n"
        "        yield url\n"
        "run.api_url = api_url\n"
    ),
}


@pytest.mark.parametrize("moment", list(EARLY_INTERRUPTS))
def test_a_ctrl_c_before_the_crawl_begins_still_writes_a_partial_report(moment: str, tmp_path: Path) -> None:
    """The interrupt lands before the first request: exit 130 with a report marked partial, as at any later
    moment, one line on standard error, and the same command then runs to the end."""
    script = (
        "import contextlib, os, signal, sys\n" + EARLY_INTERRUPTS[moment] + "from lifestats._entry import main\n"
        "sys.argv = ['lifestats', '--no-progress', '--report-json', 'report.json']\n"
        "raise SystemExit(main())\n"
    )
    first = _python(script, tmp_path)
    assert first.returncode == 130, first.stderr
    assert first.stderr == "interrupted: run the same command to resume\n"
    partial = json.loads((tmp_path / "report.json").read_text())
    assert partial["partial"] is True and partial["records"]["fetched"] == 0 and partial["warnings"] == []
    assert partial["run"]["requests"] == 0
    command, environ = main_command()
    again = subprocess.run(
        [command[0], "-c", script],
        cwd=tmp_path,
        env={**environ, "AGAIN": "1"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "report.json").read_text())["partial"] is False


def test_a_ctrl_c_as_the_finished_run_marks_itself_finished_does_not_ask_for_a_resume(tmp_path: Path) -> None:
    """The report files are written and the run is marking itself finished when the interrupt comes: the
    run is done (exit 0, its report complete), not interrupted with a "resume" that would crawl anew."""
    script = (
        "import os, signal, sys\n"
        "from lifestats.store import Checkpoint\n"
        "finishing = Checkpoint.mark_finished\n"
        "def mark_finished(self):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    return finishing(self)\n"
        "Checkpoint.mark_finished = mark_finished\n"
        "from lifestats._entry import main\n"
        "sys.argv = ['lifestats', '--no-progress', '--report-json', 'report.json']\n"
        "raise SystemExit(main())\n"
    )
    result = _python(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "interrupted" not in result.stderr
    assert json.loads((tmp_path / "report.json").read_text())["partial"] is False


def test_a_second_ctrl_c_while_the_program_starts_quits_at_once(tmp_path: Path) -> None:
    """Two interrupts while the job's modules are being imported (sent by the program to itself at the
    import of lifestats.cli, so the moment is exact): the second quits at once, exit code 130, one line."""
    script = (
        "import os, signal, sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'lifestats.cli':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "from lifestats._entry import main\n"
        "raise SystemExit(main())\n"
    )
    result = _python(script, tmp_path)
    assert result.returncode == 130
    assert result.stderr == "interrupted while starting: nothing was crawled\n"
    assert not (tmp_path / ".lifestats").exists()


def _damaged(report: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``report`` with the key at the dotted ``path`` set to ``value`` (DELETE: removed)."""
    copy = json.loads(json.dumps(report))
    *parents, last = path.split(".")
    node: Any = copy
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is DELETE:
        del node[last]
    else:
        node[int(last) if isinstance(node, list) else last] = value
    return copy


DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("schema", "lifestats.report/9", "'lifestats.report/9'"),
        ("windows", DELETE, "'windows' is missing"),
        ("windows.all", DELETE, "'windows.all' is missing"),
        ("records", DELETE, "'records' is missing"),
        ("run", DELETE, "'run' is missing"),
        ("records.counted", "lots", "'records.counted'"),
        ("windows.all.visits", -3, "'windows.all.visits'"),
        ("windows.all.top_items.0.id", DELETE, "'windows.all.top_items[0].id' is missing"),
        ("windows.all.top_items.0.visits", "lots", "'windows.all.top_items[0].visits'"),
        ("windows.all.top_items.0.id", 2**80, "'windows.all.top_items[0].id'"),  # no key Lifestats counts
        ("windows.all.top_items", None, "'windows.all.top_items'"),
        ("series.points", None, "'series.points'"),
        ("warnings", "oops", "'warnings'"),
        ("partial", "no", "'partial'"),
        ("run.rate_limit", True, "'run.rate_limit'"),
        # Rendered as given before (audit X): no run writes these.
        ("series.bucket", "fortnight", "'series.bucket'"),
        ("series.points.0.start", "notadate", "'series.points[0].start'"),
        ("run.as_of", "2026-03-15T12:00:00", "'run.as_of'"),
        ("windows.all.visits", 10**26, "'windows.all.visits'"),
    ],
)
def test_lifestats_report_names_the_first_wrong_key_of_a_damaged_report(
    path: str, value: Any, named: str, finished_report: dict[str, Any], tmp_path: Path
) -> None:
    assert load_report_text(json.dumps(finished_report), tmp_path) is None  # the report as the run wrote it
    problem = load_report_text(json.dumps(_damaged(finished_report, path, value)), tmp_path)
    assert problem is not None and named in problem


def test_lifestats_report_refuses_a_key_given_twice(finished_report: dict[str, Any], tmp_path: Path) -> None:
    """A report with a second "schema" key rendered with exit 0 (audit X)."""
    text = json.dumps(finished_report)
    problem = load_report_text('{"schema": "lifestats.report/1", ' + text[1:], tmp_path)
    assert problem is not None and "'schema' is given twice" in problem


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_lifestats_report_refuses_numbers_json_has_not(
    number: str, finished_report: dict[str, Any], tmp_path: Path
) -> None:
    text = re.sub(r'"visits": [0-9]+', f'"visits": {number}', json.dumps(finished_report), count=1)
    (tmp_path / "r.json").write_text(text)
    result = run_main("report", "r.json", "--html", "r.html", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "is not JSON" in result.stderr and not (tmp_path / "r.html").exists()


@pytest.fixture(scope="module")
def finished_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The JSON report of a small finished run, as ``--report-json`` writes it."""
    small = generate(DatasetSpec(seed=5, records=400))
    with MockServer(small) as server:
        outcome = run(job_settings(server.url), tmp_path_factory.mktemp("state"))
    assert outcome.exit_code == 0, outcome.message
    return dict(json.loads(report_json(outcome.report)))


def load_report_text(text: str, tmp_path: Path) -> str | None:
    """What ``lifestats report`` says is wrong with a file holding ``text``; None when it takes it."""
    (tmp_path / "r.json").write_text(text)
    try:
        load_report(str(tmp_path / "r.json"))
    except ConfigError as exc:
        assert str(exc).startswith(f"{tmp_path / 'r.json'} is not a Lifestats JSON report: ")
        return str(exc)
    return None


def _with_open_files(limit: int, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}))\n"
        "from lifestats._entry import main\n"
        "sys.argv = ['lifestats', '--no-progress', '--report-json', 'report.json']\n"
        "raise SystemExit(main())\n"
    )
    return _python(script, tmp_path)


def test_too_few_file_descriptors_for_the_embedded_api_is_one_line_naming_the_limit(tmp_path: Path) -> None:
    """With 12 open files allowed, the embedded API cannot start: that was a traceback (OSError: Too many
    open files); any exception the program does not expect is one line too (SPEC: exit 1)."""
    result = _with_open_files(12, tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "ran out of file descriptors" in result.stderr and "ulimit -n, now 12" in result.stderr


def test_too_few_file_descriptors_for_the_workers_names_the_limit_not_the_interpreter(tmp_path: Path) -> None:
    """With 22, the workers cannot be started: the message blamed the interpreter ("check that this user
    can run that interpreter")."""
    result = _with_open_files(22, tmp_path)
    assert result.returncode == 1, result.stderr
    assert "ulimit -n, now 22" in result.stderr and "crawl.workers" in result.stderr
    assert "check that this user can run that interpreter" not in result.stderr
    # The forkserver was cut off halfway through a start and printed its own EOFError traceback.
    assert "Traceback" not in result.stderr, result.stderr


def _with_address_space(limit: int, body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = f"import resource, sys\nresource.setrlimit(resource.RLIMIT_AS, ({limit}, resource.RLIM_INFINITY))\n{body}"
    return _python(script, tmp_path)


def test_too_small_an_address_space_is_refused_before_the_libraries_load(tmp_path: Path) -> None:
    """Under ``ulimit -v`` of 400 MiB DuckDB crashed the interpreter (exit 139, no message), and under 1.5 GiB
    Arrow failed to load ("a bug in Lifestats") or a thread could not start ("raise ulimit -u"): machine
    resources audit. Now a limit below what the job reserves is one line naming it, exit 2, no request."""
    body = (
        "from lifestats._entry import main\n"
        "sys.argv = ['lifestats', '--no-progress', '--report-json', 'report.json']\n"
        "raise SystemExit(main())\n"
    )
    result = _with_address_space(800 * 1024**2, body, tmp_path)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "ulimit -v 819200" in result.stderr and "raise it (ulimit -v 2097152 or unlimited)" in result.stderr
    assert not (tmp_path / "report.json").exists() and not (tmp_path / ".lifestats").exists()


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        ('RuntimeError("can\'t start new thread")', "ulimit -u, now"),
        ("ImportError('libarrow.so: failed to map segment from shared object')", "could not be loaded into memory"),
        ("MemoryError()", "ran out of memory allowed to the process"),
    ],
)
def test_a_failure_under_an_address_space_limit_names_that_limit(tmp_path: Path, error: str, hint: str) -> None:
    body = f"from lifestats._entry import _unexpected\nprint(_unexpected({error}))\n"
    result = _with_address_space(3 * 1024**3, body, tmp_path)
    assert result.returncode == 0, result.stderr
    assert hint in result.stdout and "ulimit -v, now 3145728" in result.stdout, result.stdout
    assert "a bug in Lifestats" not in result.stdout
