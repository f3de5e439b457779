"""A lean HTTP/1.1 transport for httpx: the standard library's ``http.client`` on keep-alive connections.

httpx's own transport (httpcore and h11) spends about 0.8 ms of CPU on a 300 KB page, more than parsing
the page's JSON; ``http.client`` reads the same page in about a quarter of that. A crawl of 10^8 records
in pages of 1,000 is 10^5 pages: this is the difference between the HTTP layer costing the client more
than the counting or less (``bench/transport.py`` measures both on the mock API).

:class:`PlainTransport` plugs into ``httpx.Client(transport=...)``, so everything above the wire stays
httpx's: the request and response objects, headers, ``Content-Encoding`` decoding, ``Link`` parsing,
proxies from the environment (:class:`lifestats.fetch.ApiClient` mounts httpx transports for those, as
httpx does for a client on its own transport), and its exception classes,
which this module raises for every failure (connect, timeout, a connection that dies mid-answer, a
malformed answer) so that callers handle one family of errors. HTTP/2 (``api.http2``) is httpx's.

A request may carry a deadline (the request extension :data:`DEADLINE`, a ``time.monotonic()`` value):
with a watchdog given, the connection is shut down when the deadline passes before the status line and
headers are in, so a server that trickles them cannot hold a request past it (the caller watches the
body the same way).

A keep-alive connection that the server closed while it was idle is noticed before it is used (its
socket is readable) and replaced; a request is never sent twice by the transport, so every request the
API sees went through the rate limiter and is counted.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any, Final, Protocol

import httpx

_CHUNK: Final = 1 << 18
_MAX_IDLE: Final = 16  # idle keep-alive connections kept per client (discovery probes run 8 at once)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_Key = tuple[str, str, int]
DEADLINE: Final = "lifestats.deadline"  # request extension: when the whole answer must be in (monotonic)
_RECHECK_AFTER: Final = 1.0  # seconds of waiting for a turn after which an idle connection is checked again
LEFT: Final = "lifestats.left"  # request extension: called once the request is written to its connection
# Request extension: called once the connection is ready, before the request is written (the rate limiter's
# turn); it returns the deadline of the whole answer, which replaces DEADLINE.
TURN: Final = "lifestats.turn"


class Watchdog(Protocol):
    """Shuts a socket down when its deadline passes, unless released first."""

    def watch(self, sock: socket.socket, deadline: float) -> int: ...
    def release(self, token: int) -> None: ...


class _Response(http.client.HTTPResponse):
    """``http.client``'s answer, past every interim one: it skips 100 Continue only, and would take a 103
    Early Hints or a 102 Processing for the answer (RFC 9110 section 15.2: a client reads and drops them)."""

    def _read_status(self) -> tuple[str, int, str]:
        while True:
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if not 100 < status < 200 or status == 101:  # 100 is http.client's own to skip; 101 is no interim
                return version, status, reason
            http.client._read_headers(self.fp)  # type: ignore[attr-defined]


class _NetworkStream:
    """What ``response.extensions["network_stream"]`` offers callers: the connection's socket."""

    def __init__(self, sock: socket.socket | None) -> None:
        self._socket = sock

    def get_extra_info(self, name: str) -> Any:
        return self._socket if name == "socket" else None


