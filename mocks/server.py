"""A real HTTP/1.1 mock of a paginated, rate-limited event API, on loopback only.

    with MockServer(ListSource(records), rate_limit=50, faults=FaultSpec(seed=1, rate=0.1)) as server:
        httpx.get(server.url, params={"offset": 0, "limit": 100})
        server.log  # [LoggedRequest(t, offset, limit, status, fault, client), ...]

It pages the original way (`?offset=<id>&limit=n`) unless given a `style=MockStyle(...)` (`mocks.styles`):
keyset, row offsets, page numbers, cursors, next URLs or Link headers, bare arrays, shuffled pages, string or
negative ids.

CLI (prints the URL on one line, serves until SIGTERM/SIGINT, or stdin EOF with --watch-stdin):

    python -m mocks.server --seed 7 --records 100000 --rate-limit 100 --latency 0.02 --port 0 [--replay]
    python -m mocks.server --records 5000 --style-json '{"name": "cursor"}'
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import ipaddress
import json
import os
import signal
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit

import orjson

from mocks.api import DEFAULT_MAX_PAGE_SIZE, LoggedRequest, MockApi, RequestLog
from mocks.faults import KINDS, FaultSpec, Reply
from mocks.source import LIFESUM_DIR, PageSource, ReplaySource
from mocks.styles import MockStyle

__all__ = ["LoggedRequest", "MockServer", "main", "serve_in_subprocess"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TOKEN_ENV = "MOCKS_SERVER_TOKEN"
HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 60.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT
    server: _HttpServer

    def do_GET(self) -> None:
        arrival = time.monotonic()
        mock = self.server.mock
        if mock.stopping.is_set():  # a keep-alive connection that outlived stop(): no answer
            self.close_connection = True
            return
        target = urlsplit(self.path)
        client = self.client_address[1] if isinstance(self.client_address, tuple) else None
        reply = mock.api.handle(target.path, target.query, self.headers.get("Authorization"), arrival, client)
        # The answer leaves `latency` (plus a fault's delay) after the request arrived, no sooner: the mock's
        # own work on it counts inside that time, as a real API's does inside its answer time.
        delay = mock.latency + reply.delay - (time.monotonic() - arrival)
        if delay > 0 and mock.stopping.wait(delay):
            self.close_connection = True
            return
        if reply.action == "reset":
            self._reset()
        else:
            self._send(reply)

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def _reset(self) -> None:
        """Close the connection abruptly (RST, no response)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.rfile.close()  # the socket really closes once its last file object is gone

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is `MockServer.log`."""


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], mock: MockServer) -> None:
        self.mock = mock
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (a DNS lookup); loopback needs none.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def finish_request(self, request: Any, client_address: Any) -> None:
        connection = request
        if self.mock.ssl_context is not None:
            request.settimeout(HANDSHAKE_TIMEOUT)
            try:
                connection = self.mock.ssl_context.wrap_socket(request, server_side=True)
            except OSError:
                return  # failed handshake (e.g. a client that does not trust our certificate)
            connection.settimeout(None)
        with self._connections_lock:
            self._connections.add(connection)
        try:
            self.RequestHandlerClass(connection, client_address, self)  # type: ignore[arg-type]
        finally:
            with self._connections_lock:
                self._connections.discard(connection)
            if connection is not request:
                with contextlib.suppress(OSError):
                    connection.close()

    def close_connections(self) -> None:
        """Shut down every open (keep-alive) connection so that handler threads end."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(connection, socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError | ValueError):  # client went away, reset, timeout, closed file
            return
        super().handle_error(request, client_address)


