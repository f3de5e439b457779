"""The plain HTTP/1.1 transport against a raw socket server on 127.0.0.1 that answers as each test says."""

from __future__ import annotations

import functools
import gzip
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from lifestats._transport import LEFT, PlainTransport

# answer(connection number, request number on that connection, request line) -> (bytes to send, close after)
Answer = Callable[[int, int, str], tuple[bytes, bool]]


def ok(body: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


@dataclass
class RawServer:
    answer: Answer
    requests: list[tuple[int, str]] = field(default_factory=list)  # (connection number, request line)
    connections: int = 0
    closed: threading.Event = field(default_factory=threading.Event)  # set whenever the server closes one
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""


@pytest.fixture
def raw_server() -> Iterator[Callable[[Answer], RawServer]]:
    servers: list[socketserver.ThreadingTCPServer] = []

    def start(answer: Answer) -> RawServer:
        state = RawServer(answer)

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                with state.lock:
                    state.connections += 1
                    number = state.connections
                served = 0
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return  # the client closed it
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass  # headers
                    served += 1
                    with state.lock:
                        state.requests.append((number, line.decode().strip()))
                    data, close = state.answer(number, served, line.decode())
                    if data:
                        self.wfile.write(data)
                        self.wfile.flush()
                    if close:
                        self.connection.shutdown(socket.SHUT_RDWR)
                        self.connection.close()
                        state.closed.set()
                        return

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        state.url = f"http://127.0.0.1:{server.server_address[1]}"
        return state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def client(**timeouts: float) -> httpx.Client:
    return httpx.Client(transport=PlainTransport(), timeout=httpx.Timeout(timeouts.get("read", 5.0)))


def test_requests_reuse_one_keep_alive_connection(raw_server: Callable[[Answer], RawServer]) -> None:
    server = raw_server(lambda conn, n, line: (ok(orjson.dumps({"n": n, "line": line.split()[1]})), False))
    with client() as http:
        answers = [http.get(f"{server.url}/events?offset={k}").json() for k in range(5)]
    assert answers == [{"n": k + 1, "line": f"/events?offset={k}"} for k in range(5)]
    assert server.connections == 1 and len(server.requests) == 5


def test_an_idle_connection_the_server_closed_is_replaced_and_no_request_is_sent_twice(
    raw_server: Callable[[Answer], RawServer],
) -> None:
    # The server answers (keep-alive, as far as the client can tell) and then closes the connection.
    server = raw_server(lambda conn, n, line: (ok(b'{"ok": true}'), True))
    with client() as http:
        assert http.get(f"{server.url}/a").json() == {"ok": True}
        assert server.closed.wait(5)
        assert http.get(f"{server.url}/b").json() == {"ok": True}
    assert server.requests == [(1, "GET /a HTTP/1.1"), (2, "GET /b HTTP/1.1")]


def test_an_answer_cut_short_is_a_transport_error_and_its_connection_is_not_reused(
    raw_server: Callable[[Answer], RawServer],
) -> None:
    def answer(conn: int, n: int, line: str) -> tuple[bytes, bool]:
        if "/cut" in line:  # 100 bytes announced, 10 sent
            return b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", True
        return ok(b"[1, 2]"), False

    server = raw_server(answer)
    with client() as http:
        with pytest.raises(httpx.RemoteProtocolError, match="mid-answer"):
            http.get(f"{server.url}/cut")
        assert http.get(f"{server.url}/whole").json() == [1, 2]
    assert [conn for conn, _ in server.requests] == [1, 2]


def test_chunked_and_gzip_answers_are_decoded(raw_server: Callable[[Answer], RawServer]) -> None:
    document = {"response": [{"id": i, "item": f"item {i}"} for i in range(200)]}
    packed = gzip.compress(orjson.dumps(document))
    chunks = [packed[i : i + 300] for i in range(0, len(packed), 300)]
    body = b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks) + b"0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
    head += b'Transfer-Encoding: chunked\r\nLink: <http://x/next>; rel="next"\r\n\r\n'
    server = raw_server(lambda conn, n, line: (head + body, False))
    with client() as http:
        response = http.get(f"{server.url}/events")
        again = http.get(f"{server.url}/events")  # the connection is reusable after a chunked answer
    assert response.json() == document == again.json()
    assert response.links["next"]["url"] == "http://x/next"
    assert server.connections == 1


