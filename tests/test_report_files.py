"""HTML and CSV renderings of a JSON report, and the atomic writing of report files."""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from lifestats.errors import ConfigError
from lifestats.outputs import check_dir, check_file, report_json, write_atomic
from lifestats.report_csv import csv_files
from lifestats.report_html import embed_json, render_html

from .test_terminal import report


def rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def test_csv_keeps_ids_as_the_api_gave_them_with_their_type() -> None:
    doc = report()
    doc["windows"]["all"]["top_items"] = [
        {"id": 123, "visits": 5, "distinct_visitors": 2},
        {"id": "123", "visits": 4, "distinct_visitors": None},
        {"id": 'a,b\n"c"', "visits": 3, "distinct_visitors": 1},
    ]
    files = csv_files(doc)
    assert sorted(files) == ["series.csv", "summary.csv", "top_categories.csv", "top_items.csv", "windows.csv"]
    items = [r for r in rows(files["top_items.csv"]) if r["window"] == "all"]
    assert [(r["rank"], r["id"], r["id_type"], r["visits"], r["distinct_visitors"]) for r in items] == [
        ("1", "123", "int", "5", "2"),
        ("2", "123", "string", "4", ""),
        ("3", 'a,b\n"c"', "string", "3", "1"),
    ]
    categories = rows(files["top_categories.csv"])
    assert [(r["id"], r["id_type"]) for r in categories] == [("c1", "string"), ("7", "int")]
    series = rows(files["series.csv"])
    assert [int(r["visits"]) for r in series] == [p["visits"] for p in doc["series"]["points"]]
    assert series[0]["start"] == "2026-03-01T00:00:00+00:00"
    windows = rows(files["windows.csv"])
    assert [(r["window"], r["visits"]) for r in windows] == [("all", "1900"), ("yesterday", "0")]
    summary = {(r["section"], r["key"]): r["value"] for r in rows(files["summary.csv"])}
    assert summary[("records", "rejected")] == "50" and summary[("run", "requests")] == "1234"
    assert summary[("report", "partial")] == "false"


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_written_as_text() -> None:
    doc = report()
    hostile = ['=HYPERLINK("http://x")', "+1+2", "-2+3", "@SUM(A1)", "\tx", "\rx", "a=b", "safe", "'-2+3", "'"]
    doc["windows"]["all"]["top_items"] = [
        {"id": name, "visits": 10 - i, "distinct_visitors": 1} for i, name in enumerate(hostile)
    ] + [{"id": -5, "visits": 1, "distinct_visitors": 1}]
    items = [r for r in rows(csv_files(doc)["top_items.csv"]) if r["window"] == "all"]
    written = [(r["id"], r["id_type"]) for r in items]
    assert written == [
        ('\'=HYPERLINK("http://x")', "string"),
        ("'+1+2", "string"),
        ("'-2+3", "string"),
        ("'@SUM(A1)", "string"),
        ("'\tx", "string"),
        ("'\rx", "string"),
        ("a=b", "string"),
        ("safe", "string"),
        ("''-2+3", "string"),  # not "'-2+3", which is "-2+3" above: one leading ' dropped gives each back
        ("''", "string"),
        ("-5", "int"),  # a number stays a number
    ]


def test_csv_gains_lower_and_upper_columns_in_approx_mode() -> None:
    doc = report()
    doc["windows"]["all"]["distinct_visitors_bounds"] = [300, 340]
    doc["windows"]["all"]["top_items"][0]["visits_bounds"] = [95, 100]
    files = csv_files(doc)
    windows = rows(files["windows.csv"])
    assert (windows[0]["distinct_visitors_lower"], windows[0]["distinct_visitors_upper"]) == ("300", "340")
    assert windows[1]["distinct_visitors_lower"] == ""
    first = rows(files["top_items.csv"])[0]
    assert (first["visits_lower"], first["visits_upper"]) == ("95", "100")
    assert "visits_lower" not in rows(files["series.csv"])[0]


def test_html_is_a_pure_function_of_the_report() -> None:
    assert render_html(report()) == render_html(json.loads(json.dumps(report())))
    changed = report()
    changed["records"]["bots"] = 41
    assert render_html(changed) != render_html(report())