class MockServer:
    """The mock API over HTTP/1.1 (keep-alive) on 127.0.0.1, or https with `ssl_context`."""

    def __init__(
        self,
        source: PageSource,
        *,
        path: str = "/events",
        rate_limit: float | None = None,
        latency: float = 0.0,
        token: str | None = None,
        faults: FaultSpec | None = None,
        offset_param: str = "offset",
        limit_param: str = "limit",
        max_page_size: int = DEFAULT_MAX_PAGE_SIZE,
        ssl_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        style: MockStyle | None = None,
    ) -> None:
        if not _is_loopback(host):
            raise ValueError(f"the mock server binds to loopback only, not {host!r}")
        if latency < 0:
            raise ValueError("latency must not be negative")
        self.api = MockApi(
            source,
            path=path,
            token=token,
            faults=faults,
            rate_limit=rate_limit,
            offset_param=offset_param,
            limit_param=limit_param,
            max_page_size=max_page_size,
            style=style,
        )
        self.latency = latency
        self.ssl_context = ssl_context
        self.host = host
        self.port = port
        self.stopping = threading.Event()
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the mock server is not started")
        return self._url

    @property
    def log(self) -> list[LoggedRequest]:
        """A snapshot of every request so far, in arrival order of their decisions."""
        return self.api.log.snapshot()

    @property
    def request_log(self) -> RequestLog:
        return self.api.log

    def clear_log(self) -> None:
        self.api.log.clear()

    def start(self) -> str:
        if self._httpd is not None:
            raise RuntimeError("the mock server is already started")
        self._httpd = _HttpServer((self.host, self.port), self)
        port = self._httpd.server_address[1]
        scheme = "https" if self.ssl_context is not None else "http"
        self.api.origin = f"{scheme}://{self.host}:{port}"
        self._url = f"{self.api.origin}{self.api.path}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="mock-api", daemon=True
        )
        self._thread.start()
        return self._url

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None or self.stopping.is_set():
            return
        self.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        thread.join()

    def __enter__(self) -> MockServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.version == 4 and address.is_loopback


# --------------------------------------------------------------------------------------------- the CLI


def build_source(
    *, seed: int, records: int, replay: bool, replay_dir: str | None, dataset: Mapping[str, Any]
) -> PageSource:
    if replay:
        return ReplaySource(replay_dir or LIFESUM_DIR)
    from mocks.dataset import DatasetSpec, LazyDataset

    return LazyDataset(DatasetSpec(seed=seed, records=records, **dataset))  # memory flat in the records


def _fault_rate(text: str) -> float | dict[str, float]:
    """`0.05` or `500=0.1,reset=0.05`."""
    if "=" not in text:
        return float(text)
    rates = {}
    for item in text.split(","):
        kind, _, value = item.partition("=")
        rates[kind.strip()] = float(value)
    return rates


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mocks.server", description="Serve a mock paginated event API on loopback."
    )
    p.add_argument("--seed", type=int, default=0, help="synthetic dataset seed")
    p.add_argument("--records", type=int, default=100_000, help="synthetic dataset size")
    p.add_argument("--dataset-json", default="{}", help="extra DatasetSpec fields as a JSON object")
    p.add_argument("--replay", action="store_true", help="serve the Lifesum pages instead")
    p.add_argument("--replay-dir", default=None, help=f"pages to replay (default {LIFESUM_DIR})")
    p.add_argument("--rate-limit", type=float, default=None, help="requests per sliding second")
    p.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="seconds from a request's arrival to its answer (at least; the mock's own work counts inside it)",
    )
    p.add_argument("--port", type=int, default=0, help="0: a free port")
    p.add_argument("--path", default="/events")
    p.add_argument("--offset-param", default="offset")
    p.add_argument("--limit-param", default="limit")
    p.add_argument("--max-page-size", type=int, default=DEFAULT_MAX_PAGE_SIZE)
    p.add_argument("--style-json", default=None, help='a MockStyle as a JSON object, e.g. {"name": "cursor"}')
    p.add_argument("--token-env", default=None, help="require Bearer <value of this environment variable>")
    p.add_argument("--certfile", default=None, help="serve https with this certificate chain (PEM)")
    p.add_argument("--keyfile", default=None)
    p.add_argument("--fault-rate", type=_fault_rate, default=0.0, help="0.05 or 500=0.1,reset=0.05")
    p.add_argument("--fault-seed", type=int, default=0)
    p.add_argument("--fault-kinds", default=",".join(KINDS), help="comma-separated")
    p.add_argument("--fault-max-per-offset", type=int, default=2)
    p.add_argument("--fault-retry-after", type=float, default=0.2)
    p.add_argument("--fault-slow-seconds", type=float, default=2.0)
    p.add_argument("--watch-stdin", action="store_true", help="exit when stdin reaches EOF (parent died)")
    p.add_argument("--log-file", default=None, help="on exit, write the request log here as JSON lines")
    p.add_argument(
        "--announce-first-request",
        action="store_true",
        help="print 'first-request <time.monotonic()>' on stdout when the first request arrives",
    )
    return p