def test_a_malformed_status_line_is_a_protocol_error(raw_server: Callable[[Answer], RawServer]) -> None:
    server = raw_server(lambda conn, n, line: (b"SMTP ready\r\n\r\n", True))
    with client() as http, pytest.raises(httpx.RemoteProtocolError):
        http.get(f"{server.url}/events")


def test_a_server_that_never_answers_is_a_read_timeout(raw_server: Callable[[Answer], RawServer]) -> None:
    server = raw_server(lambda conn, n, line: (b"", False))  # reads the request, says nothing
    with client(read=0.2) as http, pytest.raises(httpx.ReadTimeout):
        http.get(f"{server.url}/events")


def test_a_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with client() as http, pytest.raises(httpx.ConnectError):
        http.get(f"http://127.0.0.1:{port}/events")


def test_other_schemes_are_refused() -> None:
    with client() as http, pytest.raises(httpx.UnsupportedProtocol):
        http.get("ftp://127.0.0.1/events")


@pytest.mark.parametrize(
    "interim",
    [b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n", b"HTTP/1.1 102 Processing\r\n\r\n"],
)
def test_interim_answers_are_skipped(raw_server: Callable[[Answer], RawServer], interim: bytes) -> None:
    """It used to take a 103 or 102 for the answer (the job then stopped with exit 3)."""
    server = raw_server(lambda conn, n, line: (interim + interim + ok(b'{"n": %d}' % n), False))
    with client() as http:
        answers = [http.get(f"{server.url}/events") for _ in range(2)]
    assert [(a.status_code, a.json()) for a in answers] == [(200, {"n": 1}), (200, {"n": 2})]
    assert server.connections == 1


def test_the_left_extension_is_called_once_the_request_is_written(raw_server: Callable[[Answer], RawServer]) -> None:
    """The limiter spaces the next send from when a late request left (lifestats.limiter.SharedRateLimiter.left):
    the transport tells it, once per request, before the answer is read."""
    calls: list[int] = []
    server = raw_server(lambda conn, n, line: (ok(orjson.dumps({"seen": len(server.requests)})), False))
    with client() as http:
        for k in range(3):
            answer = http.get(f"{server.url}/events?offset={k}", extensions={LEFT: functools.partial(calls.append, k)})
            assert answer.json() == {"seen": k + 1}
    assert calls == [0, 1, 2]


def test_the_limiter_s_turn_is_taken_once_the_connection_is_ready(
    raw_server: Callable[[Answer], RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The turn came before the connection was made: a remote API's TCP and TLS handshake (65 ms) delayed
    the first request of each connection past the next worker's turn, and the server saw 21 requests in a
    second at a limit of 20 (audit Z). Now a new connection is made first, and a request is written
    on its turn."""
    from lifestats.config import load_settings
    from lifestats.fetch import ApiClient

    events: list[str] = []
    connect = PlainTransport._connect

    def connecting(self: PlainTransport, key: Any, timeout: float | None) -> Any:
        events.append("connect")
        return connect(self, key, timeout)

    monkeypatch.setattr(PlainTransport, "_connect", connecting)

    class Limiter:
        def acquire(self, *, retry: bool = False) -> None:
            events.append("turn")

        def left(self) -> None:
            events.append("left")

        def pause(self, seconds: float) -> None:
            return None

    body = orjson.dumps({"response": [{"id": 1}], "meta": {"next_offset": None}})
    server = raw_server(lambda conn, n, line: (ok(body), False))
    settings = load_settings(None, "test", environ={}, overrides={"api": {"url": f"{server.url}/events"}})
    with ApiClient(settings.api, settings.crawl, Limiter()) as api:
        api.get_page(0)
        api.get_page(1)
    assert events == ["connect", "turn", "left", "turn", "left"]
