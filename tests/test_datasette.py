"""A real third-party API: Datasette (from PyPI) serving a SQLite table of the mock's events.

Datasette pages a table by keyset: ``/db/table.json?_shape=objects&_sort=id&_size=N&id__gte=X`` answers
``{"rows": [...], "next": "<token>", "next_url": "..."}``. Lifestats crawls it with ``paginator: keyset``
(``id__gte``, bounded by ``id__lt`` so slices run in parallel) and with ``paginator: next_url`` (its
``next_url``), and both reports equal the ground truth exactly.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mocks.dataset import FIELDS, DatasetSpec, generate, ground_truth

from .conftest import AS_OF, job_settings, run, statistics

# Datasette stores JSON values as SQL values: records with a list, an object or a boolean where a value
# belongs cannot be stored as they are, so this dataset has none (the mock's own tests cover them).
DATA = generate(DatasetSpec(seed=17, records=6_000, malformed_share=0.0, first_id=1_000))
COLUMNS = list(FIELDS)


def build_database(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        # Columns without a declared type keep each value's own type (integer, real, text).
        db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, item, category, visitor, timestamp, ip, user_agent)")
        rows = ([record.get(column) for column in COLUMNS] for record in DATA._render(0, len(DATA)))
        db.executemany(f"INSERT INTO events VALUES ({', '.join('?' * len(COLUMNS))})", rows)
        db.commit()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def datasette(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``datasette serve`` in a child process on 127.0.0.1; yields the table's JSON URL."""
    database = tmp_path_factory.mktemp("datasette") / "events.db"
    build_database(database)
    port = free_port()
    command = [sys.executable, "-m", "datasette", "serve", str(database), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--setting", "max_returned_rows", "1000", "--setting", "sql_time_limit_ms", "10000"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(120, process.kill)  # a server that never comes up fails the test, not hangs it
    watchdog.start()
    try:
        assert process.stderr is not None
        for line in process.stderr:  # uvicorn says when it listens
            if "Uvicorn running on" in line:
                break
        else:
            raise RuntimeError(f"datasette exited with {process.wait()} before it listened")
        watchdog.cancel()
        threading.Thread(target=process.stderr.read, daemon=True).start()  # keep its pipe drained
        yield f"http://127.0.0.1:{port}/events/events.json?_shape=objects&_sort=id"
    finally:
        watchdog.cancel()
        process.terminate()
        process.wait(timeout=30)


def crawl(url: str, state_dir: Path, api: dict[str, Any], slices: int) -> dict[str, Any]:
    settings = job_settings(url, api={"page_size": 200, **api}, crawl={"slices": slices, "workers": 3})
    started = time.monotonic()
    outcome = run(settings, state_dir)
    seconds = time.monotonic() - started
    assert outcome.exit_code == 0, outcome.message
    exact = statistics(outcome.report) == ground_truth(DATA, as_of=AS_OF)
    run_info = outcome.report["run"]
    print(
        f"\nSTYLE | {api['paginator']} | Datasette {_version(url)} | {run_info['slices']} planned, "
        f"{run_info['slices_split']} split | {run_info['requests']} requests | exact {'yes' if exact else 'no'} | "
        f"{seconds:.2f} s | {outcome.report['records']['fetched']} records"
    )
    return outcome.report


def _version(url: str) -> str:
    root = httpx.URL(url).copy_with(path="/-/versions.json", query=None)
    return str(httpx.get(root).json()["datasette"]["version"])


def test_datasette_keyset_by_id_gte_in_parallel_slices(datasette: str, state_dir: Path) -> None:
    api = {
        "paginator": "keyset",
        "id_param": "id__gte",
        "upper_param": "id__lt",
        "limit_param": "_size",
        "records_path": "rows",
    }
    report = crawl(datasette, state_dir, api, slices=8)
    assert report["run"]["slices"] == 8
    assert report["records"]["fetched"] == len(DATA)
    assert statistics(report) == ground_truth(DATA, as_of=AS_OF)


def test_datasette_next_url(datasette: str, state_dir: Path) -> None:
    api = {"paginator": "next_url", "next_url_path": "next_url", "limit_param": "_size", "records_path": "rows"}
    report = crawl(datasette, state_dir, api, slices=8)
    assert report["run"]["slices"] == 1  # a next URL can only be followed
    assert statistics(report) == ground_truth(DATA, as_of=AS_OF)