class _AnnouncingLog(RequestLog):
    """A request log that says on stdout when the first request arrived (``time.monotonic()`` is one clock
    for every process of the machine: a benchmark can tell how long a client took to send it)."""

    def __init__(self) -> None:
        super().__init__()
        self._first = threading.Lock()

    def append(self, entry: LoggedRequest) -> None:
        super().append(entry)
        if not self._first.locked() and self._first.acquire(blocking=False):  # once, whichever thread is first
            print(f"first-request {entry.t!r}", flush=True)


def _faults(args: argparse.Namespace) -> FaultSpec | None:
    rate = args.fault_rate
    if not rate:
        return None
    return FaultSpec(
        seed=args.fault_seed,
        rate=rate,
        kinds={k.strip() for k in args.fault_kinds.split(",") if k.strip()},
        max_per_offset=args.fault_max_per_offset,
        retry_after=args.fault_retry_after,
        slow_seconds=args.fault_slow_seconds,
    )


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.certfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.certfile, args.keyfile)
    return context


def write_log(log: Sequence[LoggedRequest], path: str | os.PathLike[str]) -> None:
    """The request log as JSON lines (`t`, `offset`, `limit`, `status`, `fault`, `client`)."""
    with open(path, "wb") as out:
        for entry in log:
            out.write(orjson.dumps(dataclasses.asdict(entry)) + b"\n")


def read_log(path: str | os.PathLike[str]) -> list[LoggedRequest]:
    with open(path, "rb") as lines:
        return [LoggedRequest(**orjson.loads(line)) for line in lines if line.strip()]


