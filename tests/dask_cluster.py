"""A real Dask cluster on loopback for tests and benchmarks: ``dask scheduler`` and ``dask worker``
processes, started as the command line starts them, with this checkout on their PYTHONPATH."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .dask_stacks import PIDS

REPO = Path(__file__).resolve().parent.parent


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIFESTATS_", "DASK_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return env


class DaskCluster:
    """One scheduler and ``workers`` worker processes (one thread each), each under its nanny."""

    def __init__(self, workdir: Path, workers: int, *, nanny: bool = True) -> None:
        self.workdir = workdir
        self.workers = workers
        self.nanny = nanny
        self.scheduler_file = workdir / "scheduler.json"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.address = ""

    def start(self, timeout: float = 90.0) -> DaskCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        env = _environment()
        scheduler = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0"]
        scheduler += ["--no-dashboard", "--scheduler-file", str(self.scheduler_file)]
        self._spawn(scheduler, env, logs / "scheduler.log")
        deadline = time.monotonic() + timeout
        while not self._address_written():
            if time.monotonic() > deadline or self.processes[0].poll() is not None:
                raise RuntimeError(f"the dask scheduler did not start: {(logs / 'scheduler.log').read_text()}")
            time.sleep(0.05)  # polling for the scheduler file, the scheduler's only signal that it is up
        self.address = json.loads(self.scheduler_file.read_text())["address"]
        for number in range(self.workers):
            self.add_worker(number, env, logs)
        self.wait_for_workers(self.workers, deadline - time.monotonic())
        return self

    def _address_written(self) -> bool:
        try:
            return bool(json.loads(self.scheduler_file.read_text()).get("address"))
        except (OSError, ValueError):
            return False

    def add_worker(self, number: int, env: dict[str, str] | None = None, logs: Path | None = None) -> None:
        env = env or _environment()
        logs = logs or self.workdir / "logs"
        worker = [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(self.scheduler_file)]
        worker += ["--nworkers", "1", "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"]
        worker += ["--local-directory", str(self.workdir / f"worker-{number}"), "--death-timeout", "60"]
        worker += ["--nanny" if self.nanny else "--no-nanny", "--preload", "tests.dask_stacks"]
        (self.workdir / "pids").mkdir(exist_ok=True)
        self._spawn(worker, {**env, PIDS: str(self.workdir / "pids")}, logs / f"worker-{number}.log")

    def _spawn(self, command: list[str], env: dict[str, str], log: Path) -> None:
        with open(log, "wb") as out:
            self.processes.append(
                subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            )

    def client(self) -> Any:
        from distributed import Client

        return Client(self.address, timeout="30s")

    def wait_for_workers(self, count: int, timeout: float) -> None:
        with self.client() as client:
            client.wait_for_workers(count, timeout=max(timeout, 1.0))

    def logs(self, tail: int = 150) -> str:
        """The last ``tail`` lines of the scheduler's and every worker's log (shown when a test fails),
        each live worker's thread stacks among them (a silent worker's show where it is stuck)."""
        self.dump_stacks()
        parts = []
        for log in sorted((self.workdir / "logs").glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-tail:]
            parts.append(f"--- {log.name} (last {len(lines)} lines)\n" + "\n".join(lines))
        return "\n".join(parts)

    def dump_stacks(self) -> None:
        """Each live worker's thread stacks into its log (faulthandler, on SIGUSR1)."""
        logs = sorted((self.workdir / "logs").glob("worker-*.log"))
        sizes = {log: log.stat().st_size for log in logs}
        signalled = 0
        for pid_file in (self.workdir / "pids").glob("*.pid"):
            with contextlib.suppress(OSError, ValueError):  # gone (killed by a test), or not a worker now
                pid = int(pid_file.stem)
                if f"{PIDS}={self.workdir / 'pids'}".encode() in Path(f"/proc/{pid}/environ").read_bytes():
                    os.kill(pid, signal.SIGUSR1)
                    signalled += 1
        # faulthandler writes from its signal handler, even in a process whose interpreter is stuck:
        # wait (at most 5 s) for the dumps to reach the logs; this only runs for a test that failed.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            dumped = sum(1 for log in logs if b"Thread 0x" in log.read_bytes()[sizes[log] :])
            if dumped >= signalled:
                break
            time.sleep(0.1)

    def worker_pids(self) -> dict[str, int]:
        """Worker address -> the pid of the process that runs the tasks."""
        with self.client() as client:
            return dict(client.run(os.getpid))

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def __enter__(self) -> DaskCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def dask_cluster(workdir: Path, workers: int, *, nanny: bool = True) -> Iterator[DaskCluster]:
    with DaskCluster(workdir, workers, nanny=nanny) as cluster:
        yield cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway ``redis-server`` on loopback (no persistence); skips the test when none is installed."""
    import pytest

    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    pytest.importorskip("redis")
    port = free_port()
    process = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(60, process.kill)  # a server that never gets ready ends the wait below
    watchdog.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:  # its log: ready once it says so
            if "Ready to accept connections" in line:
                break
        else:
            raise RuntimeError(f"redis-server exited (code {process.wait()}) before it was ready")
        watchdog.cancel()
        drain = threading.Thread(target=process.stdout.read, daemon=True)  # its later log lines, unread
        drain.start()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        watchdog.cancel()
        process.terminate()
        process.wait(timeout=10)
