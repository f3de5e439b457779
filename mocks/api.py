"""The mock API's request handling, shared by the HTTP server (`mocks.server`) and the respx routes
(`mocks.routes`): parameter parsing, auth, the server-side rate limit, fault decisions and the request log.
"""

from __future__ import annotations

import collections
import hmac
import re
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from urllib.parse import parse_qs

from mocks.faults import (
    AttemptCounter,
    FaultSpec,
    Reply,
    build_reply,
    error_body,
    format_seconds,
    json_error,
)
from mocks.source import PageSource, page_body
from mocks.styles import MockStyle, Request, StylePager

DEFAULT_MAX_PAGE_SIZE = 1000
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the mock saw it. `t` is time.monotonic() at arrival; `status` 0 means the connection
    was reset without an answer; `fault` is the injected fault ("500", "slow", "duplicates",
    "stuck+duplicates", ...), "mock-error" for a 500 caused by an exception in the mock or its source, or
    None (a 429 of the server's own rate limit has fault None). `client` is the port the request came
    from (one per keep-alive connection: a benchmark tells a client's requests apart by it), None where
    the mock runs without a socket."""

    t: float
    offset: int | None
    limit: int | None
    status: int
    fault: str | None
    client: int | None = None


class RequestLog:
    """A thread-safe, append-only list of `LoggedRequest`."""

    def __init__(self) -> None:
        self._lock = threading.Condition(threading.Lock())
        self._entries: list[LoggedRequest] = []

    def append(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)
            self._lock.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        """Block until at least `count` requests were logged; False if `timeout` seconds passed first."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self._entries) >= count, timeout)

    def snapshot(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class SlidingWindowLimiter:
    """Admits at most `floor(rate)` requests in any sliding 1-second window (for rate < 1: one request per
    `1/rate` seconds). Refused requests do not take a slot."""

    def __init__(self, rate: float) -> None:
        if not rate > 0:
            raise ValueError(f"rate_limit must be positive, got {rate}")
        self.capacity = max(int(rate), 1)
        self.window = 1.0 if rate >= 1 else 1.0 / rate
        self._admitted: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def acquire(self, now: float) -> float:
        """0.0 when a request arriving at `now` is admitted, else the seconds until a slot frees."""
        with self._lock:
            while self._admitted and self._admitted[0] <= now - self.window:
                self._admitted.popleft()
            if len(self._admitted) < self.capacity:
                self._admitted.append(now)
                return 0.0
            return max(self._admitted[0] + self.window - now, 0.001)


@dataclass(frozen=True)
class Params:
    offset: int | None  # the position asked for: an id, a row, a page (what faults are keyed by)
    limit: int | None
    problem: str | None
    upper: int | None = None


class MockApi:
    """Answers `GET <path>?<offset_param>=O&<limit_param>=N` from a `PageSource`, or pages in `style`."""

    def __init__(
        self,
        source: PageSource,
        *,
        path: str = "/events",
        token: str | None = None,
        faults: FaultSpec | None = None,
        rate_limit: float | None = None,
        offset_param: str = "offset",
        limit_param: str = "limit",
        max_page_size: int = DEFAULT_MAX_PAGE_SIZE,
        log: RequestLog | None = None,
        style: MockStyle | None = None,
    ) -> None:
        if max_page_size < 1:
            raise ValueError("max_page_size must be at least 1")
        self.source = source
        self.path = path
        self.faults = faults
        self.offset_param = offset_param
        self.limit_param = limit_param
        self.max_page_size = max_page_size
        self.log = log if log is not None else RequestLog()
        self.limiter = SlidingWindowLimiter(rate_limit) if rate_limit is not None else None
        self.attempts = AttemptCounter()
        self.style = style
        self.pager = StylePager(source, style, offset_param, limit_param) if style is not None else None
        self.origin = ""  # scheme://host:port, for the absolute next links of some styles (set by the server)
        self._expected_auth = f"Bearer {token}".encode() if token is not None else None

    def handle(
        self, path: str, query: str, authorization: str | None, t: float | None = None, client: int | None = None
    ) -> Reply:
        """The answer to one request (logged), `t` its arrival time (time.monotonic()), `client` the port
        it came from."""
        t = time.monotonic() if t is None else t
        params = self.parse(query)
        try:
            if self.pager is not None:
                reply = self._answer_style(path, params, authorization, t, query)
            else:
                reply = self._answer(path, params, authorization, t)
        except Exception as error:  # a bug in the mock or its source: say so loudly, answer 500
            traceback.print_exc(file=sys.stderr)
            body = error_body(500, f"mock internal error: {type(error).__name__}: {error}")
            reply = Reply(500, body, fault="mock-error")
        self.log.append(LoggedRequest(t, params.offset, params.limit, reply.status, reply.fault, client))
        return reply

    def parse(self, query: str) -> Params:
        values = parse_qs(query, keep_blank_values=True)
        if self.pager is not None:
            request = self.pager.parse(values, _integer)
            return Params(request.position, request.limit, request.problem, request.upper)
        # The offset is a lower bound on the id: any signed 64-bit value (ids may be negative).
        offset, offset_problem = _integer(values, self.offset_param, minimum=-(2**63))
        limit, limit_problem = _integer(values, self.limit_param, minimum=1)
        return Params(offset, limit, offset_problem or limit_problem)

    def authorized(self, authorization: str | None) -> bool:
        if self._expected_auth is None:
            return True
        return authorization is not None and hmac.compare_digest(authorization.encode(), self._expected_auth)

    def _answer(self, path: str, params: Params, authorization: str | None, t: float) -> Reply:
        if path != self.path:
            return json_error(404, f"no such resource: {path}")
        if self.limiter is not None and (wait := self.limiter.acquire(t)) > 0:
            return json_error(429, "Too Many Requests", (("Retry-After", format_seconds(wait)),))
        if not self.authorized(authorization):
            return json_error(401, "Unauthorized", (("WWW-Authenticate", 'Bearer realm="mock"'),))
        if params.problem is not None or params.offset is None or params.limit is None:
            return json_error(400, params.problem or "bad request")
        limit = min(params.limit, self.max_page_size)
        if self.faults is None:  # the plain page, rendered by the source itself when it can (fast)
            return Reply(200, page_body(self.source, params.offset, limit))
        attempt = self.attempts.next(params.offset)
        fault = self.faults.decide(params.offset, attempt)
        repeats = self.faults.duplicates(params.offset)
        return build_reply(self.source, params.offset, limit, fault, self.faults, repeats)

    def _answer_style(self, path: str, params: Params, authorization: str | None, t: float, query: str) -> Reply:
        if path != self.path:
            return json_error(404, f"no such resource: {path}")
        if self.limiter is not None and (wait := self.limiter.acquire(t)) > 0:
            return json_error(429, "Too Many Requests", (("Retry-After", format_seconds(wait)),))
        if not self.authorized(authorization):
            return json_error(401, "Unauthorized", (("WWW-Authenticate", 'Bearer realm="mock"'),))
        if params.problem is not None or params.offset is None or params.limit is None:
            return json_error(400, params.problem or "bad request")
        assert self.pager is not None
        limit = min(params.limit, self.max_page_size)
        url = f"{self.origin}{path}?{query}"
        request = Request(params.offset, params.limit, None, params.upper)
        fault = repeats = None
        if self.faults is not None:
            fault = self.faults.decide(params.offset, self.attempts.next(params.offset))
            if self.pager.style.name == "offset_id":
                repeats = self.faults.duplicates(params.offset)
        return self.pager.answer(request, limit, url, fault, self.faults, repeats or 0)


def _integer(values: dict[str, list[str]], name: str, *, minimum: int) -> tuple[int | None, str | None]:
    raw = values.get(name)
    if not raw:
        return None, f"missing query parameter {name!r}"
    text = raw[0].strip()
    if not _DIGITS.fullmatch(text.removeprefix("-") if minimum < 0 else text):
        return None, f"query parameter {name!r} must be an integer, got {raw[0]!r}"
    value = int(text)
    if value < minimum:
        return None, f"query parameter {name!r} must be at least {minimum}, got {value}"
    return value, None