def test_html_shows_names_as_text_and_embeds_data_that_cannot_close_its_script() -> None:
    doc = report()
    evil = "</script><script>alert(1)</script>"
    doc["windows"]["all"]["top_items"][0]["id"] = evil
    doc["windows"]["all"]["top_items"][1]["id"] = "<img src=x onerror=alert(2)>"
    doc["series"]["bucket"] = "day"
    doc["series"]["points"][0]["start"] = "</script><b>x</b>&amp;"
    doc["warnings"] = ["<b>bold</b> & \x1b[2J"]
    page = render_html(doc)
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "<img" not in page and "<b>bold</b>" not in page and "\x1b" not in page
    # Three script elements: the JSON block, uPlot and the page's own; no name opened another.
    assert len(re.findall(r"<script\b", page)) == 3
    data = re.search(r'<script type="application/json" id="series-data">(.*?)</script>', page, re.S)
    assert data is not None and "<" not in data.group(1) and ">" not in data.group(1)
    assert json.loads(data.group(1))["labels"][0] == "</script><b>x</b>&amp;"
    assert embed_json(["<&>"]) == '["\\u003c\\u0026\\u003e"]'


def test_html_loads_nothing_from_elsewhere() -> None:
    page = render_html(report())
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert policy is not None and "default-src 'none'" in html.unescape(policy.group(1))
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(http" not in page and "@font-face" not in page


def test_html_shows_approx_bounds() -> None:
    doc = report()
    doc["windows"]["all"]["distinct_visitors_bounds"] = [300, 340]
    doc["windows"]["all"]["top_items"][0]["visits_bounds"] = [95, 100]
    page = render_html(doc)
    assert "range 300 - 340" in page and "range 95 - 100" in page
    assert page.count("<path d=") == 2  # the two whiskers


def test_write_atomic_leaves_only_the_target(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "r.json"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["r.json"]


def test_report_json_keeps_ids_beyond_64_bits() -> None:
    doc: dict[str, Any] = {"windows": {"all": {"top_items": [{"id": 2**70}, {"id": "7"}]}}}
    assert json.loads(report_json(doc)) == doc


@pytest.mark.parametrize(
    ("make", "check", "message"),
    [
        (lambda p: (p / "d").mkdir(), lambda p: check_file(str(p / "d"), "--report-json"), "is a directory"),
        (lambda p: (p / "f").write_text(""), lambda p: check_dir(str(p / "f"), "--report-csv"), "is a file"),
        (
            lambda p: (p / "f").write_text(""),
            lambda p: check_file(str(p / "f" / "x.html"), "--report-html"),
            "not a directory",
        ),
    ],
)
def test_unwritable_report_paths_are_refused_with_the_flag_and_path(
    tmp_path: Path, make: Any, check: Any, message: str
) -> None:
    make(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(ConfigError, match=message) as caught:
        check(tmp_path)
    assert str(tmp_path) in str(caught.value) and "--report-" in str(caught.value)
    assert sorted(tmp_path.rglob("*")) == before


def test_an_empty_report_path_is_refused_as_empty() -> None:
    """It was refused as ' : is a directory' (the empty path reads as the current directory)."""
    with pytest.raises(ConfigError, match=r"^--report-html: the path is empty; give a file name$"):
        check_file("", "--report-html")
    with pytest.raises(ConfigError, match=r"^--report-csv: the path is empty; give a directory$"):
        check_dir("", "--report-csv")


def test_a_writable_path_passes_the_check_and_leaves_nothing_behind(tmp_path: Path) -> None:
    check_file(str(tmp_path / "new" / "r.json"), "--report-json")
    check_dir(str(tmp_path / "csv"), "--report-csv")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["csv", "new"]


def test_a_report_that_cannot_be_written_after_the_crawl_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lifestats import cli

    def full_disk(path: Any, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "write_atomic", full_disk)
    with pytest.raises(cli.ReportNotWritten, match=r"cannot write the report to .*r\.json: No space left on device"):
        cli.Targets(json=str(tmp_path / "r.json")).write(report())


def test_a_report_path_that_is_a_symlink_or_a_pipe_is_written_through_not_replaced(tmp_path: Path) -> None:
    """Renaming a temporary file over the path would turn a symlink, a FIFO or a device (``/dev/stdout``)
    into a regular file: the reader at the other end would never get the report."""
    (tmp_path / "real.json").write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to("real.json")
    write_atomic(link, b"new")
    assert link.is_symlink() and (tmp_path / "real.json").read_bytes() == b"new"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    check_file(str(fifo), "--report-json")
    write_atomic(fifo, b"through the pipe")
    reader.join(timeout=60)
    assert got == [b"through the pipe"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_report_names_too_long_for_the_temporary_file_are_refused_before_the_crawl(tmp_path: Path) -> None:
    for length in (300, 250):  # too long itself; fits, but not with the temporary file's affixes
        with pytest.raises(ConfigError, match="--report-json"):
            check_file(str(tmp_path / ("a" * length)), "--report-json")
    check_file(str(tmp_path / ("a" * 200)), "--report-json")


def test_two_reports_on_one_path_or_one_in_the_state_dir_are_refused(tmp_path: Path) -> None:
    from lifestats.cli import Targets

    flags = {"json_flag": "--report-json", "html_flag": "--report-html", "csv_flag": "--report-csv"}
    same = Targets(str(tmp_path / "r.json"), str(tmp_path / "." / "r.json"))
    with pytest.raises(ConfigError, match="name the same file"):
        same.check(**flags)
    with pytest.raises(ConfigError, match="name the same file"):
        Targets(None, str(tmp_path / "csv" / "series.csv"), str(tmp_path / "csv")).check(**flags)
    Targets(str(tmp_path / "out" / "r.json"), str(tmp_path / "out" / "r.html"), str(tmp_path / "out")).check(**flags)
    inside = Targets(str(tmp_path / "state" / "checkpoint.duckdb"))
    with pytest.raises(ConfigError, match="inside --state-dir"):
        inside.check(**flags, state_dir=tmp_path / "state")
    Targets(str(tmp_path / "r.json"), str(tmp_path / "r.html"), str(tmp_path / "csv")).check(
        **flags, state_dir=tmp_path / "state"
    )


def test_a_report_path_on_a_disk_without_room_for_the_smallest_report_is_refused_before_the_crawl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty file fits on a full disk, so the check's probe passed there and the report failed only after
    the whole crawl. A disk with less room than the smallest reports it would hold (an HTML report embeds
    its chart library: tens of KB) is refused naming them; one with room for those is not judged further
    (a larger report that does not fit fails at the end, the work kept), nor one that gives no sizes
    (some FUSE and network file systems say 0 blocks)."""
    import os

    from lifestats import cli, outputs
    from lifestats.report_html import smallest_html

    real = os.statvfs(tmp_path)

    def disk(blocks: int, free: int) -> None:
        fields = {name: getattr(real, name) for name in dir(real) if name.startswith("f_")}
        fields.update(f_blocks=blocks, f_bfree=free, f_bavail=free, f_frsize=1)
        monkeypatch.setattr(outputs.os, "statvfs", lambda path: type("Stats", (), fields)())

    def check(**paths: str) -> None:
        cli.Targets(**paths).check(json_flag="--report-json", html_flag="--report-html", csv_flag="--report-csv")

    html = smallest_html()
    json_, page, folder = str(tmp_path / "r.json"), str(tmp_path / "r.html"), str(tmp_path / "csv")
    disk(blocks=10**9, free=html - 1)
    with pytest.raises(ConfigError, match=rf"^--report-html: the disk holding .* has {html - 1:,} bytes free, less"):
        check(html=page)
    check(json=json_)  # a JSON report fits there
    disk(blocks=10**9, free=html + 1024)
    check(html=page)
    with pytest.raises(ConfigError, match=r"^--report-json and --report-html and --report-csv: the disk holding"):
        check(json=json_, html=page, csv=folder)  # together they would not fit
    disk(blocks=0, free=0)
    check(json=json_, html=page, csv=folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["csv"]  # the checks leave only the CSV folder made


def test_the_room_a_report_needs_counts_whole_blocks_per_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file takes whole blocks of its disk: a JSON report of 1 KiB takes a 4 KiB block, and the five CSV
    files take five. Free space compared in bytes let a disk with four blocks free take the five files, and
    the report failed at the end of the crawl."""
    import os

    from lifestats import cli, outputs

    real = os.statvfs(tmp_path)

    def disk(free_blocks: int, block: int = 4096) -> None:
        fields = {name: getattr(real, name) for name in dir(real) if name.startswith("f_")}
        fields.update(f_blocks=10**9, f_bfree=free_blocks, f_bavail=free_blocks, f_frsize=block)
        monkeypatch.setattr(outputs.os, "statvfs", lambda path: type("Stats", (), fields)())

    def check(**paths: str) -> None:
        cli.Targets(**paths).check(json_flag="--report-json", html_flag="--report-html", csv_flag="--report-csv")

    json_, folder = str(tmp_path / "r.json"), str(tmp_path / "csv")
    disk(free_blocks=1, block=2048)  # 2 KiB free in blocks of 2 KiB: a JSON report's kilobyte fits
    check(json=json_)
    disk(free_blocks=0, block=2048)
    with pytest.raises(ConfigError, match=r"^--report-json: the disk holding .* has 0 bytes free"):
        check(json=json_)
    disk(free_blocks=4)  # 16 KiB: four blocks, one short of the five CSV files
    with pytest.raises(
        ConfigError, match=r"^--report-csv: the disk holding .* has 16,384 bytes free, less .* \(20,480"
    ):
        check(csv=folder)
    disk(free_blocks=5)
    check(csv=folder)
    disk(free_blocks=5)
    with pytest.raises(ConfigError, match=r"^--report-json and --report-csv"):
        check(json=json_, csv=folder)  # six files, five blocks