class _Body(httpx.SyncByteStream):
    """The answer's body, read in large chunks; the connection goes back to the pool once it is all read."""

    def __init__(self, transport: PlainTransport, key: _Key, conn: http.client.HTTPConnection, answer: Any) -> None:
        self._transport = transport
        self._key = key
        self._conn: http.client.HTTPConnection | None = conn
        self._answer = answer

    def __iter__(self) -> Iterator[bytes]:
        answer = self._answer
        while True:
            try:
                chunk = answer.read(_CHUNK)
            except TimeoutError as exc:
                self.close()
                raise httpx.ReadTimeout(f"no data within the read timeout ({exc})") from exc
            except (http.client.HTTPException, OSError) as exc:
                self.close()
                raise httpx.RemoteProtocolError(f"the connection broke mid-answer ({_describe(exc)})") from exc
            if not chunk:
                missing = answer.length  # what Content-Length still promised (None: chunked or until close)
                if missing:
                    self.close()
                    raise httpx.RemoteProtocolError(f"the connection broke mid-answer ({missing} bytes missing)")
                break
            yield chunk
        conn, self._conn = self._conn, None
        if conn is not None:
            if answer.will_close:
                conn.close()
            else:
                self._transport._release(self._key, conn)

    def close(self) -> None:
        """Closed before the body was all read: the connection cannot carry another request."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class PlainTransport(httpx.BaseTransport):
    """HTTP/1.1 (and HTTPS) requests over pooled ``http.client`` connections; thread-safe."""

    def __init__(self, verify: ssl.SSLContext | bool = True, watchdog: Watchdog | None = None) -> None:
        self._watchdog = watchdog
        self._verify = verify
        self._ssl_context: ssl.SSLContext | None = None  # made on the first HTTPS connection (about 40 ms)
        self._idle: dict[_Key, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    # -- the pool -------------------------------------------------------------------------------------
    def _checkout(self, key: _Key) -> http.client.HTTPConnection | None:
        """An idle connection to ``key`` that is still open, if there is one.

        An idle connection with something to read has been closed by the server (or it sent bytes
        nobody asked for): it is dropped, never sent a request, so no request is ever sent twice.
        """
        while True:
            with self._lock:
                idle = self._idle.get(key)
                conn = idle.pop() if idle else None
            if conn is None or _still_open(conn):
                return conn
            conn.close()

    def _release(self, key: _Key, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if self._closed or len(idle) >= _MAX_IDLE:
                conn.close()
            else:
                idle.append(conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    # -- one request ----------------------------------------------------------------------------------
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"cannot fetch {scheme!r} URLs")
        key = (scheme, url.host, url.port or _DEFAULT_PORTS[scheme])
        timeouts = request.extensions.get("timeout", {})
        connect_timeout, read_timeout = timeouts.get("connect"), timeouts.get("read")
        target = url.raw_path.decode("ascii")
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw]
        body = request.read() or None
        pooled = self._checkout(key)
        conn = pooled or self._connect(key, connect_timeout)
        deadline, watchdog = request.extensions.get(DEADLINE), self._watchdog
        turn = request.extensions.get(TURN)
        if turn is not None:
            try:
                waited = time.monotonic()
                deadline = turn()  # may wait: the connection is ready, so the request leaves on its turn
                # An idle connection the server may have closed during a long wait (a 429's pause) is
                # checked again. Not a new one: a TLS 1.3 server's session tickets wait to be read on it.
                long_wait = time.monotonic() - waited > _RECHECK_AFTER
                if pooled is not None and long_wait and not _still_open(conn):
                    conn.close()
                    conn = self._connect(key, connect_timeout)
            except BaseException:
                conn.close()
                raise
        if watchdog is None or deadline is None or conn.sock is None:
            return self._exchange(conn, key, request, target, headers, body, read_timeout)
        watching = watchdog.watch(conn.sock, deadline)
        try:
            return self._exchange(conn, key, request, target, headers, body, read_timeout)
        finally:
            watchdog.release(watching)

    def _context(self) -> ssl.SSLContext:
        with self._lock:
            if self._ssl_context is None:
                self._ssl_context = httpx.create_ssl_context(verify=self._verify)
            return self._ssl_context

    def _connect(self, key: _Key, timeout: float | None) -> http.client.HTTPConnection:
        scheme, host, port = key
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._context())
            conn.response_class = _Response
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
            conn.response_class = _Response
        try:
            conn.connect()
        except TimeoutError as exc:
            conn.close()
            raise httpx.ConnectTimeout(f"could not connect to {host}:{port} in time") from exc
        except OSError as exc:  # refused, unreachable, a name that does not resolve, a TLS handshake refused
            conn.close()
            raise httpx.ConnectError(f"could not connect to {host}:{port} ({_describe(exc)})") from exc
        if conn.sock is not None:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        key: _Key,
        request: httpx.Request,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        read_timeout: float | None,
    ) -> httpx.Response:
        """Send the request and read the status line and headers."""
        sock = conn.sock  # the answer's socket: http.client forgets it once it reads "Connection: close"
        if sock is not None:
            sock.settimeout(read_timeout)
        try:
            conn.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders(body)
            left = request.extensions.get(LEFT)
            if left is not None:
                left()
            answer = conn.getresponse()
        except TimeoutError as exc:
            conn.close()
            raise httpx.ReadTimeout("no answer within the read timeout") from exc
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
            conn.close()
            raise httpx.RemoteProtocolError(f"the server closed the connection ({_describe(exc)})") from exc
        except (http.client.HTTPException, OSError) as exc:
            conn.close()
            raise httpx.RemoteProtocolError(f"a malformed or broken answer ({_describe(exc)})") from exc
        version = "HTTP/1.0" if answer.version == 10 else "HTTP/1.1"
        return httpx.Response(
            answer.status,
            headers=answer.getheaders(),
            stream=_Body(self, key, conn, answer),
            extensions={
                "http_version": version.encode("ascii"),
                "reason_phrase": answer.reason.encode("latin-1", "replace"),
                "network_stream": _NetworkStream(sock),  # the body is watched on it (an HTTP/1.0 answer too)
            },
        )


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle connection is still usable: open, with nothing waiting to be read."""
    sock = conn.sock
    if sock is None:
        return False
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