def _watch_stdin(stop: threading.Event) -> None:
    # os.read, not sys.stdin's buffered reader: a daemon thread blocked in that reader holds its lock, and
    # the interpreter's shutdown (after SIGTERM) would then abort with a fatal error.
    with contextlib.suppress(OSError, ValueError):
        while os.read(sys.stdin.fileno(), 65536):
            pass
    stop.set()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    token = None
    if args.token_env is not None:
        token = os.environ.get(args.token_env)
        if not token:
            print(f"mocks.server: environment variable {args.token_env} is empty", file=sys.stderr)
            return 2
    try:
        source = build_source(
            seed=args.seed,
            records=args.records,
            replay=args.replay,
            replay_dir=args.replay_dir,
            dataset=json.loads(args.dataset_json),
        )
        server = MockServer(
            source,
            path=args.path,
            rate_limit=args.rate_limit,
            latency=args.latency,
            token=token,
            faults=_faults(args),
            offset_param=args.offset_param,
            limit_param=args.limit_param,
            max_page_size=args.max_page_size,
            ssl_context=_ssl_context(args),
            port=args.port,
            style=MockStyle(**json.loads(args.style_json)) if args.style_json else None,
        )
    except (ImportError, OSError, TypeError, ValueError) as error:
        print(f"mocks.server: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    warm = getattr(source, "warm", None)
    if warm is not None:
        warm()  # before the URL is announced: no request waits for data to be drawn
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if args.announce_first_request:
        server.api.log = _AnnouncingLog()
    if args.watch_stdin:
        threading.Thread(target=_watch_stdin, args=(stop,), name="stdin-watch", daemon=True).start()
    try:
        print(server.start(), flush=True)
        stop.wait()
    finally:
        server.stop()
        if args.log_file:
            write_log(server.log, args.log_file)
    return 0


# ---------------------------------------------------------------------------------- as a subprocess


def _arguments(
    *,
    seed: int,
    records: int,
    replay: bool,
    replay_dir: str | os.PathLike[str] | None,
    rate_limit: float | None,
    latency: float,
    faults: FaultSpec | None,
    path: str,
    port: int,
    max_page_size: int,
    offset_param: str,
    limit_param: str,
    dataset: Mapping[str, Any],
    style: MockStyle | None = None,
) -> list[str]:
    argv = ["--seed", str(seed), "--records", str(records), "--latency", repr(float(latency))]
    argv += ["--path", path, "--port", str(port), "--max-page-size", str(max_page_size)]
    argv += ["--offset-param", offset_param, "--limit-param", limit_param]
    argv += ["--dataset-json", json.dumps(dict(dataset))]
    if style is not None:
        fields = {f.name: getattr(style, f.name) for f in dataclasses.fields(style) if f.name != "extra"}
        argv += ["--style-json", json.dumps(fields)]
    if replay:
        argv.append("--replay")
    if replay_dir is not None:
        argv += ["--replay-dir", os.fspath(replay_dir)]
    if rate_limit is not None:
        argv += ["--rate-limit", repr(float(rate_limit))]
    if faults is not None:
        rate = faults.rate
        text = ",".join(f"{k}={v!r}" for k, v in rate.items()) if isinstance(rate, Mapping) else repr(rate)
        argv += ["--fault-rate", text, "--fault-seed", str(faults.seed)]
        argv += ["--fault-kinds", ",".join(sorted(faults.kinds))]
        argv += ["--fault-max-per-offset", str(faults.max_per_offset)]
        argv += ["--fault-retry-after", repr(faults.retry_after)]
        argv += ["--fault-slow-seconds", repr(faults.slow_seconds)]
    return argv


class _Stopper:
    """Stops a mock server subprocess: stdin EOF and SIGTERM, then SIGKILL if it lingers. Idempotent."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            atexit.unregister(self)
            process = self.process
            if process.poll() is None:
                _close(process.stdin)  # the child's stdin watcher sees EOF
                with contextlib.suppress(OSError):
                    process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            _close(process.stdin)
            _close(process.stdout)


def _close(stream: IO[bytes] | None) -> None:
    if stream is not None:
        with contextlib.suppress(OSError):
            stream.close()


def serve_in_subprocess(
    *,
    seed: int = 0,
    records: int = 100_000,
    replay: bool = False,
    replay_dir: str | os.PathLike[str] | None = None,
    rate_limit: float | None = None,
    latency: float = 0.0,
    token: str | None = None,
    faults: FaultSpec | None = None,
    path: str = "/events",
    port: int = 0,
    max_page_size: int = DEFAULT_MAX_PAGE_SIZE,
    offset_param: str = "offset",
    limit_param: str = "limit",
    style: MockStyle | None = None,
    startup_timeout: float = 300.0,
    log_file: str | os.PathLike[str] | None = None,
    **dataset: Any,
) -> tuple[str, Callable[[], None]]:
    """Start `python -m mocks.server` in a child process; return its URL and a function that stops it.

    Extra keyword arguments are passed to `DatasetSpec`. The token travels in the child's environment,
    never on its command line. The child exits when this process dies (it watches its stdin for EOF).
    """
    argv = _arguments(
        seed=seed,
        records=records,
        replay=replay,
        replay_dir=replay_dir,
        rate_limit=rate_limit,
        latency=latency,
        faults=faults,
        path=path,
        port=port,
        max_page_size=max_page_size,
        offset_param=offset_param,
        limit_param=limit_param,
        dataset=dataset,
        style=style,
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    if token is not None:
        env[TOKEN_ENV] = token
        argv += ["--token-env", TOKEN_ENV]
    if log_file is not None:
        argv += ["--log-file", os.fspath(log_file)]
    process = subprocess.Popen(
        [sys.executable, "-m", "mocks.server", "--watch-stdin", *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        # Its own process group: a Ctrl-C in the terminal reaches this process, which stops the server
        # (stdin EOF, then SIGTERM) when it is done with it, and not the server in the middle of its start.
        process_group=0,
    )
    stop = _Stopper(process)
    atexit.register(stop)
    watchdog = threading.Timer(startup_timeout, process.kill)
    watchdog.daemon = True
    watchdog.start()
    try:
        line = process.stdout.readline() if process.stdout else b""
    finally:
        watchdog.cancel()
    if not line.strip():
        stop()
        raise RuntimeError(f"the mock server exited (code {process.returncode}) before printing its URL")
    return line.decode().strip(), stop


if __name__ == "__main__":
    sys.exit(main())
